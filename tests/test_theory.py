"""Tests for ``jaxbp.theory`` (mean-field signal propagation).

Expected values come from closed forms (ReLU family, ELU, Gaussian moments), from an
independent Gauss--Hermite / plain-iteration computation written here, from Monte-Carlo,
or from the literature (tanh edge of chaos), never from the module's own output.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxbp import theory as T

sigma_w2s = st.floats(0.0, 10.0, allow_nan=False, allow_subnormal=False)  # subnormals only test rounding order
sigma_b2s = st.floats(0.0, 5.0, allow_nan=False, allow_subnormal=False)  # subnormals only test rounding order
slopes = st.floats(-1.0, 1.0, allow_nan=False, allow_subnormal=False)  # subnormals only test rounding order
qs = st.floats(0.0, 50.0, allow_nan=False, allow_subnormal=False)  # subnormals only test rounding order
SMOOTH = ("sigmoid", "tanh", "gelu", "linear")


def normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


_HERM_T, _HERM_W = np.polynomial.hermite.hermgauss(200)


def hermite_expectation(f, q: float) -> float:
    """Independent E_{z~N(0,1)}[f(sqrt(q) z)]: physicists' Gauss--Hermite, u = sqrt(2q) t."""
    return float(np.dot(_HERM_W, f(math.sqrt(2.0 * q) * _HERM_T)) / math.sqrt(math.pi))


def iterate_length_map(phi, sigma_w2: float, sigma_b2: float, steps: int = 3000) -> float:
    """Plain iteration of q <- sigma_w2 E[phi^2] + sigma_b2 from q = 1, independent quadrature."""
    q = 1.0
    for _ in range(steps):
        q_next = sigma_w2 * hermite_expectation(lambda u: phi(u) ** 2, q) + sigma_b2
        if abs(q_next - q) <= 1e-14 * q_next:
            break
        q = q_next
    return q_next


def elu_moments(q: float, alpha: float) -> tuple[float, float]:
    """Closed forms of E[elu(u)^2], E[elu'(u)^2] for u ~ N(0, q), via
    E[e^{c z}; z < 0] = e^{c^2/2} Phi(-c)."""
    s = math.sqrt(q)
    neg = lambda c: math.exp(c * c / 2) * normal_cdf(-c)
    phi2 = q / 2 + alpha**2 * (neg(2 * s) - 2 * neg(s) + 0.5)
    dphi2 = 0.5 + alpha**2 * neg(2 * s)
    return phi2, dphi2


# --------------------------------------------------------------------------- activations
@pytest.mark.parametrize("name", T.ACTIVATIONS)
def test_derivative_matches_finite_differences(name):
    phi, dphi = T.activation_and_derivative(name)
    x = np.array([-3.0, -1.3, -0.4, 0.2, 0.9, 2.5])  # away from the kink at 0
    h = 1e-6
    fd = (phi(x + h) - phi(x - h)) / (2 * h)
    np.testing.assert_allclose(dphi(x), fd, rtol=1e-7, atol=1e-9)


def test_activation_values():
    gelu, _ = T.activation_and_derivative("gelu")
    sigmoid, _ = T.activation_and_derivative("sigmoid")
    elu, _ = T.activation_and_derivative("elu", alpha=2.0)
    leaky, dleaky = T.activation_and_derivative("leaky_relu", negative_slope=0.2)
    assert gelu(np.array(1.0)) == pytest.approx(normal_cdf(1.0), rel=1e-14)
    assert sigmoid(np.array([0.0, 800.0, -800.0])).tolist() == [0.5, 1.0, 0.0]
    assert elu(np.array(-1.0)) == pytest.approx(2.0 * (math.exp(-1.0) - 1.0), rel=1e-14)
    assert leaky(np.array(-5.0)) == pytest.approx(-1.0)
    assert dleaky(np.array([-1.0, 1.0])).tolist() == [0.2, 1.0]


