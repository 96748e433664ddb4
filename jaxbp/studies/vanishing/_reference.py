r"""The exact width-N reference: the study's networks simulated directly, without jaxbp's layers.

Mean-field theory is exact only as :math:`N \to \infty`.  At width :math:`N` the study measures
:math:`\mathbb E \ln\|\delta_l\|`, which differs from :math:`\tfrac12 \ln \mathbb E\|\delta_l\|^2` by
:math:`O(1/N)` per layer, and the fluctuations of the forward length :math:`q_l` feed back into
the backward factors (for tanh, whose :math:`\chi` depends on :math:`q`).  The first-order
formula (:func:`jaxbp.theory.log_gradient_variance`) covers the variance for one input with
Gaussian weights; the verdicts also need the mean, a batch and orthogonal weights, so the
prediction they use is a Monte-Carlo of the *same* setting: same inputs, widths, depth, weight and bias laws, loss
direction :math:`\delta_L = v`, run here in plain ``jax.numpy`` with the forward pass and the
backward recursion

.. math::

    z_l = h_{l-1} W_l + b_l,\quad h_l = \phi(z_l),\qquad
    \delta_L = v,\quad \delta_l = \phi'(z_l) \odot (\delta_{l+1} W_{l+1}^\top)

written out by hand (no ``jaxbp.ops``, no custom VJPs), on independently drawn networks.  A
verdict "consistent" then says the measured networks behave like exact width-N networks of
that law; the gap between this reference and the infinite-width prediction is the finite-width
offset, reported beside it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp.studies.vanishing._config import Laws
from jaxbp.studies.vanishing._networks import NetworkSpec, ResolvedInit, resolve_init


class LayerLaw(NamedTuple):
    """How one dense layer's parameters are drawn: ``kind`` "gaussian" (iid entries of standard
    deviation ``scale``) or "orthogonal" (a semi-orthogonal matrix times ``scale``); biases iid
    normal with standard deviation ``bias_std``."""

    kind: str
    scale: float
    bias_std: float


#: The derivative of each activation, written out (independent of ``jaxbp.nn``).
_DERIVATIVES: dict[str, tuple[Callable[[jax.Array], jax.Array], Callable[[jax.Array], jax.Array]]] = {
    "tanh": (jnp.tanh, lambda z: 1.0 - jnp.tanh(z) ** 2),
    "sigmoid": (
        lambda z: 1.0 / (1.0 + jnp.exp(-z)),
        lambda z: jnp.exp(-z) / (1.0 + jnp.exp(-z)) ** 2,
    ),
    "relu": (lambda z: jnp.maximum(z, 0.0), lambda z: (z > 0).astype(z.dtype)),
}


def layer_laws(
    spec: NetworkSpec, resolved: ResolvedInit, fan_in: int, width: int, laws: Laws
) -> tuple[LayerLaw, LayerLaw]:
    """The laws of the first (``fan_in x width``) and of every later (``width x width``) layer of ``spec``."""
    bias = math.sqrt(resolved.sigma_b2)
    if spec.init == "naive":
        return LayerLaw("gaussian", laws.naive_stddev, 0.0), LayerLaw("gaussian", laws.naive_stddev, 0.0)
    if spec.init == "glorot":
        return LayerLaw("gaussian", math.sqrt(2 / (fan_in + width)), 0.0), LayerLaw(
            "gaussian", math.sqrt(1 / width), 0.0
        )
    if spec.init in ("orthogonal", "orthogonal_mean_field"):
        gain = math.sqrt(resolved.sigma_w2) if spec.init == "orthogonal_mean_field" else 1.0
        return LayerLaw("orthogonal", gain, bias), LayerLaw("orthogonal", gain, bias)
    # he, critical, mean_field: variance sigma_w2 / fan_in
    return (
        LayerLaw("gaussian", math.sqrt(resolved.sigma_w2 / fan_in), bias),
        LayerLaw("gaussian", math.sqrt(resolved.sigma_w2 / width), bias),
    )


def _haar(key: jax.Array, fan_in: int, fan_out: int, dtype: Any) -> jax.Array:
    """A Haar-distributed semi-orthogonal ``fan_in x fan_out`` matrix: the Q of a Gaussian matrix's QR
    with R's diagonal positive, computed as Cholesky-QR, :math:`Q = G R^{-1}` with
    :math:`R^\top R = G^\top G` (XLA:CPU's batched Householder QR is ~5x slower; G is
    well conditioned enough for float64)."""
    g = jax.random.normal(key, (max(fan_in, fan_out), min(fan_in, fan_out)), dtype)
    lower = jnp.linalg.cholesky(g.T @ g)
    q = jax.scipy.linalg.solve_triangular(lower, g.T, lower=True).T
    return q if fan_in >= fan_out else q.T


def _weights(key: jax.Array, kind: str, scale: jax.Array, fan_in: int, fan_out: int, dtype: Any) -> jax.Array:
    if kind == "orthogonal":
        return scale * _haar(key, fan_in, fan_out, dtype)
    return scale * jax.random.normal(key, (fan_in, fan_out), dtype)


_ORDER = tuple(sorted(_DERIVATIVES))


@functools.cache
def _layer_sampler(kind: str, count: int, fan_in: int, fan_out: int, dtype: str) -> Callable:
    """``jit(vmap over seed keys)``: ``count`` ``fan_in x fan_out`` weight matrices per key, at a traced scale.

    Each stack is drawn by its own computation, finished before the next starts
    (:func:`simulate_log_delta_norms`): jaxlib 0.10's batched LAPACK kernels (the Cholesky and the
    triangular solve of :func:`_haar`) wait on the CPU thread pool they run in, so two of them
    running at once (the first layer's and the hidden layers') can leave no thread to do the
    work, and the process hangs (seen in about 1 run in 4 at width 128 on 2 cores)."""

    def per_seed(key: jax.Array, scale: jax.Array) -> jax.Array:
        return jax.vmap(lambda k: _weights(k, kind, scale, fan_in, fan_out, jnp.dtype(dtype)))(
            jax.random.split(key, count)
        )

    return jax.jit(jax.vmap(per_seed, in_axes=(0, None)))


@functools.cache
def _simulator(depth: int, width: int) -> Callable:
    """``jit(vmap(one network))`` over drawn weights and keys; the activation (an index into ``_ORDER``)
    and the bias scale are arguments, so one compilation serves every setting of a depth and width."""

    def one_network(
        first: jax.Array, hidden: jax.Array, key: jax.Array, x: jax.Array, bias_std: jax.Array, which: jax.Array
    ) -> jax.Array:
        def phi(z: jax.Array) -> jax.Array:
            return jax.lax.switch(which, [_DERIVATIVES[name][0] for name in _ORDER], z)

        def dphi(z: jax.Array) -> jax.Array:
            return jax.lax.switch(which, [_DERIVATIVES[name][1] for name in _ORDER], z)

        direction_key, bias_key = jax.random.split(key)
        biases = bias_std * jax.random.normal(bias_key, (depth, width), x.dtype)
        z1 = x @ first + biases[0]

        def forward(z: jax.Array, layer: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            w, b = layer
            z_next = phi(z) @ w + b
            return z_next, z_next

        _, zs = jax.lax.scan(forward, z1, (hidden, biases[1:]))  # hidden: (L-1, N, N), W_2 .. W_L
        zs = jnp.concatenate([z1[None], zs])  # (L, B, N): z_1 .. z_L
        delta = jax.random.normal(direction_key, (x.shape[0], width), x.dtype)

        def backward(delta: jax.Array, layer: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            w, z = layer  # W_{l+1} and z_l
            new = dphi(z) * (delta @ w.T)
            norm = jnp.sqrt(jnp.sum(new**2))
            return new / norm, jnp.log(norm)  # renormalized: deep sigmoid stacks underflow otherwise

        log_last = jnp.log(jnp.sqrt(jnp.sum(delta**2)))
        _, log_steps = jax.lax.scan(backward, delta / jnp.exp(log_last), (hidden, zs[:-1]), reverse=True)
        # ln||δ_l|| = ln||δ_L|| + the log step factors from l to L-1
        log_norms = log_last + jnp.cumsum(log_steps[::-1])[::-1]
        return jnp.concatenate([log_norms, log_last[None]])

    return jax.jit(jax.vmap(one_network, in_axes=(0, 0, 0, None, None, None)))


#: Seeds simulated at once (bounds the memory of their stacked weights).
SEED_CHUNK = 8


def simulate_log_delta_norms(
    key: jax.Array, x: jax.Array, activation: str, depth: int, width: int, first: LayerLaw, hidden: LayerLaw, seeds: int
) -> np.ndarray:
    r""":math:`\ln\|\delta_l\|` (Frobenius over the batch), shape ``(seeds, depth)``, of ``seeds`` independent
    networks: ``depth`` dense layers (the first ``x.shape[-1] -> width`` of law ``first``, the rest
    ``width -> width`` of law ``hidden``), ``activation`` after all but the last, loss
    :math:`\langle z_L, v\rangle` with :math:`v` standard normal, in the dtype of ``x``."""
    if activation not in _DERIVATIVES:
        raise ValueError(
            f"simulate_log_delta_norms: activation must be one of {sorted(_DERIVATIVES)}, got {activation!r}"
        )
    if depth < 2:
        raise ValueError(f"simulate_log_delta_norms: depth must be >= 2, got {depth}")
    if first.kind != hidden.kind or first.bias_std != hidden.bias_std:
        raise ValueError(
            f"simulate_log_delta_norms: the first and hidden laws differ in kind or bias: {first}, {hidden}"
        )
    dtype = jnp.dtype(x.dtype).name
    draw_first = _layer_sampler(first.kind, 1, x.shape[-1], width, dtype)
    draw_hidden = _layer_sampler(hidden.kind, depth - 1, width, width, dtype)
    run, which = _simulator(depth, width), _ORDER.index(activation)
    bias_std = jnp.asarray(first.bias_std, x.dtype)
    parts = []
    for start in range(0, seeds, SEED_CHUNK):
        chunk_keys = jax.random.split(jax.random.fold_in(key, start), 3 * min(SEED_CHUNK, seeds - start))
        first_keys, hidden_keys, network_keys = jnp.split(chunk_keys, 3)
        first_w = jax.block_until_ready(draw_first(first_keys, jnp.asarray(first.scale, x.dtype)))[:, 0]
        hidden_w = jax.block_until_ready(draw_hidden(hidden_keys, jnp.asarray(hidden.scale, x.dtype)))
        parts.append(np.asarray(run(first_w, hidden_w, network_keys, x, bias_std, which), np.float64))
    return np.concatenate(parts)


def reference_log_delta_norms(
    spec: NetworkSpec, depth: int, width: int, laws: Laws, x: jax.Array, key: jax.Array, seeds: int
) -> np.ndarray:
    """:func:`simulate_log_delta_norms` of ``spec``'s law (a plain network); ``key`` must not be the measurement's."""
    resolved = resolve_init(spec, width, laws)
    first, hidden = layer_laws(spec, resolved, x.shape[-1], width, laws)
    return simulate_log_delta_norms(key, x, spec.activation, depth, width, first, hidden, seeds)
