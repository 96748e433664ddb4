"""ops.attention: the blocked, O(T)-memory backward against jax.grad through the plain reference."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxbp import ops
from jaxbp.diagnostics import residual_bytes
from jaxbp.gradcheck import check_gradients
from jaxbp.reference.attention import attention as plain_attention
from jaxbp.reference.attention import attention_parts


def _qkv(seed, batch, q_len, k_len, heads, kv_heads, head_dim, v_dim=None, dtype=jnp.float64):
    keys = jax.random.split(jax.random.key(seed), 3)
    q = jax.random.normal(keys[0], (batch, q_len, heads, head_dim), dtype)
    k = jax.random.normal(keys[1], (batch, k_len, kv_heads, head_dim), dtype)
    v = jax.random.normal(keys[2], (batch, k_len, kv_heads, v_dim or head_dim), dtype)
    return q, k, v


def _check(q, k, v, *, causal=False, mask=None, block_size=4, scale=None):
    def manual(q, k, v):
        return ops.attention(q, k, v, causal=causal, mask=mask, scale=scale, block_size=block_size)

    def plain(q, k, v):
        return plain_attention(q, k, v, mask, causal=causal, scale=scale)

    return check_gradients(manual, q, k, v, reference=plain).assert_ok()


CASES = {
    # name: (batch, q_len, k_len, heads, kv_heads, head_dim, v_dim, causal, mask shape or None, block_size)
    "T_not_multiple_of_block": (1, 9, 9, 1, 1, 4, 4, False, None, 4),
    "one_query_many_keys_causal": (1, 1, 5, 2, 2, 3, 3, True, None, 2),
    "q_shorter_than_k_causal": (2, 3, 8, 2, 1, 3, 2, True, None, 3),
    "q_longer_than_k": (1, 8, 3, 2, 2, 2, 4, False, None, 2),
    "several_heads_grouped_query": (1, 5, 5, 6, 2, 3, 3, True, None, 2),
    "full_mask": (2, 5, 6, 2, 2, 3, 3, False, (2, 2, 5, 6), 4),
    "key_padding_mask_and_causal": (2, 6, 6, 4, 2, 3, 3, True, (2, 1, 1, 6), 4),
    "mask_shared_over_keys": (1, 4, 7, 2, 2, 3, 3, False, (2, 4, 1), 3),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_match_reference_and_finite_differences(x64, name):
    batch, q_len, k_len, heads, kv_heads, head_dim, v_dim, causal, mask_shape, block = CASES[name]
    q, k, v = _qkv(0, batch, q_len, k_len, heads, kv_heads, head_dim, v_dim)
    mask = None
    if mask_shape is not None:
        mask = jax.random.bernoulli(jax.random.key(7), 0.7, mask_shape)
    _check(q, k, v, causal=causal, mask=mask, block_size=block)


@settings(max_examples=2)
@given(
    q_len=st.integers(1, 7),
    k_len=st.integers(2, 7),  # one key: softmax is constant, dq = dk = 0 (tested below)
    kv_heads=st.integers(1, 2),
    groups=st.integers(1, 2),
    head_dim=st.integers(1, 4),
    block_size=st.integers(1, 5),
    causal=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_random_shapes(x64, q_len, k_len, kv_heads, groups, head_dim, block_size, causal, seed):
    q, k, v = _qkv(seed, 2, q_len, k_len, kv_heads * groups, kv_heads, head_dim)
    _check(q, k, v, causal=causal, block_size=block_size, scale=0.7)


@settings(max_examples=25)
@given(q_len=st.integers(1, 40), k_len=st.integers(1, 40), block_size=st.integers(1, 16), causal=st.booleans())
def test_the_scans_visit_exactly_the_tiles_with_an_allowed_pair(q_len, k_len, block_size, causal):
    from jaxbp.ops.attention import _tile_grid
    from jaxbp.reference.attention import causal_allowed

    tiles = _tile_grid(jnp.zeros((1, q_len, 1, 1)), jnp.zeros((1, k_len, 1, 1)), causal, block_size)
    allowed = np.ones((q_len, k_len), bool)
    if causal:
        allowed = np.asarray(causal_allowed(jnp.arange(q_len), jnp.arange(k_len), q_len, k_len))
    expected = {
        (i, j)
        for i in range(-(-q_len // tiles.q_block))
        for j in range(-(-k_len // tiles.k_block))
        if allowed[i * tiles.q_block : (i + 1) * tiles.q_block, j * tiles.k_block : (j + 1) * tiles.k_block].any()
    }
    assert set(tiles.pairs) == expected
    assert tiles.q_block == (min(block_size, q_len) if causal else q_len)


def test_causal_self_attention_visits_the_lower_triangle_of_tiles():
    from jaxbp.ops.attention import _tile_grid

    tiles = _tile_grid(jnp.zeros((1, 256, 1, 1)), jnp.zeros((1, 256, 1, 1)), True, 64)
    assert tiles.pairs == tuple((i, j) for i in range(4) for j in range(i + 1))  # 10 of 16


def test_single_position_passes_gradient_only_to_v(x64):
    # T = 1: softmax over one key is 1, so y = v, dq = dk = 0 and dv = dy (a block size above T too)
    q, k, v = _qkv(8, 2, 1, 1, 3, 3, 2)
    y, vjp = jax.vjp(lambda q, k, v: ops.attention(q, k, v, causal=True, block_size=8), q, k, v)
    dy = jax.random.normal(jax.random.key(9), y.shape, y.dtype)
    dq, dk, dv = vjp(dy)
    chex.assert_trees_all_close((y, dq, dk, dv), (v, jnp.zeros_like(q), jnp.zeros_like(k), dy), atol=1e-15)


def test_output_and_logsumexp_do_not_depend_on_block_size(x64):
    from jaxbp.ops.attention import _UNROLL_MAX_TILES, _tile_grid

    q, k, v = _qkv(1, 2, 11, 13, 4, 2, 3)
    expected = attention_parts(q, k, v, causal=True)
    # block 2: 42 tiles, a rolled scan; 4: 12 tiles, unrolled; 64: one tile
    assert len(_tile_grid(q, k, True, 2).pairs) > _UNROLL_MAX_TILES >= len(_tile_grid(q, k, True, 4).pairs)
    dy = jax.random.normal(jax.random.key(3), expected.y.shape, expected.y.dtype)
    expected_grads = jax.vjp(lambda q, k, v: plain_attention(q, k, v, causal=True), q, k, v)[1](dy)
    for block_size in (2, 4, 64):
        y, vjp = jax.vjp(jax.jit(functools.partial(ops.attention, causal=True, block_size=block_size)), q, k, v)
        chex.assert_trees_all_close(y, expected.y, rtol=1e-12, atol=1e-12)
        if block_size < 64:  # the rolled and the unrolled backward
            chex.assert_trees_all_close(jax.jit(vjp)(dy), expected_grads, rtol=1e-10, atol=1e-12)
    # the reference's per-row logsumexp is log sum_j exp(S_ij), checked by hand on one row
    scores = (q[0, -1, 3] @ k[0, :, 1].T) / math.sqrt(3)
    np.testing.assert_allclose(expected.logsumexp[0, 3, -1], np.log(np.sum(np.exp(scores))), rtol=1e-12)


def test_fully_masked_rows_give_zeros_and_zero_gradient():
    q, k, v = _qkv(2, 2, 4, 5, 2, 2, 3, dtype=jnp.float32)
    mask = jnp.ones((2, 1, 4, 5), bool).at[:, :, 1].set(False).at[1, :, 3].set(False)

    @jax.jit
    def value_and_grads(q, k, v):
        y, vjp = jax.vjp(lambda q, k, v: ops.attention(q, k, v, mask=mask, block_size=2), q, k, v)
        return y, vjp(2 * y)  # the gradient of sum(y ** 2)

    y, grads = value_and_grads(q, k, v)
    for leaf in (y, *grads):
        assert bool(jnp.all(jnp.isfinite(leaf)))
    np.testing.assert_array_equal(y[:, 1], 0.0)
    np.testing.assert_array_equal(y[1, 3], 0.0)
    np.testing.assert_array_equal(grads[0][:, 1], 0.0)
    # a fully masked key set everywhere: nothing flows to k or v either
    nothing = jnp.zeros((1, 1, 1, 5), bool)
    dk, dv = jax.jit(jax.grad(lambda k, v: jnp.sum(ops.attention(q, k, v, mask=nothing)), argnums=(0, 1)))(k, v)
    np.testing.assert_array_equal(dk, 0.0)
    np.testing.assert_array_equal(dv, 0.0)


def test_causal_rows_before_the_first_key_are_fully_masked(x64):
    # q longer than k, bottom-right aligned: the first q_len - k_len queries see no key
    q, k, v = _qkv(3, 1, 6, 2, 1, 1, 2)
    y = ops.attention(q, k, v, causal=True)
    np.testing.assert_array_equal(y[:, :4], 0.0)
    np.testing.assert_allclose(y[0, 5, 0], jax.nn.softmax(k[0, :, 0] @ q[0, 5, 0] / math.sqrt(2)) @ v[0, :, 0])
    _check(q, k, v, causal=True, block_size=1)


def test_bf16_keeps_dtype_with_float32_statistics():
    q, k, v = _qkv(4, 2, 33, 33, 4, 2, 8, dtype=jnp.bfloat16)

    def attend(q, k, v):
        return ops.attention(q, k, v, causal=True, block_size=8)

    @jax.jit
    def forward_backward(q, k, v):
        y, vjp = jax.vjp(attend, q, k, v)
        return y, vjp(jnp.ones_like(y)), jax.tree_util.tree_leaves(vjp)

    y, grads, saved = forward_backward(q, k, v)
    assert y.dtype == jnp.bfloat16
    assert all(g.dtype == jnp.bfloat16 for g in grads)
    wide = [x.astype(jnp.float32) for x in (q, k, v)]
    np.testing.assert_allclose(y.astype(jnp.float32), plain_attention(*wide, causal=True), atol=3e-2, rtol=3e-2)
    statistics = [x for x in saved if x.shape == (2, 4, 33)]  # the per-row logsumexp
    assert [x.dtype for x in statistics] == [jnp.float32]


def test_residuals_are_linear_in_time():
    # saved: q, k, v, y and the (B, H, T) logsumexp -- never a (T, T) matrix
    batch, time, heads, dim = 1, 256, 2, 8
    q, k, v = _qkv(5, batch, time, time, heads, heads, dim, dtype=jnp.float32)
    manual = residual_bytes(lambda q, k, v: ops.attention(q, k, v, causal=True, block_size=32), q, k, v)
    assert manual["total"] == 4 * (4 * batch * time * heads * dim + batch * heads * time)
    plain = residual_bytes(lambda q, k, v: plain_attention(q, k, v, causal=True), q, k, v)
    assert plain["total"] >= 4 * batch * heads * time * time


def test_under_jit_and_vmap(x64):
    q, k, v = _qkv(6, 3, 5, 5, 2, 2, 3)

    def loss(q, k, v):
        return jnp.sum(jnp.tanh(ops.attention(q, k, v, causal=True, block_size=2)))

    def per_example(q, k, v):
        return loss(q[None], k[None], v[None])

    expected = jax.grad(loss, argnums=(0, 1, 2))(q, k, v)
    batched = jax.jit(jax.vmap(jax.grad(per_example, argnums=(0, 1, 2))))(q, k, v)
    chex.assert_trees_all_close(batched, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("shapes", "kwargs", "error", "match"),
    [
        (((1, 4, 2, 3), (1, 4, 2, 5), (1, 4, 2, 3)), {}, ValueError, r"attention: q and k must have the same head_dim"),
        (((1, 4, 3, 3), (1, 4, 2, 3), (1, 4, 2, 3)), {}, ValueError, r"attention: the number of key/value heads \(2\)"),
        (((1, 4, 2, 3), (1, 4, 2, 3), (1, 5, 2, 3)), {}, ValueError, r"attention: k and v must agree"),
        (((4, 2, 3),) * 3, {}, ValueError, r"attention: q must have rank 4"),
        (((1, 4, 2, 3),) * 3, {"block_size": 0}, ValueError, r"attention: block_size must be a positive"),
        (((1, 4, 2, 3),) * 3, {"block_size": -2}, ValueError, r"attention: block_size must be a positive"),
        (((1, 4, 2, 3),) * 3, {"mask": np.ones((1, 2, 4, 5), bool)}, ValueError, r"attention: mask of shape"),
        (((1, 4, 2, 3),) * 3, {"mask": np.ones((3, 4, 4), bool)}, ValueError, r"attention: mask of shape \(3, 4, 4\)"),
        (((1, 4, 2, 3),) * 3, {"mask": np.ones((4, 4))}, TypeError, r"attention: mask must be a boolean"),
        (((1, 4, 2, 3),) * 3, {"causal": 1}, TypeError, r"attention: causal must be a Python bool"),
    ],
)
def test_bad_input_names_the_op(shapes, kwargs, error, match):
    q, k, v = (jnp.ones(shape) for shape in shapes)
    with pytest.raises(error, match=match):
        ops.attention(q, k, v, **kwargs)


def test_mixed_dtypes_are_refused():
    q = jnp.ones((1, 2, 1, 2), jnp.float32)
    with pytest.raises(TypeError, match="attention: q, k and v must share a dtype"):
        ops.attention(q, q.astype(jnp.bfloat16), q)


def test_benchmark_section_runs_on_tiny_sizes():
    from benchmarks import attention as bench

    result = bench.run(tiny=True, repeats=1, sizes=(16,))
    (row,) = result["rows"]
    assert row["T"] == 16 and row["grad rel err"] < 1e-4
    assert row["residual MiB manual"] < row["residual MiB reference"]
