"""A small decoder-only (GPT-style) language model, registered as ``"transformer"``.

Token ids ``(batch, time)`` -> logits ``(batch, time, vocab)``::

    x = token_embedding[ids] + position_embedding[0..T-1]
    x = transformer_block(x)            depth times (pre-layer-norm, causal attention, GELU MLP)
    logits = dense_vocab(layer_norm(x))

Trained with ``ops.softmax_cross_entropy(logits, next_ids)`` (the mean over batch and time).
"""

from __future__ import annotations

from jaxbp import nn
from jaxbp.models._registry import register_model
from jaxbp.ops.attention import DEFAULT_BLOCK_SIZE
from jaxbp.validation import positive_int


def transformer_lm(
    vocab_size: int,
    *,
    dim: int = 64,
    depth: int = 2,
    num_heads: int = 4,
    kv_heads: int | None = None,
    max_length: int = 256,
    mlp_ratio: int = 4,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> nn.Layer:
    """The decoder-only language model of the module docstring (causal attention, learned positions)."""
    vocab_size, dim, depth = (
        positive_int("transformer_lm", name, value)
        for name, value in (("vocab_size", vocab_size), ("dim", dim), ("depth", depth))
    )
    blocks = [
        nn.transformer_block(num_heads, mlp_ratio=mlp_ratio, kv_heads=kv_heads, causal=True, block_size=block_size)
        for _ in range(depth)
    ]
    return nn.serial(
        nn.embedding(vocab_size, dim, stddev=0.02),
        nn.position_embedding(max_length),
        *blocks,
        nn.layer_norm(),
        nn.dense(vocab_size),
    )


@register_model("transformer", layout="sequence")
def build_transformer(
    *,
    num_outputs: int,
    dim: int = 64,
    depth: int = 2,
    heads: int = 4,
    kv_heads: int = 0,
    max_length: int = 256,
    mlp_ratio: int = 4,
    block_size: int = 64,
) -> nn.Layer:
    """A decoder-only transformer language model over ``num_outputs`` tokens (token ids in, logits out).

    ``kv_heads`` < ``heads`` (dividing it) gives grouped-query attention; 0 means ``heads``.
    """
    # Named by the builder's own options (the CLI's --model-option keys), not by the layer's head_dim.
    if heads >= 1 and dim % heads:
        divisors = [h for h in range(1, dim + 1) if dim % h == 0 and h <= 16]
        raise ValueError(f"transformer: dim={dim} does not split into heads={heads}; choose heads from {divisors}")
    return transformer_lm(
        num_outputs,
        dim=dim,
        depth=depth,
        num_heads=heads,
        kv_heads=kv_heads or None,
        max_length=max_length,
        mlp_ratio=mlp_ratio,
        block_size=block_size,
    )
