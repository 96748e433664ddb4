"""Run the benchmark suite: hand-written backward rules against autodiff and PyTorch, every family.

Runs each section of :data:`SECTIONS` (``benchmarks/<name>.py``), prints one table of
training steps (manual vs ``jax.grad`` through the reference vs PyTorch eager) followed by
the sections' own tables and the issue's targets, and writes ``results/bench/suite-NNN.json``
(machine, versions, every figure with min and median) and ``suite-NNN.png`` next to it.
A section that fails is reported in the JSON and the output, and the others still run.

    python -m benchmarks [--tiny] [--repeats N] [--sections mlp gradients ...] [--out-dir DIR] [--no-plot]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks._heap import heap_allocations
from benchmarks._machine import machine_info
from benchmarks._results import RESULTS_DIR, write_json
from benchmarks._tables import format_table, step_table

__all__ = [
    "SECTIONS",
    "add_arguments",
    "check_targets",
    "main",
    "plot",
    "run",
    "run_sections",
    "time_ratio",
]

SECTIONS = ("mlp", "conv", "recurrent", "attention", "transformer", "gradients", "scaling", "remat")

# The targets, judged on the paired / blockwise statistics of one process (see check_targets).
STEP_RATIO_TARGET, LSTM_STEP_RATIO_TARGET = 1.00, 0.90
MLP_FWD_BWD_TARGET, MLP_MATMUL_FRACTION_TARGET = 3.0, 0.85


def run_sections(names: Sequence[str], tiny: bool = False, repeats: int = 10) -> dict[str, dict[str, Any]]:
    """``{name: result}`` for each section (``{"error": ...}`` where it raised); progress goes to stderr."""
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            result = dict(importlib.import_module(f"benchmarks.{name}").run(tiny=tiny, repeats=repeats))
        except Exception as error:  # noqa: BLE001 -- a failing section must not take the others down
            traceback.print_exc()
            result = {"section": name, "error": f"{type(error).__name__}: {error}"}
        result["seconds"] = time.perf_counter() - start
        results[name] = result
    return results


def step_rows(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every training-step row of every section (rows with ``step_ms``), tagged with its section."""
    return [
        {**row, "section": name}
        for name, result in results.items()
        for row in result.get("rows", [])
        if "step_ms" in row
    ]


def time_ratio(row: Mapping[str, Any], key: str) -> dict[str, float] | None:
    """A row's best statistic for the time ratio ``key`` (``"manual_over_autodiff"`` or
    ``"manual_over_torch"``): the paired or blockwise summary (median, low, high), else the
    ratio of medians alone (low = high = median); None when it was not measured."""
    summary = row.get(f"{key}_paired") or row.get(f"{key}_blocks")
    if summary:
        return dict(summary)
    value = row.get(key)
    return None if value is None else {"median": value, "low": value, "high": value}


