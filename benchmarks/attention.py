"""Benchmark section ``attention``: the blocked O(T)-memory attention backward vs autodiff.

For each sequence length T: one gradient step of causal self-attention
``L = <attention(q, k, v), dy>`` with respect to q, k, v, measured in one process:

* ``manual``: :func:`jaxbp.ops.attention` (blocked forward, flash-attention-style backward
  saving q, k, v, y and the per-row logsumexp);
* ``reference``: ``jax.grad`` through :func:`jaxbp.reference.attention.attention` (the plain
  softmax(QKᵀ)V, whose autodiff keeps T×T matrices);
* ``torch``: ``torch.nn.functional.scaled_dot_product_attention`` forward + backward
  (PyTorch eager, CPU) when torch is installed.

Columns: median step times, saved residual bytes of the attention function
(``saved_residuals``), and XLA's compiled temporary bytes of the gradient
(``compiled.memory_analysis()``). Issue targets at T = 2048: residual bytes >= 8x less
and temporary bytes >= 4x less than the reference; not slower than it at T >= 1024.

Run: ``python -m benchmarks.attention [--tiny] [--repeats N]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._memory import memory_of
from benchmarks._section import section_main
from benchmarks._timing import time_beside_torch
from benchmarks._torch import optional_torch
from jaxbp import ops
from jaxbp.diagnostics import residual_bytes
from jaxbp.gradcheck import relative_error
from jaxbp.reference.attention import attention as plain_attention

SIZES = (256, 1024, 2048, 4096)
TINY_SIZES = (16, 40)


def _inputs(time: int, batch: int, heads: int, head_dim: int, seed: int = 0) -> list[jax.Array]:
    keys = jax.random.split(jax.random.key(seed), 4)
    return [jax.random.normal(key, (batch, time, heads, head_dim), jnp.float32) for key in keys]


def _torch_step(torch: Any, q: jax.Array, k: jax.Array, v: jax.Array, dy: jax.Array):
    """A zero-argument PyTorch eager fwd+bwd of causal SDPA on the same values ((B, H, T, D) layout)."""
    leaves = [torch.tensor(np.asarray(x)).transpose(1, 2).contiguous() for x in (q, k, v)]
    for leaf in leaves:
        leaf.requires_grad_(True)
    cotangent = torch.tensor(np.asarray(dy)).transpose(1, 2).contiguous()

    def step():
        for leaf in leaves:
            leaf.grad = None
        y = torch.nn.functional.scaled_dot_product_attention(*leaves, is_causal=True)
        y.backward(cotangent)
        return [leaf.grad for leaf in leaves]

    return step


def measure(
    time: int,
    *,
    batch: int = 1,
    heads: int = 4,
    head_dim: int = 64,
    block_size: int = 128,
    repeats: int = 5,
    torch: Any = None,
) -> dict[str, Any]:
    """One row: step times (ms, median), residual and temporary bytes, manual vs reference (vs torch)."""
    q, k, v, dy = _inputs(time, batch, heads, head_dim)

    def manual(q, k, v):
        return ops.attention(q, k, v, causal=True, block_size=block_size)

    def reference(q, k, v):
        return plain_attention(q, k, v, causal=True)

    functions = {"manual": manual, "reference": reference}
    grads = {
        name: jax.jit(jax.grad(lambda q, k, v, dy, f=f: jnp.vdot(f(q, k, v), dy), argnums=(0, 1, 2)))
        .lower(q, k, v, dy)
        .compile()  # compiled once: called for gradients and timing, read for the memory analysis
        for name, f in functions.items()
    }
    difference = relative_error(grads["manual"](q, k, v, dy), grads["reference"](q, k, v, dy))
    if not difference <= 1e-3:
        raise ValueError(f"attention bench: manual and reference gradients differ by {difference:.2e} at T={time}")
    variants = {name: (lambda g=g: g(q, k, v, dy)) for name, g in grads.items()}
    timings = time_beside_torch(variants, None if torch is None else _torch_step(torch, q, k, v, dy), repeats)
    residuals = {name: residual_bytes(f, q, k, v)["total"] for name, f in functions.items()}
    temporary = {name: memory_of(g)["temp"] for name, g in grads.items()}
    median = {name: t.median_ms for name, t in timings.items()}
    return {
        "T": time,
        "manual ms": median["manual"],
        "reference ms": median["reference"],
        "torch ms": median.get("torch"),
        "reference/manual time": median["reference"] / median["manual"],
        "residual MiB manual": residuals["manual"] / 2**20,
        "residual MiB reference": residuals["reference"] / 2**20,
        "residual ratio": residuals["reference"] / residuals["manual"],
        "temp MiB manual": None if temporary["manual"] is None else temporary["manual"] / 2**20,
        "temp MiB reference": None if temporary["reference"] is None else temporary["reference"] / 2**20,
        # memory_of reports "temp" for both or neither (it depends only on the backend)
        "temp ratio": None if not temporary["manual"] else cast(int, temporary["reference"]) / temporary["manual"],
        "grad rel err": difference,
    }


def run(tiny: bool = False, repeats: int = 5, sizes: Sequence[int] | None = None) -> dict[str, Any]:
    """Rows for every T in ``sizes`` (default :data:`SIZES`, or :data:`TINY_SIZES` with ``tiny``)."""
    torch = optional_torch()
    sizes = tuple(sizes or (TINY_SIZES if tiny else SIZES))
    options = (
        {"batch": 1, "heads": 2, "head_dim": 8, "block_size": 16}
        if tiny
        else {"batch": 1, "heads": 4, "head_dim": 64, "block_size": 128}
    )
    rows = [measure(time, repeats=repeats, torch=torch, **options) for time in sizes]
    return {
        "section": "attention",
        "causal": True,
        "dtype": "float32",
        **options,
        "rows": rows,
    }


def main(argv: Sequence[str] | None = None) -> int:
    return section_main("attention", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
