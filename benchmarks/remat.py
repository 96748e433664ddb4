"""Rematerialisation (``nn.checkpoint``): what it saves and what it costs.

A deep MLP (``depth`` layers ``dense(width) -> tanh``, then ``dense(10)``, softmax
cross-entropy) is differentiated with and without ``nn.checkpoint`` around every segment
of ``segment`` consecutive layers. For each variant:

* ``residual_bytes`` -- what ``jax.vjp`` keeps for the backward pass (``saved_residuals``),
  which is what ``jax.checkpoint`` controls, whatever the backend;
* ``temp_bytes`` -- XLA's compiled temporary memory of the gradient. It depends on the
  backend's scheduler: XLA:CPU removes checkpoint's optimisation barriers before it
  schedules, so the recomputation is not kept late and the temp size does not drop on CPU
  (XLA:GPU removes them after scheduling);
* ``grad_ms`` -- the gradient's time (round-robin over the variants), the price of recomputing;
* ``max_rel_grad_diff`` -- the largest difference from the gradient without remat relative
  to each leaf's largest entry (0 = bitwise identical; ~1e-7 = float32 rounding).

Run: ``python -m benchmarks.remat [--tiny] [--repeats N] [--depth D --width W --batch B --segments S ...]``.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax

from benchmarks._memory import memory_of
from benchmarks._section import section_main
from benchmarks._step import max_relative_difference
from benchmarks._timing import time_variants
from jaxbp import nn, ops
from jaxbp.diagnostics import residual_bytes

NUM_CLASSES = 10
DEPTH, WIDTH, BATCH, SEGMENTS = 32, 128, 2048, (1, 2, 4, 8)
TINY: tuple[int, int, int, tuple[int, ...]] = (4, 8, 4, (2,))


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
    return (
        *(tuple(params[i : i + segment]) for i in range(0, depth, segment)),
        params[depth],
    )


def measure(
    depth: int,
    width: int,
    batch: int,
    segments: Sequence[int],
    repeats: int = 10,
    features: int = 64,
) -> dict[str, Any]:
    """One row without remat and one per segment size, all on the same weights and data."""
    layer_params, _ = deep_mlp(depth, width).init(jax.random.key(0), (batch, features))
    x = jax.random.normal(jax.random.key(1), (batch, features))
    labels = jax.random.randint(jax.random.key(2), (batch,), 0, NUM_CLASSES)
    variants: dict[int, tuple[Callable[..., jax.Array], Any, Callable[..., Any]]] = {}
    for segment in (0, *segments):
        model = deep_mlp(depth, width, segment)

        def loss(params: Any, x: jax.Array, labels: jax.Array, model: nn.Layer = model) -> jax.Array:
            return ops.softmax_cross_entropy(model.apply(params, x), labels)

        params = regroup(layer_params, depth, segment)
        # compiled once: timed, called for the gradient check and read for the memory analysis
        variants[segment] = (loss, params, jax.jit(jax.grad(loss)).lower(params, x, labels).compile())
    timings = time_variants(
        {str(s): functools.partial(g, p, x, labels) for s, (_, p, g) in variants.items()},
        repeats,
    )
    baseline = jax.tree_util.tree_leaves(variants[0][2](variants[0][1], x, labels))
    rows: list[dict[str, Any]] = []
    for segment, (loss, params, grad) in variants.items():
        rows.append(
            {
                "variant": f"segment {segment}" if segment else "no remat",
                "segment": segment,
                "remat": segment > 0,
                "residual_bytes": residual_bytes(loss, params, x, labels)["total"],
                "temp_bytes": memory_of(grad)["temp"],
                "grad_ms": timings[str(segment)].median_ms,
                "max_rel_grad_diff": max_relative_difference(
                    jax.tree_util.tree_leaves(grad(params, x, labels)), baseline
                ),
            }
        )
    for row in rows:
        row["residual_ratio"] = row["residual_bytes"] / rows[0]["residual_bytes"]
        row["temp_ratio"] = None if row["temp_bytes"] is None else row["temp_bytes"] / max(rows[0]["temp_bytes"], 1)
        row["time_ratio"] = row["grad_ms"] / rows[0]["grad_ms"]
    return {
        "section": "remat",
        "rows": rows,
        "config": {
            "depth": depth,
            "width": width,
            "batch": batch,
            "activation": "tanh",
        },
    }


def run(
    tiny: bool = False,
    repeats: int = 10,
    depth: int | None = None,
    width: int | None = None,
    batch: int | None = None,
    segments: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The section at its default sizes (``DEPTH``, ``WIDTH``, ``BATCH``, ``SEGMENTS``; ``TINY``
    with ``tiny``), any of them overridden."""
    default_depth, default_width, default_batch, default_segments = TINY if tiny else (DEPTH, WIDTH, BATCH, SEGMENTS)
    depth = default_depth if depth is None else depth
    width = default_width if width is None else width
    batch = default_batch if batch is None else batch
    segments = tuple(default_segments if segments is None else segments)
    if min(depth, width, batch, *segments) < 1:
        raise ValueError(
            f"remat: depth, width, batch and every segment must be >= 1, got {depth, width, batch, segments}"
        )
    return measure(depth, width, batch, segments, repeats=repeats)


def _sizes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--depth", type=int, default=None, help=f"layers (default: {DEPTH})")
    parser.add_argument("--width", type=int, default=None, help=f"units per layer (default: {WIDTH})")
    parser.add_argument("--batch", type=int, default=None, help=f"batch size (default: {BATCH})")
    parser.add_argument("--segments", type=int, nargs="+", default=None, help=f"segment sizes (default: {SEGMENTS})")


def main(argv: Sequence[str] | None = None) -> int:
    return section_main("remat", run, argv, add_options=_sizes)


if __name__ == "__main__":
    raise SystemExit(main())
