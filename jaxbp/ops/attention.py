"""Scaled dot-product attention with an O(T)-memory, flash-attention-style backward.

Forward (per batch and head; the math of :mod:`jaxbp.reference.attention`)::

    S = scale * Q Kᵀ  (masked entries -inf),   L = logsumexp_j S,   P = exp(S - L),   Y = P V

Neither pass ever holds the ``Tq × Tk`` matrix. Both scan (``lax.scan``) over tiles of
``block_size`` keys by a block of queries (Milakov & Gimelshein 2018; Dao et al. 2022,
FlashAttention): the forward keeps a running row maximum ``m``, row sum ``l`` and
unnormalised output ``acc`` and rescales them by ``exp(m_old - m_new)`` at each tile; the
backward recomputes each tile's ``P`` from the saved logsumexp. Without ``causal`` a
tile's query block is every query (one step per key block); with ``causal`` queries
come in blocks of ``block_size`` too and the tiles wholly above the diagonal are never
visited, which skips close to half the work. Peak memory is O(B·H·Tq·block_size) and the
residuals are ``q, k, v, Y, L`` (plus the caller's mask) -- the reference's autodiff would
save ``P`` itself.

The primal (run when nothing is differentiated) is :func:`jaxbp.reference.attention`, the whole
score matrix; the tiled forward is only the forward rule: stripping it gives autodiff of the reference.

Fully masked rows output zeros, get zero gradient and have logsumexp -inf. NaN follows
the reference (a row with a NaN score or sum has a NaN logsumexp; masked entries have
P = dS = 0 whatever their row holds), so the gradient is NaN where autodiff of the
reference's is, with two named exceptions. (1) Skipped tiles: with ``causal``, a NaN in
``q``, ``k`` or ``v`` reaches the reference's masked entries by ``0 * NaN`` (in ``P V``,
``dSᵀ Q``, ``dS K``); in tiles never visited the tiled result stays finite. (2) D = rowsum(dY ∘ Y)
(which saves a pass): a NaN or inf in ``v`` at a masked key makes outputs NaN (``0 * NaN``, in
both), hence D and those rows' ``dQ``/``dK``, which autodiff keeps finite: extra NaN only where
the output is NaN already. Scores near 1e30 are beyond parity (XLA's compiled ``exp`` gives
NaN; autodiff of the reference differs between eager and ``jit`` there itself).
Grouped-query attention: ``k, v`` may have ``Hk`` heads, ``Hk`` dividing ``H``; query head ``h``
uses key/value head ``h // (H / Hk)``.
bf16/f16 inputs keep their dtype; scores, softmax statistics and sums are float32.
Custom VJPs are reverse-mode only: ``jax.jvp``/``jax.jacfwd`` raise on this op.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxbp import reference
from jaxbp.core import Array, accumulation_dtype, as_array, as_float_array, define_op, require_rank, static_float
from jaxbp.reference.attention import causal_allowed, default_scale
from jaxbp.validation import positive_int

DEFAULT_BLOCK_SIZE = 128


class AttentionResiduals(NamedTuple):
    q: Array  # (B, Tq, H, D)
    k: Array  # (B, Tk, Hk, D)
    v: Array  # (B, Tk, Hk, Dv)
    y: Array  # (B, Tq, H, Dv) the output, in q's dtype
    logsumexp: Array  # (B, H, Tq) accumulation dtype, -inf for fully masked rows
    mask: Array | None  # the caller's boolean mask (4-d, broadcastable to (B, H, Tq, Tk)) or None


class _TileGrid(NamedTuple):
    """Static layout: query heads split as (Hk, G) so one key head serves G query heads; queries
    in blocks of ``q_block`` rows, keys in blocks of ``k_block``; ``pairs`` = the (query block,
    key block) tiles the scans visit. Without ``causal`` the queries are one block (each step
    multiplies every query by one key block); with it they are blocked too and the tiles wholly
    above the diagonal, where no query may attend any key, are skipped."""

    q_len: int
    k_len: int
    kv_heads: int
    groups: int
    q_block: int
    k_block: int
    pairs: tuple[tuple[int, int], ...]

    @property
    def q_padded(self) -> int:
        return -(-self.q_len // self.q_block) * self.q_block

    @property
    def k_padded(self) -> int:
        return -(-self.k_len // self.k_block) * self.k_block


def _tile_grid(q: Array, k: Array, causal: bool, block_size: int) -> _TileGrid:
    q_len, k_len, kv_heads = q.shape[1], k.shape[1], k.shape[2]
    k_block = min(block_size, k_len)
    q_block = min(block_size, q_len) if causal else q_len
    offset = k_len - q_len  # causal: query r attends key c iff c <= r + offset

    def visited(i: int, j: int) -> bool:  # the tile's first key against its last query
        return not causal or j * k_block <= min((i + 1) * q_block, q_len) - 1 + offset

    pairs = tuple((i, j) for i in range(-(-q_len // q_block)) for j in range(-(-k_len // k_block)) if visited(i, j))
    return _TileGrid(q_len, k_len, kv_heads, q.shape[2] // kv_heads, q_block, k_block, pairs)


def _padded(x: Array, axis: int, size: int) -> Array:
    """``x`` zero (False) padded at the end of ``axis`` to ``size``."""
    padding = [(0, 0)] * x.ndim
    padding[axis] = (0, size - x.shape[axis])
    return jnp.pad(x, padding)


def _grouped(x: Array, grid: _TileGrid) -> Array:
    """(B, Tq, H, D) -> (B, Hk, G, Tq_padded, D): head-major, so every einsum below is a batched
    matmul over (B, Hk) with no transposes inside the scans; query rows padded to whole blocks."""
    x = x.reshape(*x.shape[:2], grid.kv_heads, grid.groups, x.shape[-1])
    return _padded(jnp.moveaxis(x, 1, 3), 3, grid.q_padded)


def _ungrouped(x: Array, grid: _TileGrid) -> Array:
    """(B, Hk, G, Tq_padded, D) -> (B, Tq, H, D), the inverse of :func:`_grouped`."""
    x = jnp.moveaxis(x[:, :, :, : grid.q_len], 3, 1)
    return x.reshape(*x.shape[:2], -1, x.shape[-1])


def _key_major(x: Array, grid: _TileGrid) -> Array:
    """(B, Tk, Hk, D) -> (B, Hk, Tk_padded, D)."""
    return _padded(jnp.swapaxes(x, 1, 2), 2, grid.k_padded)


def _grouped_mask(mask: Array | None, grid: _TileGrid) -> Array | None:
    """The caller's (mB, mH, mQ, mK) mask as (mB, Hk | 1, G | 1, mQ, mK), query and key axes
    padded to whole blocks where they are not broadcast (size 1)."""
    if mask is None:
        return None
    heads = (grid.kv_heads, grid.groups) if mask.shape[1] > 1 else (1, 1)
    mask = mask.reshape(mask.shape[0], *heads, *mask.shape[2:])
    if mask.shape[3] > 1:
        mask = _padded(mask, 3, grid.q_padded)
    return _padded(mask, 4, grid.k_padded) if mask.shape[4] > 1 else mask


class _TileCursor(NamedTuple):
    """Where one scan step's tile sits, as traced offsets, and how to cut and update its pieces."""

    q_start: Array
    k_start: Array
    grid: _TileGrid

    def rows(self, x: Array) -> Array:  # the tile's query rows of a (B, Hk, G, Tq_padded, ...) array
        return lax.dynamic_slice_in_dim(x, self.q_start, self.grid.q_block, axis=3)

    def keys(self, x: Array) -> Array:  # the tile's keys of a (B, Hk, Tk_padded, D) array
        return lax.dynamic_slice_in_dim(x, self.k_start, self.grid.k_block, axis=2)

    def put_rows(self, x: Array, part: Array) -> Array:
        return lax.dynamic_update_slice_in_dim(x, part, self.q_start, axis=3)

    def add_keys(self, x: Array, part: Array) -> Array:
        return lax.dynamic_update_slice_in_dim(x, self.keys(x) + part, self.k_start, axis=2)

    def scores(self, q_i: Array, k_j: Array, scale: float) -> Array:
        """S = scale * Q_i K_jᵀ for this tile's query rows ``q_i`` and keys ``k_j``, (B, Hk, G, q_block, k_block)."""
        wide = accumulation_dtype(q_i.dtype)
        return scale * jnp.einsum("bhgqd,bhkd->bhgqk", q_i, k_j, preferred_element_type=wide)

    def allowed(self, mask: Array | None, causal: bool) -> Array | None:
        """Booleans broadcastable to the tile's scores, True where the query may attend the key
        (a real key, the causal rule, the caller's mask); None when every entry is allowed."""
        grid = self.grid
        key_positions = self.k_start + jnp.arange(grid.k_block)
        allowed = []
        if grid.k_padded != grid.k_len:
            allowed.append(key_positions < grid.k_len)
        if causal:
            query_positions = self.q_start + jnp.arange(grid.q_block)
            allowed.append(causal_allowed(query_positions, key_positions, grid.q_len, grid.k_len))
        if mask is not None:
            mask = mask if mask.shape[3] == 1 else self.rows(mask)
            allowed.append(
                mask if mask.shape[4] == 1 else lax.dynamic_slice_in_dim(mask, self.k_start, grid.k_block, 4)
            )
        return functools.reduce(jnp.logical_and, allowed) if allowed else None