def check_targets(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, each ``{"target", "value", "met", "interval"}`` for what was measured
    (``interval``: ``[low, high, limit]`` for time ratios, else None).

    Time ratios are judged on their best statistic: manual/autodiff on the paired per-round
    median (``interval``: its ~95% CI), manual/torch on the median over the alternating
    blocks (``interval``: their range); a plain ratio of medians where those are absent.
    """
    checks = []

    def add(
        target: str, value: float, met: bool, interval: Mapping[str, float] | None = None, limit: float = 0.0
    ) -> None:
        bounds = None if interval is None else [interval["low"], interval["high"], limit]
        checks.append({"target": target, "value": value, "met": met, "interval": bounds})

    for row in step_rows(results):
        model = row.get("model", "?")
        limit = LSTM_STEP_RATIO_TARGET if "lstm" in model.lower() else STEP_RATIO_TARGET
        paired = time_ratio(row, "manual_over_autodiff")
        if paired is not None:
            ratio = paired["median"]
            add(f"{model}: manual/autodiff step <= {limit:.2f}", ratio, ratio <= limit, paired, limit)
        manual, autodiff = (
            row["residual_bytes"]["manual"]["total"],
            row["residual_bytes"]["autodiff"]["total"],
        )
        add(
            f"{model}: residual bytes manual <= autodiff",
            manual / autodiff,
            manual <= autodiff,
        )
        blocks = time_ratio(row, "manual_over_torch")
        if blocks is not None:
            ratio = blocks["median"]
            add(f"{model}: jaxbp faster than PyTorch eager", ratio, ratio < 1.0, blocks, 1.0)
        if row.get("section") == "mlp":
            add(
                f"{model}: fwd+bwd/fwd <= {MLP_FWD_BWD_TARGET}",
                row["fwd_bwd_over_fwd"],
                row["fwd_bwd_over_fwd"] <= MLP_FWD_BWD_TARGET,
            )
            if "step_over_matmul_flop_s" in row:
                fraction = row["step_over_matmul_flop_s"]
                add(
                    f"{model}: step FLOP/s >= {MLP_MATMUL_FRACTION_TARGET:.0%} of a matmul's",
                    fraction,
                    fraction >= MLP_MATMUL_FRACTION_TARGET,
                )
    return checks


def report(results: Mapping[str, Mapping[str, Any]], machine: Mapping[str, Any]) -> str:
    """The suite's text output: machine, the training-step table, section tables, targets."""
    lines = [
        (
            f"machine: {machine['cpu']} ({machine['threads']} threads), backend {machine['backend']} ({machine['device']}), "
            f"jax {machine['jax']}, jaxlib {machine['jaxlib']}, torch {machine['torch'] or 'not installed'}"
        ),
        "",
        step_table(
            step_rows(results),
            title="training step (median ms; ratios of medians, same process, round-robin)",
        ),
    ]
    for name, result in results.items():
        if "error" in result:
            lines += [
                "",
                f"{name}: ERROR {result['error']}",
            ]
        elif result.get("rows") and not all("step_ms" in row for row in result["rows"]):
            lines += ["", format_table(result["rows"], title=name)]
    if "slope_backprop" in results.get("gradients", {}):
        gradients = results["gradients"]
        lines.append(
            f"log-log slopes of time to the full gradient: backprop {gradients['slope_backprop']:.2f}, numerical {gradients['slope_numerical']:.2f}"
        )
    if "slopes" in results.get("scaling", {}):
        lines.append(
            "log-log slopes of step time: " + ", ".join(f"{k} {v:.2f}" for k, v in results["scaling"]["slopes"].items())
        )
    lines += ["", "targets:"]
    lines += [f"  [{'met' if c['met'] else 'MISSED'}] {c['target']} ({_measured(c)})" for c in check_targets(results)]
    return "\n".join(lines)


def _measured(check: Mapping[str, Any]) -> str:
    """``measured 0.998 [0.971, 1.011]``, flagged when the interval straddles the target's limit."""
    text = f"measured {check['value']:.3g}"
    if check.get("interval"):
        low, high, limit = check["interval"]
        text += f" [{low:.3g}, {high:.3g}]"
        if low <= limit < high:
            text += ", within noise of the limit"
    return text


def plot(results: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """A PNG summary: step-time ratios, residual bytes, gradient cost vs parameters, scaling, remat."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    rows = step_rows(results)
    models = [row.get("model", "?") for row in rows]
    ax = axes[0, 0]
    positions = range(len(rows))
    for offset, key, label in (
        (-0.2, "manual_over_autodiff", "manual / autodiff (paired, ~95% CI)"),
        (0.2, "manual_over_torch", "jaxbp / PyTorch eager (blocks, range)"),
    ):
        measured = [(p, time_ratio(row, key)) for p, row in zip(positions, rows)]
        bars = [(p, r) for p, r in measured if r is not None]
        if bars:
            ax.bar(
                [p + offset for p, _ in bars],
                [r["median"] for _, r in bars],
                0.4,
                yerr=[[r["median"] - r["low"] for _, r in bars], [r["high"] - r["median"] for _, r in bars]],
                capsize=3,
                label=label,
            )
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set(title="training-step time ratio", xticks=list(positions))
    ax.set_ylim(0, 1.35 * max([1.0] + [p.get_height() + p.get_y() for p in ax.patches]))
    ax.set_xticklabels(models, rotation=20, ha="right", fontsize=7)
    ax.legend(fontsize=8, loc="upper left")

    ax = axes[0, 1]
    for offset, side in ((-0.2, "manual"), (0.2, "autodiff")):
        ax.bar(
            [p + offset for p in positions],
            [row["residual_bytes"][side]["total"] / 2**20 for row in rows],
            0.4,
            label=side,
        )
    ax.set(title="saved residuals (MiB)", xticks=list(positions))
    ax.set_xticklabels(models, rotation=20, ha="right", fontsize=7)
    ax.legend(fontsize=8)

    ax = axes[0, 2]
    gradients = results.get("gradients", {})
    if gradients.get("rows"):
        counts = [row["params"] for row in gradients["rows"]]
        for key, label in (
            ("backprop", "backprop"),
            ("numerical", "central differences"),
        ):
            ax.loglog(
                counts,
                [row[f"{key}_ms"] for row in gradients["rows"]],
                "o-",
                label=f"{label} (slope {gradients[f'slope_{key}']:.2f})",
            )
        ax.legend(fontsize=8)
    ax.set(title="time to the full gradient", xlabel="parameters", ylabel="ms")

    scaling = results.get("scaling", {})
    for ax, sweep in ((axes[1, 0], "batch"), (axes[1, 1], "depth")):
        points = [row for row in scaling.get("rows", []) if row["sweep"] == sweep]
        for variant in ("manual", "autodiff"):
            if points:
                slope = scaling["slopes"][f"{sweep}_{variant}"]
                ax.loglog(
                    [row[sweep] for row in points],
                    [row[f"{variant}_ms"] for row in points],
                    "o-",
                    label=f"{variant} (slope {slope:.2f})",
                )
        if points:
            ax.legend(fontsize=8)
            ax.set_xticks([row[sweep] for row in points], [str(row[sweep]) for row in points])
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set(title=f"MLP step time vs {sweep}", xlabel=sweep, ylabel="ms")

    ax = axes[1, 2]
    remat = results.get("remat", {})
    if remat.get("rows"):
        labels = [row["variant"] for row in remat["rows"]]
        ax.bar(
            labels,
            [row["residual_ratio"] for row in remat["rows"]],
            label="residual bytes",
        )
        ax.plot(
            labels,
            [row["time_ratio"] for row in remat["rows"]],
            "ko-",
            label="gradient time",
        )
        ax.legend(fontsize=8)
        ax.tick_params(axis="x", labelrotation=20)
    ax.set(title="nn.checkpoint: relative to no remat")
    machine = machine_info()
    fig.suptitle(
        f"benchmarks -- {machine['cpu']} ({machine['threads']} threads), {machine['backend']}, jax {machine['jax']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks``."""
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="tiny sizes (seconds; for tests and a smoke run)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=10,
        help="timed round-robin rounds per variant (default: 10)",
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        metavar="NAME",
        help=f"sections to run (default: all of {', '.join(SECTIONS)})",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=RESULTS_DIR,
        help=f"where suite-NNN.json/.png go (default: {RESULTS_DIR})",
    )
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")


def run(args: argparse.Namespace) -> int:
    """Run the chosen sections, print the report, write the JSON and the PNG; 0 unless a section failed."""
    if args.repeats < 1:
        print(
            f"python -m benchmarks: error: --repeats must be >= 1, got {args.repeats}",
            file=sys.stderr,
        )
        return 2
    heap_allocations()
    results = run_sections(args.sections, tiny=args.tiny, repeats=args.repeats)
    machine = machine_info()
    print(report(results, machine))
    path = write_json(
        {
            "suite": {
                "tiny": args.tiny,
                "repeats": args.repeats,
                "sections": list(args.sections),
            },
            "targets": check_targets(results),
            "sections": results,
        },
        "suite",
        directory=args.out_dir,
    )
    print(f"wrote {path}")
    if not args.no_plot:
        print(f"wrote {plot(results, path.with_suffix('.png'))}")
    return 1 if any("error" in result for result in results.values()) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks`` with ``argv`` (default ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
