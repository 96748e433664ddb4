r"""Forward signal propagation of two inputs: the correlation map (Poole et al. 2016; Schoenholz et al. 2017).

Two inputs whose pre-activations have lengths :math:`q_l` and correlation :math:`c_l` have, in the
wide limit,

.. math::

    c_{l+1} = \frac{\sigma_w^2\,\mathbb E[\phi(u_1)\phi(u_2)] + \sigma_b^2}{q_{l+1}}, \qquad
    u_1 = \sqrt{q_l}\,z_1, \quad u_2 = \sqrt{q_l}\,(c_l z_1 + \sqrt{1 - c_l^2}\,z_2),

with :math:`q_{l+1} = \mathcal L(q_l)`.  At :math:`q^*` the map :math:`c \mapsto C(c)` always has the
fixed point :math:`c = 1`, with slope :math:`\chi_c(1) = \chi_1`, where
:math:`\chi_c(c) = C'(c) = \sigma_w^2\,\mathbb E[\phi'(u_1)\phi'(u_2)]`.  For :math:`\chi_1 < 1`
(ordered phase) :math:`c^* = 1` is stable; for :math:`\chi_1 > 1` (chaotic phase) a second fixed
point :math:`c^* < 1` is.  Deviations from :math:`c^*` decay like :math:`e^{-l/\xi_c}` with the depth
scale :math:`\xi_c = -1/\ln\chi_c(c^*)`, which diverges on the critical line; Schoenholz et al.
find networks trainable only for :math:`L \lesssim 6\,\xi_c`.

Expectations: closed forms for the ReLU family (arc-cosine kernel, Cho & Saul 2009); otherwise a
tensor product of the composite Gauss--Legendre rule of :func:`gaussian_expectation` in
:math:`(z_1, z_2)`.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np

from jaxbp.theory._gaussian import (
    _check_activation,
    _check_nonnegative,
    _composite_rule,
    _Hyper,
    activation_and_derivative,
)
from jaxbp.theory._length import chi1, chi_at_q, fixed_point_q, length_map

#: A zero fixed point q* = 0 is replaced by its q -> 0+ limit, evaluated at this length.
_Q_TINY = 1e-12
#: Below ``1 - _C_GAP`` the bisection for c* looks for the chaotic fixed point.
_C_GAP = 1e-6

__all__ = [
    "bivariate_expectation",
    "chi_c",
    "correlation_depth_scale",
    "correlation_map",
    "critical_line_point",
    "fixed_point_c",
    "signal_propagation",
]


def _check_c(c: float) -> None:
    if not -1.0 <= c <= 1.0:
        raise ValueError(f"c must lie in [-1, 1], got {c!r}")


def _relu_family_slope(activation: str, h: dict[str, float]) -> float | None:
    """The negative-side slope a of a piecewise-linear activation (relu 0, leaky a, linear 1)."""
    return {"relu": 0.0, "leaky_relu": h.get("negative_slope"), "linear": 1.0}.get(activation)


def bivariate_expectation(f, g, q: float, c: float) -> float:
    r""":math:`\mathbb E[f(u_1)\,g(u_2)]` for :math:`(u_1, u_2)` Gaussian with variances ``q`` and correlation ``c``.

    Tensor product of the composite Gauss--Legendre rule for length ``q`` in
    :math:`u_1 = \sqrt q z_1`, :math:`u_2 = \sqrt q (c z_1 + \sqrt{1-c^2} z_2)`; ``f``, ``g`` NumPy-vectorized.
    """
    _check_c(c)
    z, w = _composite_rule(float(q))
    s = math.sqrt(q)
    u1 = s * z[:, None]
    u2 = s * (c * z[:, None] + math.sqrt(max(0.0, 1.0 - c * c)) * z[None, :])
    return float(np.sum(w[:, None] * w[None, :] * f(u1) * g(u2)))


def _expect_pair(activation: str, h: dict, q: float, c: float, derivative: bool) -> float:
    """E[phi(u1) phi(u2)] (or of phi'), closed form for the ReLU family."""
    a = _relu_family_slope(activation, h)
    if a is not None:
        theta = math.acos(max(-1.0, min(1.0, c)))
        if derivative:  # E[1{u1>0} 1{u2>0}] = (pi - theta) / (2 pi)
            return a * a + a * (1 - a) + (1 - a) ** 2 * (math.pi - theta) / (2 * math.pi)
        relu_pair = q / (2 * math.pi) * (math.sqrt(max(0.0, 1 - c * c)) + (math.pi - theta) * c)
        return a * a * q * c + a * (1 - a) * q * c + (1 - a) ** 2 * relu_pair
    phi, dphi = activation_and_derivative(activation, **h)
    fn = dphi if derivative else phi
    return bivariate_expectation(fn, fn, q, c)


def _stationary_q(sigma_w2: float, sigma_b2: float, activation: str, h: dict) -> float:
    q = fixed_point_q(sigma_w2, sigma_b2, activation, **h)
    if math.isinf(q):
        raise ValueError(
            f"the length map diverges (q* = inf) at sigma_w2={sigma_w2}, sigma_b2={sigma_b2}; no correlation map"
        )
    return max(q, _Q_TINY)


def correlation_map(
    c: float,
    q: float,
    sigma_w2: float,
    sigma_b2: float,
    activation: str,
    **hyper: float,
) -> float:
    r"""One step :math:`c_l \mapsto c_{l+1} = (\sigma_w^2\mathbb E[\phi(u_1)\phi(u_2)] + \sigma_b^2)/\mathcal L(q_l)` at length ``q``."""
    h = _check_activation(activation, hyper)
    _check_nonnegative(sigma_w2=sigma_w2, sigma_b2=sigma_b2, q=q)
    _check_c(c)
    q_next = length_map(q, sigma_w2, sigma_b2, activation, **cast(_Hyper, h))
    return (sigma_w2 * _expect_pair(activation, h, q, c, False) + sigma_b2) / q_next


def chi_c(c: float, sigma_w2: float, sigma_b2: float, activation: str, **hyper: float) -> float:
    r""":math:`\chi_c(c) = \sigma_w^2\,\mathbb E[\phi'(u_1)\phi'(u_2)]` at :math:`q^*`; :math:`\chi_c(1) = \chi_1`."""
    h = _check_activation(activation, hyper)
    _check_c(c)
    q = _stationary_q(sigma_w2, sigma_b2, activation, h)
    return sigma_w2 * _expect_pair(activation, h, q, c, True)


def fixed_point_c(
    sigma_w2: float,
    sigma_b2: float,
    activation: str,
    tol: float = 1e-10,
    **hyper: float,
) -> float:
    r"""The stable fixed point :math:`c^*` of the correlation map at :math:`q^*`.

    :math:`c^* = 1` when :math:`\chi_1 \le 1` (ordered phase).  Otherwise :math:`g(c) = C(c) - c` has
    :math:`g(0) = (\sigma_w^2\mathbb E[\phi]^2 + \sigma_b^2)/q^* \ge 0` and :math:`g < 0` just below 1
    (slope :math:`\chi_1 > 1` at the fixed point 1), so bisection on :math:`[0, 1 - 10^{-6}]` finds
    :math:`c^* < 1` (0 for odd :math:`\phi` at :math:`\sigma_b^2 = 0`).
    """
    h = _check_activation(activation, hyper)
    q = _stationary_q(sigma_w2, sigma_b2, activation, h)

    def g(c: float) -> float:
        return (sigma_w2 * _expect_pair(activation, h, q, c, False) + sigma_b2) / q - c

    lo, hi = 0.0, 1.0 - _C_GAP
    if chi1(sigma_w2, sigma_b2, activation, **cast(_Hyper, h)) <= 1.0 or g(hi) >= 0.0:
        return 1.0
    if g(lo) <= 0.0:
        return 0.0
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if g(mid) > 0.0 else (lo, mid)
    return 0.5 * (lo + hi)


def correlation_depth_scale(sigma_w2: float, sigma_b2: float, activation: str, **hyper: float) -> float:
    r"""Depth scale :math:`\xi_c = -1/\ln\chi_c(c^*)` of the correlation (``inf`` on the critical line)."""
    c_star = fixed_point_c(sigma_w2, sigma_b2, activation, **hyper)
    chi = chi_c(c_star, sigma_w2, sigma_b2, activation, **hyper)
    return math.inf if chi >= 1.0 else -1.0 / math.log(chi)


def signal_propagation(
    q1: float,
    c1: float,
    depth: int,
    sigma_w2: float,
    sigma_b2: float,
    activation: str,
    **hyper: float,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Predicted :math:`(q_l, c_l)` for ``l = 1..depth``, iterating both maps from the first layer's ``(q1, c1)``."""
    qs, cs = [float(q1)], [float(c1)]
    for _ in range(depth - 1):
        cs.append(
            min(
                1.0,
                correlation_map(cs[-1], qs[-1], sigma_w2, sigma_b2, activation, **hyper),
            )
        )
        qs.append(length_map(qs[-1], sigma_w2, sigma_b2, activation, **cast(_Hyper, hyper)))
    return np.array(qs), np.array(cs)


def critical_line_point(q_star: float, activation: str, **hyper: float) -> tuple[float, float]:
    r"""The point :math:`(\sigma_w^2, \sigma_b^2)` of the critical line :math:`\chi_1 = 1` whose fixed point is ``q_star``.

    :math:`\sigma_w^2 = 1/\mathbb E[\phi'(\sqrt{q^*}z)^2]` and
    :math:`\sigma_b^2 = q^* - \sigma_w^2\,\mathbb E[\phi(\sqrt{q^*}z)^2]` (Pennington et al. 2017 move along
    this line towards :math:`q^* \to 0`, :math:`\sigma_w^2 \to 1`, :math:`\sigma_b^2 \to 0` for tanh).
    Raises ``ValueError`` when that would need :math:`\sigma_b^2 < 0`.
    """
    h = _check_activation(activation, hyper)
    if not q_star > 0 or math.isinf(q_star):
        raise ValueError(f"critical_line_point: q_star must be finite and > 0, got {q_star!r}")
    sigma_w2 = 1.0 / chi_at_q(q_star, 1.0, activation, **h)
    sigma_b2 = q_star - length_map(q_star, sigma_w2, 0.0, activation, **cast(_Hyper, h))
    if sigma_b2 < -1e-12 * q_star:
        raise ValueError(f"critical_line_point: q_star={q_star} needs sigma_b2 = {sigma_b2:.3g} < 0 for {activation!r}")
    return sigma_w2, max(sigma_b2, 0.0)