def _where_allowed(allowed: Array | None, values: Array, fill: float) -> Array:
    return values if allowed is None else jnp.where(allowed, values, fill)


# A scan over at most this many tiles is unrolled: for short sequences the loop's per-step
# overhead dominates, while unrolling long ones slows the backward (larger programs).
_UNROLL_MAX_TILES = 16


def _unroll(grid: _TileGrid) -> bool:
    return len(grid.pairs) <= _UNROLL_MAX_TILES


def _tile_starts(grid: _TileGrid) -> tuple[Array, Array]:
    """The scans' inputs: each visited tile's first query row and first key."""
    pairs = np.array(grid.pairs, dtype=np.int32).reshape(-1, 2)
    return jnp.asarray(pairs[:, 0] * grid.q_block), jnp.asarray(pairs[:, 1] * grid.k_block)


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
    """Online-softmax forward over the tiles: ``(Y, L)`` without forming S.

    Carry per query row: m (running max), l (running sum of exp(S - m)), acc (running sum
    of exp(S - m) V). A tile with scores S_ij updates its rows: m' = max(m, max_j S_ij),
    c = exp(m - m'), l' = c l + sum exp(S_ij - m'), acc' = c acc + exp(S_ij - m') V_j.
    At the end Y = acc / l and L = m + log l (Y = 0, L = -inf when l = 0).
    """
    grid = _tile_grid(q, k, causal, block_size)
    wide = accumulation_dtype(q.dtype)
    q5, k4, v4, mask5 = _grouped(q, grid), _key_major(k, grid), _key_major(v, grid), _grouped_mask(mask, grid)
    rows = q5.shape[:4]

    def step(carry, starts):
        tile = _TileCursor(*starts, grid)
        row_max, row_sum, acc = (tile.rows(x) for x in carry)
        scores = _where_allowed(tile.allowed(mask5, causal), tile.scores(tile.rows(q5), tile.keys(k4), scale), -jnp.inf)
        new_max = jnp.maximum(row_max, jnp.max(scores, axis=-1))
        safe_max = jnp.where(new_max == -jnp.inf, 0.0, new_max)  # rows with nothing allowed yet
        exponentials = jnp.exp(scores - safe_max[..., None])
        correction = jnp.exp(row_max - safe_max)
        row_sum = correction * row_sum + jnp.sum(exponentials, axis=-1)
        acc = correction[..., None] * acc + jnp.einsum(
            "bhgqk,bhkd->bhgqd", exponentials, tile.keys(v4), preferred_element_type=wide
        )
        return tuple(tile.put_rows(full, part) for full, part in zip(carry, (new_max, row_sum, acc))), None

    init = (jnp.full(rows, -jnp.inf, wide), jnp.zeros(rows, wide), jnp.zeros((*rows, v.shape[-1]), wide))
    (row_max, row_sum, acc), _ = lax.scan(
        step, _varying_like(init, q, k, v, mask), _tile_starts(grid), unroll=_unroll(grid)
    )
    y = _ungrouped(acc / jnp.where(row_sum == 0, 1.0, row_sum)[..., None], grid).astype(q.dtype)
    # -inf + log 1 for a row with nothing allowed; NaN for a row whose sum is NaN
    logsumexp = row_max + jnp.log(jnp.where(row_sum == 0, 1.0, row_sum))
    return y, logsumexp[..., : grid.q_len].reshape(q.shape[0], q.shape[2], grid.q_len)


