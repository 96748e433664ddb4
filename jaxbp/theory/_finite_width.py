r"""First-order finite-width fluctuations of back-propagated errors, for one input.

At width :math:`N` the log-norm :math:`\ln(\|\delta_1\|/\|\delta_L\|)` of a depth-:math:`L` network with
Gaussian weights :math:`W_{l,ij} \sim \mathcal N(0, \sigma_w^2/N)` and biases
:math:`\mathcal N(0, \sigma_b^2)` is random; its variance grows like :math:`(L-1)/N`.  Two sources add
up (derivation in ``docs/study.md``, "Finite width"):

1. **The backward step itself.** Given the pre-activations :math:`z_l` and
   (gradient independence) fresh :math:`g_i \sim \mathcal N(0,1)`, one step multiplies
   :math:`\|\delta\|^2` by :math:`\chi(Q_l)(1 + A_l)` with
   :math:`A_l = \frac1N\sum_i \phi'(z_{l,i})^2 g_i^2/\mu_1 - 1`,
   :math:`N\,\mathrm{Var}\,A_l = 3\mu_2/\mu_1^2 - 1`.
2. **The forward length.** Given layer :math:`l-1`, the :math:`z_{l,i}` are iid
   :math:`\mathcal N(0, Q_l)` with :math:`Q_{l+1} = \sigma_w^2 m_l + \sigma_b^2`,
   :math:`m_l = \frac1N \sum_i \phi(z_{l,i})^2 = V(Q_l) + B_l`.  To first order
   :math:`\eta_l = Q_l - \bar q_l` (:math:`\bar q_l` the mean-field length) follows
   :math:`\eta_{l+1} = \lambda_l \eta_l + \sigma_w^2 B_l` with :math:`\lambda_l = \sigma_w^2 V'(\bar q_l)`,
   and moves the log factor by :math:`a_l \eta_l`, :math:`a_l = (\ln\chi)'(\bar q_l)`.  :math:`B_l` and
   :math:`A_l` share :math:`z_l`:
   :math:`N\,\mathrm{Cov}(A_l, B_l) = \mathrm{Cov}(\phi'^2, \phi^2)/\mu_1`,
   :math:`N\,\mathrm{Var}\,B_l = \mathrm{Var}\,\phi^2`.

Summing :math:`X_l = \ln\chi(\bar q_l) + a_l\eta_l + A_l` over :math:`l = 1..L-1`, each :math:`B_k`
enters with weight :math:`\sigma_w^2 R_k`, :math:`R_k = a_{k+1} + \lambda_{k+1} R_{k+1}`,
:math:`R_{L-1} = 0`, so

.. math::

    \mathrm{Var}\,\ln\frac{\|\delta_1\|}{\|\delta_L\|}
    = \frac{1}{4N}\sum_{l=1}^{L-1}\Big[\frac{3\mu_2}{\mu_1^2} - 1
      + 2\sigma_w^2 R_l\,\frac{\mathrm{Cov}(\phi'^2,\phi^2)}{\mu_1}
      + \sigma_w^4 R_l^2\,\mathrm{Var}\,\phi^2\Big]_{q = \bar q_l} + O(N^{-2}).

Deep inside the network (:math:`\bar q_l = q^*`, :math:`R = a/(1-\lambda)`) each layer adds
:math:`\kappa/N`.  For the positively homogeneous activations :math:`\chi` does not depend on
:math:`q` (:math:`a = 0`), the forward terms vanish and :math:`\kappa = (3\mu_2/\mu_1^2 - 1)/4`:
:math:`5/4` for ReLU (Hanin 2018).  For tanh they do not: at criticality
(:math:`\sigma_b^2 = 0.05`) they raise :math:`\kappa` from 0.757 to 0.998.

The :math:`q`-derivatives :math:`V'` and :math:`\chi'` are central differences of the quadrature
(step :math:`10^{-4} q`, one-sided at :math:`q = 0`; the quadrature is accurate to ~1e-15, so the error is ~1e-8 relative),
which keeps this module free of activation-specific second and third derivatives.
"""

from __future__ import annotations

import math
from typing import NamedTuple, cast

from jaxbp.theory._gaussian import (
    _check_activation,
    _check_q,
    _homogeneous_c,
    _Hyper,
    activation_and_derivative,
    gaussian_expectation,
)
from jaxbp.theory._length import fixed_point_q, mean_field_lengths
from jaxbp.theory._spectrum import derivative_moments
from jaxbp.validation import positive_int, static_int

__all__ = ["log_gradient_variance", "log_gradient_variance_rate"]

_RELATIVE_STEP = 1e-4


class _Moments(NamedTuple):
    """The per-layer quantities of the module docstring, at one length ``q``."""

    backward: float  # 3 mu2 / mu1^2 - 1
    covariance: float  # Cov(phi'^2, phi^2) / mu1
    forward: float  # Var phi^2
    log_chi_slope: float  # a = d ln chi / dq
    length_slope: float  # lambda = sigma_w2 dV/dq


