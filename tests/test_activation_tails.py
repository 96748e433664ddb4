"""Activation derivatives in the tails, NaN and +-inf.

float32 gradients are compared with the derivative evaluated in float64 from
independent closed forms (Python's ``math``), at |x| in {5, 9, 17, 20, 50, 88}:
relative error <= 1e-5 wherever the true value is a normal float32. A NaN input
gives a NaN output and gradient; at +-inf the gradient is the derivative's limit.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.ad_checkpoint import print_saved_residuals

from jaxbp import ops, reference

MAGNITUDES = (5.0, 9.0, 17.0, 20.0, 50.0, 88.0)
POINTS = sorted({sign * m for m in MAGNITUDES for sign in (1.0, -1.0)})
TINY32 = float(np.finfo(np.float32).tiny)
MAX32 = float(np.finfo(np.float32).max)
SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
GELU_C = 0.044715


def _logistic(z: float) -> float:
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def _sech_squared(x: float) -> float:
    return 0.0 if abs(x) > 700 else 1 / math.cosh(x) ** 2


def _gelu_tanh_derivative(x: float) -> float:
    """d/dx [x (1 + tanh u) / 2], u = sqrt(2/pi)(x + c x^3), with 1 + tanh u = 2 / (1 + e^{-2u})."""
    u = SQRT_2_OVER_PI * (x + GELU_C * x**3)
    half_one_plus_tanh = _logistic(2 * u)
    return half_one_plus_tanh + 0.5 * x * _sech_squared(u) * SQRT_2_OVER_PI * (1 + 3 * GELU_C * x * x)


TRUE_DERIVATIVES = {
    "sigmoid": (ops.sigmoid, lambda x: _logistic(x) * _logistic(-x)),
    "tanh": (ops.tanh, _sech_squared),
    "relu": (ops.relu, lambda x: float(x > 0)),
    "leaky_relu": (lambda x: ops.leaky_relu(x, 0.2), lambda x: 1.0 if x > 0 else 0.2),
    "elu": (lambda x: ops.elu(x, 0.7), lambda x: 1.0 if x > 0 else 0.7 * math.exp(x)),
    "gelu": (
        ops.gelu,
        lambda x: 0.5 * math.erfc(-x / math.sqrt(2)) + x * math.exp(-x * x / 2) / math.sqrt(2 * math.pi),
    ),
    "gelu_tanh": (lambda x: ops.gelu(x, approximate=True), _gelu_tanh_derivative),
}
# The limits of each derivative at -inf and +inf.
LIMITS = {
    "sigmoid": (0.0, 0.0),
    "tanh": (0.0, 0.0),
    "relu": (0.0, 1.0),
    "leaky_relu": (0.2, 1.0),
    "elu": (0.0, 1.0),
    "gelu": (0.0, 1.0),
    "gelu_tanh": (0.0, 1.0),
}


def _gradient(op, x):
    return jax.grad(lambda x: jnp.sum(op(x)))(x)


@pytest.mark.parametrize("name", sorted(TRUE_DERIVATIVES))
def test_float32_gradient_is_exact_in_the_tails(name):
    op, derivative = TRUE_DERIVATIVES[name]
    truth = np.array([derivative(x) for x in POINTS])
    got = np.asarray(_gradient(op, jnp.array(POINTS, jnp.float32)), np.float64)
    normal = (np.abs(truth) >= TINY32) & (np.abs(truth) <= MAX32)
    assert normal.sum() >= 6  # the test is about the tails: most points must count
    error = np.abs(got - truth) / np.abs(np.where(normal, truth, 1.0))
    bad = [(x, g, t) for x, g, t, e, n in zip(POINTS, got, truth, error, normal) if n and e > 1e-5]
    assert not bad, f"{name}: (x, float32 gradient, float64 truth) with relative error > 1e-5: {bad}"


@pytest.mark.parametrize("name", sorted(TRUE_DERIVATIVES))
def test_gradient_is_finite_for_huge_inputs(name):
    op, _ = TRUE_DERIVATIVES[name]
    x = jnp.array([-1e20, -3e38, 1e20, 3e38], jnp.float32)
    np.testing.assert_allclose(_gradient(op, x), [LIMITS[name][0]] * 2 + [LIMITS[name][1]] * 2, rtol=1e-7)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("name", sorted(TRUE_DERIVATIVES))
def test_nan_propagates_forward_and_backward(name, dtype):
    op, _ = TRUE_DERIVATIVES[name]
    x = jnp.array([jnp.nan, 1.0, -1.0], dtype)
    y, vjp = jax.vjp(op, x)
    (dx,) = vjp(jnp.ones_like(y))
    assert bool(jnp.isnan(y[0])), f"{name}(NaN) = {y[0]}"
    assert bool(jnp.isnan(dx[0])), f"{name}'(NaN) = {dx[0]}"
    assert bool(jnp.all(jnp.isfinite(dx[1:])))


@pytest.mark.parametrize("name", sorted(TRUE_DERIVATIVES))
def test_gradient_at_infinity_is_the_limit(name):
    op, _ = TRUE_DERIVATIVES[name]
    np.testing.assert_allclose(_gradient(op, jnp.array([-jnp.inf, jnp.inf])), LIMITS[name], rtol=1e-7)


def test_exact_tails_keep_the_residual_bytes(capsys):
    """tanh and elu save one float32 per element, relu and leaky_relu one byte."""
    x = jnp.linspace(-3.0, 3.0, 1000, dtype=jnp.float32)
    expected = {"tanh": "f32[1000]", "elu": "f32[1000]", "relu": "u8[1000]", "leaky_relu": "u8[1000]"}
    for name, saved in expected.items():
        print_saved_residuals(TRUE_DERIVATIVES[name][0], x)
        lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(saved), (name, lines)


def test_relu_passes_no_gradient_below_zero_even_an_infinite_one():
    """The backward selects dy (no product with a 0/1 derivative), so inf or NaN cotangents
    at x <= 0 give exact zeros, as autodiff's select does; leaky_relu scales them."""
    x = jnp.array([-2.0, 0.0, 3.0])
    dy = jnp.array([jnp.inf, jnp.nan, 5.0])
    (dx,) = jax.vjp(ops.relu, x)[1](dy)
    np.testing.assert_array_equal(dx, [0.0, 0.0, 5.0])
    (dx_leaky,) = jax.vjp(lambda x: ops.leaky_relu(x, 0.5), x)[1](jnp.array([4.0, 2.0, 5.0]))
    np.testing.assert_array_equal(dx_leaky, [2.0, 1.0, 5.0])


def test_elu_second_derivative_at_zero_matches_the_reference():
    """d²/dx² elu at x = 0 through the hand-written rule equals autodiff of the reference (alpha, the
    left branch's value there): the rule's derivative must not differentiate a tie (jnp.minimum) at 0."""
    with jax.enable_x64(True):
        x = jnp.zeros(3)
        second = lambda f: jax.grad(lambda x: jnp.sum(jax.grad(lambda x: jnp.sum(f(x, 1.5)))(x)))(x)
        np.testing.assert_allclose(second(ops.elu), second(reference.elu), rtol=0, atol=1e-15)
