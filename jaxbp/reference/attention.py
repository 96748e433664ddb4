"""Scaled dot-product attention (reference forward math, the whole T×T score matrix at once).

With ``q: (B, Tq, H, D)``, ``k: (B, Tk, Hk, D)``, ``v: (B, Tk, Hk, Dv)`` and ``Hk``
dividing ``H`` (grouped-query attention: query head ``h`` reads key/value head
``h // (H / Hk)``), per batch and head::

    S = scale * Q Kᵀ                     (Tq, Tk), scale defaults to 1 / sqrt(D)
    S[i, j] = -inf where key j is not allowed for query i
    L_i = log sum_j exp(S[i, j])         the per-row logsumexp
    P = exp(S - L),   Y = P V            (Tq, Dv)

Key ``j`` is allowed for query ``i`` when ``mask[b, h, i, j]`` is True (``mask``
boolean, broadcastable to ``(B, H, Tq, Tk)``) and, if ``causal``, ``j <= i + Tk - Tq``
(queries are the last ``Tq`` positions of the key sequence: bottom-right aligned, so
``Tq == Tk`` gives the usual lower triangle and a single query attends every key).

A row with no allowed key has ``L = -inf`` and, by definition, output 0 (not the NaN
of 0/0); autodiff through this file then gives it zero gradient. A masked entry has
``P = 0`` exactly, whatever its row holds. A row whose softmax is undefined (a NaN score, or
``+inf`` scores, whose sum is NaN) is NaN throughout: ``L``, every allowed ``P``, its
output and, under autodiff, every gradient the row reaches. As usual ``0 * NaN = NaN``: a NaN in ``v`` reaches every
output row, masked or not, through ``Y = P V``. Scores and the softmax statistics are
accumulated in float32 for bf16/f16 inputs.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp
from jax import lax

from jaxbp.core import Array, accumulation_dtype


class AttentionParts(NamedTuple):
    y: Array  # (B, Tq, H, Dv) in q's dtype
    logsumexp: Array  # (B, H, Tq) accumulation dtype; -inf for a row with no allowed key


def default_scale(head_dim: int) -> float:
    """The usual ``1 / sqrt(head_dim)`` of Vaswani et al. (2017)."""
    return 1.0 / math.sqrt(head_dim)


def causal_allowed(query_positions: Array, key_positions: Array, q_len: int, k_len: int) -> Array:
    """``(len(query_positions), len(key_positions))`` booleans: key j <= query i + (Tk - Tq)."""
    return key_positions[None, :] <= query_positions[:, None] + (k_len - q_len)


def attention_parts(
    q: Array, k: Array, v: Array, mask: Array | None = None, *, causal: bool = False, scale: float | None = None
) -> AttentionParts:
    """``softmax(scale * Q Kᵀ + masking) V`` and its per-row logsumexp; see the module docstring."""
    q_len, heads, head_dim = q.shape[1:]
    k_len, kv_heads = k.shape[1:3]
    scale = default_scale(head_dim) if scale is None else scale
    wide = accumulation_dtype(q.dtype)
    k = jnp.repeat(k, heads // kv_heads, axis=2).astype(wide)
    v = jnp.repeat(v, heads // kv_heads, axis=2).astype(wide)
    scores = scale * jnp.einsum("bqhd,bkhd->bhqk", q.astype(wide), k)
    allowed = jnp.ones((1, 1, 1, 1), bool) if mask is None else mask
    if causal:
        allowed = allowed & causal_allowed(jnp.arange(q_len), jnp.arange(k_len), q_len, k_len)
    scores = jnp.where(allowed, scores, -jnp.inf)
    row_max = lax.stop_gradient(jnp.max(scores, axis=-1, keepdims=True))  # cancels in P; only for range
    row_max = jnp.where(row_max == -jnp.inf, 0.0, row_max)  # a NaN row keeps its NaN
    exponentials = jnp.exp(scores - row_max)
    row_sum = jnp.sum(exponentials, axis=-1, keepdims=True)
    # masked: 0 / sum, which is NaN in a NaN row (so is exp(-inf - NaN)); P = 0 there by definition
    probabilities = jnp.where(allowed, exponentials / jnp.where(row_sum == 0, 1.0, row_sum), 0.0)
    y = jnp.einsum("bhqk,bkhd->bqhd", probabilities, v)
    return AttentionParts(y.astype(q.dtype), (row_max + jnp.log(row_sum))[..., 0])


def attention(
    q: Array, k: Array, v: Array, mask: Array | None = None, *, causal: bool = False, scale: float | None = None
) -> Array:
    """``softmax(scale * Q Kᵀ + masking) V``; see :func:`attention_parts`."""
    return attention_parts(q, k, v, mask, causal=causal, scale=scale).y