def _moments(q: float, sigma_w2: float, activation: str, hyper: dict[str, float]) -> _Moments:
    phi, dphi = activation_and_derivative(activation, **hyper)
    expect = gaussian_expectation
    mu1, mu2 = derivative_moments(q, activation, **hyper)
    v1, v2 = expect(lambda u: phi(u) ** 2, q), expect(lambda u: phi(u) ** 4, q)
    cross = expect(lambda u: phi(u) ** 2 * dphi(u) ** 2, q)
    c = _homogeneous_c(activation, hyper)
    if c is not None:  # chi = c sigma_w2 whatever q; V = c q
        log_chi_slope, length_slope = 0.0, sigma_w2 * c
    else:
        step = _RELATIVE_STEP * max(q, 1e-3)
        lo, hi = max(q - step, 0.0), q + step  # one-sided at q = 0 (tanh's q* when sigma_b2 = 0)
        mu1_lo, mu1_hi = expect(lambda u: dphi(u) ** 2, lo), expect(lambda u: dphi(u) ** 2, hi)
        log_chi_slope = (math.log(mu1_hi) - math.log(mu1_lo)) / (hi - lo)
        length_slope = sigma_w2 * (expect(lambda u: phi(u) ** 2, hi) - expect(lambda u: phi(u) ** 2, lo)) / (hi - lo)
    return _Moments(3.0 * mu2 / mu1**2 - 1.0, (cross - v1 * mu1) / mu1, v2 - v1**2, log_chi_slope, length_slope)


def _layer_term(m: _Moments, sigma_w2: float, reach: float) -> float:
    """One layer's contribution to :math:`4N\\,\\mathrm{Var}`; ``reach`` is :math:`R_l`."""
    return m.backward + 2 * sigma_w2 * reach * m.covariance + sigma_w2**2 * reach**2 * m.forward


def log_gradient_variance(
    depth: int, width: int, q1: float, sigma_w2: float, sigma_b2: float, activation: str, **hyper: float
) -> float:
    r"""First-order :math:`\mathrm{Var}\,\ln(\|\delta_1\|/\|\delta_L\|)` of a width-``width`` network of
    ``depth`` dense layers whose first pre-activations have length ``q1`` (for an input :math:`x`
    and first-layer weight variance :math:`\sigma_w^2/d`: :math:`q_1 = \sigma_w^2\|x\|^2/d + \sigma_b^2`),
    activation after every layer but the last, loss linear in :math:`z_L`.  See the module docstring."""
    h = _check_activation(activation, hyper)
    depth = static_int("log_gradient_variance", "depth", depth, minimum=2)
    width = positive_int("log_gradient_variance", "width", width)
    _check_q(q1)
    lengths = mean_field_lengths(q1, depth - 1, sigma_w2, sigma_b2, activation, **h)  # the layers with an activation
    moments = [_moments(q, sigma_w2, activation, h) for q in lengths]
    total, reach = 0.0, 0.0  # R_{L-1} = 0
    for index in range(depth - 2, -1, -1):  # l = L-1 .. 1
        total += _layer_term(moments[index], sigma_w2, reach)
        reach = moments[index].log_chi_slope + moments[index].length_slope * reach  # R_{l-1}
    return total / (4.0 * width)


def log_gradient_variance_rate(sigma_w2: float, sigma_b2: float, activation: str, **hyper: float) -> float:
    r"""Finite-width growth :math:`\kappa` of :math:`\mathrm{Var}\,\ln(\|\delta_1\|/\|\delta_L\|) \approx \kappa\,(L-1)/N`
    deep in the network (:math:`q_l = q^*`), for one input:

    .. math::

        \kappa = \tfrac14\Big[\frac{3\mu_2}{\mu_1^2} - 1 + 2\sigma_w^2 R\,\frac{\mathrm{Cov}(\phi'^2,\phi^2)}{\mu_1}
                 + \sigma_w^4 R^2\,\mathrm{Var}\,\phi^2\Big],\qquad R = \frac{(\ln\chi)'(q^*)}{1 - \lambda},

    all at :math:`q^*` (module docstring).  ReLU: :math:`5/4`; tanh at :math:`\sigma_b^2 = 0.05` on the
    critical line: 0.998 (0.757 without the forward-length terms)."""
    h = _check_activation(activation, hyper)
    q_star = fixed_point_q(sigma_w2, sigma_b2, activation, **cast(_Hyper, h))
    if math.isinf(q_star):
        raise ValueError(f"log_gradient_variance_rate: q* = inf at sigma_w2={sigma_w2}, sigma_b2={sigma_b2}")
    m = _moments(q_star, sigma_w2, activation, h)
    reach = 0.0 if m.log_chi_slope == 0.0 else m.log_chi_slope / (1.0 - m.length_slope)
    return _layer_term(m, sigma_w2, reach) / 4.0
