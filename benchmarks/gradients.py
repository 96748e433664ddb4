"""Backprop against numerical gradients: time to the full gradient as the parameter count grows.

Tutorial 001's point: central differences need ``2 n`` forward passes for ``n`` parameters,
each costing ``O(n)``, so the numerical gradient costs ``O(n^2)``; backpropagation costs a
small constant times one forward pass, ``O(n)``. The model is a one-hidden-layer tanh MLP
(16 inputs, ``h`` hidden units, 4 outputs, batch 16, ``n = 21 h + 4`` parameters) with a
softmax cross-entropy loss; ``h`` is chosen for ``n`` from 10^2 to 10^5. Both gradients are
jit-compiled; the numerical one evaluates the ``2 n`` perturbed losses in vectorised chunks
(``lax.map`` with ``batch_size``). Its cost is exactly proportional to the number of
coordinates it differentiates, so above ``MAX_COORDINATES`` parameters it is timed on the
first ``MAX_COORDINATES`` coordinates and scaled by ``n / MAX_COORDINATES`` (the row says so:
``coordinates_timed``); the full 10^5-parameter gradient would take minutes on a shared CPU.
The slopes of ``log t`` against ``log n`` are fitted by least squares.

Run: ``python -m benchmarks.gradients [--tiny] [--repeats N]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from benchmarks._section import section_main
from benchmarks._timing import time_variants
from benchmarks.mlp import mlp_problem
from jaxbp.gradcheck import relative_error

INPUTS, OUTPUTS, BATCH = 16, 4, 16
PARAM_COUNTS = (100, 300, 1_000, 3_000, 10_000, 30_000, 100_000)
TINY_PARAM_COUNTS = (100, 300)
EPSILON = 1e-2  # float32 central differences: truncation O(eps^2) against rounding O(ulp / eps)
CHUNK = 256
MAX_COORDINATES = 2048


def hidden_width(param_count: int) -> int:
    """The hidden width ``h`` whose MLP has about ``param_count = (INPUTS + 1 + OUTPUTS) h + OUTPUTS`` parameters."""
    return max(1, round((param_count - OUTPUTS) / (INPUTS + 1 + OUTPUTS)))


def central_difference_gradient(
    loss: Callable[[jax.Array], jax.Array],
    theta: jax.Array,
    coordinates: int | None = None,
    epsilon: float = EPSILON,
) -> jax.Array:
    """``(loss(theta + eps e_i) - loss(theta - eps e_i)) / 2 eps`` for ``i < coordinates`` (default: all
    ``n``): two forward passes per coordinate."""

    def partial(i: jax.Array) -> jax.Array:
        step = jnp.zeros_like(theta).at[i].set(epsilon)
        return (loss(theta + step) - loss(theta - step)) / (2 * epsilon)

    return jax.lax.map(
        partial,
        jnp.arange(theta.size if coordinates is None else coordinates),
        batch_size=CHUNK,
    )


def fitted_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``log10 y`` against ``log10 x``."""
    return float(np.polyfit(np.log10(xs), np.log10(ys), 1)[0])


def measure(param_count: int, repeats: int) -> dict[str, Any]:
    """Backprop and numerical time to the full gradient of the MLP with about ``param_count`` parameters."""
    widths = (INPUTS, hidden_width(param_count), OUTPUTS)
    loss, params, x, labels = mlp_problem(widths, BATCH, activation="tanh")
    theta, unravel = ravel_pytree(params)

    def flat_loss(theta: jax.Array) -> jax.Array:
        return loss(unravel(theta), x, labels)

    backprop = jax.jit(jax.grad(flat_loss))
    coordinates = min(int(theta.size), MAX_COORDINATES)
    numerical = jax.jit(lambda theta: central_difference_gradient(flat_loss, theta, coordinates))
    timings = time_variants({"backprop": lambda: backprop(theta), "numerical": lambda: numerical(theta)}, repeats)
    numerical_ms = timings["numerical"].median_ms * theta.size / coordinates
    return {
        "params": int(theta.size),
        "hidden": widths[1],
        "backprop_ms": timings["backprop"].median_ms,
        "numerical_ms": numerical_ms,
        "numerical_over_backprop": numerical_ms / timings["backprop"].median_ms,
        "coordinates_timed": coordinates,
        "relative_error": relative_error(numerical(theta), backprop(theta)[:coordinates]),
        "timing_ms": {name: t.to_dict() for name, t in timings.items()},
    }


def run(tiny: bool = False, repeats: int = 10) -> dict[str, Any]:
    """One row per parameter count, and the fitted log-log slopes of both times."""
    rows = [measure(count, repeats) for count in (TINY_PARAM_COUNTS if tiny else PARAM_COUNTS)]
    counts = [row["params"] for row in rows]
    return {
        "section": "gradients",
        "rows": rows,
        "slope_backprop": fitted_slope(counts, [row["backprop_ms"] for row in rows]),
        "slope_numerical": fitted_slope(counts, [row["numerical_ms"] for row in rows]),
        "epsilon": EPSILON,
    }


def main(argv: Sequence[str] | None = None) -> int:
    return section_main("gradients", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
