"""nn: the layer contract, combinators, shapes, keys, errors, and gradchecked networks."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxbp import models, nn, ops
from jaxbp.gradcheck import assert_fully_manual, check_gradients


def test_serial_infers_shapes_without_data():
    network = nn.serial(nn.dense(7), nn.activation("relu"), nn.dense(3))
    params, shape = network.init(jax.random.key(0), (5, 4))
    assert shape == (5, 3)
    assert params[0]["w"].shape == (4, 7) and params[2]["b"].shape == (3,)
    assert network.apply(params, jnp.ones((5, 4))).shape == (5, 3)


def test_dense_layer_equals_the_math():
    layer = nn.dense(3)
    params, _ = layer.init(jax.random.key(0), (2, 4))
    x = jax.random.normal(jax.random.key(1), (2, 4))
    np.testing.assert_allclose(
        layer.apply(params, x), np.asarray(x) @ np.asarray(params["w"]) + np.asarray(params["b"]), rtol=1e-6
    )


def test_residual_adds_the_skip_path_and_its_gradient():
    block = nn.residual(nn.dense(4), nn.activation("tanh"))
    params, shape = block.init(jax.random.key(0), (3, 4))
    assert shape == (3, 4)
    x = jax.random.normal(jax.random.key(1), (3, 4))
    inner = params[0][0]
    expected = x + jnp.tanh(x @ inner["w"] + inner["b"])
    np.testing.assert_allclose(block.apply(params, x), expected, rtol=1e-6)
    # tutorial 000 §7: dL/dx = dL/dy + (df/dx)^T dL/dy
    dy = jax.random.normal(jax.random.key(2), (3, 4))
    _, vjp = jax.vjp(lambda x: block.apply(params, x), x)
    t = jnp.tanh(x @ inner["w"] + inner["b"])
    np.testing.assert_allclose(vjp(dy)[0], dy + (dy * (1 - t**2)) @ inner["w"].T, rtol=1e-5)


def test_residual_rejects_a_shape_changing_block():
    with pytest.raises(ValueError, match=r"residual: the block maps shape \(3, 4\) to \(3, 5\)"):
        nn.residual(nn.dense(5)).init(jax.random.key(0), (3, 4))


def test_children_get_distinct_keys():
    seen = []

    def spy_layer():
        def apply(params, x, *, key=None, **kwargs):
            seen.append(key)
            return x

        return nn.stateless(nn.same_shape, apply, nn.no_parameters)

    network = nn.serial(spy_layer(), spy_layer())
    network.apply(((), ()), jnp.ones(2), key=jax.random.key(0))
    assert not jnp.array_equal(jax.random.key_data(seen[0]), jax.random.key_data(seen[1]))
    network.apply(((), ()), jnp.ones(2))
    assert seen[-1] is None
    seen.clear()
    both = nn.bidirectional(spy_layer())
    both.apply(((), ()), jnp.ones((1, 2, 1)), key=jax.random.key(0))
    assert not jnp.array_equal(jax.random.key_data(seen[0]), jax.random.key_data(seen[1]))


def _counter() -> nn.Layer:
    """A parameter-free layer whose state counts its calls."""

    def forward(params, x, state, **kwargs):
        return x, state + 1

    return nn.Layer(nn.same_shape, forward, nn.no_parameters, init_state=lambda params: jnp.array(0))


def test_a_combinator_state_is_the_tuple_of_its_children_states():
    network = nn.serial(nn.dense(2), _counter(), nn.residual(_counter()))
    params, _ = network.init(jax.random.key(0), (1, 2))
    state = network.init_state(params)
    assert state[0] == () and int(state[1]) == 0 and int(state[2][0][0]) == 0
    y, state = jax.jit(lambda p, x, s: network.forward(p, x, s))(params, jnp.ones((1, 2)), state)
    assert int(state[1]) == 1 and int(state[2][0][0]) == 1 and state[0] == ()
    assert nn.serial(nn.dense(2), nn.relu()).init_state(params[:1] + ((),)) == ((), ())


def test_every_layer_has_one_calling_form_and_apply_returns_y_alone():
    """forward(params, x, state) -> (y, state) for every layer; apply(params, x) -> y for every layer."""
    x = jnp.ones((4, 3))
    for layer in (
        nn.dense(2),
        nn.relu(),
        nn.serial(nn.dense(2), nn.tanh()),
        nn.batch_norm(),
        nn.serial(nn.dense(2), nn.batch_norm()),
        nn.checkpoint(nn.dense(2)),
    ):
        params, _ = layer.init(jax.random.key(0), x.shape)
        state = layer.init_state(params)
        y, new_state = layer.forward(params, x, state, train=True)
        assert y.shape[0] == 4 and jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
        np.testing.assert_array_equal(layer.apply(params, x, train=True), y)
        np.testing.assert_array_equal(layer.apply(params, x, state=new_state), layer.forward(params, x, new_state)[0])


def test_a_combinator_refuses_a_state_of_the_wrong_structure():
    network = nn.serial(nn.dense(2), nn.batch_norm())
    params, _ = network.init(jax.random.key(0), (4, 3))
    with pytest.raises(ValueError, match=r"serial: state must hold one entry per child \(2\).*init_state"):
        network.forward(params, jnp.ones((4, 3)), ())


def test_a_layer_with_parameters_must_declare_its_kind():
    with pytest.raises(TypeError):
        nn.Layer(nn.same_shape, lambda params, x, state: (x, state))  # no parameter_groups

    def init(key, shape):
        return {"w": jnp.ones(2)}, shape

    undeclared = nn.Layer(init, lambda params, x, state, **kw: (x * params["w"], state), nn.no_parameters)
    network = nn.serial(nn.dense(2), undeclared)
    params, _ = network.init(jax.random.key(0), (1, 2))
    with pytest.raises(ValueError, match=r"holds 3 parameter arrays but its layers declare 2"):
        nn.checked_parameter_groups(network, params)


def _every_nn_layer() -> dict[str, tuple[nn.Layer, tuple[int, ...]]]:
    sequence = (2, 3, 4)
    return {
        "dense": (nn.dense(3), (2, 4)),
        "conv1d": (nn.conv1d(2, 3), (1, 5, 2)),
        "conv2d": (nn.conv2d(2, 3), (1, 5, 5, 2)),
        "conv_transpose2d": (nn.conv_transpose2d(2, 3), (1, 5, 5, 2)),
        "batch_norm": (nn.batch_norm(), (2, 4)),
        "layer_norm": (nn.layer_norm(), (2, 4)),
        "embedding": (nn.embedding(5, 3), (2, 3)),
        "rnn": (nn.rnn(3), sequence),
        "lstm": (nn.lstm(3), sequence),
        "gru": (nn.gru(3), sequence),
        "bidirectional": (nn.bidirectional(nn.gru(3)), sequence),
        "multi_head_attention": (nn.multi_head_attention(2), sequence),
        "transformer_block": (nn.transformer_block(2), sequence),
        "position_embedding": (nn.position_embedding(5), sequence),
        "residual": (nn.residual(nn.dense(4), projection=nn.dense(4)), (2, 3)),
        "checkpoint": (nn.checkpoint(nn.dense(2)), (2, 4)),
    }


@pytest.mark.parametrize("name", sorted(_every_nn_layer()))
def test_every_layer_with_parameters_reports_them_in_parameter_groups(name):
    layer, shape = _every_nn_layer()[name]
    params, _ = layer.init(jax.random.key(0), shape)
    groups = nn.checked_parameter_groups(layer, params)  # raises if a parameter array is left out
    assert groups and all(isinstance(kind, str) for kind, _ in groups)


def test_activation_factories_match_the_ops():
    x = jnp.linspace(-3, 3, 7)
    for factory, op in (
        (nn.relu, ops.relu),
        (nn.tanh, ops.tanh),
        (nn.sigmoid, ops.sigmoid),
        (nn.gelu, ops.gelu),
        (nn.elu, ops.elu),
    ):
        np.testing.assert_array_equal(factory().apply((), x), op(x))
    np.testing.assert_array_equal(nn.leaky_relu(0.2).apply((), x), ops.leaky_relu(x, 0.2))
    with pytest.raises(TypeError, match=r"nn\.relu\(\)"):
        nn.serial(nn.dense(2), nn.relu)


def test_checkpoint_layer_gives_identical_values_and_gradients():
    network = models.mlp([16, 16, 4], "tanh")
    rematerialised = nn.checkpoint(network)
    params, _ = network.init(jax.random.key(0), (8, 5))
    x = jax.random.normal(jax.random.key(1), (8, 5))
    loss = lambda net: lambda p: ops.softmax_cross_entropy(net.apply(p, x), jnp.arange(8) % 4)  # noqa: E731
    chex.assert_trees_all_equal(jax.grad(loss(network))(params), jax.grad(loss(rematerialised))(params))


def test_checkpoint_layer_keeps_python_kwargs_static():
    def scaled():
        def apply(params, x, *, factor=1, **kwargs):
            assert isinstance(factor, int)  # a traced value would fail here
            return ops.add(x, x) if factor > 1 else x

        return nn.stateless(nn.same_shape, apply, nn.no_parameters)

    y = jax.grad(lambda x: jnp.sum(nn.checkpoint(scaled()).apply((), x, factor=2, key=jax.random.key(0))))(jnp.ones(3))
    np.testing.assert_array_equal(y, 2 * np.ones(3))


def test_checkpoint_layer_passes_recorded_taps_out():
    network = nn.checkpoint(models.mlp([4, 2], "tanh"))
    params, _ = network.init(jax.random.key(0), (3, 5))
    x = jax.random.normal(jax.random.key(1), (3, 5))

    def recorded(params):
        record = {}
        y = network.apply(params, x, record=record)
        return jnp.sum(y), record

    (_, record), grads = jax.value_and_grad(recorded, has_aux=True)(params)
    np.testing.assert_allclose(record["z1"], x @ params[0][0]["w"] + params[0][0]["b"], rtol=1e-6)
    assert set(record) == {"z1", "z2"}


def test_taps_expose_pre_activations_and_their_gradients():
    network = models.mlp([6, 3], "tanh")
    params, _ = network.init(jax.random.key(0), (2, 4))
    x = jax.random.normal(jax.random.key(1), (2, 4))
    labels = jnp.array([0, 2])

    def loss(taps):
        record = {}
        logits = network.apply(params, x, taps=taps, record=record)
        return ops.softmax_cross_entropy(logits, labels), record

    zeros = {"z1": jnp.zeros((2, 6)), "z2": jnp.zeros((2, 3))}
    deltas, record = jax.grad(loss, has_aux=True)(zeros)
    np.testing.assert_allclose(record["z1"], x @ params[0][0]["w"] + params[0][0]["b"], rtol=1e-6)
    p = jax.nn.softmax(record["z2"])
    np.testing.assert_allclose(deltas["z2"], (p - jax.nn.one_hot(labels, 3)) / 2, rtol=1e-5, atol=1e-7)


@settings(max_examples=4)
@given(
    depth=st.integers(1, 3),
    width=st.integers(1, 5),
    activation=st.sampled_from(["sigmoid", "tanh", "gelu", "elu"]),
    residual=st.booleans(),
)
def test_mlp_gradcheck(x64, depth, width, activation, residual):
    network = models.mlp([width] * depth + [2], activation, residual_blocks=residual)
    params, _ = network.init(jax.random.key(depth * 10 + width), (3, 4))
    x = jax.random.normal(jax.random.key(7), (3, 4))
    loss = lambda p, x: ops.softmax_cross_entropy(network.apply(p, x), jnp.array([0, 1, 1]))  # noqa: E731
    check_gradients(loss, params, x).assert_ok()
    assert_fully_manual(loss, params, x)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: nn.dense(0), r"dense: out_features must be a positive int, got 0"),
        (lambda: nn.activation("swish"), r"activation: unknown activation 'swish'; choose one of"),
        (lambda: nn.activation("leaky_relu", negative_slope=2.0), r"leaky_relu: negative_slope must be in"),
        (lambda: models.mlp([]), r"mlp: sizes must be a non-empty list of positive ints"),
        (lambda: nn.serial(), r"serial: needs at least one layer"),
        (lambda: nn.serial(nn.dense(2), nn.activation), r"serial: argument 1 must be an nn.Layer, got a function"),
        (lambda: nn.dense(2).init(jax.random.key(0), ()), r"dense: input_shape \(\) has no feature axis"),
        (lambda: nn.dense(3, init="bogus"), r"dense_init: unknown scheme 'bogus'"),
    ],
)
def test_bad_construction_is_a_clear_error(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()
