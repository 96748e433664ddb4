"""batch_norm and layer_norm: forward vs an independent NumPy computation, hand-written
VJPs vs jax.grad(reference) and finite differences (float64, hypothesis shapes), dtype,
jit/vmap/checkpoint, residuals and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jax.ad_checkpoint import print_saved_residuals

from jaxbp import ops, reference
from jaxbp.gradcheck import check_gradients, numerical_gradient, relative_error

REFERENCE_TOL = 1e-9
NUMERICAL_TOL = 1e-6
EPS = 1e-5

# (leading axes, features): batch >= 2 so a batch variance exists; features may be 1.
leading = st.tuples(st.integers(2, 5)) | st.tuples(st.integers(1, 3), st.integers(2, 3))
shapes = st.builds(lambda lead, c: (*lead, c), leading, st.integers(1, 4))
seeds = st.integers(0, 2**16)


def _params_and_x(seed: int, shape: tuple[int, ...], dtype=jnp.float64):
    k_gamma, k_beta, k_x = jax.random.split(jax.random.key(seed), 3)
    c = shape[-1]
    params = {
        "gamma": 1.0 + 0.5 * jax.random.normal(k_gamma, (c,), dtype),
        "beta": jax.random.normal(k_beta, (c,), dtype),
    }
    return params, 2.0 * jax.random.normal(k_x, shape, dtype) + 0.5


def _running(seed: int, c: int) -> ops.BatchStatistics:
    k_mean, k_var = jax.random.split(jax.random.key(seed + 1))
    return ops.BatchStatistics(
        jax.random.normal(k_mean, (c,), jnp.float64), jnp.exp(jax.random.normal(k_var, (c,), jnp.float64))
    )


def batch_norm_train(params, x):
    y, statistics = ops.batch_norm(params, x, eps=EPS)
    return y, statistics.mean, statistics.var


def batch_norm_train_output_only(params, x):
    return ops.batch_norm(params, x, eps=EPS)[0]


def batch_norm_eval(params, x, mean, var):
    return ops.batch_norm(params, x, train=False, running=ops.BatchStatistics(mean, var), eps=EPS)[0]


def layer_norm(params, x):
    return ops.layer_norm(params, x, eps=EPS)


# ----------------------------------------------------------- forward, independently


def _numpy_norm(params, x, mean, var):
    return np.asarray(params["gamma"]) * (np.asarray(x) - mean) / np.sqrt(var + EPS) + np.asarray(params["beta"])


def test_batch_norm_forward_matches_numpy(x64):
    params, x = _params_and_x(0, (4, 3, 5))
    y, statistics = ops.batch_norm(params, x, eps=EPS)
    rows = np.asarray(x).reshape(-1, 5)
    np.testing.assert_allclose(statistics.mean, rows.mean(0), rtol=1e-13)
    np.testing.assert_allclose(statistics.var, rows.var(0), rtol=1e-13)  # biased (ddof=0)
    np.testing.assert_allclose(y, _numpy_norm(params, x, rows.mean(0), rows.var(0)), rtol=1e-12, atol=1e-13)


def test_batch_norm_eval_uses_the_given_statistics(x64):
    params, x = _params_and_x(1, (6, 3))
    running = _running(1, 3)
    y, returned = ops.batch_norm(params, x, train=False, running=running, eps=EPS)
    assert isinstance(returned, ops.BatchStatistics)
    np.testing.assert_array_equal(returned.mean, running.mean)
    np.testing.assert_array_equal(returned.var, running.var)
    np.testing.assert_allclose(y, _numpy_norm(params, x, np.asarray(running.mean), np.asarray(running.var)), rtol=1e-12)


def test_layer_norm_forward_matches_numpy(x64):
    params, x = _params_and_x(2, (3, 2, 6))
    x_np = np.asarray(x)
    expected = _numpy_norm(params, x, x_np.mean(-1, keepdims=True), x_np.var(-1, keepdims=True))
    np.testing.assert_allclose(layer_norm(params, x), expected, rtol=1e-12, atol=1e-13)


# ------------------------------------------------------------------ gradient checks


def _gradcheck_eps(group_size: int, eps: float) -> float:
    """With exactly two values per normalized group x_hat = +-sqrt(var / (var + eps)): y
    depends on x only through eps, so dx = O(eps) and central differences (absolute error
    ~1e-10) cannot resolve it to 1e-6 relative at eps = 1e-5. Such groups use eps = 0.1."""
    return 0.1 if group_size == 2 else eps


@settings(max_examples=4)
@given(shape=shapes, seed=seeds, eps=st.sampled_from([EPS, 0.1]))
@example(shape=(2, 1), seed=0, eps=EPS)  # batch 2, one feature
def test_batch_norm_training_vjp(x64, shape, seed, eps):
    """Random cotangents on y and on the returned batch mean/var (y alone: the tests below)."""
    params, x = _params_and_x(seed, shape)
    eps = _gradcheck_eps(int(np.prod(shape[:-1])), eps)

    def with_statistics(params, x):
        y, statistics = ops.batch_norm(params, x, eps=eps)
        return y, statistics.mean, statistics.var

    report = check_gradients(with_statistics, params, x, seed=seed).assert_ok(REFERENCE_TOL, NUMERICAL_TOL)
    assert all(r.manual_norm > 0 for r in report.rows)


@settings(max_examples=3)
@given(shape=shapes, seed=seeds)
@example(shape=(2, 1), seed=0)
def test_batch_norm_eval_vjp_including_running_statistics(x64, shape, seed):
    params, x = _params_and_x(seed, shape)
    running = _running(seed, shape[-1])
    report = check_gradients(batch_norm_eval, params, x, running.mean, running.var, seed=seed)
    report.assert_ok(REFERENCE_TOL, NUMERICAL_TOL)
    assert {r.argument for r in report.rows} == {0, 1, 2, 3}


@settings(max_examples=3)
@given(
    shape=st.builds(lambda lead, c: (*lead, c), st.lists(st.integers(1, 3), max_size=2), st.integers(2, 5)),
    seed=seeds,
    eps=st.sampled_from([EPS, 0.1]),
)
@example(shape=(2,), seed=0, eps=EPS)  # two features
def test_layer_norm_vjp(x64, shape, seed, eps):
    params, x = _params_and_x(seed, shape)
    eps = _gradcheck_eps(shape[-1], eps)
    report = check_gradients(lambda p, x: ops.layer_norm(p, x, eps=eps), params, x, seed=seed)
    report.assert_ok(REFERENCE_TOL, NUMERICAL_TOL)


def test_layer_norm_one_feature_is_beta_with_exactly_zero_gradients(x64):
    """C = 1: x - mean = 0, so y = beta; dgamma and dx are exactly 0 (a relative error
    against finite differences' rounding noise would be meaningless here)."""
    params, x = _params_and_x(1, (3, 1))
    dy = jnp.array([[0.5], [-1.0], [2.0]])
    y, vjp = jax.vjp(layer_norm, params, x)
    dparams, dx = vjp(dy)
    np.testing.assert_array_equal(y, jnp.broadcast_to(params["beta"], (3, 1)))
    np.testing.assert_array_equal(dx, 0.0)
    np.testing.assert_array_equal(dparams["gamma"], 0.0)
    np.testing.assert_allclose(dparams["beta"], [1.5], rtol=1e-15)
    finite = numerical_gradient(lambda p, x: jnp.vdot(dy, reference.layer_norm(p, x, EPS)), params, x, argnums=(0, 1))
    np.testing.assert_allclose(finite[1], 0.0, atol=1e-9)
    np.testing.assert_allclose(finite[0]["gamma"], 0.0, atol=1e-9)


def _nontrivial_loss(norm):
    """A loss whose cotangent dL/dy = cos(y) * weights is far from constant."""

    def loss(params, x):
        y = norm(params, x)
        weights = jnp.arange(1.0, 1.0 + y.size).reshape(y.shape) / y.size
        return jnp.sum(jnp.sin(y) * weights)

    return loss


@pytest.mark.parametrize(
    "op, ref",
    [
        (batch_norm_train_output_only, lambda p, x: reference.batch_norm(p, x, EPS)[0]),
        (layer_norm, lambda p, x: reference.layer_norm(p, x, EPS)),
    ],
)
def test_gradient_with_nontrivial_upstream_cotangent(x64, op, ref):
    params, x = _params_and_x(3, (5, 4))
    manual = jax.grad(_nontrivial_loss(op), argnums=(0, 1))(params, x)
    autodiff = jax.grad(_nontrivial_loss(ref), argnums=(0, 1))(params, x)
    finite = numerical_gradient(_nontrivial_loss(ref), params, x, argnums=(0, 1))
    assert relative_error(manual, autodiff) < REFERENCE_TOL
    assert relative_error(manual, finite) < NUMERICAL_TOL
    assert float(jnp.linalg.norm(manual[1])) > 1e-2  # dx is not trivially zero


@pytest.mark.parametrize("op", [batch_norm_train_output_only, layer_norm])
def test_constant_cotangent_gives_zero_dx(x64, op):
    """x_hat sums to 0 over the normalized axis, so with gamma constant along it sum(y) does
    not depend on x: a constant upstream cotangent (jax.grad of sum) cannot detect a wrong dx."""
    params, x = _params_and_x(4, (5, 4))
    params = {**params, "gamma": jnp.full(4, 1.7) if op is layer_norm else params["gamma"]}
    dx = jax.grad(lambda x: jnp.sum(op(params, x)))(x)
    np.testing.assert_allclose(dx, 0.0, atol=1e-12)


def test_batch_norm_tiny_variance_batch_two_feature_one(x64):
    """Two nearly equal values: var = 2.5e-9 << eps, so eps keeps the gradient finite."""
    params = {"gamma": jnp.array([1.5]), "beta": jnp.array([0.2])}
    x = jnp.array([[1.0], [1.0 + 1e-4]])
    report = check_gradients(batch_norm_train, params, x).assert_ok(REFERENCE_TOL, NUMERICAL_TOL)
    assert all(np.isfinite(r.manual_norm) for r in report.rows)


def test_batch_norm_closed_form_matches_seed_formula(x64):
    """Seed 000 section 9 (with sigma = sqrt(var + eps), x_hat in place of X):
    dx = (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)) / sigma, dx_hat = dy * gamma."""
    params, x = _params_and_x(5, (7, 3))
    dy = jax.random.normal(jax.random.key(9), x.shape, jnp.float64)
    _, vjp = jax.vjp(batch_norm_train_output_only, params, x)
    dparams, dx = vjp(dy)
    x_np, dy_np, gamma = np.asarray(x), np.asarray(dy), np.asarray(params["gamma"])
    sigma = np.sqrt(x_np.var(0) + EPS)
    x_hat = (x_np - x_np.mean(0)) / sigma
    dx_hat = dy_np * gamma
    expected_dx = (dx_hat - dx_hat.mean(0) - x_hat * (dx_hat * x_hat).mean(0)) / sigma
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dparams["gamma"], (dy_np * x_hat).sum(0), rtol=1e-12)
    np.testing.assert_allclose(dparams["beta"], dy_np.sum(0), rtol=1e-12)


