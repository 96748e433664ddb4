"""RNN, LSTM, GRU: whole-sequence hand-written BPTT vs jax.grad through the reference scan
and finite differences (float64), PyTorch's equations written out independently, lengths,
jit/vmap/checkpoint, low precision, bad input."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxbp import data, models, nn, ops, reference
from jaxbp.diagnostics import hidden_gradient_norms, residual_bytes
from jaxbp.gradcheck import assert_fully_manual, check_gradients, strip_custom_vjps

CELLS = {"rnn": (1, ("b",)), "lstm": (4, ("b",)), "gru": (3, ("b_ih", "b_hh"))}


def make_params(cell: str, features: int, hidden: int, seed: int = 0, scale: float = 0.6, dtype=jnp.float64) -> dict:
    gates, biases = CELLS[cell]
    keys = jax.random.split(jax.random.key(seed), 2 + len(biases))
    params = {
        "w_ih": scale * jax.random.normal(keys[0], (features, gates * hidden), dtype),
        "w_hh": scale * jax.random.normal(keys[1], (hidden, gates * hidden), dtype),
    }
    for key, name in zip(keys[2:], biases):
        params[name] = scale * jax.random.normal(key, (gates * hidden,), dtype)
    return params


def make_state(cell: str, batch: int, hidden: int, seed: int = 1, dtype=jnp.float64):
    h0, c0 = jax.random.normal(jax.random.key(seed), (2, batch, hidden), dtype)
    return (h0, c0) if cell == "lstm" else h0


def run(cell: str, params, x, state, lengths=None):
    return getattr(ops, cell)(params, x, state, lengths=lengths)


def jit_run(cell: str, params, x, state, lengths=None):
    return jax.jit(run, static_argnums=0)(cell, params, x, state, lengths)


# ------------------------------------------------------------------ gradient checks


@pytest.mark.parametrize("cell", sorted(CELLS))
@settings(max_examples=2)
@given(
    batch=st.integers(1, 3),
    time=st.sampled_from([1, 2, 7]),
    features=st.integers(1, 3),
    hidden=st.integers(1, 3),
    with_lengths=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_bptt_matches_reference_scan_and_finite_differences(
    x64, cell, batch, time, features, hidden, with_lengths, seed
):
    params = make_params(cell, features, hidden, seed)
    x = jax.random.normal(jax.random.key(seed + 1), (batch, time, features))
    state = make_state(cell, batch, hidden, seed + 2)
    lengths = jax.random.randint(jax.random.key(seed + 3), (batch,), 0, time + 1) if with_lengths else None
    report = check_gradients(lambda p, x, s: run(cell, p, x, s, lengths), params, x, state)
    report.assert_ok(reference_tol=1e-9, numerical_tol=1e-6)


@pytest.mark.parametrize("cell", ["gru"])
def test_long_sequence_with_all_lengths(x64, cell):
    """T = 7 with every length 0..7 present in one batch: params, x and the initial state."""
    params = make_params(cell, 2, 3)
    x = jax.random.normal(jax.random.key(5), (8, 7, 2))
    lengths = jnp.arange(8)
    report = check_gradients(lambda p, x, s: run(cell, p, x, s, lengths), params, x, make_state(cell, 8, 3))
    report.assert_ok(reference_tol=1e-9, numerical_tol=1e-6)


# ------------------------------------------- conventions, written out independently


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def _numpy_cell(cell: str, params: dict, x: np.ndarray, state):
    """PyTorch's cell equations, one numpy step at a time (weights (in, out))."""
    p = {k: np.asarray(v) for k, v in params.items()}
    h, c = (np.asarray(state[0]), np.asarray(state[1])) if cell == "lstm" else (np.asarray(state), None)
    hs = []
    for t in range(x.shape[1]):
        xt = np.asarray(x[:, t])
        if cell == "rnn":
            h = np.tanh(xt @ p["w_ih"] + h @ p["w_hh"] + p["b"])
        elif cell == "lstm":
            i, f, g, o = np.split(xt @ p["w_ih"] + h @ p["w_hh"] + p["b"], 4, axis=-1)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
        else:
            x_r, x_z, x_n = np.split(xt @ p["w_ih"] + p["b_ih"], 3, axis=-1)
            h_r, h_z, h_n = np.split(h @ p["w_hh"] + p["b_hh"], 3, axis=-1)
            r, z = _sigmoid(x_r + h_r), _sigmoid(x_z + h_z)
            h = (1 - z) * np.tanh(x_n + r * h_n) + z * h
        hs.append(h)
    final = (h, c) if cell == "lstm" else h
    return np.stack(hs, axis=1), final


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_forward_follows_pytorch_equations(x64, cell):
    params = make_params(cell, 3, 4)
    x = jax.random.normal(jax.random.key(2), (2, 5, 3))
    state = make_state(cell, 2, 4)
    hs, final = jit_run(cell, params, x, state)
    expected_hs, expected_final = _numpy_cell(cell, params, x, state)
    chex.assert_shape(hs, (2, 5, 4))
    chex.assert_trees_all_close(hs, expected_hs, rtol=1e-12, atol=1e-12)
    chex.assert_trees_all_close(final, expected_final, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------- lengths


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_lengths_freeze_state_zero_outputs_and_zero_gradient_past_the_end(x64, cell):
    params = make_params(cell, 2, 3)
    x = jax.random.normal(jax.random.key(3), (3, 6, 2))
    state = make_state(cell, 3, 3)
    lengths = jnp.array([6, 2, 0])
    hs, final = jit_run(cell, params, x, state, lengths)
    np.testing.assert_array_equal(hs[1, 2:], 0.0)
    np.testing.assert_array_equal(hs[2], 0.0)
    # the final state of sequence 1 is the state after its second step
    short_hs, short_final = jit_run(cell, params, x[1:2, :2], jax.tree_util.tree_map(lambda s: s[1:2], state))
    chex.assert_trees_all_close(jax.tree_util.tree_map(lambda s: s[1:2], final), short_final, rtol=1e-12)
    chex.assert_trees_all_close(hs[1:2, :2], short_hs, rtol=1e-12)
    # sequence 2 never starts: its final state is its initial state
    chex.assert_trees_all_close(
        jax.tree_util.tree_map(lambda s: s[2], final), jax.tree_util.tree_map(lambda s: s[2], state)
    )

    def loss(x):
        hs, final = run(cell, params, x, state, lengths)
        return jnp.sum(hs**2) + sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(final))

    dx = jax.jit(jax.grad(loss))(x)
    np.testing.assert_array_equal(dx[1, 2:], 0.0)
    np.testing.assert_array_equal(dx[2], 0.0)
    assert np.all(np.abs(dx[0]) > 0)


