"""State and randomness in nn: batch-norm running statistics, dropout keys, train/eval,
all pure and jit-compatible; mlp's batch_norm / dropout_rate options; the example."""

from __future__ import annotations

import importlib.util
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbp import models, nn, ops
from jaxbp.gradcheck import assert_fully_manual, check_gradients

EXPERIMENT = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "digits_batchnorm_dropout.py"


def _normal(seed, shape, dtype=jnp.float32):
    return jax.random.normal(jax.random.key(seed), shape, dtype)


# ---------------------------------------------------------------- nn.batch_norm


def test_batch_norm_layer_init_and_initial_state():
    layer = nn.batch_norm()
    params, shape = layer.init(jax.random.key(0), (8, 3, 5))
    assert shape == (8, 3, 5)
    np.testing.assert_array_equal(params["gamma"], np.ones(5))
    np.testing.assert_array_equal(params["beta"], np.zeros(5))
    state = layer.init_state(params)
    assert isinstance(state, ops.BatchStatistics)
    np.testing.assert_array_equal(state.mean, np.zeros(5))
    np.testing.assert_array_equal(state.var, np.ones(5))
    assert state.mean.dtype == state.var.dtype == jnp.float32


def test_running_statistics_after_n_steps_equal_hand_computed_exponential_average():
    momentum, eps, steps = 0.8, 1e-3, 6
    layer = nn.batch_norm(momentum=momentum, eps=eps)
    params, _ = layer.init(jax.random.key(0), (16, 3))
    params = {"gamma": jnp.array([1.0, 2.0, 0.5]), "beta": jnp.array([0.0, -1.0, 3.0])}
    step = jax.jit(lambda state, x: layer.forward(params, x, state, train=True))
    state = layer.init_state(params)
    mean, var = np.zeros(3), np.ones(3)  # the hand-computed running averages
    for t in range(steps):
        x = _normal(t, (16, 3)) * jnp.array([1.0, 3.0, 0.2]) + jnp.array([5.0, -2.0, 0.0]) + t
        y, state = step(state, x)
        x_np = np.asarray(x, np.float64)
        np.testing.assert_allclose(
            y,
            params["gamma"] * (x_np - x_np.mean(0)) / np.sqrt(x_np.var(0) + eps) + params["beta"],
            rtol=1e-4,
            atol=1e-4,
        )
        mean = momentum * mean + (1 - momentum) * x_np.mean(0)
        var = momentum * var + (1 - momentum) * x_np.var(0)  # biased batch variance
    np.testing.assert_allclose(state.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(state.var, var, rtol=1e-5)

    # eval mode normalizes with exactly those statistics and leaves the state alone
    x = _normal(99, (4, 3))
    y, same = layer.forward(params, x, state)  # train defaults to False
    assert same is state
    expected = params["gamma"] * (np.asarray(x) - mean) / np.sqrt(var + eps) + params["beta"]
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_state_is_not_differentiated():
    layer = nn.batch_norm()
    params, _ = layer.init(jax.random.key(0), (6, 2))
    state = layer.init_state(params)
    x = _normal(0, (6, 2))
    # a loss of the new state alone has zero gradient w.r.t. params and x
    grads = jax.grad(lambda p, x: jnp.sum(layer.forward(p, x, state, train=True)[1].mean * 3.0), argnums=(0, 1))(
        params, x
    )
    for leaf in jax.tree_util.tree_leaves(grads):
        np.testing.assert_array_equal(leaf, 0.0)


# ----------------------------------------------------------- layer_norm / dropout


def test_layer_norm_layer_is_stateless_and_normalizes_rows():
    layer = nn.layer_norm(eps=1e-6)
    params, shape = layer.init(jax.random.key(0), (3, 7))
    assert shape == (3, 7) and layer.init_state(params) == ()
    y = layer.apply(params, _normal(1, (3, 7)) * 4 + 2, train=True)
    np.testing.assert_allclose(np.asarray(y).mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(y).std(-1), 1.0, rtol=1e-4)


def test_dropout_layer_train_eval_and_missing_key():
    layer = nn.dropout(0.5)
    params, _ = layer.init(jax.random.key(0), (4, 100))
    x = jnp.ones((4, 100))
    assert layer.apply(params, x) is x  # eval by default
    y = layer.apply(params, x, key=jax.random.key(1), train=True)
    assert set(np.unique(np.asarray(y))) == {0.0, 2.0}
    with pytest.raises(ValueError, match=r"dropout: train=True with rate 0.5 needs a PRNG key"):
        layer.apply(params, x, train=True)
    with pytest.raises(ValueError, match=r"dropout: rate must be in \[0.0, 1.0\), got 1.0"):
        nn.dropout(1.0)


# --------------------------------------------------------------------- networks


def _network() -> nn.Layer:
    """All three: dense -> batch norm -> relu -> dropout -> dense -> layer norm -> dense."""
    return nn.serial(
        nn.dense(6), nn.batch_norm(), nn.activation("tanh"), nn.dropout(0.3),
        nn.dense(5), nn.layer_norm(), nn.dense(3),
    )  # fmt: skip


def test_network_with_all_three_is_fully_manual():
    net = _network()
    params, _ = net.init(jax.random.key(0), (8, 4))
    state = net.init_state(params)
    labels = jnp.arange(8) % 3

    def loss_and_state(params, state, x, key):
        logits, new_state = net.forward(params, x, state, key=key, train=True)
        return ops.softmax_cross_entropy(logits, labels), new_state

    assert_fully_manual(loss_and_state, params, state, _normal(1, (8, 4)), jax.random.key(2))

    def eval_loss(params, state, x):
        return ops.softmax_cross_entropy(net.forward(params, x, state)[0], labels)

    assert_fully_manual(eval_loss, params, state, _normal(1, (8, 4)))


@pytest.mark.parametrize("train", [True, False])
def test_network_gradient_float64(x64, train):
    net = _network()
    params, _ = net.init(jax.random.key(0), (8, 4))
    state = net.init_state(params)
    if not train:  # non-trivial running statistics
        state = jax.tree_util.tree_map(lambda s: s + 0.3, state)
    x = _normal(1, (8, 4), jnp.float64)
    labels = jnp.arange(8) % 3

    def loss(params, x):
        logits, _ = net.forward(params, x, state, key=jax.random.key(3), train=train)
        return ops.softmax_cross_entropy(logits, labels)

    report = check_gradients(loss, params, x)
    problems = report.failures()
    if train:  # the first dense bias cancels in x - batch mean: its true gradient is exactly 0
        (bias,) = [r for r in report.rows if r.argument == 0 and r.path == "[0]['b']"]
        assert bias.manual_norm < 1e-12
        problems = [p for p in problems if "[0]['b']" not in p]
    assert not problems, str(report)


def test_jit_train_step_returns_new_state_and_a_fresh_key():
    net = _network()
    params, _ = net.init(jax.random.key(0), (8, 4))
    state = net.init_state(params)
    x, labels = _normal(1, (8, 4)), jnp.arange(8) % 3

    @jax.jit
    def step(params, state, key):
        key, dropout_key = jax.random.split(key)

        def loss_fn(params):
            logits, new_state = net.forward(params, x, state, key=dropout_key, train=True)
            return ops.softmax_cross_entropy(logits, labels), new_state

        (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads), new_state, key, loss

    key = jax.random.key(5)
    params1, state1, key1, loss1 = step(params, state, key)
    params1_again, state1_again, _, loss1_again = step(params, state, key)  # pure: same inputs, same outputs
    assert float(loss1) == float(loss1_again)
    np.testing.assert_array_equal(state1[1].mean, state1_again[1].mean)
    assert not np.array_equal(jax.random.key_data(key1), jax.random.key_data(key))
    assert not np.array_equal(state1[1].mean, state[1].mean)  # the running mean moved
    # the returned key gives a different dropout mask next step
    _, _, _, loss2 = step(params, state, key1)
    assert float(loss2) != float(loss1)
    # eval mode is deterministic and needs no key
    y_eval = jax.jit(lambda p, s: net.forward(p, x, s)[0])(params1, state1)
    np.testing.assert_allclose(y_eval, net.forward(params1, x, state1)[0], rtol=1e-5, atol=1e-6)


def test_apply_is_forward_with_the_new_state_dropped_for_any_layer():
    plain = nn.serial(nn.dense(3), nn.tanh())
    params, _ = plain.init(jax.random.key(0), (2, 4))
    assert plain.init_state(params) == ((), ())
    x = _normal(1, (2, 4))
    y, state = plain.forward(params, x, plain.init_state(params))
    np.testing.assert_array_equal(y, plain.apply(params, x))
    assert state == ((), ())


def test_checkpointed_stateful_layer_matches():
    net = nn.serial(nn.dense(4), nn.batch_norm(), nn.activation("relu"), nn.dropout(0.5))
    remat = nn.checkpoint(net)
    params, _ = net.init(jax.random.key(0), (6, 3))
    state = net.init_state(params)
    x, key = _normal(1, (6, 3)), jax.random.key(2)

    def loss(layer, params):
        y, new_state = layer.forward(params, x, state, key=key, train=True)
        return jnp.sum(jnp.sin(y)), new_state

    (value, new_state), grads = jax.jit(jax.value_and_grad(lambda p: loss(net, p), has_aux=True))(params)
    (value_r, new_state_r), grads_r = jax.jit(jax.value_and_grad(lambda p: loss(remat, p), has_aux=True))(params)
    np.testing.assert_allclose(value_r, value, rtol=1e-6)
    chex.assert_trees_all_close((new_state_r, grads_r), (new_state, grads), rtol=1e-5, atol=1e-6)


# -------------------------------------------------------------------------- mlp


def test_mlp_without_batch_norm_stays_stateless_and_dropout_is_identity_in_eval():
    plain, with_dropout = models.mlp([4, 8, 3]), models.mlp([4, 8, 3], dropout_rate=0.5)
    params, _ = plain.init(jax.random.key(0), (2, 4))
    dropout_params, _ = with_dropout.init(jax.random.key(0), (2, 4))
    x = _normal(0, (2, 4))
    np.testing.assert_array_equal(with_dropout.apply(dropout_params, x), plain.apply(params, x))
    y_train = with_dropout.apply(dropout_params, x, key=jax.random.key(1), train=True)
    assert not np.allclose(y_train, plain.apply(params, x))


def test_mlp_with_batch_norm_keeps_the_tap_on_the_dense_output():
    net = models.mlp([8, 8, 3], batch_norm=True, dropout_rate=0.25)
    params, shape = net.init(jax.random.key(0), (5, 4))
    assert shape == (5, 3)
    state = net.init_state(params)
    x = _normal(1, (5, 4))
    record: dict = {}
    y, new_state = net.forward(params, x, state, key=jax.random.key(2), train=True, record=record)
    assert y.shape == (5, 3) and sorted(record) == ["z1", "z2", "z3"]
    dense1 = params[0][0]  # hidden block 1 = (dense, tap, batch_norm, activation, dropout)
    np.testing.assert_allclose(record["z1"], ops.dense(dense1, x), rtol=1e-6)  # before the norm
    np.testing.assert_allclose(new_state[0][2].mean, 0.1 * np.asarray(record["z1"]).mean(0), rtol=1e-5, atol=1e-7)
    # taps still expose dL/dz through the batch-normalized network
    taps = {name: jnp.zeros_like(value) for name, value in record.items()}
    grads = jax.jit(jax.grad(
        lambda taps: jnp.sum(net.forward(params, x, state, key=jax.random.key(2), train=True, taps=taps)[0] ** 2)
    ))(taps)  # fmt: skip
    assert float(jnp.linalg.norm(grads["z1"])) > 0


def test_mlp_residual_blocks_with_batch_norm_and_dropout():
    net = models.mlp([4, 6, 6, 2], residual_blocks=True, batch_norm=True, dropout_rate=0.1)
    params, _ = net.init(jax.random.key(0), (3, 4))
    apply = jax.jit(lambda params, state, x, key: net.forward(params, x, state, key=key, train=True))
    y, state = apply(params, net.init_state(params), _normal(0, (3, 4)), jax.random.key(1))
    assert y.shape == (3, 2) and len(state) == len(params)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: models.mlp([4, 3], dropout_rate=1.0),
            ValueError,
            r"mlp: dropout_rate must be in \[0.0, 1.0\), got 1.0",
        ),
        (lambda: models.mlp([4, 3], batch_norm="yes"), TypeError, r"mlp: batch_norm must be a bool"),
        (lambda: nn.batch_norm(momentum=1.5), ValueError, r"batch_norm: momentum must be in \[0.0, 1.0\], got 1.5"),
        (lambda: nn.layer_norm(eps=-1.0), ValueError, r"layer_norm: eps must be in \[0.0, inf\], got -1.0"),
        (
            lambda: nn.batch_norm().init(jax.random.key(0), ()),
            ValueError,
            r"batch_norm: input_shape \(\) has no feature axis",
        ),
    ],
)
def test_bad_construction_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---------------------------------------------------------------------- example


def test_digits_example_on_a_tiny_config():
    spec = importlib.util.spec_from_file_location("digits_batchnorm_dropout", EXPERIMENT)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.train_and_evaluate(hidden=(32,), epochs=3, batch_size=64, dropout_rate=0.2, learning_rate=1e-2)
    assert result.steps == 3 * (1437 // 64)
    assert 0.8 < result.eval_mode_accuracy <= 1.0  # learns within 3 epochs
    assert 0.0 <= result.train_mode_accuracy <= 1.0
    assert result.initial_state_accuracy < result.eval_mode_accuracy  # the learned state matters
