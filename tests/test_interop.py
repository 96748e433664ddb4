"""The conventions table of docs/interop.md, one test per row.

Each row is checked against the peer library itself: jax.nn / lax always, flax.linen,
flax.nnx and equinox where installed (`pip install -e '.[interop]'`; skipped otherwise).
Every comparison is in float64 with the same weights, so agreement means ~1e-15 and a
convention mismatch shows up as an O(1) difference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbp import nn, ops

pytestmark = pytest.mark.usefixtures("x64")  # the conftest fixture: float64 for each test, not leaked

TIGHT = 1e-12


def normal(seed: int, *shape: int, scale: float = 1.0) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape) * scale)


def max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


# --------------------------------------------------------------- layouts (no bridge needed)


def test_dense_kernel_is_flax_kernel_and_equinox_weight_transposed():
    fnn = pytest.importorskip("flax.linen")
    eqx = pytest.importorskip("equinox")
    params = {"w": normal(0, 3, 4), "b": normal(1, 4)}
    x = normal(2, 5, 3)
    y = ops.dense(params, x)
    flax_y = fnn.Dense(4).apply({"params": {"kernel": params["w"], "bias": params["b"]}}, x)
    linear = eqx.nn.Linear(3, 4, key=jax.random.key(0))
    linear = eqx.tree_at(lambda m: (m.weight, m.bias), linear, (params["w"].T, params["b"]))
    assert max_diff(y, flax_y) < TIGHT
    assert max_diff(y, jax.vmap(linear)(x)) < TIGHT


# --------------------------------------------------------------- transposed convolution


@pytest.mark.parametrize("kernel, stride", [(2, 3), (3, 2)])
def test_conv_transpose_padding_follows_pytorch_not_lax_valid(kernel, stride):
    x = normal(0, 1, 3, 3, 2)
    w = normal(1, kernel, kernel, 4, 2)  # (kh, kw, cout, cin)
    params = {"w": w, "b": jnp.zeros(4)}
    lax_y = jax.lax.conv_transpose(
        x, w, (stride, stride), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"), transpose_kernel=True
    )
    y = ops.conv_transpose2d(params, x, stride=stride)
    pytorch_size = (3 - 1) * stride + kernel
    assert y.shape[1:3] == (pytorch_size, pytorch_size)
    # lax "VALID" pads the output to H * stride when the kernel is smaller than the stride
    assert lax_y.shape[1] == pytorch_size + max(stride - kernel, 0)
    # the bridge: output_padding = max(stride - kernel, 0) reproduces lax/flax "VALID"
    bridged = ops.conv_transpose2d(params, x, stride=stride, output_padding=max(stride - kernel, 0))
    assert max_diff(bridged, lax_y) < TIGHT
    if kernel < stride:
        assert y.shape != lax_y.shape


def test_conv_transpose_equals_flax_with_transpose_kernel():
    fnn = pytest.importorskip("flax.linen")
    x = normal(0, 1, 3, 3, 2)
    w, b = normal(1, 2, 2, 4, 2), normal(2, 4)
    flax_y = fnn.ConvTranspose(4, (2, 2), strides=(3, 3), padding="VALID", transpose_kernel=True).apply(
        {"params": {"kernel": w, "bias": b}}, x
    )
    assert max_diff(ops.conv_transpose2d({"w": w, "b": b}, x, stride=3, output_padding=1), flax_y) < TIGHT


# --------------------------------------------------------------- layer norm eps


def test_layer_norm_eps_is_1e5_like_equinox_not_flax():
    fnn = pytest.importorskip("flax.linen")
    nnx = pytest.importorskip("flax.nnx")
    eqx = pytest.importorskip("equinox")
    x = normal(0, 3, 6, scale=1e-3)  # a small variance makes eps visible
    params = {"gamma": normal(1, 6), "beta": normal(2, 6)}
    y = ops.layer_norm(params, x)
    flax_params = {"params": {"scale": params["gamma"], "bias": params["beta"]}}
    assert max_diff(y, fnn.LayerNorm().apply(flax_params, x)) > 0.1  # flax default epsilon=1e-6
    assert max_diff(y, fnn.LayerNorm(epsilon=1e-5).apply(flax_params, x)) < TIGHT
    assert nnx.LayerNorm(6, rngs=nnx.Rngs(0)).epsilon == 1e-6
    norm = eqx.tree_at(lambda m: (m.weight, m.bias), eqx.nn.LayerNorm(6), (params["gamma"], params["beta"]))
    assert norm.eps == 1e-5
    assert max_diff(y, jax.vmap(norm)(x)) < TIGHT


# --------------------------------------------------------------- gelu, mse


def test_gelu_is_exact_where_jax_nn_defaults_to_tanh():
    x = jnp.linspace(-4.0, 4.0, 33)
    assert max_diff(ops.gelu(x), jax.nn.gelu(x)) > 1e-4
    assert max_diff(ops.gelu(x), jax.nn.gelu(x, approximate=False)) < TIGHT
    assert max_diff(ops.gelu(x, approximate=True), jax.nn.gelu(x)) < TIGHT


def test_mse_is_half_the_mean_squared_error():
    optax = pytest.importorskip("optax")
    p, t = normal(0, 4, 3), normal(1, 4, 3)
    assert float(ops.mse(p, t)) == pytest.approx(float(jnp.mean((p - t) ** 2)) / 2, rel=1e-14)
    # optax.l2_loss is the same half-squared error, elementwise
    assert float(ops.mse(p, t)) == pytest.approx(float(jnp.mean(optax.l2_loss(p, t))), rel=1e-14)


# --------------------------------------------------------------- causal attention


def _softmax_attention(q, k, v, allowed):
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(q.shape[-1])
    weights = jax.nn.softmax(jnp.where(allowed, scores, -jnp.inf), axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


def test_causal_attention_with_fewer_queries_is_bottom_right_aligned():
    q, k, v = normal(0, 1, 2, 1, 4), normal(1, 1, 5, 1, 4), normal(2, 1, 5, 1, 4)
    y = ops.attention(q, k, v, causal=True)
    bottom_right = jnp.tril(jnp.ones((2, 5), bool), k=5 - 2)  # query i sees keys j <= i + 3
    top_left = jnp.tril(jnp.ones((2, 5), bool))
    assert max_diff(y, _softmax_attention(q, k, v, bottom_right)) < TIGHT
    assert max_diff(y, jax.nn.dot_product_attention(q, k, v, is_causal=True)) > 0.1  # jax.nn: top-left
    assert max_diff(jax.nn.dot_product_attention(q, k, v, is_causal=True), _softmax_attention(q, k, v, top_left)) < 1e-6
    # the bridge: a top-left causal mask passed as `mask`
    assert max_diff(ops.attention(q, k, v, mask=top_left), _softmax_attention(q, k, v, top_left)) < TIGHT


def test_causal_attention_equals_flax_with_a_bottom_right_mask():
    fnn = pytest.importorskip("flax.linen")
    q, k, v = normal(0, 1, 2, 1, 4), normal(1, 1, 5, 1, 4), normal(2, 1, 5, 1, 4)
    bottom_right = jnp.tril(jnp.ones((2, 5), bool), k=5 - 2)
    flax_y = fnn.dot_product_attention(q, k, v, mask=bottom_right[None, None])
    assert max_diff(ops.attention(q, k, v, causal=True), flax_y) < TIGHT


# --------------------------------------------------------------- recurrent cells

B, T, F, H = 2, 4, 3, 5


def _lstm_params():
    return {"w_ih": normal(0, F, 4 * H, scale=0.5), "w_hh": normal(1, H, 4 * H, scale=0.5), "b": normal(2, 4 * H)}


def _gru_params():
    return {
        "w_ih": normal(3, F, 3 * H, scale=0.5),
        "w_hh": normal(4, H, 3 * H, scale=0.5),
        "b_ih": normal(5, 3 * H),
        "b_hh": normal(6, 3 * H),
    }


def flax_lstm_params(params: dict) -> dict:
    """jaxbp LSTM params -> flax.linen.LSTMCell's: gates i, f, g, o; the bias on the h side."""
    w_i, w_h, b = (jnp.split(params[name], 4, axis=-1) for name in ("w_ih", "w_hh", "b"))
    flax_params = {f"i{gate}": {"kernel": w_i[j]} for j, gate in enumerate("ifgo")}
    flax_params |= {f"h{gate}": {"kernel": w_h[j], "bias": b[j]} for j, gate in enumerate("ifgo")}
    return flax_params


