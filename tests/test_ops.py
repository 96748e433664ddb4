"""Ops at their stated conventions: kinks, saturation, huge logits, static hyper-parameters,
bad input. (The sweep of every op -- gradients, second order, transforms, dtypes, NaN -- is
tests/test_catalog.py.)"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbp import ops, reference
from jaxbp.gradcheck._arguments import normal

# --------------------------------------------------------------- kinks and tie points


def _grad_of_sum(fn, x):
    return jax.grad(lambda x: jnp.sum(fn(x)))(x)


@pytest.mark.parametrize(
    "op, ref, expected_at_zero",
    [
        (ops.relu, reference.relu, 0.0),  # relu'(0) = 0
        (lambda x: ops.leaky_relu(x, 0.3), lambda x: reference.leaky_relu(x, 0.3), 0.3),  # slope at 0
        (lambda x: ops.elu(x, 0.7), lambda x: reference.elu(x, 0.7), 0.7),  # alpha at 0
    ],
)
def test_derivative_at_kink_follows_stated_convention(x64, op, ref, expected_at_zero):
    x = jnp.array([-1.0, 0.0, 2.0])
    manual = _grad_of_sum(op, x)
    assert float(manual[1]) == expected_at_zero
    # elu's backward uses alpha e^x, autodiff of alpha expm1(x) gives alpha (expm1(x) + 1): 1 ulp apart
    np.testing.assert_allclose(manual, _grad_of_sum(ref, x), rtol=1e-15)


def test_sigmoid_saturated_gradient_is_finite_and_exact(x64):
    x = jnp.array([-100.0, 100.0])
    manual = _grad_of_sum(ops.sigmoid, x)
    s = 1.0 / (1.0 + math.exp(100.0))  # sigma(-100)
    np.testing.assert_allclose(manual, [s * (1 - s), s * (1 - s)], rtol=1e-12)
    np.testing.assert_array_equal(ops.sigmoid(x), [s, 1 - s])


def test_sigmoid_saturated_in_float32_stays_finite():
    grads = _grad_of_sum(ops.sigmoid, jnp.array([-100.0, 100.0], jnp.float32))
    assert jnp.all(jnp.isfinite(grads)) and jnp.all(grads >= 0)


@pytest.mark.parametrize("dtype, loss_tol", [(jnp.float32, 2e-3), (jnp.float64, 1e-12)])
def test_softmax_cross_entropy_huge_logits_give_exact_gradient(x64, dtype, loss_tol):
    """At |z| = 1e4 float32 keeps ~1e-3 absolute precision of log-sum-exp; gradients stay exact."""
    logits = jnp.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype)
    labels = jnp.array([0, 2])
    loss, grads = jax.value_and_grad(ops.softmax_cross_entropy)(logits, labels)
    # row 0: p = (1, 0, 0), correct class -> loss 0, grad 0; row 1: p = (0, 1/2, 1/2), label 2 -> loss log 2
    assert float(loss) == pytest.approx(math.log(2) / 2, rel=loss_tol)
    expected = np.array([[0.0, 0.0, 0.0], [0.0, 0.5, -0.5]]) / 2
    np.testing.assert_allclose(grads, expected, atol=1e-7)


def test_bce_gradient_at_zero_logit_is_half_minus_label(x64):
    """The |z| softplus form differentiated by autodiff gets this wrong; sigma(0) - y is right."""
    labels = jnp.array([0.0, 1.0, 0.25])
    grads = jax.grad(ops.binary_cross_entropy_with_logits)(jnp.zeros(3), labels)
    np.testing.assert_allclose(grads, (0.5 - labels) / 3, rtol=1e-14)


def test_bce_huge_logits_are_finite_and_exact(x64):
    logits, labels = jnp.array([1e4, -1e4, 1e4]), jnp.array([1.0, 0.0, 0.0])
    loss, grads = jax.value_and_grad(ops.binary_cross_entropy_with_logits)(logits, labels)
    assert float(loss) == pytest.approx(1e4 / 3)  # only the wrong confident one costs z
    np.testing.assert_allclose(grads, [0.0, 0.0, 1 / 3], atol=1e-15)


def test_seed_softmax_cross_entropy_gradient_is_p_minus_onehot(x64):
    logits = normal(3, (5, 4))
    labels = jnp.array([0, 1, 2, 3, 0])
    p = np.exp(np.asarray(logits)) / np.exp(np.asarray(logits)).sum(-1, keepdims=True)
    expected = (p - np.eye(4)[np.asarray(labels)]) / 5
    np.testing.assert_allclose(jax.grad(ops.softmax_cross_entropy)(logits, labels), expected, rtol=1e-12)


def test_static_hyper_parameters_are_not_traced():
    """negative_slope / alpha / axis stay Python values under jit (no tracer leaks)."""
    f = jax.jit(lambda x: ops.leaky_relu(x, 0.1) + ops.elu(x, 2.0) + ops.softmax(x, axis=0))
    x = jnp.linspace(-2, 2, 6).reshape(2, 3)
    expected = reference.leaky_relu(x, 0.1) + reference.elu(x, 2.0) + reference.softmax(x, 0)
    np.testing.assert_allclose(f(x), expected, rtol=1e-6)
    with pytest.raises(TypeError, match="leaky_relu: negative_slope must be a static Python number"):
        jax.jit(lambda x, s: ops.leaky_relu(x, s))(x, 0.1)


def test_custom_vjp_ops_are_reverse_mode_only():
    with pytest.raises(TypeError):
        jax.jvp(ops.sigmoid, (jnp.ones(2),), (jnp.ones(2),))


# ----------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: ops.sigmoid(jnp.arange(3)), TypeError, r"sigmoid: x must be a floating-point array, got dtype int32"),
        (lambda: ops.relu(3), TypeError, r"relu: x must be a floating-point array"),
        (
            lambda: ops.leaky_relu(jnp.ones(2), -0.1),
            ValueError,
            r"leaky_relu: negative_slope must be in \[0.0, 1.0\), got -0.1",
        ),
        (
            lambda: ops.leaky_relu(jnp.ones(2), 1.5),
            ValueError,
            r"leaky_relu: negative_slope must be in \[0.0, 1.0\), got 1.5",
        ),
        (lambda: ops.elu(jnp.ones(2), 0.0), ValueError, r"elu: alpha must be in \(0.0, inf\], got 0.0"),
        (lambda: ops.elu(jnp.ones(2), float("nan")), ValueError, r"elu: alpha must be finite"),
        (lambda: ops.gelu(jnp.ones(2), approximate="yes"), TypeError, r"gelu: approximate must be a bool"),
        (
            lambda: ops.softmax(jnp.ones((2, 3)), axis=2),
            ValueError,
            r"softmax: axis 2 is out of range for an input of rank 2",
        ),
        (
            lambda: ops.dense({"w": jnp.ones((3, 2)), "b": jnp.ones(2)}, jnp.ones((4, 5))),
            ValueError,
            r"dense: x has 5 features \(shape \(4, 5\)\) but w expects 3 \(shape \(3, 2\)\)",
        ),
        (
            lambda: ops.dense({"w": jnp.ones((3, 2)), "b": jnp.ones(3)}, jnp.ones((4, 3))),
            ValueError,
            r"dense: b must have shape \(2,\)",
        ),
        (
            lambda: ops.dense({"w": jnp.ones(3), "b": jnp.ones(3)}, jnp.ones((4, 3))),
            ValueError,
            r'dense: params\["w"\] must have rank 2, got shape \(3,\)',
        ),
        (
            lambda: ops.dense({"w": jnp.ones((3, 2), jnp.int32), "b": jnp.ones(2)}, jnp.ones((4, 3))),
            TypeError,
            r'dense: params\["w"\] must be a floating-point array, got dtype int32',
        ),
        (
            lambda: ops.dense({"weights": jnp.ones((3, 2))}, jnp.ones((4, 3))),
            ValueError,
            r'dense: params must be a dict with keys "w" and "b"',
        ),
        (
            lambda: ops.dense({"w": jnp.ones((3, 2)), "b": jnp.ones(2)}, jnp.ones(())),
            ValueError,
            r"dense: x must have rank >= 1, got shape \(\)",
        ),
        (
            lambda: ops.mse(jnp.ones((2, 3)), jnp.ones((3, 2))),
            ValueError,
            r"mse: predictions and targets must have the same shape, got \(2, 3\) and \(3, 2\)",
        ),
        (
            lambda: ops.softmax_cross_entropy(jnp.ones((2, 3)), jnp.array([0, 3])),
            ValueError,
            r"softmax_cross_entropy: label 3 is out of range for 3 classes \(valid: 0..2\)",
        ),
        (
            lambda: ops.softmax_cross_entropy(jnp.ones((2, 3)), jnp.array([-1, 0])),
            ValueError,
            r"label -1 is out of range",
        ),
        (
            lambda: ops.softmax_cross_entropy(jnp.ones((2, 3)), jnp.array([0, 1, 2])),
            ValueError,
            r"integer labels must have shape logits.shape\[:-1\] = \(2,\), got \(3,\)",
        ),
        (
            lambda: ops.softmax_cross_entropy(jnp.ones((2, 3)), jnp.array([True, False])),
            TypeError,
            r"labels must be integer class indices or float targets, got dtype bool",
        ),
        (
            lambda: ops.binary_cross_entropy_with_logits(jnp.ones(2), jnp.array([0.0, 2.0])),
            ValueError,
            r"labels must lie in \[0, 1\], got values in \[0.0, 2.0\]",
        ),
        (lambda: ops.add(jnp.ones(2), jnp.ones(3)), ValueError, r"add: a and b must have the same shape"),
        (
            lambda: ops.reshape(jnp.ones(6), (4, 2)),
            ValueError,
            r"reshape: cannot reshape an array of shape \(6,\) \(size 6\) to \(4, 2\)",
        ),
    ],
)
def test_bad_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()
