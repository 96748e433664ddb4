"""Transformer section: a small decoder-only language model's training step, manual vs autodiff.

The issue's model: :func:`jaxbp.models.transformer.transformer_lm` (2 pre-layer-norm blocks,
dim 64, 4 heads, causal blocked attention, GELU MLP) on T = 256 tokens of a 65-symbol
vocabulary, batch 8, float32, loss ``softmax_cross_entropy(logits, next_ids)``. The row
(one process, round-robin, see :func:`jaxbp.bench._measure.compare_training_step`): the
manual SGD step against ``jax.grad`` through the reference (custom rules stripped: plain
softmax(QKᵀ)V attention, whose autodiff keeps the T×T matrices), fwd+bwd over fwd, saved
residual and compiled temporary bytes. No PyTorch column: a weight-for-weight PyTorch twin of
this model is not written yet.

Run: ``python -m jaxbp.bench.transformer [--tiny] [--repeats N]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax

from jaxbp import ops
from jaxbp.bench._measure import compare_training_step, section_main
from jaxbp.models.transformer import transformer_lm

SHAPES = {"batch": 8, "time": 256, "vocab": 65, "dim": 64, "depth": 2, "heads": 4, "block_size": 64}
TINY_SHAPES = {"batch": 2, "time": 12, "vocab": 7, "dim": 8, "depth": 1, "heads": 2, "block_size": 4}


def transformer_problem(
    batch: int, time: int, vocab: int, dim: int, depth: int, heads: int, block_size: int, seed: int = 0
) -> tuple[Callable, Any, jax.Array, jax.Array]:
    """``(loss, params, ids, next_ids)``: next-token cross-entropy of random token sequences."""
    net = transformer_lm(vocab, dim=dim, depth=depth, num_heads=heads, max_length=time, block_size=block_size)
    key_params, key_ids = jax.random.split(jax.random.key(seed))
    tokens = jax.random.randint(key_ids, (batch, time + 1), 0, vocab)
    ids, next_ids = tokens[:, :-1], tokens[:, 1:]
    params, _ = net.init(key_params, ids.shape)

    def loss(params: Any, ids: jax.Array, next_ids: jax.Array) -> jax.Array:
        return ops.softmax_cross_entropy(net.apply(params, ids), next_ids)

    return loss, params, ids, next_ids


def run(tiny: bool = False, repeats: int = 10) -> dict[str, Any]:
    """The transformer row: manual vs autodiff training step, residual and temporary bytes."""
    shapes = TINY_SHAPES if tiny else SHAPES
    loss, params, ids, next_ids = transformer_problem(**shapes)
    row = compare_training_step(loss, params, ids, next_ids, repeats=repeats)
    name = f"transformer-b{shapes['batch']}-t{shapes['time']}-d{shapes['dim']}x{shapes['depth']}"
    return {"section": "transformer", "shapes": shapes, "rows": [{"model": name, **row}]}


def main(argv: Sequence[str] | None = None) -> int:
    return section_main("transformer", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
