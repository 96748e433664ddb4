"""Rematerialisation (``nn.checkpoint``): what it saves, measured two ways.

A deep MLP (``depth`` layers ``dense(width) -> tanh``, then ``dense(10)``, softmax
cross-entropy) is differentiated with and without ``nn.checkpoint`` around every
segment of ``segment`` consecutive layers. For each variant we report:

* ``residual_bytes`` -- what autodiff keeps for the backward pass: the bytes of
  the arrays held by the VJP closure (``jax.vjp(loss, params)[1]``, shapes only).
  This is what ``jax.checkpoint`` controls, whatever the backend.
* ``temp_bytes`` -- XLA's compiled temporary buffer size for the whole gradient
  computation, ``jax.jit(grad).lower(...).compile().memory_analysis().temp_size_in_bytes``.
  It depends on the backend's scheduler: GPU/TPU compilers order the recomputation
  late, XLA:CPU may schedule it early (see the note printed with the table).
* ``max_rel_grad_diff`` -- the largest difference from the gradient without remat,
  relative to each leaf's largest entry (0.0 = bitwise identical; ~1e-7 = float32
  rounding, when XLA fuses the recomputed forward differently).

Run: ``python benchmarks/remat_memory.py [--depth 32 --width 128 --batch 2048]
[--segments 1 2 4 8] [--out results/remat_memory.json]`` (a few seconds on CPU).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import nn, ops

NUM_CLASSES = 10


def deep_mlp(depth: int, width: int, segment: int = 0, activation: str = "tanh") -> nn.Layer:
    """``depth`` layers ``dense(width) -> activation`` then ``dense(10)``; with ``segment > 0``
    every ``segment`` consecutive layers form one ``nn.checkpoint`` block."""
    layers = [nn.serial(nn.dense(width), nn.activation(activation)) for _ in range(depth)]
    if segment:
        layers = [nn.checkpoint(nn.serial(*layers[i : i + segment])) for i in range(0, depth, segment)]
    return nn.serial(*layers, nn.dense(NUM_CLASSES))


def regroup(params: tuple, depth: int, segment: int) -> tuple:
    """Params of ``deep_mlp(depth, width)`` rearranged for ``deep_mlp(depth, width, segment)``."""
    if not segment:
        return params
    return (*(tuple(params[i : i + segment]) for i in range(0, depth, segment)), params[depth])


def _nbytes(tree: Any) -> int:
    return sum(math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize for leaf in jax.tree_util.tree_leaves(tree))


def measure(depth: int, width: int, batch: int, segment: int, features: int = 64, seed: int = 0) -> dict[str, Any]:
    """Residual bytes, compiled temp bytes and the gradient for one variant."""
    model = deep_mlp(depth, width, segment)
    layer_params, _ = deep_mlp(depth, width).init(jax.random.key(seed), (batch, features))
    params = regroup(layer_params, depth, segment)  # the same weights for every variant
    x = jax.random.normal(jax.random.key(seed + 1), (batch, features))
    y = jax.random.randint(jax.random.key(seed + 2), (batch,), 0, NUM_CLASSES)

    def loss(params, x, y):
        return ops.softmax_cross_entropy(model.apply(params, x), y)

    residuals = jax.eval_shape(lambda p: jax.vjp(lambda q: loss(q, x, y), p)[1], params)
    grad = jax.jit(jax.grad(loss))
    compiled = grad.lower(params, x, y).compile()
    return {
        "segment": segment,
        "remat": segment > 0,
        "residual_bytes": _nbytes(residuals),
        "temp_bytes": int(compiled.memory_analysis().temp_size_in_bytes),
        "grads": compiled(params, x, y),
    }


def run(depth: int, width: int, batch: int, segments: Sequence[int]) -> dict[str, Any]:
    """Measure no remat and each segment size; return the JSON-ready report."""
    baseline = measure(depth, width, batch, 0)
    reference_grads = jax.tree_util.tree_leaves(baseline["grads"])  # same leaf order with or without remat blocks
    rows = []
    for result in [baseline] + [measure(depth, width, batch, s) for s in segments]:
        grads = jax.tree_util.tree_leaves(result.pop("grads"))
        result["max_rel_grad_diff"] = max(
            float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-30)) for a, b in zip(grads, reference_grads, strict=True)
        )
        result["residual_ratio"] = result["residual_bytes"] / baseline["residual_bytes"]
        result["temp_ratio"] = result["temp_bytes"] / max(baseline["temp_bytes"], 1)
        rows.append(result)
    return {
        "benchmark": "remat_memory",
        "config": {"depth": depth, "width": width, "batch": batch, "segments": list(segments), "activation": "tanh"},
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "jax": jax.__version__,
        "machine": platform.machine(),
        "rows": rows,
    }


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width table."""
    mib = 2.0**20
    lines = [
        f"remat memory: depth {report['config']['depth']}, width {report['config']['width']}, "
        f"batch {report['config']['batch']}, backend {report['backend']} ({report['device']})",
        f"{'variant':<14}{'residuals MiB':>15}{'ratio':>8}{'XLA temp MiB':>15}{'ratio':>8}{'max rel dgrad':>15}",
    ]
    for row in report["rows"]:
        name = f"segment {row['segment']}" if row["remat"] else "no remat"
        lines.append(
            f"{name:<14}{row['residual_bytes'] / mib:>15.2f}{row['residual_ratio']:>8.2f}"
            f"{row['temp_bytes'] / mib:>15.2f}{row['temp_ratio']:>8.2f}{row['max_rel_grad_diff']:>15.1e}"
        )
    if report["backend"] == "cpu":
        lines.append(
            "note: XLA:CPU removes jax.checkpoint's optimization barriers before it schedules the program, "
            "so the recomputation is not kept late and the compiled temp size does not drop on CPU "
            "(XLA:GPU removes them only after scheduling). The residuals column is what remat saves."
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=32)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--segments", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--out", type=Path, default=Path("results/remat_memory.json"))
    args = parser.parse_args(argv)
    if min(args.depth, args.width, args.batch) < 1 or min(args.segments) < 1:
        parser.error("--depth, --width, --batch and every --segments value must be >= 1")
    report = run(args.depth, args.width, args.batch, args.segments)
    print(format_table(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
