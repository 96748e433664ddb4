r"""Free-probability predictions for the singular values of a deep network's input-output Jacobian.

For :math:`J = \prod_{l=1}^{L} D_l W_l` with :math:`D_l = \mathrm{diag}\,\phi'(z_l)`, pre-activations at
the fixed point :math:`q^*` and weights of variance :math:`\sigma_w^2/N`, Pennington, Schoenholz &
Ganguli (2017, "Resurrecting the sigmoid in deep learning through dynamical isometry", eqs. 16--18)
give the first two moments of the spectrum of :math:`JJ^\top` (the squared singular values
:math:`s^2`) in the wide limit:

.. math::

    m_1 = \chi_1^L, \qquad
    \sigma^2_{JJ^\top} = m_2 - m_1^2 = \chi_1^{2L}\,L\Big(\frac{\mu_2}{\mu_1^2} - 1 - s_1\Big),
    \qquad \mu_k = \mathbb E_z\big[\phi'(\sqrt{q^*} z)^{2k}\big],

with :math:`s_1 = -1` for Gaussian and :math:`s_1 = 0` for orthogonal weights (the first
coefficient of the S-transform of :math:`W W^\top`).  Orthogonal weights remove the :math:`+L` a
Gaussian product adds; :math:`\mu_2/\mu_1^2 - 1` (the spread of :math:`\phi'^2`) vanishes only as
:math:`q^* \to 0` for tanh ("dynamical isometry"), and equals 1 for ReLU at any :math:`q^*`.
For a linear Gaussian network the spectrum is Fuss--Catalan, with largest squared singular
value :math:`(L+1)^{L+1}/L^L \approx e(L+1)`.
"""

from __future__ import annotations

import math
from typing import cast

from jaxbp.theory._gaussian import (
    _check_activation,
    _Hyper,
    activation_and_derivative,
    gaussian_expectation,
)
from jaxbp.theory._length import chi1, fixed_point_q

__all__ = [
    "WEIGHT_S1",
    "derivative_moments",
    "fuss_catalan_edge",
    "jacobian_spectrum_moments",
]

#: First S-transform coefficient s_1 of W W^T for each weight distribution.
WEIGHT_S1 = {"gaussian": -1.0, "orthogonal": 0.0}


def derivative_moments(q: float, activation: str, **hyper: float) -> tuple[float, float]:
    r""":math:`(\mu_1, \mu_2) = (\mathbb E[\phi'(\sqrt q z)^2], \mathbb E[\phi'(\sqrt q z)^4])`."""
    h = _check_activation(activation, hyper)
    _, dphi = activation_and_derivative(activation, **h)
    return gaussian_expectation(lambda u: dphi(u) ** 2, q), gaussian_expectation(lambda u: dphi(u) ** 4, q)


def jacobian_spectrum_moments(
    depth: int,
    sigma_w2: float,
    sigma_b2: float,
    activation: str,
    weights: str = "gaussian",
    **hyper: float,
) -> tuple[float, float]:
    r"""Predicted ``(mean, variance)`` of the squared singular values :math:`s^2` of the input-output Jacobian.

    ``weights`` is ``"gaussian"`` or ``"orthogonal"``; see the module docstring for the formula.
    """
    if weights not in WEIGHT_S1:
        raise ValueError(f"jacobian_spectrum_moments: weights must be one of {sorted(WEIGHT_S1)}, got {weights!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"jacobian_spectrum_moments: depth must be a positive integer, got {depth!r}")
    q_star = fixed_point_q(sigma_w2, sigma_b2, activation, **cast(_Hyper, hyper))
    if math.isinf(q_star):
        raise ValueError(f"jacobian_spectrum_moments: q* = inf at sigma_w2={sigma_w2}, sigma_b2={sigma_b2}")
    mu1, mu2 = derivative_moments(q_star, activation, **hyper)
    chi = chi1(sigma_w2, sigma_b2, activation, **cast(_Hyper, hyper))
    return chi**depth, chi ** (2 * depth) * depth * (mu2 / mu1**2 - 1.0 - WEIGHT_S1[weights])


def fuss_catalan_edge(depth: int) -> float:
    r"""Largest squared singular value :math:`(L+1)^{L+1}/L^L` of a product of ``depth`` Gaussian matrices of variance :math:`1/N`."""
    if depth < 1:
        raise ValueError(f"fuss_catalan_edge: depth must be >= 1, got {depth!r}")
    return math.exp((depth + 1) * math.log(depth + 1) - depth * math.log(depth))
