"""Shared measuring primitives for the benchmark suite (``jaxbp bench``).

Every section of the suite (``mlp``, ``gradients``, ``scaling``, ``remat`` and the family
sections ``conv``, ``recurrent``, ``attention``) measures with these functions, so the
figures are comparable across sections:

* :func:`time_variants`, :func:`paired_ratio`, :func:`time_beside_torch` (from
  :mod:`jaxbp.bench._timing`) -- wall time measured **round-robin in one process**, compile
  and warm-up excluded; ratios are taken between variants of one call.
* :func:`residual_bytes` -- bytes a function's VJP keeps for the backward pass
  (``saved_residuals``: exactly what ``jax.vjp`` stores, custom-VJP residuals included).
* :func:`compiled_memory` / :func:`memory_of` -- XLA's ``compiled.memory_analysis()``
  (temporary, argument, output bytes) of ``jax.jit(f)`` lowered at the given arguments, or of
  an executable already compiled.
* :func:`compare_training_step` -- the standard row: an SGD training step through the
  hand-written rules vs ``jax.grad`` through :mod:`jaxbp.reference` (custom rules stripped),
  fwd+bwd over fwd, residual and temporary bytes, and PyTorch eager when a step is given.
* :func:`optional_torch`, :func:`machine_info`, :func:`format_table`, :func:`write_json`.

Results go to ``results/bench/`` under a new name each run (:func:`new_path`); nothing
is ever overwritten.

A section is a module ``jaxbp/bench/<name>.py`` with::

    def run(tiny: bool = False, repeats: int = 10) -> dict:
        # {"section": "<name>", "rows": [row, ...], ...}: for a model's training step a row is
        # {"model": "lstm-b32-t100-h256", **compare_training_step(loss, params, *batch, ...)}
    def main(argv=None) -> int:
        return section_main("<name>", run, argv)   # python -m jaxbp.bench.<name> [--tiny] [--repeats N]

``tiny=True`` must finish in seconds (the tests call it). The suite (``jaxbp bench``) calls
``run`` of every section that exists and puts the rows that carry ``step_ms`` into one table
(:func:`step_table`).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxbp.bench._output import (  # noqa: F401  (re-exported for the sections)
    RESULTS_DIR,
    format_table,
    heap_allocations,
    machine_info,
    new_path,
    write_json,
)
from jaxbp.bench._timing import (  # noqa: F401  (re-exported)
    TORCH_BLOCKS,
    Timing,
    blockwise_ratio,
    paired_ratio,
    time_beside_torch,
    time_variants,
)

__all__ = [
    "RESULTS_DIR",
    "ROW_MIN_SECONDS",
    "TORCH_BLOCKS",
    "TORCH_SKIP_MESSAGE",
    "Timing",
    "blockwise_ratio",
    "compare_training_step",
    "compiled_memory",
    "format_table",
    "heap_allocations",
    "machine_info",
    "max_relative_difference",
    "memory_of",
    "nbytes",
    "new_path",
    "paired_ratio",
    "optional_torch",
    "residual_bytes",
    "row_seconds",
    "section_main",
    "sgd_step",
    "step_table",
    "thread_count",
    "torch_sgd_step",
    "time_beside_torch",
    "time_variants",
    "write_json",
]

# full-size rows time each block for at least this long (the 5 ms ResNet step got 175-225 rounds; see time_variants)
ROW_MIN_SECONDS = 3.0
TORCH_SKIP_MESSAGE = "PyTorch is not installed: torch columns skipped (pip install 'jaxbp[bench]' to measure them)"


# ---------------------------------------------------------------------------- memory


def nbytes(avals: Any) -> int:
    """Total bytes of a pytree (or iterable) of arrays / shape-dtype structs."""
    leaves = jax.tree_util.tree_leaves(list(avals) if not hasattr(avals, "shape") else avals)
    return int(sum(math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize for leaf in leaves))


def residual_bytes(f: Callable[..., Any], *args: Any) -> dict[str, int]:
    """Bytes ``jax.vjp(f, *args)`` saves for the backward pass.

    ``total`` counts every saved array; ``arguments`` the part that is an input of ``f``
    passed through (saved either way, not created by the forward); ``intermediates`` the
    rest -- the figure a backward rule's design controls.
    """
    from jax._src.ad_checkpoint import (
        saved_residuals,  # public only as print_saved_residuals
    )

    saved = saved_residuals(f, *args)
    total = nbytes([aval for aval, _ in saved])
    arguments = nbytes([aval for aval, source in saved if source.startswith("from the argument")])
    return {"total": total, "arguments": arguments, "intermediates": total - arguments}


def compiled_memory(f: Callable[..., Any], *args: Any) -> dict[str, int | None]:
    """XLA's memory analysis of ``jax.jit(f)`` compiled for ``args``: temporary, argument and
    output bytes (``None`` where the backend reports no analysis)."""
    return memory_of(jax.jit(f).lower(*args).compile())


def memory_of(compiled: Any) -> dict[str, int | None]:
    """:func:`compiled_memory` of an already compiled executable (``jax.jit(f).lower(...).compile()``)."""
    analysis = compiled.memory_analysis()
    fields = {
        "temp": "temp_size_in_bytes",
        "argument": "argument_size_in_bytes",
        "output": "output_size_in_bytes",
    }
    return {key: (None if analysis is None else int(getattr(analysis, attr))) for key, attr in fields.items()}


# ------------------------------------------------------------------- manual vs autodiff


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


# ------------------------------------------------------------------------- PyTorch


def thread_count() -> int:
    """CPU cores this process may use (the thread count XLA:CPU and torch are given)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def optional_torch(announce: bool = True) -> Any | None:
    """``torch`` set to :func:`thread_count` threads, or ``None`` (printing :data:`TORCH_SKIP_MESSAGE`).

    The torch columns compare against PyTorch eager on the CPU; on a GPU run (JAX on another
    backend) they are skipped as well, since the devices would differ.
    """
    try:
        import torch
    except ImportError:
        if announce:
            print(TORCH_SKIP_MESSAGE, file=sys.stderr)
        return None
    if jax.default_backend() != "cpu":
        if announce:
            print(
                f"JAX runs on {jax.default_backend()}: the CPU-only PyTorch columns are skipped",
                file=sys.stderr,
            )
        return None
    torch.set_num_threads(thread_count())
    return torch