# --------------------------------------------------------------------------- quadrature
@given(q=qs)
@pytest.mark.parametrize("degree", [None, 51, 151])
def test_gaussian_moments(degree, q):
    E = lambda f: T.gaussian_expectation(f, q, degree)
    assert E(lambda u: 1.0) == pytest.approx(1.0, rel=1e-13)
    assert E(lambda u: u) == pytest.approx(0.0, abs=1e-12 * (1 + q))
    assert E(lambda u: u**2) == pytest.approx(q, rel=1e-12, abs=1e-300)
    assert E(lambda u: u**4) == pytest.approx(3 * q**2, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("name", SMOOTH)
@pytest.mark.parametrize("q", [0.05, 0.2, 0.3])
def test_hermite_converges_for_smooth_activations(name, q):
    phi, dphi = T.activation_and_derivative(name)
    for f in (lambda u: phi(u) ** 2, lambda u: dphi(u) ** 2):
        lo, hi = (T.gaussian_expectation(f, q, d) for d in (51, 151))
        assert lo == pytest.approx(hi, abs=1e-10)


@pytest.mark.parametrize("name", SMOOTH)
@pytest.mark.parametrize("q", [0.0, 0.01, 0.5, 1.0])
def test_default_rule_matches_independent_hermite(name, q):
    phi, dphi = T.activation_and_derivative(name)
    for f in (lambda u: phi(u) ** 2, lambda u: dphi(u) ** 2):
        assert T.gaussian_expectation(f, q) == pytest.approx(hermite_expectation(f, q), abs=1e-12)


@pytest.mark.parametrize("q", [1e-4, 0.3, 2.0, 10.0, 50.0])
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_elu_expectations_match_closed_form(q, alpha):
    """The kink at 0 (and, for alpha != 1, the jump of phi') is integrated exactly."""
    phi2, dphi2 = elu_moments(q, alpha)
    assert T.length_map(q, 1.0, 0.0, "elu", alpha=alpha) == pytest.approx(phi2, rel=1e-12)
    assert T.chi1(0.0, 0.0, "elu", alpha=alpha) == 0.0
    _, dphi = T.activation_and_derivative("elu", alpha=alpha)
    assert T.gaussian_expectation(lambda u: dphi(u) ** 2, q) == pytest.approx(dphi2, rel=1e-12)


@pytest.mark.parametrize("q", [1e4, 1e8])
def test_default_rule_accurate_at_large_q(q):
    """E[sech^4(u)], u ~ N(0, q), is (4/3)/sqrt(2 pi q) * (1 + O(1/q)) since int sech^4 = 4/3."""
    _, dtanh = T.activation_and_derivative("tanh")
    expected = (4.0 / 3.0) / math.sqrt(2 * math.pi * q)
    assert T.gaussian_expectation(lambda u: dtanh(u) ** 2, q) == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("q", [0.7, 3.0])
def test_tanh_quadrature_matches_monte_carlo(q):
    rng = np.random.default_rng(0)
    u = math.sqrt(q) * rng.standard_normal(1_000_000)
    _, dtanh = T.activation_and_derivative("tanh")
    for samples, quad in [
        (np.tanh(u) ** 2, T.length_map(q, 1.0, 0.0, "tanh")),
        (dtanh(u) ** 2, T.gaussian_expectation(lambda x: dtanh(x) ** 2, q)),
    ]:
        stderr = samples.std() / math.sqrt(samples.size)
        assert abs(samples.mean() - quad) < 5 * stderr


# --------------------------------------------------------------------------- relu family
@given(sigma_w2=sigma_w2s, sigma_b2=sigma_b2s)
def test_relu_chi1_is_half_sigma_w2(sigma_w2, sigma_b2):
    assert T.chi1(sigma_w2, sigma_b2, "relu") == pytest.approx(sigma_w2 / 2, rel=1e-15, abs=0)
    # independent: sigma_w^2 E[1{u > 0}] by quadrature of the step function
    step = T.gaussian_expectation(lambda u: (u > 0).astype(float), 1.0)
    assert T.chi1(sigma_w2, sigma_b2, "relu") == pytest.approx(sigma_w2 * step, rel=1e-14, abs=0)


@given(sigma_w2=sigma_w2s, sigma_b2=sigma_b2s, a=slopes)
def test_leaky_relu_chi1(sigma_w2, sigma_b2, a):
    got = T.chi1(sigma_w2, sigma_b2, "leaky_relu", negative_slope=a)
    assert got == pytest.approx((1 + a * a) * sigma_w2 / 2, rel=1e-14, abs=0)


@given(q=qs, sigma_w2=sigma_w2s, sigma_b2=sigma_b2s, a=slopes)
def test_relu_family_length_map_matches_quadrature(q, sigma_w2, sigma_b2, a):
    for name, hyper in [("relu", {}), ("leaky_relu", {"negative_slope": a})]:
        phi, _ = T.activation_and_derivative(name, **hyper)
        quad = sigma_w2 * T.gaussian_expectation(lambda u, phi=phi: phi(u) ** 2, q) + sigma_b2
        assert T.length_map(q, sigma_w2, sigma_b2, name, **hyper) == pytest.approx(quad, rel=1e-12)
    assert T.length_map(q, sigma_w2, sigma_b2, "relu") == pytest.approx(sigma_w2 * q / 2 + sigma_b2, rel=1e-15)


def test_relu_fixed_points():
    assert T.fixed_point_q(1.0, 0.5, "relu") == pytest.approx(0.5 / (1 - 0.5))
    assert T.fixed_point_q(2.0, 0.0, "relu", q0=3.7) == 3.7  # every q is fixed
    assert T.fixed_point_q(2.0, 0.1, "relu") == math.inf
    assert T.fixed_point_q(3.0, 0.0, "relu") == math.inf
    assert T.fixed_point_q(3.0, 0.0, "relu", q0=0.0) == 0.0
    assert T.fixed_point_q(1.0, 0.0, "relu") == 0.0


# --------------------------------------------------------------------------- fixed points
@pytest.mark.parametrize(
    "name, sigma_w2, sigma_b2",
    [
        ("tanh", 1.5, 0.0),
        ("tanh", 1.76, 0.05),
        ("tanh", 4.0, 0.3),
        ("sigmoid", 1.0, 0.0),
        ("sigmoid", 100.0, 0.05),
        ("elu", 1.5, 0.05),
        ("gelu", 1.5, 0.2),
        ("linear", 0.5, 0.2),
    ],
)
def test_fixed_point_satisfies_equation(name, sigma_w2, sigma_b2):
    q = T.fixed_point_q(sigma_w2, sigma_b2, name)
    assert 0 < q < math.inf
    assert T.length_map(q, sigma_w2, sigma_b2, name) == pytest.approx(q, rel=1e-10)
    # and it is the fixed point that plain iteration from q0 = 1 approaches
    phi, _ = T.activation_and_derivative(name)
    assert q == pytest.approx(iterate_length_map(phi, sigma_w2, sigma_b2), rel=1e-3)


def test_tanh_fixed_point_without_bias():
    assert T.fixed_point_q(0.9, 0.0, "tanh") == 0.0  # q* = 0 is the only fixed point
    assert T.chi1(0.9, 0.0, "tanh") == pytest.approx(0.9, rel=1e-15)
    # near sigma_w2 = 1+eps: E[tanh^2] = q - 2q^2 + O(q^3) gives q* ~ (1 - 1/sigma_w2) / 2
    eps = 1e-3
    assert T.fixed_point_q(1 + eps, 0.0, "tanh") == pytest.approx((1 - 1 / (1 + eps)) / 2, rel=1e-2)


def test_divergent_q_gives_asymptotic_chi1():
    for name in ("elu", "gelu"):
        assert T.fixed_point_q(3.0, 0.1, name) == math.inf
        assert T.chi1(3.0, 0.1, name) == pytest.approx(1.5)


# --------------------------------------------------------------------------- chi1 / criticality
def test_critical_sigma_w2_known_values():
    assert T.critical_sigma_w2(0.0, "tanh") == pytest.approx(1.0, abs=1e-6)
    assert T.critical_sigma_w2(0.05, "tanh") == pytest.approx(1.76, abs=0.02)
    for sigma_b2 in (0.0, 0.05, 1.0):
        assert T.critical_sigma_w2(sigma_b2, "relu") == 2.0
        assert T.critical_sigma_w2(sigma_b2, "leaky_relu", negative_slope=0.3) == pytest.approx(2 / 1.09)
    assert T.critical_sigma_w2(0.1, "linear") == 1.0


def test_tanh_critical_point_is_chi1_one_independently():
    """Recompute q* and chi1 at the returned sigma_w2 with plain iteration + Gauss--Hermite."""
    sigma_b2 = 0.05
    sw2 = T.critical_sigma_w2(sigma_b2, "tanh")
    q = iterate_length_map(np.tanh, sw2, sigma_b2)
    chi = sw2 * hermite_expectation(lambda u: 1 / np.cosh(u) ** 4, q)
    assert chi == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize(
    "name, hi",
    [("tanh", 4.0), ("sigmoid", 4.0), ("relu", 4.0), ("elu", 1.8), ("gelu", 4.0)],
)
@pytest.mark.parametrize("sigma_b2", [0.0, 0.05, 0.3])
def test_chi1_increases_with_sigma_w2(name, hi, sigma_b2):
    # ELU stops at 1.8: as sigma_w2 -> 2- its q* -> inf and chi1 falls back towards 1.
    chis = [T.chi1(sw2, sigma_b2, name) for sw2 in np.linspace(0.05, hi, 25)]
    assert np.all(np.diff(chis) > 0)


# --------------------------------------------------------------------------- predictions
@given(sigma_w2=st.floats(0.1, 4.0), sigma_b2=st.floats(0.0, 1.0), L=st.integers(1, 30))
def test_predicted_delta_norms(sigma_w2, sigma_b2, L):
    chi = T.chi1(sigma_w2, sigma_b2, "tanh")
    norms = T.predicted_delta_norms(L, sigma_w2, sigma_b2, "tanh", delta_last=2.5)
    assert norms.shape == (L,)
    assert norms[-1] == pytest.approx(2.5)
    np.testing.assert_allclose(norms[:-1] / norms[1:], math.sqrt(chi), rtol=1e-12)
    slope = T.predicted_log_slope(sigma_w2, sigma_b2, "tanh")
    assert slope == pytest.approx(0.5 * math.log(chi), rel=1e-12)
    if L > 1:  # a fit of ln||delta_l|| against l = 1..L has slope -slope
        fit = np.polyfit(np.arange(1, L + 1), np.log(norms), 1)[0]
        assert fit == pytest.approx(-slope, rel=1e-8, abs=1e-12)


def test_depth_scale():
    assert T.depth_scale(math.exp(-0.25)) == pytest.approx(4.0)
    assert T.depth_scale(math.e) == pytest.approx(-1.0)
    assert T.depth_scale(1.0) == math.inf
    # ||delta||^2 falls by e every xi layers
    chi = T.chi1(1.0, 0.0, "relu")
    assert chi ** T.depth_scale(chi) == pytest.approx(math.exp(-1))


# --------------------------------------------------------------------------- errors
def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="valid names are: sigmoid, tanh, relu"):
        T.chi1(1.0, 0.0, "swish")
    with pytest.raises(ValueError, match="sigma_w2"):
        T.chi1(-1.0, 0.0, "tanh")
    with pytest.raises(ValueError, match="sigma_b2"):
        T.length_map(1.0, 1.0, -0.1, "relu")
    with pytest.raises(ValueError, match="sigma_b2"):
        T.critical_sigma_w2(-0.1, "tanh")
    for degree in (0, -3, 1.5, True, T.MAX_HERMITE_DEGREE + 1):
        with pytest.raises(ValueError, match="degree"):
            T.gaussian_expectation(np.tanh, 1.0, degree)
        with pytest.raises(ValueError, match="degree"):
            T.chi1(1.0, 0.0, "relu", degree=degree)
    with pytest.raises(ValueError, match="negative_slope"):
        T.activation_and_derivative("relu", negative_slope=0.1)
    with pytest.raises(ValueError, match="q must be"):
        T.length_map(-1.0, 1.0, 0.0, "tanh")
    with pytest.raises(ValueError, match="chi"):
        T.depth_scale(0.0)
    with pytest.raises(ValueError, match="num_layers"):
        T.predicted_delta_norms(0, 1.0, 0.0, "relu")
    with pytest.raises(ValueError, match="bracket"):
        T.critical_sigma_w2(0.0, "tanh", bracket=(2.0, 1.0))


