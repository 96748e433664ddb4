"""Gaussian expectations and the activations of :mod:`jaxbp.theory` (plain NumPy, float64)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TypedDict

import numpy as np

ArrayFn = Callable[[np.ndarray], np.ndarray]

#: Names accepted by every function taking ``activation``.
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "linear")
#: A length ``q`` above this is treated as divergent (``fixed_point_q`` returns ``inf``).
Q_MAX = 1e15
#: Largest Gauss--Hermite degree accepted: numpy's ``hermegauss`` returns NaN weights from
#: about 380 nodes on.
MAX_HERMITE_DEGREE = 300

_HYPER_DEFAULTS: dict[str, dict[str, float]] = {
    "leaky_relu": {"negative_slope": 0.01},
    "elu": {"alpha": 1.0},
}


class _Hyper(TypedDict, total=False):
    """Static type of a (validated) activation-hyperparameter dict forwarded as ``**hyper``."""

    negative_slope: float
    alpha: float


# --------------------------------------------------------------------------- validation
def _check_activation(activation: str, hyper: dict) -> dict[str, float]:
    """Validate ``activation`` and its hyperparameters; return the completed hyper dict."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid names are: {', '.join(ACTIVATIONS)}")
    allowed = _HYPER_DEFAULTS.get(activation, {})
    unexpected = set(hyper) - set(allowed)
    if unexpected:
        valid = ", ".join(sorted(allowed)) or "none"
        raise ValueError(f"unexpected hyperparameter(s) {sorted(unexpected)} for {activation!r}; valid: {valid}")
    full = {**allowed, **hyper}
    for key, value in full.items():
        if not np.isfinite(value):
            raise ValueError(f"{key} must be finite, got {value!r}")
    return {k: float(v) for k, v in full.items()}


def _check_nonnegative(**values: float) -> None:
    for name, value in values.items():
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


def _check_degree(degree: int | None) -> None:
    if degree is None:
        return
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or not 1 <= degree <= MAX_HERMITE_DEGREE:
        raise ValueError(f"degree must be None or an integer in [1, {MAX_HERMITE_DEGREE}], got {degree!r}")


def _check_q(q: float) -> None:
    if not (q >= 0) or math.isinf(q):  # also rejects NaN
        raise ValueError(f"q must be finite and >= 0, got {q!r}")


# --------------------------------------------------------------------------- activations
_erf = np.frompyfunc(math.erf, 1, 1)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _std_normal_cdf(x: np.ndarray) -> np.ndarray:
    erf = _erf(np.asarray(x, dtype=float) / math.sqrt(2.0))
    return 0.5 * (1.0 + np.asarray(erf, dtype=float))


def activation_and_derivative(name: str, **hyper: float) -> tuple[ArrayFn, ArrayFn]:
    r"""Return NumPy-vectorized :math:`(\phi, \phi')` for the activation ``name``.

    * ``sigmoid``: :math:`\phi = 1/(1+e^{-x})`, :math:`\phi' = \phi(1-\phi)`.
    * ``tanh``: :math:`\phi' = 1 - \tanh^2 x`.
    * ``relu``: :math:`\max(x, 0)`, :math:`\phi' = 1[x > 0]`.
    * ``leaky_relu`` (``negative_slope`` :math:`a`, default 0.01): :math:`x` for :math:`x>0`,
      else :math:`a x`.
    * ``elu`` (``alpha`` :math:`\alpha`, default 1.0): :math:`x` for :math:`x>0`, else
      :math:`\alpha(e^x - 1)`; :math:`\phi' = \alpha e^x` for :math:`x \le 0`.
    * ``gelu`` (exact): :math:`x\,\Phi(x)`, :math:`\phi' = \Phi(x) + x\,\varphi(x)` with
      :math:`\Phi, \varphi` the standard normal cdf and pdf.
    * ``linear``: :math:`x`, :math:`\phi' = 1`.

    Raises ``ValueError`` for unknown names or hyperparameters.
    """
    h = _check_activation(name, hyper)
    if name == "sigmoid":
        # 1/(1+e^{-x}) = (1 + tanh(x/2))/2 is overflow-free.
        def phi(x):
            return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))

        def dphi(x):
            return 0.25 * (1.0 - np.tanh(0.5 * np.asarray(x, dtype=float)) ** 2)

    elif name == "tanh":

        def phi(x):
            return np.tanh(np.asarray(x, dtype=float))

        def dphi(x):
            return 1.0 - np.tanh(np.asarray(x, dtype=float)) ** 2

    elif name in ("relu", "leaky_relu"):
        a = h.get("negative_slope", 0.0)

        def phi(x):
            x = np.asarray(x, dtype=float)
            return np.where(x > 0, x, a * x)

        def dphi(x):
            return np.where(np.asarray(x, dtype=float) > 0, 1.0, a)

    elif name == "elu":
        alpha = h["alpha"]

        def phi(x):
            x = np.asarray(x, dtype=float)
            return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))

        def dphi(x):
            x = np.asarray(x, dtype=float)
            return np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0)))

    elif name == "gelu":

        def phi(x):
            x = np.asarray(x, dtype=float)
            return x * _std_normal_cdf(x)

        def dphi(x):
            x = np.asarray(x, dtype=float)
            return _std_normal_cdf(x) + x * _INV_SQRT_2PI * np.exp(-0.5 * x * x)

    else:  # linear

        def phi(x):
            return np.asarray(x, dtype=float)

        def dphi(x):
            return np.ones_like(np.asarray(x, dtype=float))

    return phi, dphi


