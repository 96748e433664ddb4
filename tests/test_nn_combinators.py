"""nn: shape_dependent, bidirectional as a combinator, and recurrent layers that carry their state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbp import nn, ops, train
from jaxbp.gradcheck import strip_custom_vjps


def _normal(seed: int, shape: tuple[int, ...]) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), shape)


def test_shape_dependent_builds_from_the_input_shape_once_per_shape():
    built: list[tuple[int, ...]] = []

    def make(shape):
        built.append(tuple(shape))
        return nn.serial(nn.dense(2 * shape[-1]), nn.dense(shape[-1]))

    layer = nn.shape_dependent(make, probe_shape=(1, 1))
    params, shape = layer.init(jax.random.key(0), (3, 5))
    assert shape == (3, 5) and params[0]["w"].shape == (5, 10)
    x = _normal(1, (3, 5))
    np.testing.assert_allclose(layer.apply(params, x), make((3, 5)).apply(params, x), rtol=1e-6)
    layer.apply(params, x)
    assert built.count((3, 5)) == 2  # one for init/forward (cached), one built by the test itself
    assert [kind for kind, _ in layer.parameter_groups(params)] == ["dense", "dense"]


def test_transformer_block_is_shape_dependent_and_reports_its_groups():
    block = nn.transformer_block(2, mlp_ratio=2)
    params, _ = block.init(jax.random.key(0), (1, 3, 4))
    kinds = [kind for kind, _ in nn.checked_parameter_groups(block, params)]
    assert kinds == ["layer_norm", "dense", "dense", "dense", "dense", "layer_norm", "dense", "dense"]
    assert params[1][0][1]["w"].shape == (4, 8)  # the MLP width follows the input's features


def test_bidirectional_gives_each_direction_its_own_key_and_state():
    def noisy_carry():
        """Adds key-dependent noise and counts calls in its state: shows keys and state per direction."""

        def forward(params, x, state, *, key=None, **kwargs):
            return x + jax.random.normal(key, x.shape), state + 1

        return nn.Layer(nn.same_shape, forward, nn.no_parameters, init_state=lambda params: jnp.array(0))

    layer = nn.bidirectional(noisy_carry())
    x = jnp.zeros((1, 3, 1))
    params, shape = layer.init(jax.random.key(0), x.shape)
    assert shape == (1, 3, 2)
    state = layer.init_state(params)
    y, state = layer.forward(params, x, state, key=jax.random.key(1))
    y = np.asarray(y)
    assert not np.allclose(y[..., 0], y[..., 1][:, ::-1])  # the two directions drew different noise
    assert int(state[0]) == 1 and int(state[1]) == 1


def test_bidirectional_threads_each_direction_carried_state():
    layer = nn.bidirectional(nn.gru(3, carry=True))
    params, _ = layer.init(jax.random.key(0), (2, 4, 5))
    state = layer.init_state(params)
    x = _normal(1, (2, 4, 5))
    _, (forward_state, backward_state) = layer.forward(params, x, state)
    _, forward_final = ops.gru(params[0], x)
    _, backward_final = ops.gru(params[1], x[:, ::-1])
    np.testing.assert_allclose(forward_state, forward_final, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(backward_state, backward_final, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_a_carrying_layer_run_chunk_by_chunk_equals_one_run_over_the_sequence(cell):
    layer = getattr(nn, cell)(4, carry=True)
    params, _ = layer.init(jax.random.key(0), (2, 6, 3))
    x = _normal(1, (2, 6, 3))
    whole, final = layer.forward(params, x, layer.init_state(params))
    state, chunks = layer.init_state(params), []
    for start in (0, 2, 4):
        y, state = layer.forward(params, x[:, start : start + 2], state)
        chunks.append(y)
    np.testing.assert_allclose(jnp.concatenate(chunks, axis=1), whole, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(final)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # without carry the layer has no state and every call starts from zero
    plain = getattr(nn, cell)(4)
    assert plain.init_state(params) == ()
    np.testing.assert_allclose(plain.apply(params, x[:, 2:4]), layer.apply(params, x[:, 2:4]), rtol=1e-6)


def test_truncated_bptt_is_expressible_with_the_layers(x64):
    net = nn.serial(nn.lstm(3, carry=True), nn.dense(2))
    params, _ = net.init(jax.random.key(0), (2, 6, 4))
    x = _normal(1, (2, 6, 4)).astype(jnp.float64)
    targets = _normal(2, (2, 6, 2)).astype(jnp.float64)
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)

    def chunk_loss(params, x, y, state):
        outputs, new_state = net.forward(params, x, state)
        return ops.mse(outputs, y), new_state

    batched = jax.tree_util.tree_map(lambda h: jnp.broadcast_to(h, (2, 3)), net.init_state(params))
    result = train.truncated_bptt_gradients(chunk_loss, params, x, targets, batched, chunk_length=3)
    # chunk 2's gradient: autodiff through the reference from the carried (stopped) state
    _, carried = net.forward(params, x[:, :3], batched)
    expected = jax.grad(strip_custom_vjps(lambda p: chunk_loss(p, x[:, 3:], targets[:, 3:], carried)[0]))(params)
    for got, want in zip(jax.tree_util.tree_leaves(result.grads), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(got[1], want, rtol=1e-9, atol=1e-12)


def test_lengths_reach_the_recurrent_layers_inside_combinators():
    net = nn.serial(nn.lstm(3), nn.dense(2))
    params, _ = net.init(jax.random.key(0), (2, 5, 4))
    x = _normal(1, (2, 5, 4))
    lengths = jnp.array([5, 2])
    y = net.apply(params, x, lengths=lengths)
    hs, _ = ops.lstm(params[0], x, lengths=lengths)
    np.testing.assert_allclose(y, ops.dense(params[1], hs), rtol=1e-6)