# --------------------------------------------------------------------------- gradient profiles
@pytest.mark.parametrize("sigma_w2", [0.5, 2.0, 3.0])
def test_relu_log_delta_profile_is_a_straight_line(sigma_w2):
    # For ReLU chi(q) = sigma_w2 / 2 whatever q is, so ln(|delta_l|/|delta_L|) = (L - l) ln(sigma_w2/2) / 2.
    depth = 7
    profile = T.log_delta_profile(0.37, depth, sigma_w2, 0.1, "relu")
    np.testing.assert_allclose(
        profile,
        0.5 * (depth - np.arange(1, depth + 1)) * math.log(sigma_w2 / 2),
        atol=1e-12,
    )


def test_tanh_profile_from_the_fixed_point_is_chi1_per_layer():
    sigma_w2, sigma_b2, depth = 1.76, 0.05, 9
    q_star = iterate_length_map(np.tanh, sigma_w2, sigma_b2)
    chi1 = sigma_w2 * hermite_expectation(lambda u: (1 - np.tanh(u) ** 2) ** 2, q_star)
    profile = T.log_delta_profile(q_star, depth, sigma_w2, sigma_b2, "tanh")
    np.testing.assert_allclose(profile, 0.5 * (depth - np.arange(1, depth + 1)) * math.log(chi1), atol=1e-8)