# --------------------------------------------------------------------------- quadrature
#: Gauss--Legendre nodes per panel of the default composite rule.
_PANEL_NODES = 16
#: The composite rule integrates z over [-12, 12]; the Gaussian mass outside is ~4e-33.
_Z_MAX = 12.0
#: Beyond |u| = 40 every supported activation is (to float64 precision) its asymptote,
#: so panels there only need to resolve the Gaussian.
_U_FEATURES = 40.0


@functools.lru_cache(maxsize=32)
def _hermite_rule(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilists' Gauss--Hermite nodes/weights, weights normalised to sum to 1."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(degree)
    return nodes, weights / math.sqrt(2.0 * math.pi)


@functools.lru_cache(maxsize=1)
def _legendre_rule() -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(_PANEL_NODES)


def _composite_rule(q: float) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss--Legendre rule in z for E_{z~N(0,1)}[f(sqrt(q) z)], pdf folded in.

    Panel edges sit at z = 0 (so a kink of f at 0 costs nothing) and are at most 1 wide in z
    and, for |u| = sqrt(q)|z| <= 40, at most 2 wide in u: each panel then sees an analytic
    integrand whose nearest singularity (tanh: pi/2 off the real u-axis) is far relative to
    the panel, and 16 nodes give ~1e-16 accuracy.  At most ~64 panels for any q.
    """
    s = math.sqrt(q)
    z_in = min(_Z_MAX, _U_FEATURES / s) if s > 0 else _Z_MAX
    h_in = min(1.0, 2.0 / s) if s > 0 else 1.0
    inner = np.linspace(0.0, z_in, max(1, math.ceil(z_in / h_in)) + 1)
    outer = np.linspace(z_in, _Z_MAX, max(1, math.ceil(_Z_MAX - z_in)) + 1)[1:]
    edges = np.concatenate([inner, outer]) if z_in < _Z_MAX else inner
    mid, half = 0.5 * (edges[1:] + edges[:-1]), 0.5 * (edges[1:] - edges[:-1])
    x, w = _legendre_rule()
    pos = (mid[:, None] + half[:, None] * x[None, :]).ravel()
    wpos = (half[:, None] * w[None, :]).ravel() * _INV_SQRT_2PI * np.exp(-0.5 * pos * pos)
    return np.concatenate([-pos, pos]), np.concatenate([wpos, wpos])


def gaussian_expectation(fn: ArrayFn, q: float, degree: int | None = None) -> float:
    r"""Return :math:`\mathbb E_{z\sim\mathcal N(0,1)}[f(\sqrt q\,z)] = \mathbb E_{u\sim\mathcal N(0,q)}[f(u)]`.

    * ``degree=None`` (default): adaptive composite Gauss--Legendre rule in :math:`z` over
      :math:`[-12, 12]`, with a panel edge at 0 and panels at most 1 wide in :math:`z` and 2
      wide in :math:`u = \sqrt q z`.  Accurate to ~1e-15 at every :math:`q` for all supported
      activations (and for kinks at 0, as in ReLU/ELU).
    * ``degree=n``: :math:`n`-point probabilists' Gauss--Hermite quadrature
      (:func:`numpy.polynomial.hermite_e.hermegauss`, :math:`1 \le n \le 300`), exact for
      polynomials of degree :math:`\le 2n - 1`.  Converges fast for smooth :math:`f` at small
      :math:`q`, but slowly once :math:`\sqrt q` is large compared with the scale of
      :math:`f`'s features (101 nodes: tanh at :math:`q = 5` is off by ~1e-4).

    ``fn`` must be NumPy-vectorized; a constant result is broadcast.
    """
    _check_q(q)
    if degree is None:
        nodes, weights = _composite_rule(float(q))
    else:
        _check_degree(degree)
        nodes, weights = _hermite_rule(int(degree))
    x = math.sqrt(q) * nodes
    values = np.broadcast_to(np.asarray(fn(x), dtype=float), x.shape)
    return float(np.dot(weights, values))


def _homogeneous_c(activation: str, h: dict[str, float]) -> float | None:
    r"""For positively homogeneous :math:`\phi` return :math:`c = \mathbb E[\phi(z)^2] = \mathbb E[\phi'(z)^2]`."""
    if activation == "relu":
        return 0.5
    if activation == "leaky_relu":
        return 0.5 * (1.0 + h["negative_slope"] ** 2)
    if activation == "linear":
        return 1.0
    return None


def _expect_sq(fn: ArrayFn, q: float, degree: int | None) -> float:
    """E[fn(sqrt(q) z)^2]."""
    return gaussian_expectation(lambda x: fn(x) ** 2, q, degree)
