"""The standard row: one training step through the hand-written rules vs ``jax.grad`` through the reference."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from benchmarks._memory import memory_of
from benchmarks._timing import blockwise_ratio, paired_ratio, time_beside_torch
from jaxbp.diagnostics import residual_bytes

# full-size rows time each block for at least this long, so a millisecond step gets hundreds of rounds
ROW_MIN_SECONDS = 3.0


def max_relative_difference(a: Any, b: Any) -> float:
    """Largest ``max|a - b| / max|b|`` over the leaves of two pytrees (0 = identical)."""
    worst = 0.0
    for leaf_a, leaf_b in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        leaf_a, leaf_b = np.asarray(leaf_a, np.float64), np.asarray(leaf_b, np.float64)
        scale = max(float(np.max(np.abs(leaf_b), initial=0.0)), 1e-30)
        worst = max(worst, float(np.max(np.abs(leaf_a - leaf_b), initial=0.0)) / scale)
    return worst


def sgd_step(loss: Callable[..., Any], learning_rate: float = 1e-3) -> Callable[..., Any]:
    """``jit`` of one SGD step ``params - lr * grad loss(params, *batch)``, returning ``(params, loss)``."""

    @jax.jit
    def step(params: Any, *batch: Any) -> tuple[Any, Any]:
        value, grads = jax.value_and_grad(loss)(params, *batch)
        return jax.tree_util.tree_map(lambda p, g: p - learning_rate * g, params, grads), value

    return step


def row_seconds(tiny: bool) -> float:
    """The least time each timing block of a row runs: :data:`ROW_MIN_SECONDS`, 0 for tiny test runs."""
    return 0.0 if tiny else ROW_MIN_SECONDS


def compare_training_step(
    loss: Callable[..., Any],
    params: Any,
    *batch: Any,
    repeats: int = 10,
    torch_step: Callable[[], Any] | None = None,
    tolerance: float = 1e-2,
    min_seconds: float = 0.0,
) -> dict[str, Any]:
    """The suite's standard row for one model: hand-written rules vs autodiff through the reference.

    ``loss(params, *batch) -> scalar`` must differentiate through :mod:`jaxbp.ops`; the
    autodiff twin is ``jaxbp.gradcheck.strip_custom_vjps(loss)``. Gradients of the two are
    compared first (``grad_relative_error``: ``|a - b| / (|a| + |b|)`` over all leaves; above ``tolerance`` the timing would compare
    different computations, so a ``ValueError`` is raised). Timed round-robin: the manual
    SGD step, the autodiff SGD step, the manual forward (loss alone) and the manual
    fwd+bwd (loss and gradients); then ``torch_step`` (a PyTorch eager training step on the
    same model, if given) in its own block (:func:`time_beside_torch`); each block runs at least
    ``repeats`` rounds and ``min_seconds``. ``*_over_*`` entries are ratios of medians;
    ``manual_over_autodiff_paired`` is :func:`paired_ratio` (median of per-round ratios, ~95% CI),
    ``manual_over_torch_blocks`` :func:`blockwise_ratio` (per pair of alternating blocks: median, range).
    """
    from jaxbp.gradcheck import relative_error, strip_custom_vjps

    reference = strip_custom_vjps(loss)
    # compiled once: called for the gradients and the fwd+bwd timing, and read for the memory analysis
    grad_manual = jax.jit(jax.grad(loss)).lower(params, *batch).compile()
    grad_reference = jax.jit(jax.grad(reference)).lower(params, *batch).compile()
    difference = relative_error(grad_manual(params, *batch), grad_reference(params, *batch))
    if not difference <= tolerance:
        raise ValueError(
            f"compare_training_step: manual and autodiff gradients differ by {difference:.2e} (> {tolerance:g})"
        )

    step_manual, step_reference, forward = (
        sgd_step(loss),
        sgd_step(reference),
        jax.jit(loss),
    )
    variants: dict[str, Callable[[], Any]] = {
        "manual": lambda: step_manual(params, *batch),
        "autodiff": lambda: step_reference(params, *batch),
        "forward": lambda: forward(params, *batch),
        "fwd_bwd": lambda: grad_manual(params, *batch),
    }
    timings = time_beside_torch(variants, torch_step, repeats, min_seconds=min_seconds)
    median = {name: t.median_ms for name, t in timings.items()}
    return {
        "step_ms": {name: t.to_dict() for name, t in timings.items()},
        "manual_over_autodiff": median["manual"] / median["autodiff"],
        "manual_over_autodiff_paired": paired_ratio(timings["manual"], timings["autodiff"]),
        "fwd_bwd_over_fwd": median["fwd_bwd"] / median["forward"],
        "manual_over_torch": median["manual"] / median["torch"] if torch_step is not None else None,
        "manual_over_torch_blocks": blockwise_ratio(timings["manual"], timings["torch"]) if torch_step else None,
        "residual_bytes": {
            "manual": residual_bytes(loss, params, *batch),
            "autodiff": residual_bytes(reference, params, *batch),
        },
        "temp_bytes": {
            "manual": memory_of(grad_manual)["temp"],
            "autodiff": memory_of(grad_reference)["temp"],
        },
        "grad_relative_error": difference,
    }
