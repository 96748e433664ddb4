"""Attention layers: multi-head attention, a pre-layer-norm transformer block, learned positions.

Sequences are batch-major, ``x: (batch, time, features)``. Every step goes through
:mod:`jaxbp.ops` (dense projections, reshapes, the blocked :func:`jaxbp.ops.attention`,
layer norm, GELU, the residual adds, embedding lookups), so a transformer built here
differentiates only through hand-written rules.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxbp import ops
from jaxbp.core import Array, Shape
from jaxbp.init import DenseInit, Initializer
from jaxbp.nn._activations import gelu
from jaxbp.nn._combinators import residual, serial, shape_dependent
from jaxbp.nn._contract import Layer, Params, State, of_kind
from jaxbp.nn._dense import dense, require_features
from jaxbp.nn._normalization import layer_norm
from jaxbp.ops.attention import DEFAULT_BLOCK_SIZE
from jaxbp.validation import positive_int

_PROJECTIONS = ("q", "k", "v", "out")


def _sequence_shape(op: str, input_shape: Shape) -> Shape:
    if len(input_shape) != 3:
        raise ValueError(f"{op}: input_shape must be (batch, time, features), got {tuple(input_shape)}")
    return tuple(input_shape)


def multi_head_attention(
    num_heads: int,
    *,
    kv_heads: int | None = None,
    head_dim: int | None = None,
    causal: bool = False,
    block_size: int = DEFAULT_BLOCK_SIZE,
    init: str | DenseInit | Initializer = "glorot_normal",
) -> Layer:
    """Self-attention with ``num_heads`` heads: ``x: (B, T, D) -> (B, T, D)``.

    ``q = x W_q``, ``k = x W_k``, ``v = x W_v`` split into heads of ``head_dim``
    (default ``D / num_heads``), ``y = attention(q, k, v)`` (:func:`jaxbp.ops.attention`,
    O(T) memory), heads concatenated and projected back: ``out = y W_out + b_out``.
    ``params = {"q", "k", "v", "out"}``, each a dense layer's ``{"w", "b"}``; with
    ``kv_heads`` < ``num_heads`` (dividing it) keys and values have fewer heads
    (grouped-query attention).
    """
    op = "multi_head_attention"
    num_heads = positive_int(op, "num_heads", num_heads)
    kv_heads = num_heads if kv_heads is None else positive_int(op, "kv_heads", kv_heads)
    if num_heads % kv_heads:
        raise ValueError(f"{op}: kv_heads ({kv_heads}) must divide num_heads ({num_heads})")
    if head_dim is not None:
        positive_int(op, "head_dim", head_dim)

    def init_fn(key: Array, input_shape: Shape) -> tuple[Params, Shape]:
        input_shape = _sequence_shape(op, input_shape)
        features = require_features(op, input_shape)
        if head_dim is None and features % num_heads:
            raise ValueError(f"{op}: {features} features do not split into {num_heads} heads; pass head_dim explicitly")
        size = head_dim or features // num_heads
        widths = {"q": num_heads * size, "k": kv_heads * size, "v": kv_heads * size}
        keys = dict(zip(_PROJECTIONS, jax.random.split(key, 4)))
        params = {name: dense(width, init).init(keys[name], input_shape)[0] for name, width in widths.items()}
        params["out"] = dense(features, init).init(keys["out"], (*input_shape[:-1], widths["q"]))[0]
        return params, input_shape

    def forward(params: Params, x: Array, state: State, **kwargs: Any) -> tuple[Array, State]:
        batch, time = x.shape[:2]

        def heads(name: str, count: int) -> Array:  # (B, T, count * head_dim) -> (B, T, count, head_dim)
            return ops.reshape(ops.dense(params[name], x), (batch, time, count, -1))

        y = ops.attention(
            heads("q", num_heads), heads("k", kv_heads), heads("v", kv_heads), causal=causal, block_size=block_size
        )
        return ops.dense(params["out"], ops.reshape(y, (batch, time, -1))), state

    return Layer(init_fn, forward, parameter_groups=lambda params: [("dense", params[name]) for name in _PROJECTIONS])


def transformer_block(
    num_heads: int,
    *,
    mlp_ratio: int = 4,
    kv_heads: int | None = None,
    causal: bool = True,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> Layer:
    """A pre-layer-norm transformer block (GPT-2 style), ``(B, T, D) -> (B, T, D)``::

        x = x + attention(layer_norm(x))
        x = x + dense_D(gelu(dense_{mlp_ratio D}(layer_norm(x))))

    The MLP widths follow the input's ``D``, known at ``init``.
    """
    mlp_ratio = positive_int("transformer_block", "mlp_ratio", mlp_ratio)
    attention = multi_head_attention(num_heads, kv_heads=kv_heads, causal=causal, block_size=block_size)

    def block(input_shape: Shape) -> Layer:
        features = require_features("transformer_block", _sequence_shape("transformer_block", input_shape))
        return serial(
            residual(layer_norm(), attention),
            residual(layer_norm(), dense(mlp_ratio * features), gelu(), dense(features)),
        )

    return shape_dependent(block, probe_shape=(1, 1, 1))


def position_embedding(max_length: int, stddev: float = 0.02) -> Layer:
    """Learned absolute positions: ``y[b, t] = x[b, t] + w[t]`` for ``x: (B, T, D)``, ``T <= max_length``.

    ``params = {"w": (max_length, D)}`` drawn from ``N(0, stddev^2)``; the lookup is
    :func:`jaxbp.ops.embedding` of the positions ``0..T-1``, so ``dw[t] = sum_b dy[b, t]``.
    """
    max_length = positive_int("position_embedding", "max_length", max_length)

    def init(key: Array, input_shape: Shape) -> tuple[Params, Shape]:
        input_shape = _sequence_shape("position_embedding", input_shape)
        features = require_features("position_embedding", input_shape)
        return {"w": stddev * jax.random.normal(key, (max_length, features))}, input_shape

    def forward(params: Params, x: Array, state: State, **kwargs: Any) -> tuple[Array, State]:
        time = x.shape[-2]
        if time > max_length:
            raise ValueError(f"position_embedding: sequence length {time} exceeds max_length {max_length}")
        positions = jnp.broadcast_to(jnp.arange(time), x.shape[:-1])
        return ops.add(x, ops.embedding(params, positions)), state

    return Layer(init, forward, of_kind("position_embedding"))