def flax_gru_params(params: dict) -> dict:
    """jaxbp (PyTorch) GRU params -> flax.linen.GRUCell's: r and z have one bias (b_ih + b_hh)."""
    w_i, w_h, b_i, b_h = (jnp.split(params[name], 3, axis=-1) for name in ("w_ih", "w_hh", "b_ih", "b_hh"))
    return {
        "ir": {"kernel": w_i[0], "bias": b_i[0] + b_h[0]},
        "iz": {"kernel": w_i[1], "bias": b_i[1] + b_h[1]},
        "in": {"kernel": w_i[2], "bias": b_i[2]},
        "hr": {"kernel": w_h[0]},
        "hz": {"kernel": w_h[1]},
        "hn": {"kernel": w_h[2], "bias": b_h[2]},
    }


def test_lstm_state_is_h_c_where_flax_carries_c_h():
    fnn = pytest.importorskip("flax.linen")
    params, x = _lstm_params(), normal(7, B, T, F)
    h0, c0 = normal(8, B, H), normal(9, B, H)
    hs, (h_last, c_last) = ops.lstm(params, x, (h0, c0))
    cell, carry, outputs = fnn.LSTMCell(H, param_dtype=jnp.float64), (c0, h0), []
    for t in range(T):
        carry, output = cell.apply({"params": flax_lstm_params(params)}, carry, x[:, t])
        outputs.append(output)
    assert max_diff(hs, jnp.stack(outputs, axis=1)) < TIGHT
    assert max_diff(carry[0], c_last) < TIGHT and max_diff(carry[1], h_last) < TIGHT


