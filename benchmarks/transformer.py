"""Transformer section: a small decoder-only language model's training step, manual vs autodiff.

The issue's model: :func:`jaxbp.models.transformer.transformer_lm` (2 pre-layer-norm blocks,
dim 64, 4 heads, causal blocked attention, GELU MLP) on T = 256 tokens of a 65-symbol
vocabulary, batch 8, float32, loss ``softmax_cross_entropy(logits, next_ids)``. The row
(one process, round-robin, see :func:`benchmarks._step.compare_training_step`): the
manual SGD step against ``jax.grad`` through the reference (custom rules stripped: plain
softmax(QKᵀ)V attention, whose autodiff keeps the T×T matrices), fwd+bwd over fwd, saved
residual and compiled temporary bytes; then, when torch is installed, the same model with the
same weights in PyTorch eager (:func:`torch_transformer_step`: ``F.scaled_dot_product_attention``
with ``is_causal=True``, PyTorch's fused attention, which is what a PyTorch user would write).

Run: ``python -m benchmarks.transformer [--tiny] [--repeats N]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from benchmarks._section import section_main
from benchmarks._step import compare_training_step, row_seconds
from benchmarks._torch import optional_torch, torch_sgd_step
from jaxbp import ops
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


def torch_transformer_step(
    torch: Any, params: Any, ids: Any, next_ids: Any, heads: int, learning_rate: float = 1e-3
) -> Callable[[], Any]:
    """A PyTorch eager SGD step on the same language model and weights.

    Follows the params' layout from :func:`jaxbp.models.transformer.transformer_lm`:
    ``(embedding, position_embedding, *blocks, layer_norm, dense)``, each block
    ``(((ln, attention),), ((ln, dense, (), dense),))``. jaxbp's ``(in, out)`` dense weights
    become ``F.linear``'s ``(out, in)``; layer norm eps 1e-5; exact (erf) GELU; attention scale
    ``1 / sqrt(head_dim)`` (PyTorch's default). Loss: mean next-token cross-entropy.
    """
    functional = torch.nn.functional
    leaves: list[Any] = []

    def tensor(a: Any) -> Any:
        leaves.append(torch.tensor(np.asarray(a), requires_grad=True))
        return leaves[-1]

    def linear(p: dict) -> Callable[[Any], Any]:
        w, b = tensor(np.asarray(p["w"]).T), tensor(p["b"])
        return lambda h: functional.linear(h, w, b)

    def layer_norm(p: dict) -> Callable[[Any], Any]:
        gamma, beta = tensor(p["gamma"]), tensor(p["beta"])
        return lambda h: functional.layer_norm(h, (h.shape[-1],), gamma, beta, eps=1e-5)

    def attention(p: dict) -> Callable[[Any], Any]:
        q, k, v, out = (linear(p[name]) for name in ("q", "k", "v", "out"))

        def apply(h: Any) -> Any:
            batch, time, _ = h.shape
            split = [f(h).view(batch, time, heads, -1).transpose(1, 2) for f in (q, k, v)]
            y = functional.scaled_dot_product_attention(*split, is_causal=True)
            return out(y.transpose(1, 2).reshape(batch, time, -1))

        return apply

    embedding, positions, *blocks, final_norm, head = params
    token_w, position_w = tensor(embedding["w"]), tensor(positions["w"])

    def residual(*fns: Callable[[Any], Any]) -> Callable[[Any], Any]:  # h + fn_n(...fn_1(h))
        def apply(h: Any) -> Any:
            out = h
            for fn in fns:
                out = fn(out)
            return h + out

        return apply

    layers: list[Callable[[Any], Any]] = []
    for ((norm_a, attn),), ((norm_m, up, _, down),) in blocks:
        layers.append(residual(layer_norm(norm_a), attention(attn)))
        layers.append(residual(layer_norm(norm_m), linear(up), functional.gelu, linear(down)))
    normalize, logits = layer_norm(final_norm), linear(head)
    ids_t = torch.tensor(np.asarray(ids), dtype=torch.long)
    next_t = torch.tensor(np.asarray(next_ids), dtype=torch.long).reshape(-1)

    def loss() -> Any:
        h = functional.embedding(ids_t, token_w) + position_w[: ids_t.shape[1]]
        for layer in layers:
            h = layer(h)
        out = logits(normalize(h))
        return functional.cross_entropy(out.reshape(-1, out.shape[-1]), next_t)

    return torch_sgd_step(torch, leaves, loss, learning_rate)


def run(tiny: bool = False, repeats: int = 10) -> dict[str, Any]:
    """The transformer row: manual vs autodiff (vs torch) training step, residual and temporary bytes."""
    shapes = TINY_SHAPES if tiny else SHAPES
    loss, params, ids, next_ids = transformer_problem(**shapes)
    torch = optional_torch()
    torch_step = torch_transformer_step(torch, params, ids, next_ids, shapes["heads"]) if torch is not None else None
    row = compare_training_step(
        loss, params, ids, next_ids, repeats=repeats, torch_step=torch_step, min_seconds=row_seconds(tiny)
    )
    name = f"transformer-b{shapes['batch']}-t{shapes['time']}-d{shapes['dim']}x{shapes['depth']}"
    return {"section": "transformer", "shapes": shapes, "rows": [{"model": name, **row}]}


def main(argv: Sequence[str] | None = None) -> int:
    return section_main("transformer", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
