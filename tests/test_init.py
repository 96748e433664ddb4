"""Initializers: empirical moments match the stated variances."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbp import init

FAN_IN, FAN_OUT = 400, 300


def _sample(initializer, shape=(FAN_IN, FAN_OUT)):
    return np.asarray(initializer(jax.random.key(0), shape, jnp.float32))


@pytest.mark.parametrize(
    "factory, variance",
    [
        (init.glorot_uniform, 2 / (FAN_IN + FAN_OUT)),
        (init.glorot_normal, 2 / (FAN_IN + FAN_OUT)),
        (init.he_normal, 2 / FAN_IN),
        (init.he_uniform, 2 / FAN_IN),
        (init.lecun_normal, 1 / FAN_IN),
        (init.lecun_uniform, 1 / FAN_IN),
        (lambda: init.normal(0.05), 0.05**2),
    ],
)
def test_variance_matches_the_scheme(factory, variance):
    w = _sample(factory())
    assert abs(w.mean()) < 5 * np.sqrt(variance / w.size)
    assert w.var() == pytest.approx(variance, rel=0.03)  # 120k samples: std error of var ~0.4%


def test_uniform_schemes_have_the_stated_bound():
    w = _sample(init.glorot_uniform())
    assert np.abs(w).max() <= np.sqrt(6 / (FAN_IN + FAN_OUT))


def test_conv_kernel_fans_include_the_receptive_field():
    w = _sample(init.he_normal(), (3, 3, 16, 32))
    assert w.var() == pytest.approx(2 / (3 * 3 * 16), rel=0.05)


def test_orthogonal_has_equal_singular_values():
    w = _sample(init.orthogonal(1.5), (64, 64))
    np.testing.assert_allclose(np.linalg.svd(w, compute_uv=False), 1.5, rtol=1e-4)
    rect = _sample(init.orthogonal(), (64, 32))
    np.testing.assert_allclose(rect.T @ rect, np.eye(32), atol=1e-5)


def test_mean_field_weights_and_biases():
    scheme = init.mean_field(sigma_w2=1.76, sigma_b2=0.05)
    w = _sample(scheme.weights)
    b = np.asarray(scheme.bias(jax.random.key(1), (100_000,), jnp.float32))
    assert w.var() == pytest.approx(1.76 / FAN_IN, rel=0.03)
    assert b.var() == pytest.approx(0.05, rel=0.03)


def test_dense_init_accepts_names_initializers_and_options():
    assert init.dense_init("he_normal").bias(jax.random.key(0), (3,)).sum() == 0
    w = _sample(init.dense_init("normal", stddev=0.2).weights)
    assert w.std() == pytest.approx(0.2, rel=0.03)
    custom = init.dense_init(init.orthogonal(2.0))
    np.testing.assert_allclose(np.linalg.svd(_sample(custom.weights, (8, 8)), compute_uv=False), 2.0, rtol=1e-4)
    assert "he_normal" in init.weight_schemes() and "orthogonal" in init.weight_schemes()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: init.variance_scaling(-1.0), "variance_scaling: scale must be >= 0"),
        (lambda: init.variance_scaling(1.0, mode="fan_max"), "variance_scaling: mode must be"),
        (lambda: init.variance_scaling(1.0, distribution="cauchy"), "variance_scaling: distribution must be"),
        (lambda: init.normal(-0.1), "normal: stddev must be >= 0"),
        (lambda: init.mean_field(-1.0), "mean_field: variances must be >= 0"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