# --------------------------------------------------------------------------- correlation map
def monte_carlo_pair(f, q: float, c: float, n: int = 400_000, seed: int = 0) -> tuple[float, float]:
    """E[f(u1) f(u2)] by sampling, and its standard error."""
    z1, z2 = np.random.default_rng(seed).standard_normal((2, n))
    values = f(math.sqrt(q) * z1) * f(math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z2))
    return float(values.mean()), float(values.std() / math.sqrt(n))


@pytest.mark.parametrize(
    ("name", "q", "c"),
    [("tanh", 0.7, 0.3), ("tanh", 3.0, -0.6), ("relu", 1.3, 0.5), ("relu", 0.4, -0.9)],
)
def test_correlation_map_matches_monte_carlo(name, q, c):
    sigma_w2, sigma_b2 = 1.9, 0.1
    phi, _ = T.activation_and_derivative(name)
    pair, error = monte_carlo_pair(phi, q, c)
    q_next = sigma_w2 * hermite_expectation(lambda u: phi(u) ** 2, q) + sigma_b2
    expected = (sigma_w2 * pair + sigma_b2) / q_next
    assert T.correlation_map(c, q, sigma_w2, sigma_b2, name) == pytest.approx(
        expected, abs=5 * sigma_w2 * error / q_next
    )


