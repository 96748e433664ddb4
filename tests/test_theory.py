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
    neg = lambda c: math.exp(c * c / 2) * normal_cdf(-c)  # noqa: E731
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
    E = lambda f: T.gaussian_expectation(f, q, degree)  # noqa: E731
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
        quad = sigma_w2 * T.gaussian_expectation(lambda u: phi(u) ** 2, q) + sigma_b2
        assert T.length_map(q, sigma_w2, sigma_b2, name, **hyper) == pytest.approx(quad, rel=1e-12)
    assert T.length_map(q, sigma_w2, sigma_b2, "relu") == pytest.approx(
        sigma_w2 * q / 2 + sigma_b2, rel=1e-15
    )


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
        assert T.critical_sigma_w2(sigma_b2, "leaky_relu", negative_slope=0.3) == pytest.approx(
            2 / 1.09
        )
    assert T.critical_sigma_w2(0.1, "linear") == 1.0


def test_tanh_critical_point_is_chi1_one_independently():
    """Recompute q* and chi1 at the returned sigma_w2 with plain iteration + Gauss--Hermite."""
    sigma_b2 = 0.05
    sw2 = T.critical_sigma_w2(sigma_b2, "tanh")
    q = iterate_length_map(np.tanh, sw2, sigma_b2)
    chi = sw2 * hermite_expectation(lambda u: 1 / np.cosh(u) ** 4, q)
    assert chi == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize(
    "name, hi", [("tanh", 4.0), ("sigmoid", 4.0), ("relu", 4.0), ("elu", 1.8), ("gelu", 4.0)]
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
