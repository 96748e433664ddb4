"""max_pool2d, avg_pool2d, global_avg_pool: forward vs NumPy loops, hand-written VJPs vs
jax.grad(reference) and finite differences (float64, hypothesis geometries), the max-pool tie
rule, overlapping windows, non-divisible sizes, residuals, bad input."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxbp import ops, reference
from jaxbp.diagnostics import residual_bytes
from jaxbp.gradcheck import check_gradients


@st.composite
def pool_cases(draw):
    """Window 1-3, stride 1-3 (overlapping when < window), padding forms with each side < window,
    sizes from 'just fits' upward (non-divisible sizes occur)."""
    window = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    form = draw(st.sampled_from(["VALID", "SAME", "pairs"]))
    if form == "pairs":
        padding = tuple((draw(st.integers(0, k - 1)), draw(st.integers(0, k - 1))) for k in window)
    else:
        padding = form
    spatial = tuple(k + draw(st.integers(0, 4)) for k in window)
    shape = (draw(st.integers(1, 2)), *spatial, draw(st.integers(1, 2)))
    return window, stride, padding, shape


def _distinct(seed, shape):
    """Distinct values (a shuffled range, spaced by 1) so no window has a tie and finite
    differences (step 1e-6) never change a window's winner."""
    values = jax.random.permutation(jax.random.key(seed), np.prod(shape)).astype(jnp.float64)
    return values.reshape(shape) - np.prod(shape) / 2


@settings(max_examples=5)
@given(case=pool_cases(), seed=st.integers(0, 2**16))
def test_max_pool_vjp_matches_reference_and_finite_differences(x64, case, seed):
    window, stride, padding, shape = case
    report = check_gradients(lambda x: ops.max_pool2d(x, window, stride, padding), _distinct(seed, shape))
    report.assert_ok()


@settings(max_examples=5)
@given(case=pool_cases(), include=st.booleans(), seed=st.integers(0, 2**16))
def test_avg_pool_vjp_matches_reference_and_finite_differences(x64, case, include, seed):
    window, stride, padding, shape = case
    x = jax.random.normal(jax.random.key(seed), shape, jnp.float64)
    report = check_gradients(lambda x: ops.avg_pool2d(x, window, stride, padding, count_include_pad=include), x)
    report.assert_ok()


@pytest.mark.parametrize("shape", [(2, 3, 5, 2), (2, 7, 3), (1, 2, 3, 2, 2)])
def test_global_avg_pool_vjp(x64, shape):
    x = jax.random.normal(jax.random.key(0), shape, jnp.float64)
    check_gradients(ops.global_avg_pool, x).assert_ok()
    np.testing.assert_allclose(ops.global_avg_pool(x), x.reshape(shape[0], -1, shape[-1]).mean(1), rtol=1e-13)


# ---------------------------------------------------------- forward, independently


