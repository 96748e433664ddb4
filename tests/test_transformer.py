"""Transformer layers and the decoder-only language model: gradients, causality, registry, bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbp import models, nn, ops
from jaxbp.gradcheck import assert_fully_manual, check_gradients
from jaxbp.reference.attention import attention as plain_attention


def _tiny_lm(**options):
    settings = {"dim": 4, "depth": 1, "heads": 2, "max_length": 6, "mlp_ratio": 2, "block_size": 2, **options}
    return models.build_model("transformer", num_outputs=5, **settings)


def _ids(seed, batch=2, time=6, vocab=5):
    return jax.random.randint(jax.random.key(seed), (batch, time), 0, vocab)


def _lm_loss(model):
    def loss(params, ids):
        return ops.softmax_cross_entropy(model.apply(params, ids[:, :-1]), ids[:, 1:])

    return loss


def _assert_ok_key_bias_zero(report):
    """All leaves pass, except that the key bias's gradient is checked to be zero: softmax is
    unchanged by a per-row constant and b_k adds q . b_k to every score of a row (relative
    errors of rounding noise around 0 say nothing)."""
    key_bias = [row for row in report.rows if row.path.endswith("['k']['b']")]
    assert key_bias and all(row.manual_norm < 1e-14 for row in key_bias), str(report)
    assert [p for p in report.failures() if "['k']['b']" not in p] == [], str(report)


def test_language_model_gradients_match_autodiff_and_finite_differences(x64):
    model = _tiny_lm()
    ids = _ids(0)
    params, _ = model.init(jax.random.key(1), ids[:, :-1].shape)
    _assert_ok_key_bias_zero(check_gradients(_lm_loss(model), params, ids))


def test_language_model_is_fully_manual():
    for options in ({}, {"heads": 4, "kv_heads": 2}):
        model = _tiny_lm(**options)
        ids = _ids(2)
        params, _ = model.init(jax.random.key(3), ids.shape)
        assert_fully_manual(_lm_loss(model), params, ids)


def test_multi_head_attention_matches_hand_formula(x64):
    # x W_q etc. split into heads, plain softmax(q k^T / sqrt(d)) v per head, concatenated, W_out
    layer = nn.multi_head_attention(4, kv_heads=2, causal=True, block_size=3)
    x = jax.random.normal(jax.random.key(4), (2, 5, 8), jnp.float64)
    params, shape = layer.init(jax.random.key(5), x.shape)
    assert shape == x.shape
    chex.assert_shape([params["q"]["w"], params["k"]["w"], params["out"]["w"]], [(8, 8), (8, 4), (8, 8)])

    def by_hand(params, x):
        q, k, v = (x @ params[n]["w"] + params[n]["b"] for n in "qkv")
        q, k, v = q.reshape(2, 5, 4, 2), k.reshape(2, 5, 2, 2), v.reshape(2, 5, 2, 2)
        y = plain_attention(q, k, v, causal=True).reshape(2, 5, 8)
        return y @ params["out"]["w"] + params["out"]["b"]

    _assert_ok_key_bias_zero(check_gradients(layer.apply, params, x, reference=by_hand))


def test_logits_do_not_depend_on_future_tokens():
    model = _tiny_lm(dim=8, max_length=8)
    ids = _ids(6, time=8)
    params, _ = model.init(jax.random.key(7), ids.shape)
    changed = ids.at[:, 5].set((ids[:, 5] + 1) % 5)
    apply = jax.jit(model.apply)
    before, after = apply(params, ids), apply(params, changed)
    np.testing.assert_allclose(after[:, :5], before[:, :5], rtol=1e-5, atol=1e-6)
    assert float(jnp.max(jnp.abs(after[:, 5:] - before[:, 5:]))) > 1e-4


def test_position_embedding_adds_rows_and_sums_gradient_over_batch():
    layer = nn.position_embedding(7)
    x = jax.random.normal(jax.random.key(8), (3, 4, 2))
    params, _ = layer.init(jax.random.key(9), x.shape)
    chex.assert_trees_all_close(layer.apply(params, x), x + params["w"][:4])
    dy = jax.random.normal(jax.random.key(10), x.shape)
    dw = jax.grad(lambda p: jnp.vdot(layer.apply(p, x), dy))(params)["w"]
    chex.assert_trees_all_close(dw, jnp.zeros((7, 2)).at[:4].set(dy.sum(0)), atol=1e-6)
    with pytest.raises(ValueError, match="position_embedding: sequence length 8 exceeds max_length 7"):
        layer.apply(params, jnp.zeros((1, 8, 2)))


def test_registry_entry():
    spec = models.get_model("transformer")
    assert spec.layout == "sequence"
    model = models.build_model("transformer", num_outputs=7, dim="8", depth="2", heads="2", max_length="4")
    params, shape = model.init(jax.random.key(0), (3, 4))
    assert shape == (3, 4, 7)
    assert [kind for kind, _ in model.parameter_groups(params)].count("layer_norm") == 5


@pytest.mark.parametrize(
    ("build", "input_shape", "match"),
    [
        (lambda: nn.multi_head_attention(3), (2, 5, 8), "multi_head_attention: 8 features do not split into 3 heads"),
        (lambda: nn.multi_head_attention(4, kv_heads=3), None, r"multi_head_attention: kv_heads \(3\) must divide"),
        (lambda: nn.multi_head_attention(0), None, "multi_head_attention: num_heads must be a positive int"),
        (lambda: nn.transformer_block(2), (5, 8), "transformer_block: input_shape must be"),
        (lambda: nn.position_embedding(0), None, "position_embedding: max_length must be a positive int"),
    ],
)
def test_bad_configuration_names_the_layer(build, input_shape, match):
    with pytest.raises(ValueError, match=match):
        build().init(jax.random.key(0), input_shape)
