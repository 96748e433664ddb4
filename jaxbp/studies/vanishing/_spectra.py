r"""Input-output Jacobian spectra and forward signal propagation of random networks.

* **Jacobian spectrum** (Pennington, Schoenholz & Ganguli 2017): for :math:`J = \partial h_L/\partial h_0`
  (every layer dense + activation, the input at the fixed point, :math:`h_0 = \phi(\sqrt{q^*} g)`),
  the rows of :math:`J` are vector-Jacobian products against the standard basis, computed by
  the hand-written backward rules (``jax.vjp`` of the ops, vmapped over the basis), one segment
  between consecutive depths at a time and chained, :math:`J_b = J_{b \leftarrow a} J_a`.
  Reported: the squared singular values :math:`s^2`, their mean and variance and
  :math:`s_{\max}` per seed, against :func:`jaxbp.theory.jacobian_spectrum_moments`.
* **Signal propagation** (Poole et al. 2016; Schoenholz et al. 2017): the length
  :math:`q_l = \overline{z_l^2}` and the correlation :math:`c_l` of two inputs' pre-activations,
  against the length and correlation maps iterated from the measured :math:`(q_1, c_1)`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import init as initializers
from jaxbp import nn, ops, theory
from jaxbp.studies.vanishing._config import Laws, SignalConfig, SpectraConfig
from jaxbp.studies.vanishing._gradients import init_stacked, setting_fields
from jaxbp.studies.vanishing._networks import NetworkSpec, build_network, resolve_init, setting_key
from jaxbp.studies.vanishing._progress import tick
from jaxbp.studies.vanishing._settings import spectrum_specs
from jaxbp.studies.vanishing._stats import difference, estimate, log_estimate, rows


def _recorded_forward(network: nn.Layer, params: Any, x: jax.Array) -> dict[str, jax.Array]:
    record: dict[str, jax.Array] = {}
    network.forward(params, x, network.init_state(params), record=record)
    return record


def _jacobian_singular_values(
    network: nn.Layer,
    activation: str,
    depths: tuple[int, ...],
    params: Any,
    x: jax.Array,
) -> jax.Array:
    """Singular values of :math:`J_l = \\partial h_l / \\partial h_0` for every ``l`` in ``depths``: ``(len(depths), N)``.

    ``network`` is a plain dense + ``activation`` stack (:func:`build_network` without remedies), so
    :math:`h_l = \\phi(h_{l-1} W_l + b_l)` for every layer, the last included.  The Jacobian is built
    segment by segment between consecutive depths, :math:`J_b = J_{b \\leftarrow a} J_a`: each
    segment is a ``lax.scan`` of ``ops.dense`` and the activation op over its stacked layers, and
    its Jacobian's rows are vector-Jacobian products against the standard basis (the hand-written
    backward rules, vmapped over the basis).  Every layer is backpropagated once, and the compiled
    program does not grow with depth.
    """
    phi = nn.activation(activation)
    groups = network.parameter_groups(params)
    layers = {name: jnp.stack([group[name] for _, group in groups]) for name in ("w", "b")}

    def segment(start: int, stop: int, h: jax.Array) -> jax.Array:
        def layer(h: jax.Array, dense_params: dict[str, jax.Array]) -> tuple[jax.Array, None]:
            return phi.apply((), ops.dense(dense_params, h)), None

        return jax.lax.scan(layer, h, {name: leaf[start:stop] for name, leaf in layers.items()})[0]

    basis = jnp.eye(x.shape[-1], dtype=x.dtype)
    jacobian, h, start, values = basis, x, 0, []
    for stop in depths:
        h, vjp = jax.vjp(functools.partial(segment, start, stop), h)
        rows = jax.vmap(vjp)(basis)[0]  # row k: e_k^T J_{stop <- start}
        jacobian, start = rows @ jacobian, stop
        values.append(jnp.linalg.svd(jacobian, compute_uv=False))
    return jnp.stack(values)


#: Free-probability verdicts only at depth / width up to this (its predictions are N -> inf at fixed L).
FREE_PROBABILITY_MAX_DEPTH_OVER_WIDTH = 0.1


@functools.cache
def _spectrum_function(activation: str, depths: tuple[int, ...], width: int) -> Callable:
    """``jit(vmap(_jacobian_singular_values))`` over seeds, compiled once per architecture."""
    network = build_network(
        NetworkSpec(activation, "glorot"), max(depths), width, width, initializers.dense_init("glorot_normal")
    )
    return jax.jit(jax.vmap(functools.partial(_jacobian_singular_values, network, activation, depths)))


@functools.cache
def _forward_function(depth: int, width: int) -> Callable:
    """``jit(vmap(recorded forward))`` of a tanh network over seeds (the pre-activations of every layer)."""
    network = build_network(
        NetworkSpec("tanh", "glorot"), depth, width, width, initializers.dense_init("glorot_normal")
    )
    return jax.jit(jax.vmap(functools.partial(_recorded_forward, network), in_axes=(0, None)))


def jacobian_spectra(spectra: SpectraConfig, laws: Laws, key: jax.Array) -> list[dict[str, Any]]:
    """One record per spectrum setting (see :func:`spectrum_specs`) with per-depth statistics."""
    width, depths, seeds = (
        spectra.width,
        tuple(spectra.depths),
        spectra.seeds,
    )
    records = []
    for spec in spectrum_specs(spectra):
        resolved = resolve_init(spec, width, laws)
        network = build_network(spec, max(depths), width, width, resolved.dense)
        init_key, input_key = jax.random.split(setting_key(key, "spectrum", spec.name, width))
        params = init_stacked(network, resolved.dense, jax.random.split(init_key, seeds), (width,))
        q_star = theory.fixed_point_q(resolved.sigma_w2, resolved.sigma_b2, spec.activation)
        x = nn.activation(spec.activation).apply(
            (),
            jnp.sqrt(q_star) * jax.random.normal(input_key, (seeds, width), jnp.float64),
        )
        singular = np.asarray(_spectrum_function(spec.activation, depths, width)(params, x))
        tick(spec.name)
        s2 = singular**2  # (seeds, depths, N)
        weights = "orthogonal" if spec.init.startswith("orthogonal") else "gaussian"
        per_depth = []
        for i, depth in enumerate(depths):
            mean, var = theory.jacobian_spectrum_moments(
                depth, resolved.sigma_w2, resolved.sigma_b2, spec.activation, weights
            )
            per_depth.append({
                "depth": depth,
                "s2_mean": estimate(s2[:, i].mean(axis=1)),
                "s2_variance": estimate(s2[:, i].var(axis=1)),
                # scale-free: each network's overall gain fluctuates like exp N(0, ~L/N) (Hanin 2018),
                # which makes var(s²) heavy-tailed over seeds; the spectrum's shape is var(s²) / mean(s²)²
                "s2_relative_variance": estimate(s2[:, i].var(axis=1) / s2[:, i].mean(axis=1) ** 2),
                "s_max": estimate(singular[:, i].max(axis=1)),
                "depth_over_width": depth / width,
                # free probability is the N -> inf limit at fixed L: compared only where L/N is small,
                # on a log scale (the spread is a product of many random factors)
                "relative_variance_log_error": difference(
                    log_estimate(s2[:, i].var(axis=1) / s2[:, i].mean(axis=1) ** 2), math.log(var / mean**2)
                ) if depth / width <= FREE_PROBABILITY_MAX_DEPTH_OVER_WIDTH and var > 0 else None,
                "predicted_s2_mean": mean,
                "predicted_s2_variance": var,
                "predicted_s2_relative_variance": var / mean**2,
                "largest_possible_relative_variance": width - 1,  # all of s² in one singular value
                "linear_gaussian_s_max": float(np.sqrt(theory.fuss_catalan_edge(depth))),
                "singular_values": rows(singular[:, i]),
            })  # fmt: skip
        records.append(
            {
                **setting_fields(spec, resolved, max(depths), width),
                "weights": weights,
                "q_star": q_star,
                "depths": per_depth,
            }
        )
    return records


def signal_propagation(
    signal: SignalConfig, laws: Laws, x_pair: jax.Array, sigma_w2s: list[float], key: jax.Array
) -> list[dict[str, Any]]:
    """Measured :math:`q_l, c_l` of two inputs vs the mean-field maps, tanh at each ``sigma_w2``."""
    depth, width, seeds, sigma_b2 = (
        signal.depth,
        signal.width,
        signal.seeds,
        laws.critical_sigma_b2,
    )
    records = []
    for sigma_w2 in sigma_w2s:
        spec = NetworkSpec(
            "tanh",
            "mean_field",
            sigma_w2=sigma_w2,
            sigma_b2=sigma_b2,
            label=f"tanh, σw²={sigma_w2:.6g}",
        )
        resolved = resolve_init(spec, width, laws)
        network = build_network(spec, depth, width, width, resolved.dense)
        params = init_stacked(
            network,
            resolved.dense,
            jax.random.split(setting_key(key, "signal", sigma_w2), seeds),
            tuple(x_pair.shape),
        )
        record = _forward_function(depth, width)(params, x_pair)
        z = np.stack(
            [np.asarray(record[f"z{l}"], np.float64) for l in range(1, depth + 1)],
            axis=1,
        )  # (seeds, L, 2, N)
        q = np.mean(z**2, axis=-1)  # (seeds, L, 2)
        c = np.sum(z[..., 0, :] * z[..., 1, :], axis=-1) / np.sqrt(np.prod(np.sum(z**2, axis=-1), axis=-1))
        q_theory, c_theory = theory.signal_propagation(
            float(q[:, 0].mean()),
            float(c[:, 0].mean()),
            depth,
            sigma_w2,
            sigma_b2,
            "tanh",
        )
        c_star = theory.fixed_point_c(sigma_w2, sigma_b2, "tanh")
        chi_c = theory.chi_c(c_star, sigma_w2, sigma_b2, "tanh")
        chi1 = theory.chi1(sigma_w2, sigma_b2, "tanh")
        # on the critical line c* = 1, chi_c = chi1 = 1 and xi_c = -1/ln chi_c diverges (a root finder returns ~1e6 there)
        xi_c = math.inf if abs(chi1 - 1.0) < 1e-8 else theory.correlation_depth_scale(sigma_w2, sigma_b2, "tanh")
        # c_l is compared where it still moves (one depth scale in): at the deepest layer of an
        # ordered network c and its prediction both sit at c* = 1, which tests nothing
        layer = depth if math.isinf(xi_c) else min(depth, max(2, round(xi_c)))
        records.append({
            **setting_fields(spec, resolved, depth, width),
            "q_star": theory.fixed_point_q(sigma_w2, sigma_b2, "tanh"),
            "chi1": chi1,
            "c_star": c_star,
            "chi_c": chi_c,
            "xi_c": xi_c,
            "q_measured": [estimate(q[:, l].mean(axis=-1)) for l in range(depth)],
            "c_measured": [estimate(c[:, l]) for l in range(depth)],
            "q_theory": q_theory.tolist(),
            "c_theory": c_theory.tolist(),
            "transient_layer": layer,
            "q_last_error": difference(estimate(q[:, -1].mean(axis=-1)), float(q_theory[-1])),
            "c_transient_error": difference(estimate(c[:, layer - 1]), float(c_theory[layer - 1])),
        })  # fmt: skip
    return records