def torch_sgd_step(
    torch: Any, leaves: Sequence[Any], loss_of: Callable[[], Any], learning_rate: float
) -> Callable[[], Any]:
    """A PyTorch eager SGD step: ``loss_of()`` builds the loss from the ``leaves`` (tensors with
    ``requires_grad``), whose gradients then update them in place. Returns the loss before the update."""

    def step() -> Any:
        loss = loss_of()
        grads = torch.autograd.grad(loss, leaves)
        with torch.no_grad():
            for leaf, grad in zip(leaves, grads):
                leaf.sub_(learning_rate * grad)
        return loss

    return step


# ------------------------------------------------------------------- sections


STEP_COLUMNS = (
    "model",
    "manual ms",
    "autodiff ms",
    "manual/autodiff",
    "paired 95% CI",
    "fwd+bwd/fwd",
    "resid KiB m/a",
    "temp KiB m/a",
    "torch ms",
    "manual/torch",
)


def _kib_pair(pair: Mapping[str, Any], key: str | None = None) -> str:
    values = [pair[side] if key is None else pair[side][key] for side in ("manual", "autodiff")]
    return "/".join("n/a" if v is None else f"{v / 1024:.0f}" for v in values)


def _interval(paired: Mapping[str, float] | None) -> str | None:
    return None if paired is None else f"{paired['median']:.3f} [{paired['low']:.3f}, {paired['high']:.3f}]"


def step_table(rows: Sequence[Mapping[str, Any]], title: str = "") -> str:
    """Training-step rows (``{"model": ..., **compare_training_step(...)}``) as one table:
    median step times, ratios of medians, the paired manual/autodiff ratio with its ~95% interval,
    residual bytes (total) and compiled temporary bytes."""
    table = []
    for row in rows:
        ms = row["step_ms"]
        table.append(
            {
                "model": row.get("model", "?"),
                "manual ms": ms["manual"]["median_ms"],
                "autodiff ms": ms["autodiff"]["median_ms"],
                "manual/autodiff": row["manual_over_autodiff"],
                "paired 95% CI": _interval(row.get("manual_over_autodiff_paired")),
                "fwd+bwd/fwd": row["fwd_bwd_over_fwd"],
                "resid KiB m/a": _kib_pair(row["residual_bytes"], "total"),
                "temp KiB m/a": _kib_pair(row["temp_bytes"]),
                "torch ms": ms["torch"]["median_ms"] if "torch" in ms else None,
                "manual/torch": _interval(row.get("manual_over_torch_blocks")) or row.get("manual_over_torch"),
            }
        )
    return format_table(table, STEP_COLUMNS, title)


def section_main(name: str, run: Callable[..., Mapping[str, Any]], argv: Sequence[str] | None = None) -> int:
    """Command line of one section: ``[--tiny] [--repeats N] [--out PATH]``; prints the table of
    its training-step rows (or of all its rows) and writes JSON to a new file."""
    import argparse

    parser = argparse.ArgumentParser(
        prog=f"python -m jaxbp.bench.{name}",
        description=f"jaxbp benchmark section {name!r}",
    )
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (seconds; for tests)")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds per variant (default: 10)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"JSON path (default: a new {RESULTS_DIR}/{name}-NNN.json)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    heap_allocations()
    result = dict(run(tiny=args.tiny, repeats=args.repeats))
    rows = result.get("rows", [])
    step_rows = [row for row in rows if "step_ms" in row]
    print(step_table(step_rows, title=name) if step_rows else format_table(rows, title=name))
    print(f"wrote {write_json({'section': name, **result}, name, path=args.out)}")
    return 0