def test_lstm_equals_equinox_cell_with_transposed_weights():
    eqx = pytest.importorskip("equinox")
    params, x = _lstm_params(), normal(7, B, T, F)
    h0, c0 = normal(8, B, H), normal(9, B, H)
    _, (h_last, c_last) = ops.lstm(params, x, (h0, c0))
    cell = eqx.nn.LSTMCell(F, H, key=jax.random.key(0))
    cell = eqx.tree_at(
        lambda m: (m.weight_ih, m.weight_hh, m.bias), cell, (params["w_ih"].T, params["w_hh"].T, params["b"])
    )
    state = (h0[0], c0[0])  # equinox: (h, c) like jaxbp, one example at a time
    for t in range(T):
        state = cell(x[0, t], state)
    assert max_diff(state[0], h_last[0]) < TIGHT and max_diff(state[1], c_last[0]) < TIGHT


def test_gru_bias_layout_maps_onto_flax():
    fnn = pytest.importorskip("flax.linen")
    params, x, h0 = _gru_params(), normal(7, B, T, F), normal(8, B, H)
    hs, h_last = ops.gru(params, x, h0)
    cell, h, outputs = fnn.GRUCell(H, param_dtype=jnp.float64), h0, []
    for t in range(T):
        h, output = cell.apply({"params": flax_gru_params(params)}, h, x[:, t])
        outputs.append(output)
    assert max_diff(hs, jnp.stack(outputs, axis=1)) < TIGHT and max_diff(h, h_last) < TIGHT


def test_gru_bias_layout_maps_onto_equinox():
    eqx = pytest.importorskip("equinox")
    params, x, h0 = _gru_params(), normal(7, B, T, F), normal(8, B, H)
    _, h_last = ops.gru(params, x, h0)
    b_hr, b_hz, b_hn = jnp.split(params["b_hh"], 3)
    bias = params["b_ih"] + jnp.concatenate([b_hr, b_hz, jnp.zeros(H)])  # equinox: one bias + bias_n
    cell = eqx.nn.GRUCell(F, H, key=jax.random.key(0))
    cell = eqx.tree_at(
        lambda m: (m.weight_ih, m.weight_hh, m.bias, m.bias_n), cell, (params["w_ih"].T, params["w_hh"].T, bias, b_hn)
    )
    h = h0[0]
    for t in range(T):
        h = cell(x[0, t], h)
    assert max_diff(h, h_last[0]) < TIGHT


def test_outputs_past_a_sequence_length_are_zero_where_flax_keeps_computing():
    fnn = pytest.importorskip("flax.linen")
    params, x, h0 = _gru_params(), normal(7, B, T, F), normal(8, B, H)
    lengths = jnp.array([2, T])
    hs, h_last = ops.gru(params, x, h0, lengths=lengths)
    assert float(jnp.max(jnp.abs(hs[0, 2:]))) == 0.0
    rnn = fnn.RNN(fnn.GRUCell(H, param_dtype=jnp.float64), return_carry=True)
    carry, outputs = rnn.apply({"params": {"cell": flax_gru_params(params)}}, x, initial_carry=h0, seq_lengths=lengths)
    assert max_diff(carry, h_last) < TIGHT  # same final state: the state at each sequence's length
    assert max_diff(outputs[:, :2], hs[:, :2]) < TIGHT and max_diff(outputs[1], hs[1]) < TIGHT
    assert float(jnp.max(jnp.abs(outputs[0, 2:]))) > 0.1  # flax: the cell ran on past the length


# --------------------------------------------------------------- batch-norm momentum


def test_batch_norm_momentum_default_is_0_9_with_flax_s_formula():
    fnn = pytest.importorskip("flax.linen")
    x = normal(0, 8, 3) * 2 + 1
    layer = nn.batch_norm()
    params, _ = layer.init(jax.random.key(0), x.shape)
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
    _, state = layer.forward(params, x, layer.init_state(params), train=True)
    flax_variables = {
        "params": {"scale": params["gamma"], "bias": params["beta"]},
        "batch_stats": {"mean": jnp.zeros(3), "var": jnp.ones(3)},
    }
    for momentum, agrees in ((0.99, False), (0.9, True)):  # flax's default momentum is 0.99
        _, updated = fnn.BatchNorm(use_running_average=False, momentum=momentum, epsilon=1e-5).apply(
            flax_variables, x, mutable=["batch_stats"]
        )
        stats = updated["batch_stats"]
        close = max_diff(state.mean, stats["mean"]) < TIGHT and max_diff(state.var, stats["var"]) < TIGHT
        assert close == agrees
