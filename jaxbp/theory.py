r"""Mean-field signal-propagation theory for deep fully-connected networks.

Following Poole et al. (2016), "Exponential expressivity in deep neural networks
through transient chaos", and Schoenholz et al. (2017), "Deep Information
Propagation".  A depth-``L`` network with

.. math::

    z_l = W_l h_{l-1} + b_l, \qquad h_l = \phi(z_l), \qquad
    W_{l,ij} \sim \mathcal N(0, \sigma_w^2 / N_{l-1}), \quad b_{l,i} \sim \mathcal N(0, \sigma_b^2)

has, in the wide limit, pre-activations distributed as :math:`\mathcal N(0, q_l)` with the
**length map**

.. math::

    q_l = \mathcal L(q_{l-1}) = \sigma_w^2\,\mathbb E_{z\sim\mathcal N(0,1)}\big[\phi(\sqrt{q_{l-1}}\,z)^2\big] + \sigma_b^2 ,

which converges to a fixed point :math:`q^*`.  At the fixed point, a back-propagated error
:math:`\delta_l = \partial \mathcal E / \partial z_l` satisfies
:math:`\mathbb E\|\delta_l\|^2 = \chi_1\,\mathbb E\|\delta_{l+1}\|^2` with

.. math::

    \chi_1 = \sigma_w^2\,\mathbb E_{z}\big[\phi'(\sqrt{q^*}\,z)^2\big],

so :math:`\|\delta_l\|^2 \propto \chi_1^{L-l}` and :math:`\|\delta_l\| \propto \chi_1^{(L-l)/2}`:
gradients vanish towards the input for :math:`\chi_1 < 1`, explode for :math:`\chi_1 > 1`, and
:math:`\chi_1 = 1` is the critical line ("edge of chaos").

Gaussian expectations are exact for the positively homogeneous activations (``relu``,
``leaky_relu``, ``linear``): :math:`\mathbb E[\phi(\sqrt q z)^2] = c\,q` and
:math:`\mathbb E[\phi'^2] = c` with :math:`c = 1/2`, :math:`(1+a^2)/2`, :math:`1`.  For the
others (``sigmoid``, ``tanh``, ``elu``, ``gelu``) they use :func:`gaussian_expectation`: by
default an adaptive composite Gauss--Legendre rule (accurate to ~1e-15 at every :math:`q`);
pass ``degree=n`` to any function to use :math:`n`-point Gauss--Hermite quadrature instead.

Everything here is plain NumPy (float64); nothing is traced by JAX.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np

__all__ = [
    "ACTIVATIONS",
    "MAX_HERMITE_DEGREE",
    "Q_MAX",
    "activation_and_derivative",
    "gaussian_expectation",
    "length_map",
    "fixed_point_q",
    "chi1",
    "critical_sigma_w2",
    "depth_scale",
    "predicted_delta_norms",
    "predicted_log_slope",
]

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


# --------------------------------------------------------------------------- validation
def _check_activation(activation: str, hyper: dict) -> dict[str, float]:
    """Validate ``activation`` and its hyperparameters; return the completed hyper dict."""
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; valid names are: {', '.join(ACTIVATIONS)}"
        )
    allowed = _HYPER_DEFAULTS.get(activation, {})
    unexpected = set(hyper) - set(allowed)
    if unexpected:
        valid = ", ".join(sorted(allowed)) or "none"
        raise ValueError(
            f"unexpected hyperparameter(s) {sorted(unexpected)} for {activation!r}; "
            f"valid: {valid}"
        )
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
    if (
        isinstance(degree, bool)
        or not isinstance(degree, (int, np.integer))
        or not 1 <= degree <= MAX_HERMITE_DEGREE
    ):
        raise ValueError(
            f"degree must be None or an integer in [1, {MAX_HERMITE_DEGREE}], got {degree!r}"
        )


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


# --------------------------------------------------------------------------- maps
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


def length_map(
    q: float,
    sigma_w2: float,
    sigma_b2: float,
    activation: str,
    *,
    degree: int | None = None,
    **hyper: float,
) -> float:
    r"""One step of the length map :math:`q \mapsto \sigma_w^2\,\mathbb E_z[\phi(\sqrt q z)^2] + \sigma_b^2`.

    Exact for ``relu`` (:math:`\sigma_w^2 q/2 + \sigma_b^2`), ``leaky_relu``
    (:math:`\sigma_w^2 q (1+a^2)/2 + \sigma_b^2`) and ``linear``; quadrature otherwise.
    """
    h = _check_activation(activation, hyper)
    _check_nonnegative(sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    _check_degree(degree)
    _check_q(q)
    c = _homogeneous_c(activation, h)
    if c is not None:
        return sigma_w2 * c * q + sigma_b2
    phi, _ = activation_and_derivative(activation, **h)
    return sigma_w2 * _expect_sq(phi, q, degree) + sigma_b2


def fixed_point_q(
    sigma_w2: float,
    sigma_b2: float,
    activation: str,
    q0: float = 1.0,
    tol: float = 1e-12,
    max_iter: int = 200,
    *,
    degree: int | None = None,
    **hyper: float,
) -> float:
    r"""Fixed point :math:`q^* = \mathcal L(q^*)` reached by iterating the length map from ``q0``.

    For every supported activation :math:`\mathcal L` is non-decreasing in :math:`q` (the even
    part of :math:`\phi^2` grows with :math:`|x|`), so the iterates move monotonically to the
    nearest fixed point in the direction of :math:`\mathcal L(q_0) - q_0`.  The map is iterated
    up to ``max_iter`` times until :math:`|q_{k+1} - q_k| \le \text{tol}\cdot q_{k+1}`; if
    convergence is slower than that (e.g. tanh near :math:`\sigma_w^2 = 1, \sigma_b^2 = 0`,
    where :math:`q^* \to 0` only like :math:`1/k`), the same fixed point is bracketed from the
    last iterate in the direction of motion and refined by bisection to relative ``tol``.

    Returns ``inf`` when the iterates diverge (exceed ``Q_MAX``), which happens for the
    unbounded activations when :math:`\sigma_w^2 \mathbb E[\phi'^2]` stays above 1 for large
    :math:`q`.  For the homogeneous activations the map is affine,
    :math:`\mathcal L(q) = k q + \sigma_b^2` with :math:`k = c\,\sigma_w^2`
    (:math:`c = 1/2` for relu, :math:`(1+a^2)/2` leaky relu, 1 linear), solved exactly:

    * :math:`k < 1`: :math:`q^* = \sigma_b^2 / (1 - k)`;
    * :math:`k = 1` (relu at :math:`\sigma_w^2 = 2`; :math:`|k - 1| \le 10^{-12}`): with
      :math:`\sigma_b^2 = 0` every :math:`q` is fixed, returns ``q0``; else ``inf``;
    * :math:`k > 1`: ``inf``, except ``0.0`` when :math:`\sigma_b^2 = 0` and ``q0 == 0``.
    """
    h = _check_activation(activation, hyper)
    _check_nonnegative(sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    _check_degree(degree)
    _check_q(q0)
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")

    c = _homogeneous_c(activation, h)
    if c is not None:
        k = c * sigma_w2
        if abs(k - 1.0) <= 1e-12:
            return float(q0) if sigma_b2 == 0 else math.inf
        if k < 1.0:
            return sigma_b2 / (1.0 - k)
        return 0.0 if (sigma_b2 == 0 and q0 == 0) else math.inf

    phi, _ = activation_and_derivative(activation, **h)

    def lmap(q: float) -> float:
        return sigma_w2 * _expect_sq(phi, q, degree) + sigma_b2

    q = float(q0)
    prev_step = 0.0
    for _ in range(max_iter):
        q_next = lmap(q)
        if q_next > Q_MAX:
            return math.inf
        if abs(q_next - q) <= tol * q_next or q_next == q:
            return q_next
        prev_step, q = q_next - q, q_next

    return _bracket_and_bisect(lambda x: lmap(x) - x, q, prev_step, tol)


def _bracket_and_bisect(g: Callable[[float], float], q: float, step: float, tol: float) -> float:
    """Root of ``g`` (``g = L - id``) nearest to ``q`` in the direction of ``step``."""
    g_q = g(q)
    if g_q == 0.0:
        return q
    d = max(abs(step), 1e-12 * max(q, 1e-300))
    if g_q < 0.0:  # iterates decrease; g(0) = sigma_w2 phi(0)^2 + sigma_b2 >= 0
        hi, lo = q, q - d
        while lo > 0.0 and g(lo) < 0.0:
            hi, d = lo, 2.0 * d
            lo = q - d
        lo = max(lo, 0.0)
    else:  # iterates increase
        lo, hi = q, q + d
        while g(hi) > 0.0:
            lo, d = hi, 2.0 * d
            hi = q + d
            if hi > Q_MAX:
                return math.inf
    # invariant: g(lo) >= 0 >= g(hi); lo = 0 with g(0) = 0 is the fixed point q* = 0
    while hi - lo > tol * hi:
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        g_mid = g(mid)
        if g_mid == 0.0:
            return mid
        if g_mid > 0.0:
            lo = mid
        else:
            hi = mid
    return 0.0 if lo == 0.0 else 0.5 * (lo + hi)


def chi1(
    sigma_w2: float,
    sigma_b2: float,
    activation: str,
    *,
    q0: float = 1.0,
    degree: int | None = None,
    **hyper: float,
) -> float:
    r"""Gradient growth factor per layer :math:`\chi_1 = \sigma_w^2\,\mathbb E_z[\phi'(\sqrt{q^*} z)^2]`.

    :math:`\mathbb E\|\delta_l\|^2 = \chi_1\,\mathbb E\|\delta_{l+1}\|^2`.  Exact for the
    homogeneous activations, where it does not depend on :math:`q^*`:
    :math:`\chi_1 = \sigma_w^2/2` (relu), :math:`(1+a^2)\sigma_w^2/2` (leaky relu),
    :math:`\sigma_w^2` (linear).  Otherwise :math:`q^*` comes from :func:`fixed_point_q`
    (started at ``q0``); if it diverges, the :math:`q \to \infty` limit
    :math:`\sigma_w^2\,(\phi'(+\infty)^2 + \phi'(-\infty)^2)/2` is returned (:math:`\sigma_w^2/2`
    for elu and gelu), and if :math:`q^* = 0` the :math:`q \to 0^+` limit
    :math:`\sigma_w^2\,(\phi'(0^+)^2 + \phi'(0^-)^2)/2` (e.g. :math:`\sigma_w^2` for tanh at
    :math:`\sigma_b^2 = 0,\ \sigma_w^2 \le 1`).
    """
    h = _check_activation(activation, hyper)
    _check_nonnegative(sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    _check_degree(degree)
    c = _homogeneous_c(activation, h)
    if c is not None:
        return c * sigma_w2
    _, dphi = activation_and_derivative(activation, **h)
    q_star = fixed_point_q(sigma_w2, sigma_b2, activation, q0=q0, degree=degree, **h)
    if math.isinf(q_star) or q_star == 0.0:
        # q* -> inf or q* = 0: the q -> inf / q -> 0+ limit of E[phi'(sqrt(q) z)^2] is the
        # mean of phi'^2 on the two sides (of infinity / of the possible kink at 0).
        x = 1e3 if math.isinf(q_star) else 1e-300
        return sigma_w2 * float(np.mean(dphi(np.array([-x, x])) ** 2))
    return sigma_w2 * _expect_sq(dphi, q_star, degree)


def critical_sigma_w2(
    sigma_b2: float,
    activation: str,
    *,
    bracket: tuple[float, float] = (0.0, 8.0),
    tol: float = 1e-12,
    q0: float = 1.0,
    degree: int | None = None,
    **hyper: float,
) -> float:
    r"""The weight variance on the edge of chaos: :math:`\sigma_w^2` with :math:`\chi_1(\sigma_w^2, \sigma_b^2) = 1`.

    Closed form for the homogeneous activations: :math:`2` (relu), :math:`2/(1+a^2)`
    (leaky relu), :math:`1` (linear), for any :math:`\sigma_b^2`.  Otherwise bisection on
    :math:`\chi_1 - 1` over ``bracket`` (the upper end is doubled, up to :math:`10^6`, until
    :math:`\chi_1 \ge 1` there) to relative width ``tol``.  Known values: tanh gives exactly 1
    at :math:`\sigma_b^2 = 0` (:math:`q^* = 0`, :math:`\phi'(0) = 1`) and about 1.76 at
    :math:`\sigma_b^2 = 0.05`.

    For ``elu`` and ``gelu`` the length map can have several fixed points, and
    :math:`\chi_1(\sigma_w^2)` can jump where the one reached from ``q0`` switches branch
    (e.g. to :math:`q^* = \infty`); bisection then returns the location of the jump, i.e. the
    smallest :math:`\sigma_w^2` in the bracket at which gradients stop vanishing.
    """
    h = _check_activation(activation, hyper)
    _check_nonnegative(sigma_b2=sigma_b2)
    _check_degree(degree)
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    lo, hi = (float(b) for b in bracket)
    if not 0.0 <= lo < hi:
        raise ValueError(f"bracket must satisfy 0 <= lo < hi, got {bracket!r}")
    c = _homogeneous_c(activation, h)
    if c is not None:
        return 1.0 / c

    def f(sw2: float) -> float:
        return chi1(sw2, sigma_b2, activation, q0=q0, degree=degree, **h) - 1.0

    if f(lo) >= 0.0:
        raise ValueError(f"chi1 >= 1 already at the lower end of the bracket {lo}")
    while f(hi) < 0.0:
        lo, hi = hi, 2.0 * hi
        if hi > 1e6:
            raise ValueError(f"no sigma_w2 <= 1e6 with chi1 >= 1 for {activation!r}")
    while hi - lo > tol * hi:
        mid = 0.5 * (lo + hi)
        if f(mid) < 0.0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# --------------------------------------------------------------------------- predictions
def depth_scale(chi: float) -> float:
    r"""Depth scale :math:`\xi_\nabla = -1/\ln\chi` of the **squared** error norm.

    :math:`\|\delta_l\|^2 \propto \chi^{L-l} = e^{-(L-l)/\xi_\nabla}`; the (unsquared) norm
    :math:`\|\delta_l\|` has depth scale :math:`2\xi_\nabla`.  Positive for :math:`\chi < 1`
    (vanishing), negative for :math:`\chi > 1` (exploding: :math:`|\xi_\nabla|` is the e-folding
    depth of the growth), ``inf`` at :math:`\chi = 1`.
    """
    if not (chi > 0) or math.isinf(chi):
        raise ValueError(f"chi must be finite and > 0, got {chi!r}")
    if chi == 1.0:
        return math.inf
    return -1.0 / math.log(chi)


def predicted_delta_norms(
    num_layers: int,
    sigma_w2: float,
    sigma_b2: float,
    activation: str,
    delta_last: float = 1.0,
    *,
    degree: int | None = None,
    **hyper: float,
) -> np.ndarray:
    r"""Predicted :math:`\|\delta_l\| = \delta_L\,\chi_1^{(L-l)/2}` for :math:`l = 1, \dots, L`.

    Entry ``i`` is layer :math:`l = i + 1` (index 0 = first layer, index ``L-1`` = last layer
    with norm ``delta_last``); consecutive entries satisfy
    :math:`\|\delta_l\| / \|\delta_{l+1}\| = \sqrt{\chi_1}`.
    """
    if isinstance(num_layers, bool) or not isinstance(num_layers, (int, np.integer)):
        raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
    if num_layers < 1:
        raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
    c = chi1(sigma_w2, sigma_b2, activation, degree=degree, **hyper)
    layers = np.arange(1, num_layers + 1)
    return delta_last * c ** ((num_layers - layers) / 2.0)


def predicted_log_slope(
    sigma_w2: float,
    sigma_b2: float,
    activation: str,
    *,
    degree: int | None = None,
    **hyper: float,
) -> float:
    r"""Predicted change of :math:`\ln\|\delta\|` per back-propagation step: :math:`\ln\chi_1 / 2`.

    Convention: this is :math:`\ln\|\delta_l\| - \ln\|\delta_{l+1}\|`, i.e. going from the output
    towards the input.  Positive means exploding gradients, negative vanishing.  Equivalently, a
    least-squares fit of :math:`\ln\|\delta_l\|` against the layer index :math:`l` (1 = first
    layer, :math:`L` = last) has slope :math:`-\ln\chi_1/2` = minus this value.
    ``-inf`` when :math:`\chi_1 = 0` (:math:`\sigma_w^2 = 0`).
    """
    c = chi1(sigma_w2, sigma_b2, activation, degree=degree, **hyper)
    return 0.5 * math.log(c) if c > 0 else -math.inf
