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

The package is split by topic: :mod:`._gaussian` (activations and Gaussian quadrature),
:mod:`._length` (length map, :math:`q^*`, :math:`\chi_1`, the edge of chaos, gradient profiles),
:mod:`._correlation` (correlation map, :math:`c^*`, :math:`\chi_c`, :math:`\xi_c`) and
:mod:`._spectrum` (free-probability Jacobian spectra) and :mod:`._finite_width` (first-order
finite-width fluctuations of the back-propagated errors).
"""

from jaxbp.theory._correlation import (
    bivariate_expectation,
    chi_c,
    correlation_depth_scale,
    correlation_map,
    critical_line_point,
    fixed_point_c,
    signal_propagation,
)
from jaxbp.theory._finite_width import log_gradient_variance, log_gradient_variance_rate
from jaxbp.theory._gaussian import (
    ACTIVATIONS,
    MAX_HERMITE_DEGREE,
    Q_MAX,
    activation_and_derivative,
    gaussian_expectation,
)
from jaxbp.theory._length import (
    chi1,
    chi_at_q,
    critical_sigma_w2,
    depth_scale,
    fixed_point_q,
    length_map,
    log_delta_profile,
    mean_field_lengths,
    predicted_delta_norms,
    predicted_log_slope,
)
from jaxbp.theory._spectrum import (
    WEIGHT_S1,
    derivative_moments,
    fuss_catalan_edge,
    jacobian_spectrum_moments,
)

__all__ = [
    "ACTIVATIONS",
    "MAX_HERMITE_DEGREE",
    "Q_MAX",
    "WEIGHT_S1",
    "activation_and_derivative",
    "bivariate_expectation",
    "chi1",
    "chi_at_q",
    "chi_c",
    "correlation_depth_scale",
    "correlation_map",
    "critical_line_point",
    "critical_sigma_w2",
    "depth_scale",
    "derivative_moments",
    "fixed_point_c",
    "fixed_point_q",
    "fuss_catalan_edge",
    "gaussian_expectation",
    "jacobian_spectrum_moments",
    "length_map",
    "log_delta_profile",
    "log_gradient_variance",
    "log_gradient_variance_rate",
    "mean_field_lengths",
    "predicted_delta_norms",
    "predicted_log_slope",
    "signal_propagation",
]
