"""The length map, its fixed point q*, the gradient factor chi_1 and the edge of chaos."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import numpy as np

from jaxbp.theory._gaussian import (
    Q_MAX,
    _check_activation,
    _check_degree,
    _check_nonnegative,
    _check_q,
    _expect_sq,
    _homogeneous_c,
    _Hyper,
    activation_and_derivative,
)


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
    q_star = fixed_point_q(sigma_w2, sigma_b2, activation, q0=q0, degree=degree, **cast(_Hyper, h))
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
    if isinstance(num_layers, bool) or not isinstance(num_layers, (int, np.integer)) or num_layers < 1:
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


def chi_at_q(q: float, sigma_w2: float, activation: str, **hyper: float) -> float:
    r""":math:`\chi(q) = \sigma_w^2\,\mathbb E_z[\phi'(\sqrt q z)^2]` at a given ``q`` (not necessarily :math:`q^*`).

    :math:`\mathbb E\|\delta_l\|^2 = \chi(q_l)\,\mathbb E\|\delta_{l+1}\|^2` while :math:`q_l` is still on
    its way to :math:`q^*`; :math:`\chi(q^*) = \chi_1`.
    """
    h = _check_activation(activation, hyper)
    _check_nonnegative(sigma_w2=sigma_w2)
    _check_q(q)
    c = _homogeneous_c(activation, h)
    if c is not None:
        return c * sigma_w2
    _, dphi = activation_and_derivative(activation, **h)
    return sigma_w2 * _expect_sq(dphi, q, None)


def mean_field_lengths(
    q1: float, count: int, sigma_w2: float, sigma_b2: float, activation: str, **hyper: float
) -> list[float]:
    r"""The lengths :math:`q_1, \dots, q_{\text{count}}` of the length map started at ``q1``
    (:math:`q_{l+1} = \mathcal L(q_l)`): the layers a backward pass through ``count + 1`` layers sees."""
    qs = [float(q1)]
    for _ in range(count - 1):
        qs.append(length_map(qs[-1], sigma_w2, sigma_b2, activation, **cast(_Hyper, hyper)))
    return qs[:count]  # count 0: a one-layer network's backward pass sees no length


def log_delta_profile(
    q1: float,
    depth: int,
    sigma_w2: float,
    sigma_b2: float,
    activation: str,
    **hyper: float,
) -> np.ndarray:
    r"""Layer-wise mean-field prediction of :math:`\ln(\|\delta_l\|/\|\delta_L\|)` for ``l = 1..L``.

    Starting from the first layer's :math:`q_1 = \mathbb E[z_1^2]`, iterate the length map
    :math:`q_{l+1} = \mathcal L(q_l)` and accumulate
    :math:`\ln\|\delta_l\| = \ln\|\delta_{l+1}\| + \tfrac12\ln\chi(q_l)` (the backward step
    :math:`\delta_l = \phi'(z_l)\odot W_{l+1}^\top\delta_{l+1}` sees :math:`q_l`).  With
    :math:`q_1 = q^*` it is :math:`\tfrac12 (L-l)\ln\chi_1`.
    """
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"log_delta_profile: depth must be a positive integer, got {depth!r}")
    qs = mean_field_lengths(q1, depth - 1, sigma_w2, sigma_b2, activation, **hyper)
    half_log_chi = np.array([0.5 * math.log(chi_at_q(q, sigma_w2, activation, **hyper)) for q in qs])
    return np.append(np.cumsum(half_log_chi[::-1])[::-1], 0.0)