def _numpy_pool(x, window, stride, pads, reduce, fill):
    x_pad = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=fill)
    out = [(x_pad.shape[a + 1] - window[a]) // stride[a] + 1 for a in range(2)]
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    for i, j in itertools.product(*map(range, out)):
        patch = x_pad[:, i * stride[0] : i * stride[0] + window[0], j * stride[1] : j * stride[1] + window[1]]
        y[:, i, j] = reduce(patch)
    return y


def test_pools_forward_match_numpy_loops(x64):
    x = np.asarray(jax.random.normal(jax.random.key(1), (2, 7, 6, 3), jnp.float64))
    window, stride, pads = (3, 2), (2, 3), ((1, 2), (1, 0))
    real = np.pad(np.ones_like(x), [(0, 0), *pads, (0, 0)])
    expected_max = _numpy_pool(x, window, stride, pads, lambda p: p.max((1, 2)), -np.inf)
    expected_avg = _numpy_pool(x, window, stride, pads, lambda p: p.mean((1, 2)), 0.0)
    counts = _numpy_pool(real[:, 1:-2, 1:, :], window, stride, pads, lambda p: p.sum((1, 2)), 0.0)
    np.testing.assert_allclose(ops.max_pool2d(x, window, stride, pads), expected_max, rtol=1e-13)
    np.testing.assert_allclose(ops.avg_pool2d(x, window, stride, pads), expected_avg, rtol=1e-13)
    exclusive = ops.avg_pool2d(x, window, stride, pads, count_include_pad=False)
    np.testing.assert_allclose(exclusive, expected_avg * 6 / counts, rtol=1e-13)


# ------------------------------------------------------------- ties and overlapping


def test_max_pool_tie_sends_the_gradient_to_the_first_maximum_in_row_major_order(x64):
    x = jnp.zeros((1, 4, 4, 1)).at[0, 1, 1, 0].set(1.0).at[0, 1, 0, 0].set(1.0).at[0, 3, 3, 0].set(-1.0)
    dy = jnp.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    _, vjp = jax.vjp(lambda x: ops.max_pool2d(x, 2), x)
    dx = vjp(dy)[0][0, :, :, 0]
    expected = np.zeros((4, 4))
    expected[1, 0] = 1.0  # window (0,0): tie between (1,0) and (1,1); row-major first is (1,0)
    expected[0, 2] = 2.0  # window (0,1): all zeros, first element
    expected[2, 0] = 3.0  # window (1,0): all zeros
    expected[2, 2] = 4.0  # window (1,1): zeros beat -1, first zero
    np.testing.assert_array_equal(dx, expected)
    _, reference_vjp = jax.vjp(lambda x: reference.max_pool2d(x, 2), x)  # the same rule as jax.grad
    np.testing.assert_array_equal(dx, reference_vjp(dy)[0][0, :, :, 0])


def test_overlapping_windows_accumulate_at_a_shared_maximum(x64):
    x = jnp.zeros((1, 5, 5, 1)).at[0, 2, 2, 0].set(9.0)
    y, vjp = jax.vjp(lambda x: ops.max_pool2d(x, 3, 1), x)  # 3x3 windows, stride 1: all 9 contain (2,2)
    dy = jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    dx = vjp(dy)[0]
    assert float(dx[0, 2, 2, 0]) == 45.0 and float(jnp.sum(jnp.abs(dx))) == 45.0
    np.testing.assert_array_equal(y, 9.0)


def test_max_pool_ties_across_overlapping_windows_match_jax_grad(x64):
    x = jnp.round(jax.random.normal(jax.random.key(3), (2, 7, 6, 2), jnp.float64))  # many ties
    for window, stride, padding in [(3, 1, "SAME"), ((2, 3), (1, 2), "VALID"), (3, 2, ((2, 1), (0, 2)))]:
        pool = functools.partial(ops.max_pool2d, window=window, stride=stride, padding=padding)
        report = check_gradients(pool, x, numerical=False)
        report.assert_ok()


def test_non_divisible_size_leaves_unused_rows_with_zero_gradient(x64):
    x = jax.random.normal(jax.random.key(4), (1, 7, 7, 1), jnp.float64)
    for pool in (lambda x: ops.max_pool2d(x, 2), lambda x: ops.avg_pool2d(x, 2)):
        g = jax.grad(lambda x, pool=pool: jnp.sum(pool(x)))(x)
        assert g.shape == x.shape
        np.testing.assert_array_equal(g[0, 6, :, 0], 0.0)
        np.testing.assert_array_equal(g[0, :, 6, 0], 0.0)


# ------------------------------------------------------------------ residuals, dtype


def test_max_pool_saves_one_uint8_offset_per_output_and_avg_pool_nothing():
    x = jnp.ones((8, 16, 16, 4), jnp.float32)
    saved = residual_bytes(lambda x: ops.max_pool2d(x, 2), x)
    assert saved["total"] == 8 * 8 * 8 * 4  # one byte per output: 1/16 of the input's 32 KiB
    assert residual_bytes(lambda x: ops.avg_pool2d(x, 3, 2, "SAME"), x)["total"] == 0
    assert residual_bytes(ops.global_avg_pool, x)["total"] == 0


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_pools_preserve_dtype(dtype):
    x = jnp.ones((1, 4, 4, 2), dtype)
    for pool in (lambda x: ops.max_pool2d(x, 2), lambda x: ops.avg_pool2d(x, 2), ops.global_avg_pool):
        y, vjp = jax.vjp(pool, x)
        assert y.dtype == dtype and vjp(jnp.ones_like(y))[0].dtype == dtype


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: ops.max_pool2d(jnp.ones((4, 4, 1)), 2), ValueError, r"max_pool2d: x must have rank 4.*\(4, 4, 1\)"),
        (lambda: ops.max_pool2d(jnp.ones((1, 4, 4, 1)), 0), ValueError, r"max_pool2d: window must be >= 1"),
        (lambda: ops.max_pool2d(jnp.ones((1, 4, 4, 1)), 2, -1), ValueError, r"max_pool2d: stride must be >= 1"),
        (lambda: ops.max_pool2d(jnp.ones((1, 4, 4, 1)), 5), ValueError, r"max_pool2d: window \(5, 5\).*\(1, 4, 4, 1\)"),
        (lambda: ops.max_pool2d(jnp.ones((1, 4, 4, 1)), 2, 2, 2), ValueError, r"max_pool2d: padding .* smaller than"),
        (lambda: ops.avg_pool2d(jnp.ones((1, 4, 4, 1)), 2, padding="FULL"), ValueError, r"avg_pool2d: padding must be"),
        (
            lambda: ops.avg_pool2d(jnp.ones((1, 4, 4, 1)), 2, count_include_pad=1),
            TypeError,
            r"avg_pool2d: count_include_pad must be a bool",
        ),
        (lambda: ops.avg_pool2d(jnp.ones((1, 4, 4, 1), jnp.int32), 2), TypeError, r"avg_pool2d: x must be a floating"),
        (lambda: ops.global_avg_pool(jnp.ones((3, 4))), ValueError, r"global_avg_pool: x must have rank >= 3"),
    ],
)
def test_bad_input_names_the_op_and_the_value(call, error, match):
    with pytest.raises(error, match=match):
        call()
