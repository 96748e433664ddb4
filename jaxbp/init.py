"""Weight initializers: ``init(key, shape, dtype=float32) -> array``.

Fans follow the layout conventions: a dense weight is ``(fan_in, fan_out)``; a conv
kernel ``(kh, kw, cin, cout)`` has ``fan_in = kh*kw*cin``, ``fan_out = kh*kw*cout``.
The classic schemes are variance scaling ``Var w = scale / fan``:

=====================  =======  ========  ======================================
name                   scale    fan       reference
=====================  =======  ========  ======================================
glorot / xavier        1        fan_avg   Glorot & Bengio 2010
he / kaiming           2        fan_in    He et al. 2015 (keeps ReLU gradients)
lecun                  1        fan_in    LeCun et al. 1998
=====================  =======  ========  ======================================

plus ``orthogonal`` (Saxe et al. 2014; Pennington et al. 2017), a naive fixed
``normal(stddev)``, and :func:`mean_field` for the signal-propagation experiments:
``W ~ N(0, sigma_w2 / fan_in)``, ``b ~ N(0, sigma_b2)`` (Schoenholz et al. 2017).
Built on :mod:`jax.nn.initializers`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from jax.nn import initializers

from jaxbp.core import choose

Initializer = Callable[..., jax.Array]  # (key, shape, dtype=jnp.float32) -> array


def variance_scaling(scale: float, mode: str = "fan_in", distribution: str = "normal") -> Initializer:
    """``Var w = scale / fan`` with ``fan`` in {fan_in, fan_out, fan_avg}.

    ``distribution`` is "normal", "truncated_normal" or "uniform" (each scaled to
    the stated variance).
    """
    if scale < 0:
        raise ValueError(f"variance_scaling: scale must be >= 0, got {scale}")
    if mode not in ("fan_in", "fan_out", "fan_avg"):
        raise ValueError(f'variance_scaling: mode must be "fan_in", "fan_out" or "fan_avg", got {mode!r}')
    if distribution not in ("normal", "truncated_normal", "uniform"):
        raise ValueError(
            f'variance_scaling: distribution must be "normal", "truncated_normal" or "uniform", got {distribution!r}'
        )
    return initializers.variance_scaling(scale, mode, distribution)  # type: ignore[arg-type]  # checked above


def glorot_uniform() -> Initializer:
    """Glorot/Xavier uniform: ``U(-a, a)``, ``a = sqrt(6 / (fan_in + fan_out))``."""
    return variance_scaling(1.0, "fan_avg", "uniform")


def glorot_normal() -> Initializer:
    """Glorot/Xavier normal: ``N(0, 2 / (fan_in + fan_out))``."""
    return variance_scaling(1.0, "fan_avg", "normal")


def he_normal() -> Initializer:
    """He/Kaiming normal: ``N(0, 2 / fan_in)``."""
    return variance_scaling(2.0, "fan_in", "normal")


def he_uniform() -> Initializer:
    """He/Kaiming uniform: ``U(-a, a)``, ``a = sqrt(6 / fan_in)``."""
    return variance_scaling(2.0, "fan_in", "uniform")


def lecun_normal() -> Initializer:
    """LeCun normal: ``N(0, 1 / fan_in)``."""
    return variance_scaling(1.0, "fan_in", "normal")


def lecun_uniform() -> Initializer:
    """LeCun uniform: ``U(-a, a)``, ``a = sqrt(3 / fan_in)``."""
    return variance_scaling(1.0, "fan_in", "uniform")


def orthogonal(gain: float = 1.0) -> Initializer:
    """A (semi-)orthogonal matrix times ``gain``: all singular values equal ``gain``.

    Drawn by a QR factorization (LAPACK on CPU).  With jaxlib 0.10.2, ``jit(vmap(init))`` over
    several orthogonal layers can hang on CPU (the batched QR kernels wait on the thread pool
    they run in); draw many seeds with ``jax.lax.map`` inside ``jit`` or ``vmap`` outside it
    (docs/concepts.md, "Layers and networks")."""
    return initializers.orthogonal(gain)


def normal(stddev: float = 0.01) -> Initializer:
    """``N(0, stddev^2)`` regardless of the fans: the naive "small random weights"."""
    if stddev < 0:
        raise ValueError(f"normal: stddev must be >= 0, got {stddev}")
    return initializers.normal(stddev)


def zeros() -> Initializer:
    """All zeros (the usual bias initializer)."""
    return initializers.zeros


class DenseInit(NamedTuple):
    """How a dense layer draws its weights and its bias."""

    weights: Initializer
    bias: Initializer


def mean_field(sigma_w2: float, sigma_b2: float = 0.0) -> DenseInit:
    """``W ~ N(0, sigma_w2 / fan_in)`` and ``b ~ N(0, sigma_b2)``: the mean-field ensemble.

    For tanh with ``sigma_b2 = 0.05`` the network is critical (chi_1 = 1) at
    ``sigma_w2 ≈ 1.76``; for ReLU at ``sigma_w2 = 2`` (see :mod:`jaxbp.theory`).
    """
    if sigma_w2 < 0 or sigma_b2 < 0:
        raise ValueError(f"mean_field: variances must be >= 0, got sigma_w2={sigma_w2}, sigma_b2={sigma_b2}")
    return DenseInit(variance_scaling(sigma_w2, "fan_in", "normal"), normal(math.sqrt(sigma_b2)))


_WEIGHT_SCHEMES: dict[str, Callable[[], Initializer]] = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "xavier_uniform": glorot_uniform,
    "xavier_normal": glorot_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "kaiming_normal": he_normal,
    "kaiming_uniform": he_uniform,
    "lecun_normal": lecun_normal,
    "lecun_uniform": lecun_uniform,
    "orthogonal": orthogonal,
    "normal": normal,
}


def dense_init(scheme: str | DenseInit | Initializer = "glorot_normal", **options: Any) -> DenseInit:
    """A :class:`DenseInit` from a scheme name (zero bias), an initializer, or a DenseInit.

    ``options`` go to the named factory, e.g. ``dense_init("normal", stddev=0.01)``
    or ``dense_init("orthogonal", gain=1.3)``.
    """
    if isinstance(scheme, DenseInit):
        return scheme
    if callable(scheme):
        return DenseInit(scheme, zeros())
    return DenseInit(choose("dense_init", "scheme", scheme, _WEIGHT_SCHEMES)(**options), zeros())


def weight_schemes() -> list[str]:
    """The scheme names :func:`dense_init` accepts."""
    return sorted(_WEIGHT_SCHEMES)