# ------------------------------------------------------------ jit / vmap / checkpoint


def _loss(cell: str):
    def loss(params, x, state):
        hs, final = run(cell, params, x, state)
        return jnp.sum(jnp.sin(hs)) + jnp.sum(jax.tree_util.tree_leaves(final)[0] ** 2)

    return loss


@pytest.mark.parametrize("cell", ["gru"])
def test_jit_vmap_and_checkpoint_give_the_eager_gradient(x64, cell):
    params = make_params(cell, 2, 3)
    xs = jax.random.normal(jax.random.key(4), (3, 2, 4, 2))  # a leading axis to vmap over
    state = make_state(cell, 2, 3)
    grad = jax.grad(_loss(cell), argnums=(0, 1, 2))
    eager = [jax.jit(grad)(params, x, state) for x in xs[:2]]
    expected = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *eager)
    batched = jax.jit(jax.vmap(grad, in_axes=(None, 0, None)))(params, xs[:2], state)
    chex.assert_trees_all_close(batched, expected, rtol=1e-10)
    remat = jax.grad(jax.checkpoint(_loss(cell)), argnums=(0, 1, 2))
    chex.assert_trees_all_close(jax.jit(remat)(params, xs[0], state), eager[0], rtol=1e-10)


@pytest.mark.parametrize("cell", ["lstm"])
def test_matches_jax_grad_through_reference_in_float32(cell):
    params = make_params(cell, 8, 16, scale=0.3, dtype=jnp.float32)
    x = jax.random.normal(jax.random.key(6), (4, 20, 8), jnp.float32)
    state = make_state(cell, 4, 16, dtype=jnp.float32)
    manual = jax.jit(jax.grad(_loss(cell), argnums=(0, 1, 2)))(params, x, state)
    autodiff = jax.jit(jax.grad(strip_custom_vjps(_loss(cell)), argnums=(0, 1, 2)))(params, x, state)
    chex.assert_trees_all_close(manual, autodiff, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("cell", ["lstm"])
def test_bfloat16_in_bfloat16_out_close_to_float32(cell):
    params = make_params(cell, 4, 8, scale=0.3, dtype=jnp.float32)
    x = jax.random.normal(jax.random.key(7), (2, 6, 4), jnp.float32)
    state = make_state(cell, 2, 8, dtype=jnp.float32)
    low = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), (params, x, state))
    hs, final = jit_run(cell, *low)
    assert hs.dtype == jnp.bfloat16 and jax.tree_util.tree_leaves(final)[0].dtype == jnp.bfloat16
    grads = jax.jit(jax.grad(_loss(cell), argnums=(0, 1, 2)))(*low)
    for leaf, original in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(low)):
        assert leaf.dtype == original.dtype
    expected = jax.jit(jax.grad(_loss(cell), argnums=(0, 1, 2)))(params, x, state)
    chex.assert_trees_all_close(
        jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), grads), expected, rtol=0.1, atol=0.1
    )


