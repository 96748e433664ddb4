"""Dropout: keep rate, mean preservation, determinism in the key, the exact gradient
mask / (1 - rate) * dy, identities, jit / vmap / checkpoint, residuals and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.ad_checkpoint import print_saved_residuals

from jaxbp import ops
from jaxbp.gradcheck import check_gradients

KEY = jax.random.key(42)


def _positive(shape, seed=0, dtype=jnp.float32):
    """Values in [0.5, 1.5): never 0, so y != 0 recovers the keep mask."""
    return jax.random.uniform(jax.random.key(seed), shape, dtype, 0.5, 1.5)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_empirical_keep_rate_and_mean_preservation(rate):
    n = 200_000
    x = _positive((n,))
    y = ops.dropout(x, KEY, rate, train=True)
    kept = np.asarray(y != 0)
    sigma = np.sqrt(rate * (1 - rate) / n)  # std of the empirical keep fraction
    assert abs(kept.mean() - (1 - rate)) < 5 * sigma
    # E[y] = x: the mean over many elements matches within a few standard errors
    y_np, x_np = np.asarray(y, np.float64), np.asarray(x, np.float64)
    standard_error = np.std(y_np - x_np) / np.sqrt(n)
    assert abs(y_np.mean() - x_np.mean()) < 5 * standard_error
    # kept values are scaled by exactly 1 / (1 - rate) (rounded once to float32)
    np.testing.assert_array_equal(np.asarray(y)[kept], np.asarray(x)[kept] * np.float32(1 / (1 - rate)))


def test_same_key_same_mask_different_key_different_mask():
    x = _positive((64, 32))
    first = ops.dropout(x, KEY, 0.5, train=True)
    np.testing.assert_array_equal(first, ops.dropout(x, KEY, 0.5, train=True))
    np.testing.assert_array_equal(first != 0, ops.dropout(2 * x, KEY, 0.5, train=True) != 0)  # mask ignores x
    assert np.any((first != 0) != (ops.dropout(x, jax.random.fold_in(KEY, 1), 0.5, train=True) != 0))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("rate", [0.2, 0.75])
def test_gradient_is_exactly_mask_over_keep_probability_times_dy(rate, dtype):
    x = _positive((50, 40), dtype=dtype)
    dy = jax.random.normal(jax.random.key(1), x.shape, dtype)
    y, vjp = jax.vjp(lambda x: ops.dropout(x, KEY, rate, train=True), x)
    (dx,) = vjp(dy)
    mask = np.asarray(y != 0)
    scale = np.float32(1.0 / (1.0 - rate))  # computed once, applied in float32
    expected = np.where(mask, np.asarray(dy, np.float32) * scale, 0.0).astype(dtype)
    assert y.dtype == dx.dtype == dtype
    np.testing.assert_array_equal(np.asarray(dx), expected)


def test_key_gets_no_cotangent():
    x = _positive((8,))
    _, vjp = jax.vjp(lambda x, key: ops.dropout(x, key, 0.5, train=True), x, KEY)
    dx, dkey = vjp(jnp.ones(8))
    assert dkey.dtype == jax.dtypes.float0
    assert dx.shape == (8,)


def test_rate_zero_and_eval_mode_are_exact_identities():
    x = _positive((16, 4))
    dy = jax.random.normal(jax.random.key(3), x.shape)
    for call in (
        lambda x: ops.dropout(x, KEY, 0.0, train=True),
        lambda x: ops.dropout(x, KEY, 0.7, train=False),
        lambda x: ops.dropout(x, None, 0.7, train=False),
    ):
        assert call(x) is x
        y, vjp = jax.vjp(call, x)
        np.testing.assert_array_equal(y, x)
        np.testing.assert_array_equal(vjp(dy)[0], dy)


def test_gradcheck_float64_against_reference_and_finite_differences(x64):
    x = jax.random.normal(jax.random.key(5), (6, 5), jnp.float64)
    report = check_gradients(lambda x: ops.dropout(x, KEY, 0.4, train=True), x)
    report.assert_ok(reference_tol=1e-15, numerical_tol=1e-8)


def test_jit_matches_eager_exactly():
    x = _positive((32, 8))
    f = lambda x, key: ops.dropout(x, key, 0.3, train=True)  # noqa: E731
    np.testing.assert_array_equal(jax.jit(f)(x, KEY), f(x, KEY))
    grad = jax.grad(lambda x, key: jnp.sum(jnp.sin(f(x, key))))
    np.testing.assert_array_equal(jax.jit(grad)(x, KEY), grad(x, KEY))
    remat_grad = jax.jit(jax.grad(jax.checkpoint(lambda x, key: jnp.sum(jnp.sin(f(x, key))))))
    np.testing.assert_allclose(remat_grad(x, KEY), grad(x, KEY), rtol=1e-6)


def test_vmap_with_a_key_per_example():
    x = _positive((3, 500))
    keys = jax.random.split(KEY, 3)
    f = lambda x, key: ops.dropout(x, key, 0.5, train=True)  # noqa: E731
    batched = jax.jit(jax.vmap(f))(x, keys)
    for i in range(3):
        np.testing.assert_array_equal(batched[i], f(x[i], keys[i]))
    masks = np.asarray(batched != 0)
    assert all(np.any(masks[i] != masks[j]) for i in range(3) for j in range(i))
    dy = jax.random.normal(jax.random.key(2), x.shape)
    dx = jax.vmap(lambda x, key, dy: jax.vjp(lambda x: f(x, key), x)[1](dy)[0])(x, keys, dy)
    np.testing.assert_array_equal(dx, np.where(masks, np.asarray(dy) * np.float32(2.0), 0.0))


def test_legacy_uint32_key_is_accepted():
    x = _positive((10,))
    legacy = jax.random.PRNGKey(7)
    np.testing.assert_array_equal(
        ops.dropout(x, legacy, 0.5, train=True), ops.dropout(x, jax.random.wrap_key_data(legacy), 0.5, train=True)
    )


def test_backward_saves_only_the_key(capsys):
    """Regenerating the mask keeps 8 bytes (the key) instead of a 1-byte-per-element mask."""
    x = _positive((256, 128))
    print_saved_residuals(lambda x, key: ops.dropout(x, key, 0.5, train=True), x, KEY)
    saved = capsys.readouterr().out.strip().splitlines()
    assert len(saved) == 1 and saved[0].startswith("key<fry>[]"), saved


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: ops.dropout(jnp.ones(3), KEY, 1.0, train=True),
            ValueError,
            r"dropout: rate must be in \[0.0, 1.0\), got 1.0",
        ),
        (
            lambda: ops.dropout(jnp.ones(3), KEY, -0.1, train=True),
            ValueError,
            r"dropout: rate must be in \[0.0, 1.0\), got -0.1",
        ),
        (
            lambda: ops.dropout(jnp.ones(3), KEY, 1.5, train=False),
            ValueError,
            r"dropout: rate must be in \[0.0, 1.0\), got 1.5",
        ),
        (lambda: ops.dropout(jnp.ones(3), KEY, float("nan"), train=True), ValueError, r"dropout: rate must be finite"),
        (
            lambda: jax.jit(lambda r: ops.dropout(jnp.ones(3), KEY, r, train=True))(0.5),
            TypeError,
            r"dropout: rate must be a static Python number",
        ),
        (
            lambda: ops.dropout(jnp.ones(3), None, 0.5, train=True),
            ValueError,
            r"dropout: train=True with rate 0.5 needs a PRNG key",
        ),
        (
            lambda: ops.dropout(jnp.ones(3), jnp.ones(2), 0.5, train=True),
            TypeError,
            r"dropout: key must be a PRNG key .* got dtype float32, shape \(2,\)",
        ),
        (lambda: ops.dropout(jnp.ones(3), KEY, 0.5, train=1), TypeError, r"dropout: train must be a Python bool"),
        (
            lambda: ops.dropout(jnp.arange(3), KEY, 0.5, train=True),
            TypeError,
            r"dropout: x must be a floating-point array, got dtype int32",
        ),
    ],
)
def test_bad_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()
