"""``results.json``, the figures and ``report.md`` of the study, all generated from the results dict."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxbp.studies.vanishing import _figures_gradients as fg
from jaxbp.studies.vanishing import _figures_training as ft
from jaxbp.studies.vanishing import _tables as tables
from jaxbp.studies.vanishing._calibration import calibration_table
from jaxbp.studies.vanishing._findings import findings, summarize
from jaxbp.studies.vanishing._stats import LEVEL, MIN_SEEDS

FIGURES = {
    "gradient_norms_by_depth.png": fg.plot_gradient_grid,
    "slopes_measured_vs_predicted.png": fg.plot_slopes,
    "remedies.png": fg.plot_remedies,
    "finite_width.png": fg.plot_finite_width,
    "training_curves.png": ft.plot_training,
    "clipping.png": ft.plot_clipping,
    "jacobian_spectra.png": ft.plot_spectra,
    "signal_propagation.png": ft.plot_signal,
    "trainability.png": ft.plot_trainability,
    "across_time.png": ft.plot_across_time,
}
#: Every file the study writes into its output directory.
OUTPUT_FILES = ("results.json", "report.md", "slope_table.md", *FIGURES)


def finite_or_none(value: Any) -> Any:
    """Replace NaN/inf floats (not valid JSON) by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, np.generic):
        return finite_or_none(value.item())
    return value


def run_line(results: dict[str, Any]) -> str:
    """When, where and how long: the run's environment and total time (once known) from ``results``."""
    env = results["environment"]
    total = results.get("timing", {}).get("total_s")
    took = "" if total is None else f"; the study took {total:.0f} s"
    load = env.get("load_average_at_start")
    load_text = "" if load is None else f", load average at start {load[0]:.2f}"
    return (
        f"Run started {env['started']} ({env['cpu_count']} CPUs{load_text}, "
        f"JAX {env['jax']} on {env['backend']}, Python {env['python']}){took}."
    )


def write_report(results: dict[str, Any], out_dir: Path) -> Path:
    """Write ``report.md`` (findings, figures, tables, calibration) and ``slope_table.md``."""
    config = results["config"]["grid"]
    deepest = max(config["depths"])
    (out_dir / "slope_table.md").write_text(tables.slope_table_markdown(results))
    sections = [
        "# Vanishing and exploding gradients: measurement vs theory",
        (
            "Every gradient comes from jaxbp's hand-written backward rules. Estimates are mean ± standard error over "
            "independent networks (each setting draws its own keys). A verdict is a two-sided Student-t test at level "
            f"{LEVEL:g} with the actual seed count (Welch's for two samples; log scale for variances and spectral spreads): "
            f"'differs (p)' or 'consistent (p)', and no verdict below {MIN_SEEDS} seeds. Growth rates are compared with an "
            "exact width-N simulation of the same setting (plain jax.numpy, hand-written backward recursion, independent "
            "networks), which carries the finite-width offset that mean-field theory (N = ∞) leaves out; see docs/study.md. "
            "Configuration, environment and timing are in results.json. Gradient grid: width "
            f"{config['width']}, {config['seeds']} seeds, a batch of {config['batch_size']} digits images, float64, "
            "loss ⟨f(x), v⟩ for a random direction v (so δ_L = v)."
        ),
        run_line(results),
        "## Findings\n\n" + "\n".join(f"- {text}" for text in findings(results)),
        (
            "## 1. Gradient norm per layer vs depth\n\n![gradient norms by depth](gradient_norms_by_depth.png)\n\n"
            "![measured vs predicted](slopes_measured_vs_predicted.png)\n\n"
            f"Deepest networks (L = {deepest}):\n\n"
        )
        + tables.slope_table_markdown(results, depths=[deepest]),
        "## 2. Remedies and exploding gradients\n\n![remedies](remedies.png)\n\n" + tables.remedy_table(results),
        "## 3. Training and clipping\n\n![training curves](training_curves.png)\n\n"
        + tables.training_table(results)
        + "\n![clipping](clipping.png)\n\n"
        + tables.clipping_table(results),
        "## 4. Jacobian spectra\n\n![spectra](jacobian_spectra.png)\n\n" + tables.spectrum_table(results),
        "## 5. Signal propagation and trainability\n\n![signal](signal_propagation.png)\n\n"
        + tables.signal_table(results)
        + (
            "\n![trainability](trainability.png)\n\n" + tables.trainability_table(results)
            if "trainability" in results
            else "\nThe trainability grid (descriptive only, no verdict) is not part of this run; `--full` runs it.\n"
        ),
        "## 6. Finite width\n\n![finite width](finite_width.png)\n\n" + tables.finite_width_table(results),
        "## 7. Across time: recurrent networks\n\n![across time](across_time.png)\n\n"
        + tables.across_time_table(results)
        + "\nWidth control: the tanh RNN at other widths H (what finite width adds to the N = ∞ prediction "
        "with the input norm drawn per step):\n\n" + tables.width_control_table(results),
        "## All grid settings\n\n" + tables.slope_table_markdown(results),
        "## Calibration of the verdicts\n\nEach verdict type run on synthetic data where the null hypothesis is exact "
        "(the study's own samples resampled with replacement, at its seed counts):\n\n"
        + calibration_table(results["summary"]["calibration"]),
    ]
    path = out_dir / "report.md"
    path.write_text("\n\n".join(sections) + "\n")
    return path


def write_outputs(results: dict[str, Any], out_dir: Path, *, figures: bool = True) -> list[Path]:
    """``results.json`` (with ``summary``), every figure (unless ``figures=False``), ``report.md``, ``slope_table.md``."""
    results["summary"] = finite_or_none(summarize(finite_or_none(results)))
    clean = finite_or_none(results)
    (out_dir / "results.json").write_text(json.dumps(clean, indent=1, ensure_ascii=False, allow_nan=False) + "\n")
    paths = []
    if figures:
        for name, plot in FIGURES.items():
            if name == "trainability.png" and "trainability" not in clean:
                continue  # a run without the (descriptive) trainability grid
            plot(clean, out_dir / name)
            paths.append(out_dir / name)
    return [
        out_dir / "results.json",
        *paths,
        write_report(clean, out_dir),
        out_dir / "slope_table.md",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m jaxbp.studies.vanishing.report RESULTS_JSON [--depths 50]``: print the theory-vs-measurement table."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("results", type=Path, help="results.json written by the vanishing study")
    parser.add_argument("--depths", type=int, nargs="+", help="only these depths (default: all)")
    args = parser.parse_args(argv)
    print(
        tables.slope_table_markdown(json.loads(args.results.read_text()), depths=args.depths),
        end="",
    )
    return 0