# ------------------------------------------------------------------ dtype / transforms


@pytest.mark.parametrize("name", ["batch_norm", "layer_norm"])
def test_bfloat16_in_bfloat16_out_with_float32_statistics(name):
    params32, x32 = _params_and_x(6, (8, 4), jnp.float32)
    cast = lambda tree: jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), tree)  # noqa: E731
    params16, x16 = cast(params32), cast(x32)
    op = batch_norm_train_output_only if name == "batch_norm" else layer_norm
    y16, vjp16 = jax.vjp(op, params16, x16)
    y32, vjp32 = jax.vjp(op, params32, x32)
    assert y16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y16, np.float32), y32, atol=5e-2, rtol=2e-2)
    dy = jnp.linspace(-1, 1, y32.size).reshape(y32.shape)
    grads16, grads32 = vjp16(dy.astype(jnp.bfloat16)), vjp32(dy)
    for got, want in zip(jax.tree_util.tree_leaves(grads16), jax.tree_util.tree_leaves(grads32)):
        assert got.dtype == jnp.bfloat16
        np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=1e-1, rtol=5e-2)
    if name == "batch_norm":
        statistics = ops.batch_norm(params16, x16)[1]
        assert statistics.mean.dtype == statistics.var.dtype == jnp.float32


@pytest.mark.parametrize(
    "op",
    [batch_norm_train_output_only, layer_norm, lambda p, x: batch_norm_eval(p, x, x[0] * 0.1, jnp.ones(x.shape[-1]))],
)
def test_gradient_same_under_jit_vmap_and_checkpoint(op):
    batch = [_params_and_x(seed, (4, 3), jnp.float32) for seed in range(2)]
    loss = _nontrivial_loss(op)
    grad = jax.grad(loss, argnums=(0, 1))
    eager = [grad(*args) for args in batch]
    variants = [
        [jax.jit(grad)(*args) for args in batch],
        [jax.jit(jax.grad(jax.checkpoint(loss), argnums=(0, 1)))(*args) for args in batch],
    ]
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *batch)
    vmapped = jax.jit(jax.vmap(grad))(*stacked)
    variants.append([jax.tree_util.tree_map(lambda v, i=i: v[i], vmapped) for i in range(2)])
    for variant in variants:
        for got, want in zip(variant, eager):
            np.testing.assert_allclose(
                jax.flatten_util.ravel_pytree(got)[0], jax.flatten_util.ravel_pytree(want)[0], rtol=1e-5, atol=1e-6
            )