def test_default_initial_state_is_zeros():
    params = make_params("lstm", 2, 3, dtype=jnp.float32)
    x = jnp.ones((2, 3, 2))
    zeros = jnp.zeros((2, 3))
    chex.assert_trees_all_close(jax.jit(ops.lstm)(params, x), jax.jit(ops.lstm)(params, x, (zeros, zeros)))


def test_saved_residuals_are_smaller_than_autodiffs():
    """The forward keeps gates and states only; autodiff through the scan keeps more."""
    params = make_params("lstm", 16, 32, dtype=jnp.float32)
    x = jnp.ones((4, 10, 16))

    def loss(params, x):
        return jnp.sum(ops.lstm(params, x)[0])

    manual = residual_bytes(loss, params, x)["total"]
    autodiff = residual_bytes(strip_custom_vjps(loss), params, x)["total"]
    gates_and_states = 4 * 10 * (4 * 32 + 32 + 32)  # float32 (T, B, 4H + H + H)
    assert gates_and_states <= manual < autodiff


# -------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p, x, s, n: (p, x[:, :0], s, n), "time axis of x has length 0"),
        (lambda p, x, s, n: (p, x[..., :1], s, n), "x has 1 features"),
        (lambda p, x, s, n: (p, x[0], s, n), "must have rank 3"),
        (lambda p, x, s, n: (p, x, s[:1], n), "h0 must have shape"),
        (lambda p, x, s, n: ({"w_ih": p["w_ih"], "w_hh": p["w_hh"]}, x, s, n), "params must be a dict with keys"),
        (lambda p, x, s, n: ({**p, "w_hh": p["w_hh"][:, :1]}, x, s, n), 'params["w_hh"] must have shape'),
        (lambda p, x, s, n: ({**p, "b": p["b"][:1]}, x, s, n), 'params["b"] must have shape'),
        (lambda p, x, s, n: (p, x, s, jnp.array([1, 9])), "length 9 is outside [0, 4]"),
        (lambda p, x, s, n: (p, x, s, jnp.array([1, -1])), "length -1 is outside"),
        (lambda p, x, s, n: (p, x, s, jnp.array([1])), "lengths must have shape (batch,)"),
    ],
)
def test_bad_input_names_the_op_and_the_problem(change, message):
    params = make_params("rnn", 3, 2, dtype=jnp.float32)
    params, x, h0, lengths = change(params, jnp.ones((2, 4, 3)), jnp.zeros((2, 2)), None)
    with pytest.raises(ValueError, match="^rnn: ") as error:
        ops.rnn(params, x, h0, lengths=lengths)
    assert message in str(error.value)


def test_bad_types_are_rejected():
    params = make_params("gru", 3, 2, dtype=jnp.float32)
    x = jnp.ones((2, 4, 3))
    with pytest.raises(TypeError, match="gru: lengths must be integers"):
        ops.gru(params, x, lengths=jnp.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="gru: x must be a floating-point array"):
        ops.gru(params, jnp.ones((2, 4, 3), jnp.int32))
    with pytest.raises(TypeError, match="lstm: state must be a pair"):
        ops.lstm(make_params("lstm", 3, 2, dtype=jnp.float32), x, jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match="lstm: c0 must have shape"):
        ops.lstm(make_params("lstm", 3, 2, dtype=jnp.float32), x, (jnp.zeros((2, 2)), jnp.zeros((2, 3))))


def test_reference_parts_hold_the_gates_and_states(x64):
    params = make_params("lstm", 2, 3)
    x = jax.random.normal(jax.random.key(8), (2, 4, 2))
    parts = jax.jit(reference.lstm_parts)(params, x, make_state("lstm", 2, 3))
    assert parts._fields[0] == "y"
    chex.assert_shape([parts.gates, parts.cells, parts.hidden], [(4, 2, 12), (4, 2, 3), (4, 2, 3)])
    gates = np.asarray(parts.gates)
    assert np.all((gates[..., :6] > 0) & (gates[..., :6] < 1))  # i, f are sigmoids
    np.testing.assert_allclose(parts.hidden, gates[..., 9:] * np.tanh(parts.cells), rtol=1e-12)


# ------------------------------------------------------- ||dL/dh_t|| over time steps