def test_relu_correlation_map_is_the_arc_cosine_kernel():
    # sigma_w2 = 2, sigma_b2 = 0: c -> (sqrt(1 - c^2) + (pi - arccos c) c) / pi (Cho & Saul 2009)
    for c in (-0.8, 0.0, 0.5, 0.99):
        expected = (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi
        assert T.correlation_map(c, 1.0, 2.0, 0.0, "relu") == pytest.approx(expected, rel=1e-12)
        assert T.chi_c(c, 2.0, 0.0, "relu") == pytest.approx(1 - math.acos(c) / math.pi, rel=1e-12)


@pytest.mark.parametrize("sigma_w2", [1.2, 1.76, 3.0])
def test_chi_c_at_one_is_chi1(sigma_w2):
    assert T.chi_c(1.0, sigma_w2, 0.05, "tanh") == pytest.approx(T.chi1(sigma_w2, 0.05, "tanh"), rel=1e-9)


def test_fixed_point_c_in_both_phases():
    assert T.fixed_point_c(1.2, 0.05, "tanh") == 1.0  # ordered: chi1 < 1
    assert T.fixed_point_c(2.0, 0.0, "tanh") == pytest.approx(0.0, abs=1e-9)  # odd phi, no bias: c* = 0
    sigma_w2, sigma_b2 = 4.0, 0.05
    c_star = T.fixed_point_c(sigma_w2, sigma_b2, "tanh")
    assert 0.0 < c_star < 1.0
    q_star = iterate_length_map(np.tanh, sigma_w2, sigma_b2)
    pair, error = monte_carlo_pair(np.tanh, q_star, c_star)
    assert (sigma_w2 * pair + sigma_b2) / q_star == pytest.approx(c_star, abs=5 * sigma_w2 * error / q_star)


def test_correlation_depth_scale_diverges_at_the_edge_of_chaos():
    critical = T.critical_sigma_w2(0.05, "tanh")
    assert T.correlation_depth_scale(1.2, 0.05, "tanh") == pytest.approx(-1 / math.log(T.chi1(1.2, 0.05, "tanh")))
    near = [T.correlation_depth_scale(critical * f, 0.05, "tanh") for f in (0.7, 0.97, 1.03, 1.5)]
    assert near[1] > 5 * near[0] and near[2] > 5 * near[3]


def test_signal_propagation_keeps_equal_inputs_equal_and_decorrelates_in_chaos():
    qs, cs = T.signal_propagation(0.5, 1.0, 6, 1.2, 0.05, "tanh")
    np.testing.assert_allclose(cs, 1.0, atol=1e-9)
    assert qs[1] == pytest.approx(T.length_map(0.5, 1.2, 0.05, "tanh"))
    _, cs = T.signal_propagation(T.fixed_point_q(4.0, 0.05, "tanh"), 0.9, 120, 4.0, 0.05, "tanh")
    assert cs[-1] == pytest.approx(T.fixed_point_c(4.0, 0.05, "tanh"), abs=1e-6)


@pytest.mark.parametrize("q_star", [1 / 64, 0.25, 1.0])
def test_critical_line_point(q_star):
    sigma_w2, sigma_b2 = T.critical_line_point(q_star, "tanh")
    assert iterate_length_map(np.tanh, sigma_w2, sigma_b2) == pytest.approx(q_star, rel=1e-8)
    assert sigma_w2 * hermite_expectation(lambda u: (1 - np.tanh(u) ** 2) ** 2, q_star) == pytest.approx(1.0, rel=1e-9)


# --------------------------------------------------------------------------- spectra
def test_jacobian_spectrum_closed_forms():
    # linear Gaussian: Fuss-Catalan, m2 = L + 1 so var(s^2) = L; linear orthogonal: J is orthogonal
    assert T.jacobian_spectrum_moments(7, 1.0, 0.0, "linear", "gaussian") == pytest.approx((1.0, 7.0))
    assert T.jacobian_spectrum_moments(7, 1.0, 0.0, "linear", "orthogonal") == pytest.approx((1.0, 0.0))
    # ReLU + He: phi'^2 = phi'^4 = 1[u > 0], mu2 / mu1^2 = 2
    assert T.jacobian_spectrum_moments(10, 2.0, 0.0, "relu", "gaussian") == pytest.approx((1.0, 20.0))
    assert T.jacobian_spectrum_moments(10, 2.0, 0.0, "relu", "orthogonal") == pytest.approx((1.0, 10.0))
    assert T.fuss_catalan_edge(1) == pytest.approx(4.0)  # Marchenko-Pastur at ratio 1
    with pytest.raises(ValueError, match="weights"):
        T.jacobian_spectrum_moments(3, 1.0, 0.0, "tanh", "uniform")


def test_jacobian_spectrum_of_sampled_linear_gaussian_products():
    rng = np.random.default_rng(0)
    n, depth = 300, 4
    jac = np.eye(n)
    for _ in range(depth):
        jac = rng.standard_normal((n, n)) / math.sqrt(n) @ jac
    s2 = np.linalg.svd(jac, compute_uv=False) ** 2
    mean, var = T.jacobian_spectrum_moments(depth, 1.0, 0.0, "linear")
    assert s2.mean() == pytest.approx(mean, rel=0.1)
    assert s2.var() == pytest.approx(var, rel=0.25)
    assert s2.max() == pytest.approx(T.fuss_catalan_edge(depth), rel=0.15)


def test_log_gradient_variance_rate():
    assert T.log_gradient_variance_rate(2.0, 0.0, "relu") == pytest.approx(5 / 4)  # Hanin 2018
    assert T.log_gradient_variance_rate(1.0, 0.0, "linear") == pytest.approx(1 / 2)
    # sampled: one linear backward step multiplies |delta| by |W^T g| / |g|
    rng = np.random.default_rng(1)
    n = 64
    logs = [
        np.log(np.linalg.norm(rng.standard_normal((n, n)).T @ v / math.sqrt(n)) / np.linalg.norm(v))
        for v in rng.standard_normal((4000, n))
    ]
    assert np.var(logs) * n == pytest.approx(0.5, rel=0.1)


def test_log_gradient_variance_homogeneous_activations_have_no_forward_term():
    """ReLU and linear: χ does not depend on q, so every layer adds κ/N whatever q_1 (5/4 and 1/2)."""
    for q1 in (0.3, 2.0):
        assert T.log_gradient_variance(12, 64, q1, 2.0, 0.1, "relu") == pytest.approx(1.25 * 11 / 64)
    assert T.log_gradient_variance(5, 10, 1.0, 1.0, 0.0, "linear") == pytest.approx(0.5 * 4 / 10)


@pytest.mark.parametrize("sigma_w2, sigma_b2", [(None, 0.05), (2.5, 0.0), (1.2, 0.1)])
def test_log_gradient_variance_per_layer_tends_to_the_deep_rate_and_exceeds_the_backward_term(sigma_w2, sigma_b2):
    """Started at q*, the layer-wise sum adds κ/N per layer once the end of the network is a few
    length-relaxation depths away; for tanh κ exceeds the backward-only (3μ2/μ1² − 1)/4: the
    forward length's fluctuations raise the variance (both correction terms are positive)."""
    if sigma_w2 is None:
        sigma_w2 = T.critical_sigma_w2(sigma_b2, "tanh")
    q_star = T.fixed_point_q(sigma_w2, sigma_b2, "tanh")
    kappa = T.log_gradient_variance_rate(sigma_w2, sigma_b2, "tanh")
    width = 100
    per_layer = T.log_gradient_variance(61, width, q_star, sigma_w2, sigma_b2, "tanh") - T.log_gradient_variance(
        60, width, q_star, sigma_w2, sigma_b2, "tanh"
    )
    assert per_layer * width == pytest.approx(kappa, rel=1e-6)
    mu1, mu2 = T.derivative_moments(q_star, "tanh")
    assert kappa > 1.1 * (3 * mu2 / mu1**2 - 1) / 4
    # the sum is an average of per-layer terms, each below the deep rate near the end of the network
    assert T.log_gradient_variance(10, width, q_star, sigma_w2, sigma_b2, "tanh") < kappa * 9 / width


@pytest.mark.parametrize(
    "args, match",
    [
        ((1, 10, 1.0, 1.0, 0.0, "tanh"), "log_gradient_variance: depth must be an int >= 2"),
        ((3.0, 10, 1.0, 1.0, 0.0, "tanh"), "log_gradient_variance: depth must be a static int"),
        ((5, 0, 1.0, 1.0, 0.0, "tanh"), "log_gradient_variance: width must be a positive int"),
        ((5, 10, -1.0, 1.0, 0.0, "tanh"), "q"),
        ((5, 10, 1.0, 1.0, 0.0, "swish"), "unknown activation"),
    ],
)
def test_log_gradient_variance_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        T.log_gradient_variance(*args)