def test_residuals_are_x_and_per_group_statistics(capsys):
    """The backward keeps x, gamma and O(groups) statistics; never x_hat or another (N, C) array."""
    params, x = _params_and_x(7, (64, 32), jnp.float32)
    for op in (batch_norm_train_output_only, layer_norm):
        print_saved_residuals(op, params, x)
    full_size = [line for line in capsys.readouterr().out.splitlines() if "[64,32]" in line]
    assert len(full_size) == 2 and all("from the argument x" in line for line in full_size)


# ------------------------------------------------------------------------ bad input

_P3 = {"gamma": jnp.ones(3), "beta": jnp.zeros(3)}


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: ops.batch_norm(_P3, jnp.ones(3)), ValueError, r"batch_norm: x must have rank >= 2, got shape \(3,\)"),
        (
            lambda: ops.batch_norm(_P3, jnp.ones((4, 5))),
            ValueError,
            r'batch_norm: params\["gamma"\] must have shape \(5,\) to match the features of x \(4, 5\), got \(3,\)',
        ),
        (
            lambda: ops.batch_norm(_P3, jnp.ones((1, 3))),
            ValueError,
            r"batch_norm: training mode needs at least 2 values per feature .* shape \(1, 3\)",
        ),
        (
            lambda: ops.batch_norm(_P3, jnp.ones((4, 3), jnp.int32)),
            TypeError,
            r"batch_norm: x must be a floating-point array, got dtype int32",
        ),
        (
            lambda: ops.batch_norm({"gamma": jnp.ones(3)}, jnp.ones((4, 3))),
            ValueError,
            r'batch_norm: params must be a dict with keys "gamma" and "beta", got \[\'gamma\'\]',
        ),
        (
            lambda: ops.batch_norm({"gamma": jnp.ones(3), "beta": jnp.zeros(3, jnp.bfloat16)}, jnp.ones((4, 3))),
            TypeError,
            r"batch_norm: .* must share a dtype",
        ),
        (
            lambda: ops.batch_norm(_P3, jnp.ones((4, 3)), train=False),
            ValueError,
            r"batch_norm: train=False normalizes with running statistics; pass running=",
        ),
        (
            lambda: ops.batch_norm(
                _P3, jnp.ones((4, 3)), train=False, running=ops.BatchStatistics(jnp.zeros(2), jnp.ones(3))
            ),
            ValueError,
            r"batch_norm: running.mean must have shape \(3,\) .* got \(2,\)",
        ),
        (
            lambda: ops.batch_norm(_P3, jnp.ones((4, 3)), train="yes"),
            TypeError,
            r"batch_norm: train must be a Python bool",
        ),
        (
            lambda: ops.batch_norm(_P3, jnp.ones((4, 3)), eps=-1e-3),
            ValueError,
            r"batch_norm: eps must be in \[0.0, inf\], got -0.001",
        ),
        (
            lambda: ops.layer_norm(_P3, jnp.ones((4, 2))),
            ValueError,
            r'layer_norm: params\["gamma"\] must have shape \(2,\) to match the features of x \(4, 2\), got \(3,\)',
        ),
        (lambda: ops.layer_norm(_P3, jnp.ones(())), ValueError, r"layer_norm: x must have rank >= 1, got shape \(\)"),
        (
            lambda: ops.layer_norm({"gamma": jnp.ones(3, jnp.int32), "beta": jnp.zeros(3)}, jnp.ones(3)),
            TypeError,
            r'layer_norm: params\["gamma"\] must be a floating-point array, got dtype int32',
        ),
        (
            lambda: jax.jit(lambda x, e: ops.layer_norm(_P3, x, eps=e))(jnp.ones(3), 1e-5),
            TypeError,
            r"layer_norm: eps must be a static Python number",
        ),
    ],
)
def test_bad_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()