def _attention_primal(q, k, v, mask, causal, scale, block_size):
    """:func:`jaxbp.reference.attention`; ``block_size`` (static) only shapes the forward rule."""
    return reference.attention(q, k, v, mask, causal=causal, scale=scale)


def _attention_fwd(q, k, v, mask, causal, scale, block_size):
    y, logsumexp = _blocked_attention(q, k, v, mask, causal, scale, block_size)
    return y, AttentionResiduals(q, k, v, y, logsumexp, mask)


def _attention_bwd(causal, scale, block_size, residuals, dy):
    """Forward: S = scale * Q Kᵀ (masked -inf), L = logsumexp_j S, P = exp(S - L), Y = P V.
    Backward, one tile (query block i, key block j) at a time (P_ij recomputed from L, never stored):
        D    = rowsum(dY ∘ Y)                 (= rowsum(P ∘ dP), computed once)
        P_ij = exp(S_ij - L_i),   dV_j += P_ijᵀ dY_i,   dP_ij = dY_i V_jᵀ
        dS_ij = P_ij ∘ (dP_ij - D_i)          (softmax backward)
        dQ_i += scale * dS_ij K_j,   dK_j += scale * dS_ijᵀ Q_i
    With grouped-query attention dK_j, dV_j sum over the G query heads sharing a key head.
    Masked entries have P = dS = 0 by a select, not by exp(-inf) = 0 and 0 * dP, which are NaN in
    a NaN row or at a NaN v (autodiff of the reference gives 0 there); skipped causal tiles are all
    masked; fully masked rows (L = -inf) give zeros. The mask gets no cotangent.
    """
    q, k, v, y, logsumexp, mask = residuals
    grid = _tile_grid(q, k, causal, block_size)
    wide = accumulation_dtype(q.dtype)
    q5, dy5, k4, v4, mask5 = (
        _grouped(q, grid),
        _grouped(dy, grid),
        _key_major(k, grid),
        _key_major(v, grid),
        _grouped_mask(mask, grid),
    )
    row_dot = jnp.einsum("bhgqd,bhgqd->bhgq", dy5, _grouped(y, grid), preferred_element_type=wide)  # D
    safe_logsumexp = jnp.where(logsumexp == -jnp.inf, jnp.inf, logsumexp)  # exp(-inf - inf) = 0
    safe_logsumexp = _padded(safe_logsumexp.reshape(q5.shape[:3] + (grid.q_len,)), 3, grid.q_padded)

    def step(carry, starts):
        dq, dk, dv = carry
        tile = _TileCursor(*starts, grid)
        q_i, dy_i, k_j = tile.rows(q5), tile.rows(dy5), tile.keys(k4)
        allowed = tile.allowed(mask5, causal)
        scores = tile.scores(q_i, k_j, scale)
        probabilities = _where_allowed(allowed, jnp.exp(scores - tile.rows(safe_logsumexp)[..., None]), 0.0)
        dv_j = jnp.einsum("bhgqk,bhgqd->bhkd", probabilities, dy_i, preferred_element_type=wide)
        dprobabilities = jnp.einsum("bhgqd,bhkd->bhgqk", dy_i, tile.keys(v4), preferred_element_type=wide)
        dscores = _where_allowed(allowed, scale * probabilities * (dprobabilities - tile.rows(row_dot)[..., None]), 0.0)
        dq_i = jnp.einsum("bhgqk,bhkd->bhgqd", dscores, k_j, preferred_element_type=wide)
        dk_j = jnp.einsum("bhgqk,bhgqd->bhkd", dscores, q_i, preferred_element_type=wide)
        return (tile.put_rows(dq, tile.rows(dq) + dq_i), tile.add_keys(dk, dk_j), tile.add_keys(dv, dv_j)), None

    init = (jnp.zeros(q5.shape, wide), jnp.zeros(k4.shape, wide), jnp.zeros(v4.shape, wide))
    (dq, dk, dv), _ = lax.scan(step, _varying_like(init, residuals, dy), _tile_starts(grid), unroll=_unroll(grid))

    def unblock(x: Array, like: Array) -> Array:  # (B, Hk, Tk_padded, D) -> (B, Tk, Hk, D)
        return jnp.swapaxes(x[:, :, : grid.k_len], 1, 2).astype(like.dtype)

    return _ungrouped(dq, grid).astype(q.dtype), unblock(dk, k), unblock(dv, v), None


