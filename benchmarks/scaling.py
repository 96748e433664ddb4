"""Scaling: the MLP's training-step time against batch size and against depth.

Work grows linearly in both: a step costs ``6 B sum(n_in n_out)`` FLOPs, linear in the
batch ``B`` and in the number of layers. The fitted log-log slope says how closely the
time follows the work (1.0 = proportional; below 1 where fixed per-call overhead still
dominates at the small end). Both the manual step and autodiff through the reference
are timed round-robin at every point. Batch sweep: 784-512-512-512-10; depth sweep:
784 inputs, ``depth`` hidden layers of 512, batch 128; ReLU, softmax cross-entropy.

Run: ``python -m benchmarks.scaling [--tiny] [--repeats N]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

from benchmarks._section import section_main
from benchmarks._step import sgd_step
from benchmarks._timing import time_variants
from benchmarks.gradients import fitted_slope
from benchmarks.mlp import mlp_problem
from jaxbp.gradcheck import strip_custom_vjps

INPUTS, WIDTH, CLASSES = 784, 512, 10
BATCHES, BATCH_DEPTH = (16, 32, 64, 128, 256, 512), 3
DEPTHS, DEPTH_BATCH = (1, 2, 4, 8), 128


class _Sizes(TypedDict):
    inputs: int
    width: int
    batches: tuple[int, ...]
    batch_depth: int
    depths: tuple[int, ...]
    depth_batch: int


TINY: _Sizes = {
    "inputs": 8,
    "width": 8,
    "batches": (2, 4),
    "batch_depth": 1,
    "depths": (1, 2),
    "depth_batch": 2,
}


def step_times(widths: Sequence[int], batch: int, repeats: int) -> dict[str, float]:
    """Median ms of the manual and the autodiff SGD step of an MLP."""
    loss, params, x, labels = mlp_problem(widths, batch)
    manual, autodiff = sgd_step(loss), sgd_step(strip_custom_vjps(loss))
    timings = time_variants(
        {
            "manual": lambda: manual(params, x, labels),
            "autodiff": lambda: autodiff(params, x, labels),
        },
        repeats,
    )
    return {
        "manual_ms": timings["manual"].median_ms,
        "autodiff_ms": timings["autodiff"].median_ms,
    }


def run(tiny: bool = False, repeats: int = 10) -> dict[str, Any]:
    """Rows for the batch sweep (``sweep="batch"``) and the depth sweep (``sweep="depth"``), with slopes."""
    size: _Sizes = (
        TINY
        if tiny
        else {
            "inputs": INPUTS,
            "width": WIDTH,
            "batches": BATCHES,
            "batch_depth": BATCH_DEPTH,
            "depths": DEPTHS,
            "depth_batch": DEPTH_BATCH,
        }
    )
    classes = 2 if tiny else CLASSES
    rows: list[dict[str, Any]] = []
    for batch in size["batches"]:
        widths = (size["inputs"], *[size["width"]] * size["batch_depth"], classes)
        rows.append(
            {
                "sweep": "batch",
                "batch": batch,
                "depth": size["batch_depth"],
                **step_times(widths, batch, repeats),
            }
        )
    for depth in size["depths"]:
        widths = (size["inputs"], *[size["width"]] * depth, classes)
        rows.append(
            {
                "sweep": "depth",
                "batch": size["depth_batch"],
                "depth": depth,
                **step_times(widths, size["depth_batch"], repeats),
            }
        )
    slopes = {}
    for sweep in ("batch", "depth"):
        points = [row for row in rows if row["sweep"] == sweep]
        for variant in ("manual", "autodiff"):
            slopes[f"{sweep}_{variant}"] = fitted_slope(
                [row[sweep] for row in points], [row[f"{variant}_ms"] for row in points]
            )
    return {
        "section": "scaling",
        "rows": rows,
        "slopes": slopes,
        "width": size["width"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    return section_main("scaling", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
