"""Scaled dot-product attention with an O(T)-memory, flash-attention-style backward.

Forward (per batch and head; the math of :mod:`jaxbp.reference.attention`)::

    S = scale * Q Kᵀ  (masked entries -inf),   L = logsumexp_j S,   P = exp(S - L),   Y = P V

Neither pass ever holds the ``Tq × Tk`` matrix. Keys and values are processed in
blocks of ``block_size`` with ``lax.scan`` (Milakov & Gimelshein 2018; Dao et al.
2022, FlashAttention): the forward keeps a running row maximum ``m``, row sum ``l``
and unnormalised output ``acc`` and rescales them by ``exp(m_old - m_new)`` at each
block; the backward recomputes each block's ``P`` from the saved logsumexp. Peak
memory is O(B·H·Tq·block_size) and the residuals are ``q, k, v, Y, L`` (plus the
caller's mask) -- the reference's autodiff would save ``P`` itself.

Fully masked rows (no allowed key) output zeros and get zero gradient; their
logsumexp is -inf. Grouped-query attention: ``k, v`` may have ``Hk`` heads with
``Hk`` dividing ``H``; query head ``h`` uses key/value head ``h // (H / Hk)``.
bf16/f16 inputs keep their dtype; scores, softmax statistics and sums are float32.
Custom VJPs are reverse-mode only: ``jax.jvp``/``jax.jacfwd`` raise on this op.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
from jax import lax

from jaxbp.core import Array, accumulation_dtype, as_float_array, define_op, require_rank, static_float
from jaxbp.reference.attention import causal_allowed, default_scale

DEFAULT_BLOCK_SIZE = 128


class AttentionResiduals(NamedTuple):
    q: Array  # (B, Tq, H, D)
    k: Array  # (B, Tk, Hk, D)
    v: Array  # (B, Tk, Hk, Dv)
    y: Array  # (B, Tq, H, Dv) the output, in q's dtype
    logsumexp: Array  # (B, H, Tq) accumulation dtype, -inf for fully masked rows
    mask: Array | None  # the caller's boolean mask (4-d, broadcastable to (B, H, Tq, Tk)) or None


class _Blocks(NamedTuple):
    """Static layout: query heads are split as (Hk, G) so one key head serves G query heads."""

    q_len: int
    k_len: int
    kv_heads: int
    groups: int
    block: int
    num_blocks: int


def _layout(q: Array, k: Array, block_size: int) -> _Blocks:
    k_len, kv_heads = k.shape[1:3]
    block = min(block_size, k_len)
    return _Blocks(q.shape[1], k_len, kv_heads, q.shape[2] // kv_heads, block, -(-k_len // block))


def _grouped(x: Array, blocks: _Blocks) -> Array:
    """(B, T, H, D) -> (B, Hk, G, T, D): head-major, so every einsum below is a batched matmul
    over (B, Hk) with no transposes inside the scan."""
    x = x.reshape(*x.shape[:2], blocks.kv_heads, blocks.groups, x.shape[-1])
    return jnp.moveaxis(x, 1, 3)


def _ungrouped(x: Array) -> Array:
    """(B, Hk, G, T, D) -> (B, T, H, D), the inverse of :func:`_grouped`."""
    x = jnp.moveaxis(x, 3, 1)
    return x.reshape(*x.shape[:2], -1, x.shape[-1])


def _key_blocks(x: Array, blocks: _Blocks, axis: int) -> Array:
    """Split key axis ``axis`` of ``x`` into blocks (zero/False padded), block index first."""
    padding = [(0, 0)] * x.ndim
    padding[axis] = (0, blocks.num_blocks * blocks.block - x.shape[axis])
    x = jnp.pad(x, padding)
    x = x.reshape(*x.shape[:axis], blocks.num_blocks, blocks.block, *x.shape[axis + 1 :])
    return jnp.moveaxis(x, axis, 0)


class _KeyBlock(NamedTuple):
    k: Array  # (B, Hk, block, D)
    v: Array  # (B, Hk, block, Dv)
    mask: Array | None  # broadcasts to (B, Hk, G, Tq, block), or None
    start: Array  # () index of the block's first key


def _scan_inputs(k: Array, v: Array, mask: Array | None, blocks: _Blocks) -> tuple[_KeyBlock, Array | None]:
    """The per-block scan inputs, and the mask when it is shared by every block (key axis of size 1)."""
    grouped_mask = None
    if mask is not None:  # (mB, mH, mQ, mK) -> (mB, Hk | 1, G | 1, mQ, mK)
        heads = (blocks.kv_heads, blocks.groups) if mask.shape[1] > 1 else (1, 1)
        grouped_mask = mask.reshape(mask.shape[0], *heads, *mask.shape[2:])
    per_block_mask = grouped_mask is not None and grouped_mask.shape[-1] > 1
    xs = _KeyBlock(
        _key_blocks(jnp.swapaxes(k, 1, 2), blocks, 2),
        _key_blocks(jnp.swapaxes(v, 1, 2), blocks, 2),
        _key_blocks(cast(Array, grouped_mask), blocks, 4) if per_block_mask else None,  # per_block_mask implies a mask
        jnp.arange(blocks.num_blocks) * blocks.block,
    )
    return xs, None if per_block_mask else grouped_mask


def _masked_scores(q5: Array, key_block: _KeyBlock, shared_mask: Array | None, blocks: _Blocks, causal, scale):
    """S = scale * Q K_jᵀ for one key block, (B, Hk, G, Tq, block), -inf where not allowed."""
    wide = accumulation_dtype(q5.dtype)
    scores = scale * jnp.einsum("bhgqd,bhkd->bhgqk", q5, key_block.k, preferred_element_type=wide)
    key_positions = key_block.start + jnp.arange(blocks.block)
    allowed = []
    if blocks.num_blocks * blocks.block != blocks.k_len:
        allowed.append(key_positions < blocks.k_len)
    if causal:
        allowed.append(causal_allowed(jnp.arange(blocks.q_len), key_positions, blocks.q_len, blocks.k_len))
    allowed += [m for m in (key_block.mask, shared_mask) if m is not None]
    if not allowed:
        return scores
    return jnp.where(functools.reduce(jnp.logical_and, allowed), scores, -jnp.inf)


def _varying_like(carry: Any, *inputs: Any) -> Any:
    """``carry`` marked device-varying over every mesh axis that an array of ``inputs`` varies
    over: inside ``shard_map`` a scan's initial carry must have the type its body returns.
    A no-op outside ``shard_map``."""

    def vma(x) -> frozenset:  # the mesh axes x varies over (JAX 0.10: aval.manual_axis_type.varying)
        aval = jax.typeof(x)
        manual = getattr(aval, "manual_axis_type", None)
        return manual.varying if manual is not None else getattr(aval, "vma", frozenset())

    axes = frozenset().union(*(vma(x) for x in jax.tree_util.tree_leaves(inputs)))

    def cast(x):
        missing = tuple(sorted(axes - vma(x)))
        return lax.pcast(x, missing, to="varying") if missing else x

    return jax.tree_util.tree_map(cast, carry)


def _blocked_attention(q, k, v, mask, causal, scale, block_size) -> tuple[Array, Array]:
    """Online-softmax forward over key blocks: ``(Y, L)`` without forming S.

    Carry per row: m (running max), l (running sum of exp(S - m)), acc (running sum of
    exp(S - m) V). A new block with scores S_j: m' = max(m, max_j S_j),
    c = exp(m - m'), l' = c l + sum exp(S_j - m'), acc' = c acc + exp(S_j - m') V_j.
    At the end Y = acc / l and L = m + log l (Y = 0, L = -inf when l = 0).
    """
    blocks = _layout(q, k, block_size)
    wide = accumulation_dtype(q.dtype)
    q5 = _grouped(q, blocks)
    xs, shared_mask = _scan_inputs(k, v, mask, blocks)
    batch = q.shape[0]
    rows = (batch, blocks.kv_heads, blocks.groups, blocks.q_len)

    def step(carry, key_block):
        row_max, row_sum, acc = carry
        scores = _masked_scores(q5, key_block, shared_mask, blocks, causal, scale)
        new_max = jnp.maximum(row_max, jnp.max(scores, axis=-1))
        safe_max = jnp.where(new_max == -jnp.inf, 0.0, new_max)  # rows with nothing allowed yet
        exponentials = jnp.exp(scores - safe_max[..., None])
        correction = jnp.exp(row_max - safe_max)
        row_sum = correction * row_sum + jnp.sum(exponentials, axis=-1)
        acc = correction[..., None] * acc + jnp.einsum(
            "bhgqk,bhkd->bhgqd", exponentials, key_block.v, preferred_element_type=wide
        )
        return (new_max, row_sum, acc), None

    init = (jnp.full(rows, -jnp.inf, wide), jnp.zeros(rows, wide), jnp.zeros((*rows, v.shape[-1]), wide))
    (row_max, row_sum, acc), _ = lax.scan(step, _varying_like(init, q, k, v, mask), xs)
    y = acc / jnp.where(row_sum > 0, row_sum, 1.0)[..., None]  # (B, Hk, G, Tq, Dv)
    y = _ungrouped(y).astype(q.dtype)
    logsumexp = jnp.where(row_sum > 0, row_max + jnp.log(jnp.where(row_sum > 0, row_sum, 1.0)), -jnp.inf)
    return y, logsumexp.reshape(batch, q.shape[2], blocks.q_len)


def _attention_primal(q, k, v, mask, causal, scale, block_size):
    return _blocked_attention(q, k, v, mask, causal, scale, block_size)[0]


def _attention_fwd(q, k, v, mask, causal, scale, block_size):
    y, logsumexp = _blocked_attention(q, k, v, mask, causal, scale, block_size)
    return y, AttentionResiduals(q, k, v, y, logsumexp, mask)


def _attention_bwd(causal, scale, block_size, residuals, dy):
    """Forward: S = scale * Q Kᵀ (masked -inf), L = logsumexp_j S, P = exp(S - L), Y = P V.
    Backward, one key block j at a time (P_j recomputed from L, never stored):
        D   = rowsum(dY ∘ Y)                 (= rowsum(P ∘ dP), computed once)
        P_j = exp(S_j - L),    dV_j = P_jᵀ dY,    dP_j = dY V_jᵀ
        dS_j = P_j ∘ (dP_j - D)              (softmax backward)
        dQ += scale * dS_j K_j,    dK_j = scale * dS_jᵀ Q
    With grouped-query attention dK_j, dV_j sum over the G query heads sharing a key head.
    Masked entries have P = 0, hence dS = 0; fully masked rows (L = -inf) give zeros.
    The mask gets no cotangent.
    """
    q, k, v, y, logsumexp, mask = residuals
    blocks = _layout(q, k, block_size)
    wide = accumulation_dtype(q.dtype)
    q5, dy5 = _grouped(q, blocks), _grouped(dy, blocks)
    rows = (q.shape[0], blocks.kv_heads, blocks.groups, blocks.q_len)
    row_dot = jnp.einsum("bhgqd,bhgqd->bhgq", dy5, _grouped(y, blocks), preferred_element_type=wide)  # D
    safe_logsumexp = jnp.where(logsumexp == -jnp.inf, jnp.inf, logsumexp).reshape(rows)  # exp(-inf - inf) = 0
    xs, shared_mask = _scan_inputs(k, v, mask, blocks)

    def step(dq, key_block):
        scores = _masked_scores(q5, key_block, shared_mask, blocks, causal, scale)
        probabilities = jnp.exp(scores - safe_logsumexp[..., None])
        dv = jnp.einsum("bhgqk,bhgqd->bhkd", probabilities, dy5, preferred_element_type=wide)
        dprobabilities = jnp.einsum("bhgqd,bhkd->bhgqk", dy5, key_block.v, preferred_element_type=wide)
        dscores = scale * probabilities * (dprobabilities - row_dot[..., None])
        dq = dq + jnp.einsum("bhgqk,bhkd->bhgqd", dscores, key_block.k, preferred_element_type=wide)
        dk = jnp.einsum("bhgqk,bhgqd->bhkd", dscores, q5, preferred_element_type=wide)
        return dq, (dk.astype(k.dtype), dv.astype(v.dtype))

    dq, (dk, dv) = lax.scan(step, _varying_like(jnp.zeros(q5.shape, wide), residuals, dy), xs)

    def unblock(blocked: Array) -> Array:  # (num_blocks, B, Hk, block, D) -> (B, Tk, Hk, D)
        blocked = jnp.moveaxis(blocked, 0, 2)  # (B, Hk, num_blocks, block, D)
        blocked = blocked.reshape(*blocked.shape[:2], -1, blocked.shape[-1])[:, :, : blocks.k_len]
        return jnp.swapaxes(blocked, 1, 2)

    return _ungrouped(dq).astype(q.dtype), unblock(dk), unblock(dv), None


_attention = define_op(_attention_primal, _attention_fwd, _attention_bwd, nondiff_argnums=(4, 5, 6))


# --------------------------------------------------------------------- public op


def _check_mask(op: str, mask: Any, target: tuple[int, ...]) -> Array:
    """``mask`` as a 4-d boolean array broadcastable to ``target = (B, H, Tq, Tk)``."""
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        raise TypeError(f"{op}: mask must be a boolean array (True = attend), got dtype {mask.dtype}")
    if mask.ndim > 4 or any(m not in (1, t) for m, t in zip(mask.shape[::-1], target[::-1])):
        raise ValueError(
            f"{op}: mask of shape {tuple(mask.shape)} does not broadcast to (batch, heads, q_time, k_time) = {target}"
        )
    return mask.reshape((1,) * (4 - mask.ndim) + mask.shape)


def attention(
    q: Array,
    k: Array,
    v: Array,
    *,
    causal: bool = False,
    mask: Array | None = None,
    scale: float | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> Array:
    """Scaled dot-product attention ``softmax(scale * Q Kᵀ + masking) V``, memory O(T · block_size).

    Args:
      q: ``(batch, q_time, heads, head_dim)`` floating point.
      k: ``(batch, k_time, kv_heads, head_dim)``, same dtype; ``kv_heads`` divides ``heads``
        (fewer key/value heads than query heads is grouped-query attention).
      v: ``(batch, k_time, kv_heads, v_dim)``, same dtype.
      causal: static; query ``i`` attends key ``j`` only if ``j <= i + k_time - q_time``
        (bottom-right aligned: the queries are the last ``q_time`` positions).
      mask: optional boolean array broadcastable to ``(batch, heads, q_time, k_time)``,
        True = attend; combined with ``causal`` by logical and.
      scale: static multiplier of the scores, default ``1 / sqrt(head_dim)``.
      block_size: static positive int, keys processed per block in both passes.
    Returns:
      ``(batch, q_time, heads, v_dim)`` in the inputs' dtype. A query with no allowed
      key outputs zeros and passes no gradient.
    """
    op = "attention"
    q, k, v = (as_float_array(op, name, x) for name, x in (("q", q), ("k", k), ("v", v)))
    for name, x in (("q", q), ("k", k), ("v", v)):
        require_rank(op, name, x, rank=4)
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"{op}: q, k and v must share a dtype, got {q.dtype}, {k.dtype} and {v.dtype}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"{op}: q and k must have the same head_dim, got q {tuple(q.shape)} and k {tuple(k.shape)}")
    if k.shape[:3] != v.shape[:3]:
        raise ValueError(
            f"{op}: k and v must agree in (batch, k_time, kv_heads), got k {tuple(k.shape)} and v {tuple(v.shape)}"
        )
    if q.shape[0] != k.shape[0]:
        raise ValueError(f"{op}: q and k must have the same batch size, got q {tuple(q.shape)} and k {tuple(k.shape)}")
    if q.shape[2] % k.shape[2]:
        raise ValueError(
            f"{op}: the number of key/value heads ({k.shape[2]}) must divide the number of query heads "
            f"({q.shape[2]}), got q {tuple(q.shape)} and k {tuple(k.shape)}"
        )
    if q.shape[1] == 0 or k.shape[1] == 0:
        raise ValueError(f"{op}: q_time and k_time must be positive, got q {tuple(q.shape)} and k {tuple(k.shape)}")
    if not isinstance(causal, bool):
        raise TypeError(f"{op}: causal must be a Python bool (static under jit), got {causal!r}")
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size <= 0:
        raise ValueError(f"{op}: block_size must be a positive static int, got {block_size!r}")
    scale = default_scale(q.shape[-1]) if scale is None else static_float(op, "scale", scale)
    if mask is not None:
        mask = _check_mask(op, mask, (q.shape[0], q.shape[2], q.shape[1], k.shape[1]))
    return _attention(q, k, v, mask, causal, scale, block_size)