def test_hidden_gradient_norms_follow_the_rnn_recursion(x64):
    """``dL/dh_{t-1} = (dL/dh_t * (1 - h_t^2)) W_hh^T`` for a loss that reads only ``h_T``."""
    params = make_params("rnn", 2, 3)
    x = jax.random.normal(jax.random.key(9), (2, 5, 2))
    h0 = make_state("rnn", 2, 3)
    readout = jax.random.normal(jax.random.key(10), (2, 3))
    norms = hidden_gradient_norms("rnn", params, x, lambda hs, h_last: jnp.sum(h_last * readout), h0)
    hs, _ = _numpy_cell("rnn", params, x, h0)
    delta, expected = np.asarray(readout), []
    for t in reversed(range(5)):
        expected.append(np.linalg.norm(delta))
        delta = (delta * (1 - hs[:, t] ** 2)) @ np.asarray(params["w_hh"]).T
    np.testing.assert_allclose(norms, expected[::-1], rtol=1e-10)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_hidden_gradient_norms_with_lengths_are_zero_past_the_end(x64, cell):
    params = make_params(cell, 2, 3)
    x = jax.random.normal(jax.random.key(11), (2, 4, 2))

    def loss(hs, final):
        return jnp.sum(jnp.sin(hs)) + jnp.sum(jax.tree_util.tree_leaves(final)[0])

    full = hidden_gradient_norms(cell, params, x, loss)
    assert full.shape == (4,) and np.all(np.asarray(full) > 0)
    short = hidden_gradient_norms(cell, params, x, loss, lengths=jnp.array([2, 2]))
    np.testing.assert_array_equal(short[2:], 0.0)
    assert np.all(np.asarray(short[:2]) > 0)


# --------------------------------------------------------------------- nn and models


@pytest.mark.parametrize("with_lengths", [True])
def test_bidirectional_gradients_and_time_order(x64, with_lengths):
    layer = nn.bidirectional(nn.gru(2), nn.lstm(3))
    x = jax.random.normal(jax.random.key(12), (3, 5, 2))
    params, shape = layer.init(jax.random.key(13), x.shape)
    assert shape == (3, 5, 5)
    lengths = jnp.array([5, 3, 1]) if with_lengths else None
    check_gradients(lambda p, x: layer.apply(p, x, lengths=lengths), params, x).assert_ok()
    # the backward direction at step 0 has read the whole (valid part of the) sequence backwards
    y = layer.apply(params, x, lengths=lengths)
    sequence_length = 3 if with_lengths else 5
    backward_only, _ = ops.lstm(params[1], jnp.flip(x[1:2, :sequence_length], axis=1))
    np.testing.assert_allclose(y[1, 0, 2:], backward_only[0, -1], rtol=1e-10)
    if with_lengths:
        np.testing.assert_array_equal(y[1, 3:], 0.0)


def test_lstm_forget_bias_and_orthogonal_recurrent_init():
    params, shape = nn.lstm(4, forget_bias=1.0, w_hh_init="orthogonal", return_sequences=False).init(
        jax.random.key(0), (2, 3, 5)
    )
    assert shape == (2, 4)
    np.testing.assert_array_equal(params["b"][4:8], 1.0)
    assert np.all(np.abs(params["b"][:4]) <= 0.5)
    gram = params["w_hh"][:, 4:8].T @ params["w_hh"][:, 4:8]
    np.testing.assert_allclose(gram, np.eye(4), atol=1e-5)
    with pytest.raises(ValueError, match="lstm: unknown w_hh_init 'identity'"):
        nn.lstm(4, w_hh_init="identity")


def test_language_model_is_fully_manual_and_gradchecks(x64):
    model = models.build_model("lstm", num_outputs=7, hidden=5, embedding_dim=3)
    assert models.get_model("lstm").layout == "sequence"
    ids = jax.random.randint(jax.random.key(14), (2, 6), 0, 7)
    labels = jnp.roll(ids, -1, axis=1)
    params, shape = model.init(jax.random.key(15), ids.shape)
    assert shape == (2, 6, 7)

    def loss(params, ids, labels):
        return ops.softmax_cross_entropy(model.apply(params, ids), labels)

    assert_fully_manual(loss, params, ids, labels)
    check_gradients(loss, params, ids, labels).assert_ok(numerical_tol=1e-5)


def test_chars_data_set_is_next_character_prediction():
    text = data.chars(20, 16)
    x, y = text.train
    chex.assert_shape([x, y], [(20, 16), (20, 16)])
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    assert text.vocabulary.decode(text.vocabulary.encode("def f():")) == "def f():"
    task = data.load_task("chars", "sequence", 10)
    assert task.num_outputs == len(text.vocabulary.characters) and task.loss == "softmax_cross_entropy"