_attention = define_op(_attention_primal, _attention_fwd, _attention_bwd, nondiff_argnums=(4, 5, 6))


# --------------------------------------------------------------------- public op


def _check_mask(op: str, mask: Any, target: tuple[int, ...]) -> Array:
    """``mask`` as a 4-d boolean array broadcastable to ``target = (B, H, Tq, Tk)``."""
    mask = as_array(op, "mask", mask)
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
      key outputs zeros and passes no gradient. An empty batch, query time, head or value
      axis gives the empty output (zero gradients), as plain jnp does; zero keys, zero
      key/value heads or ``head_dim`` 0 raise ``ValueError``.

    NaN: the gradient is NaN exactly where autodiff of the reference's is (see the module
    docstring for the one causal exception).
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
    if k.shape[2] == 0:
        raise ValueError(f"{op}: k and v need at least one key/value head, got k {tuple(k.shape)}")
    if q.shape[2] % k.shape[2]:
        raise ValueError(
            f"{op}: the number of key/value heads ({k.shape[2]}) must divide the number of query heads "
            f"({q.shape[2]}), got q {tuple(q.shape)} and k {tuple(k.shape)}"
        )
    if k.shape[1] == 0:
        raise ValueError(f"{op}: k_time must be positive (a softmax over no keys), got k {tuple(k.shape)}")
    if q.shape[-1] == 0:
        raise ValueError(f"{op}: head_dim must be positive, got q {tuple(q.shape)} and k {tuple(k.shape)}")
    if not isinstance(causal, bool):
        raise TypeError(f"{op}: causal must be a Python bool (static under jit), got {causal!r}")
    block_size = positive_int(op, "block_size", block_size)
    scale = default_scale(q.shape[-1]) if scale is None else static_float(op, "scale", scale)
    if mask is not None:
        mask = _check_mask(op, mask, (q.shape[0], q.shape[2], q.shape[1], k.shape[1]))
    out_shape = (*q.shape[:3], v.shape[-1])
    if 0 in out_shape:  # no batch, query, head or value feature: an empty output, no gradient
        return jnp.zeros(out_shape, q.dtype)
    return _attention(q, k, v, mask, causal, scale, block_size)
