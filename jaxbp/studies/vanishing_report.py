"""Figures, tables and the markdown report of the vanishing-gradient study.

Everything here reads the results dict that :func:`jaxbp.studies.vanishing.run_study`
returns (equivalently ``results.json``), so a report can be regenerated from a saved run::

    results = json.loads(Path("results/vanishing/results.json").read_text())
    print(slope_table_markdown(results, depths=[50]))   # the README's table

Numbers that are not finite (a loss that diverged, an infinite :math:`q^*`) are stored
as ``null`` in the JSON and shown as ``—`` in tables.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "interpretation",
    "slope_table_markdown",
    "write_figures",
    "write_json",
    "write_outputs",
    "write_report",
]

#: A predicted rate closer to 0 than this is "critical": the relative difference is not shown.
CRITICAL_RATE = 0.01
#: ``|δ_1| / |δ_L|`` below / above these is called vanishing / exploding.
VANISHING_RATIO, EXPLODING_RATIO = 0.1, 10.0
#: Final test accuracy above which a network "trains", below which it "stalls" (chance: 0.1).
TRAINS_ACCURACY, STALLS_ACCURACY = 0.5, 0.2

RATE_CONVENTION = (
    "Rates are changes of ln‖δ‖ per backward step, ln‖δ_l‖ − ln‖δ_{l+1}‖ (norms, not squared norms; "
    "negative = vanishing towards the input, positive = exploding). Predicted: ½ ln χ1 at the fixed point q*. "
    "Layer-wise: the mean-field recursion iterated from the measured q_1. Measured: minus the least-squares "
    "slope of ln‖δ_l‖ against l over the fit window, mean ± standard deviation over seeds."
)


# ============================================================================ JSON


def _finite_or_none(value: Any) -> Any:
    """Replace NaN/inf floats (not valid JSON) by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, np.generic):
        return _finite_or_none(value.item())
    return value


def write_json(results: dict[str, Any], path: Path) -> None:
    """Write ``results`` as strict JSON (non-finite numbers become ``null``)."""
    path.write_text(json.dumps(_finite_or_none(results), indent=1, ensure_ascii=False, allow_nan=False) + "\n")


def _array(rows: Any) -> np.ndarray:
    """A (nested) list with ``None`` for non-finite entries -> float array with NaN."""
    return np.array(rows, dtype=np.float64)


def _fmt(value: float | None, spec: str = ".3f") -> str:
    """``format(value, spec)``; ``—`` for None/non-finite; no ``-0.000`` for tiny negatives."""
    if value is None or not math.isfinite(value):
        return "—"
    text = format(value, spec)
    if text.startswith("-") and float(text.rstrip("%")) == 0:
        text = format(0.0, spec)
    return text


# ============================================================================ tables


def _theory_rows(results: dict[str, Any], depths: Iterable[int] | None) -> list[dict[str, Any]]:
    wanted = None if depths is None else set(depths)
    return [r for r in results["grid"] if "predicted_rate" in r and (wanted is None or r["depth"] in wanted)]


def relative_difference(measured: float | None, predicted: float | None) -> float | None:
    """``(measured - predicted) / |predicted|``; None when undefined or ``|predicted| < CRITICAL_RATE``."""
    if measured is None or predicted is None or not (math.isfinite(measured) and math.isfinite(predicted)):
        return None
    if abs(predicted) < CRITICAL_RATE:
        return None
    return (measured - predicted) / abs(predicted)


def slope_table_markdown(results: dict[str, Any], depths: Iterable[int] | None = None) -> str:
    """The theory-vs-measurement table (experiment 4) as markdown, one row per grid setting.

    ``depths`` restricts the rows (e.g. ``[50]`` for a README-sized table).
    """
    results = _finite_or_none(results)
    header = (
        "| activation | init | L | σw² | σb² | χ1 | predicted ½ln χ1 | layer-wise mean field | measured | "
        "measured − predicted | relative difference |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for r in _theory_rows(results, depths):
        rel = relative_difference(r["measured_rate"], r["predicted_rate"])
        diff = None if r["measured_rate"] is None or r["predicted_rate"] is None else r["measured_rate"] - r["predicted_rate"]
        lines.append(
            f"| {r['activation']} | {r['init']} | {r['depth']} | {_fmt(r['sigma_w2'], '.4g')} | {_fmt(r['sigma_b2'], 'g')} | "
            f"{_fmt(r['chi1'], '.4g')} | {_fmt(r['predicted_rate'], '+.3f')} | {_fmt(r['layerwise_predicted_rate'], '+.3f')} | "
            f"{_fmt(r['measured_rate'], '+.3f')} ± {_fmt(r['measured_rate_std'], '.3f')} | {_fmt(diff, '+.3f')} | "
            f"{'critical' if rel is None else _fmt(rel, '+.1%')} |"
        )
    return header + "\n".join(lines) + "\n"


def _remedy_table(results: dict[str, Any]) -> str:
    lines = [
        "| network | ‖δ_1‖/‖δ_L‖ | measured rate | ‖dL/dW_1‖/‖dL/dW_L‖ | mean saturated/dead fraction |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results["remedies"] + [results["exploding_profile"]]:
        weight_ratio = None
        if r["weight_grad_norm"] is not None:
            weights = _array(r["weight_grad_norm"])
            with np.errstate(divide="ignore", invalid="ignore"):
                weight_ratio = float(np.exp(np.mean(np.log(weights[:, 0]) - np.log(weights[:, -1]))))
        saturation = None if r["saturated_fraction"] is None else float(np.mean(_array(r["saturated_fraction"])[:, :-1]))
        lines.append(
            f"| {r['label']} | {_fmt(r['first_to_last_ratio'], '.2e')} | {_fmt(r['measured_rate'], '+.3f')} | "
            f"{_fmt(weight_ratio, '.2e')} | {_fmt(saturation, '.2f')} |"
        )
    return "\n".join(lines) + "\n"


def _verdict(accuracy: float) -> str:
    if accuracy >= TRAINS_ACCURACY:
        return "trains"
    return "stalls" if accuracy < STALLS_ACCURACY else "trains poorly"


def _training_table(results: dict[str, Any]) -> str:
    lines = ["| network | final training loss | final test accuracy | verdict |", "|---|---:|---:|---|"]
    for r in results["training"]:
        accuracy = r["final_test_accuracy"]
        lines.append(f"| {r['label']} | {_fmt(r['final_train_loss'])} | {_fmt(accuracy)} | {_verdict(accuracy or 0.0)} |")
    return "\n".join(lines) + "\n"


def _clipping_table(results: dict[str, Any]) -> str:
    lines = [
        "| learning rate | clipping | first-step ‖g‖ | largest ‖g‖ | final training loss | final test accuracy |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in results["clipping"]:
        first = float(np.nanmean(_array(r["first_step_grad_norm"])))
        largest = float(np.nanmax(_array(r["max_grad_norm"])))
        clip = "none" if r["clip_norm"] is None else f"‖g‖ ≤ {r['clip_norm']:g}"
        lines.append(
            f"| {r['learning_rate']:g} | {clip} | {_fmt(first, '.3g')} | {_fmt(largest, '.3g')} | "
            f"{_fmt(r['final_train_loss'])} | {_fmt(r['final_test_accuracy'])} |"
        )
    return "\n".join(lines) + "\n"


# ============================================================================ interpretation


def _classify(ratio: float | None) -> str:
    if ratio is None:
        return "undetermined"
    if ratio < VANISHING_RATIO:
        return "vanish"
    return "explode" if ratio > EXPLODING_RATIO else "stable"


def _is_transient(r: dict[str, Any]) -> bool:
    """q_l is still far from q* in the fit window: the layer-wise and fixed-point predictions differ."""
    return (
        r["layerwise_predicted_rate"] is not None
        and r["predicted_rate"] is not None
        and abs(r["layerwise_predicted_rate"] - r["predicted_rate"]) > CRITICAL_RATE
    )


def _log_ratio_spread(r: dict[str, Any]) -> float:
    """Standard deviation over seeds of ln(‖δ_1‖/‖δ_L‖)."""
    delta = _array(r["delta_norm"])
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.std(np.log(delta[:, 0]) - np.log(delta[:, -1])))


def _phase_finding(grid: list[dict[str, Any]]) -> str:
    deepest = max(r["depth"] for r in grid)
    groups: dict[str, list[str]] = {"vanish": [], "explode": [], "stable": [], "undetermined": []}
    for r in grid:
        if r["depth"] == deepest:
            groups[_classify(r["first_to_last_ratio"])].append(f"{r['activation']}/{r['init']} ({_fmt(r['first_to_last_ratio'], '.0e')})")
    return (
        f"At depth L = {deepest}, ‖δ_1‖/‖δ_L‖ < {VANISHING_RATIO:g} (gradients vanish) for "
        f"{', '.join(groups['vanish']) or 'none'}; > {EXPLODING_RATIO:g} (explode) for {', '.join(groups['explode']) or 'none'}; "
        f"within a factor {EXPLODING_RATIO:g} for {', '.join(groups['stable']) or 'none'}."
    )


def _agreement_findings(rows: list[dict[str, Any]], width: int) -> list[str]:
    findings = []
    off_critical = [(r, relative_difference(r["measured_rate"], r["predicted_rate"])) for r in rows]
    off_critical = [(r, rel) for r, rel in off_critical if rel is not None]
    if off_critical:
        errors = np.abs([rel for _, rel in off_critical])
        worst = sorted(off_critical, key=lambda item: -abs(item[1]))[:3]
        findings.append(
            f"Away from criticality (|½ ln χ1| ≥ {CRITICAL_RATE}; {len(off_critical)} settings) the measured rate matches "
            f"½ ln χ1 with a median relative difference of {np.median(errors):.1%} "
            f"({np.mean(errors < 0.1):.0%} of the settings within 10%). Largest differences: "
            + "; ".join(
                f"{r['activation']}/{r['init']} L={r['depth']}: measured {r['measured_rate']:+.3f} "
                f"vs {r['predicted_rate']:+.3f} ({rel:+.0%})"
                for r, rel in worst
            )
            + "."
        )
    critical = [
        r for r in rows if r["predicted_rate"] is not None and abs(r["predicted_rate"]) < CRITICAL_RATE and r["measured_rate"] is not None
    ]
    settled = [r for r in critical if not _is_transient(r)]
    if settled:
        rates = [r["measured_rate"] for r in settled]
        depth = max(r["depth"] for r in settled)
        relu = [r["measured_rate"] for r in settled if r["activation"] == "relu"]
        text = (
            f"At criticality (χ1 = 1, q_l settled; {len(settled)} settings) theory predicts flat gradients; the measured rates "
            f"lie between {min(rates):+.4f} and {max(rates):+.4f} per layer (at that rate ‖δ‖ changes by a factor of at most "
            f"{math.exp(max(abs(v) for v in rates) * depth):.2f} over {depth} layers)."
        )
        if relu:
            text += (
                f" ReLU's rates are {'all slightly negative' if max(relu) < 0 else 'on average'} (mean {np.mean(relu):+.4f}): "
                "at finite width N the log of the per-layer "
                f"factor ‖δ_l‖/‖δ_(l+1)‖ (a scaled chi-square over the ~N/2 active units) has a mean below the log of its mean, "
                f"a drift of order −1/N = {-1 / width:+.4f} per layer that mean-field theory (N → ∞) leaves out."
            )
        findings.append(text)
    transient = [r for r in rows if _is_transient(r) and r["measured_rate"] is not None]
    if transient:
        closer = [
            r for r in transient if abs(r["measured_rate"] - r["layerwise_predicted_rate"]) < abs(r["measured_rate"] - r["predicted_rate"])
        ]
        examples = "; ".join(
            f"{r['activation']}/{r['init']} L={r['depth']}: measured {_fmt(r['measured_rate'], '+.3f')}, "
            f"layer-wise {_fmt(r['layerwise_predicted_rate'], '+.3f')}, ½ ln χ1 {_fmt(r['predicted_rate'], '+.3f')}"
            for r in transient[:3]
        )
        findings.append(
            f"In {len(transient)} settings q_l has not reached its fixed point q* within the fit window (tanh with σb² = 0 and "
            "σw² ≤ 1 has q* = 0, approached only like 1/l), so ½ ln χ1 at q* overstates the gradient at finite depth; "
            f"the layer-wise mean-field recursion from the measured q_1 is closer to the measurement in {len(closer)} of them "
            f"({examples})."
        )
    return findings


def _sigmoid_finding(rows: list[dict[str, Any]]) -> str | None:
    deepest = max((r["depth"] for r in rows), default=None)
    index = {(r["activation"], r["init"], r["depth"]): r for r in rows}
    sigmoid = index.get(("sigmoid", "critical", deepest))
    if sigmoid is None or sigmoid["saturated_fraction"] is None:
        return None
    saturation = float(np.mean(_array(sigmoid["saturated_fraction"])[:, :-1]))
    text = (
        f"Sigmoid is critical only at σw² ≈ {sigmoid['sigma_w2']:.0f} (q* ≈ {_fmt(sigmoid['q_star'], '.0f')}), where "
        f"{saturation:.0%} of the hidden entries are saturated and the gradient flows through the rest: "
        f"the seed-to-seed spread of ln(‖δ_1‖/‖δ_L‖) at L = {deepest} is {_log_ratio_spread(sigmoid):.2f}"
    )
    tanh = index.get(("tanh", "critical", deepest))
    if tanh is not None:
        text += f" (tanh at criticality: {_log_ratio_spread(tanh):.2f})"
    return text + (
        f", although the fitted rate still matches ({_fmt(sigmoid['measured_rate'], '+.3f')} ± {_fmt(sigmoid['measured_rate_std'])}). "
        "Any usual initialization puts a sigmoid network deep in the vanishing phase (χ1 ≤ σw²/16)."
    )


def _remedy_finding(remedies: list[dict[str, Any]]) -> str | None:
    if not remedies:
        return None
    baselines = [r for r in remedies if "no remedy" in r["label"]]
    fixes = [r for r in remedies if r not in baselines]
    text = (
        f"Remedies at depth {remedies[0]['depth']}, ‖δ_1‖/‖δ_L‖ without one: "
        + ", ".join(f"{r['label']} {_fmt(r['first_to_last_ratio'], '.1e')}" for r in baselines)
        + "; with one: "
        + ", ".join(f"{r['label']} {_fmt(r['first_to_last_ratio'], '.1e')}" for r in fixes)
        + "."
    )
    batch_norm = [r for r in fixes if r["batch_norm"] and r["first_to_last_ratio"] is not None and r["first_to_last_ratio"] > 1]
    if batch_norm:
        text += (
            f" Batch norm removes the vanishing but its gradients grow towards the input (×{batch_norm[0]['first_to_last_ratio']:.1f}), "
            "the gradient explosion Yang et al. (2019) show for deep batch-normalized networks at initialization."
        )
    return text


def _training_findings(results: dict[str, Any]) -> list[str]:
    findings = []
    training = results["training"]
    if training:
        texts = [
            f"{r['label']} {_verdict(r['final_test_accuracy'] or 0.0)} (test accuracy {_fmt(r['final_test_accuracy'])})" for r in training
        ]
        setting = f"Training at depth {training[0]['depth']} with SGD (learning rate {training[0]['learning_rate']:g}): "
        findings.append(setting + "; ".join(texts) + ".")
    clipping = results["clipping"]
    if clipping:
        pairs = []
        for lr in sorted({r["learning_rate"] for r in clipping}):
            plain = next(r for r in clipping if r["learning_rate"] == lr and r["clip_norm"] is None)
            clipped = next(r for r in clipping if r["learning_rate"] == lr and r["clip_norm"] is not None)
            pairs.append(f"lr {lr:g}: {_fmt(plain['final_test_accuracy'])} without, {_fmt(clipped['final_test_accuracy'])} with clipping")
        findings.append(
            f"The exploding tanh network trained at depth {clipping[0]['depth']} (first gradient norm "
            f"{float(np.nanmean(_array(clipping[0]['first_step_grad_norm']))):.3g}), with and without clipping the gradient norm to "
            f"{clipping[-1]['clip_norm']:g} (Pascanu et al. 2013): final test accuracy " + "; ".join(pairs) + "."
        )
    return findings


def interpretation(results: dict[str, Any]) -> list[str]:
    """Short findings generated from the numbers (markdown bullet texts)."""
    results = _finite_or_none(results)
    rows = _theory_rows(results, None)
    explode = results["exploding_profile"]
    findings = [_phase_finding(results["grid"]), *_agreement_findings(rows, results["config"]["width"])]
    findings += [text for text in (_sigmoid_finding(rows), _remedy_finding(results["remedies"])) if text]
    findings.append(
        f"{explode['label']} (χ1 = {_fmt(explode.get('chi1'), '.3f')}) is in the chaotic phase: ‖δ‖ grows towards the input by "
        f"{_fmt(explode['measured_rate'], '+.3f')} per layer (theory {_fmt(explode.get('predicted_rate'), '+.3f')}), "
        f"a factor {_fmt(explode['first_to_last_ratio'], '.1e')} over {explode['depth']} layers."
    )
    return findings + _training_findings(results)


# ============================================================================ figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _layers(depth: int) -> np.ndarray:
    return np.arange(1, depth + 1)


def _relative_profile(record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Geometric mean over seeds of ‖δ_l‖/‖δ_L‖ and the per-layer min/max over seeds."""
    delta = _array(record["delta_norm"])
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = delta / delta[:, -1:]
        return np.exp(np.mean(np.log(relative), axis=0)), relative.min(axis=0), relative.max(axis=0)


def _plot_gradient_grid(results: dict[str, Any], path: Path) -> None:
    plt = _plt()
    config = results["config"]
    activations, inits, depths = config["activations"], config["inits"], config["depths"]
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(depths)))
    fig, axes = plt.subplots(len(activations), len(inits), figsize=(3.3 * len(inits), 2.8 * len(activations)), squeeze=False)
    index = {(r["activation"], r["init"], r["depth"]): r for r in results["grid"]}
    for row, activation in enumerate(activations):
        for col, init in enumerate(inits):
            ax = axes[row, col]
            for color, depth in zip(colors, depths):
                r = index[(activation, init, depth)]
                mean, low, high = _relative_profile(r)
                layers = _layers(depth)
                ax.plot(layers, mean, color=color, lw=1.6, label=f"L = {depth}")
                ax.fill_between(layers, low, high, color=color, alpha=0.15, lw=0)
                predicted = np.asarray(r["predicted_delta_norm"]) / r["predicted_delta_norm"][-1]
                ax.plot(layers, predicted, color=color, lw=1.2, ls="--")
            r = index[(activation, init, depths[-1])]
            ax.set_yscale("log")
            ax.set_title(f"{activation} + {init}\nσw²={r['sigma_w2']:.3g}, χ1={r['chi1']:.3g}", fontsize=9)
            ax.tick_params(labelsize=7)
            if row == len(activations) - 1:
                ax.set_xlabel("layer l", fontsize=8)
            if col == 0:
                ax.set_ylabel("‖δ_l‖ / ‖δ_L‖", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    handles += [plt.Line2D([], [], color="k", lw=1.6), plt.Line2D([], [], color="k", lw=1.2, ls="--")]
    labels += ["measured (geometric mean; band: min–max over seeds)", "mean-field prediction"]
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle("Back-propagated error per layer vs depth: measured (hand-written backward) and mean-field theory", fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_slopes(results: dict[str, Any], path: Path) -> None:
    plt = _plt()
    rows = _theory_rows(results, None)
    activations = results["config"]["activations"]
    depths = results["config"]["depths"]
    markers = dict(zip(depths, "osD^vP*X"))
    colors = dict(zip(activations, plt.cm.tab10.colors))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    panels = (
        ("predicted_rate", None, "predicted ½ ln χ1 at q* (per layer)", "all settings (dotted: measured = predicted)"),
        ("layerwise_predicted_rate", 0.6, "layer-wise mean field from the measured q_1 (per layer)", "zoom: |prediction| ≤ 0.6"),
    )
    for ax, (key, limit, xlabel, title) in zip(axes, panels):
        shown = [r for r in rows if r[key] is not None and (limit is None or abs(r[key]) <= limit)]
        for r in shown:
            ax.errorbar(
                r[key], r["measured_rate"], yerr=r["measured_rate_std"], fmt=markers[r["depth"]],
                color=colors[r["activation"]], ms=5, alpha=0.8, capsize=2,
            )
        values = [v for r in shown for v in (r[key], r["measured_rate"]) if v is not None and math.isfinite(v)]
        if values:
            low, high = min(values), max(values)
            pad = 0.05 * (high - low + 1e-3)
            ax.plot([low - pad, high + pad], [low - pad, high + pad], color="gray", lw=1, ls=":")
        ax.axhline(0, color="gray", lw=0.5)
        ax.axvline(0, color="gray", lw=0.5)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("measured growth rate of ln‖δ‖ (per layer)")
        ax.set_title(title, fontsize=10)
    handles = [plt.Line2D([], [], color=colors[a], marker="o", ls="") for a in activations]
    handles += [plt.Line2D([], [], color="k", marker=markers[d], ls="") for d in depths]
    axes[0].legend(handles, list(activations) + [f"L = {d}" for d in depths], fontsize=8)
    fig.suptitle("Theory vs measurement: gradient growth per layer (negative = vanishing)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_remedies(results: dict[str, Any], path: Path) -> None:
    plt = _plt()
    records = results["remedies"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    colors = plt.cm.tab10.colors
    for color, r in zip(colors, records):
        layers = _layers(r["depth"])
        style = "--" if "no remedy" in r["label"] else "-"
        mean, _, _ = _relative_profile(r)
        axes[0].plot(layers, mean, color=color, ls=style, label=r["label"])
        weights = _array(r["weight_grad_norm"])
        axes[1].plot(layers, np.exp(np.mean(np.log(weights), axis=0)), color=color, ls=style)
        if r["saturated_fraction"] is not None:  # hidden layers only: the output layer has no activation
            saturation = np.mean(_array(r["saturated_fraction"])[:, :-1], axis=0)
            axes[2].plot(layers[:-1], saturation, color=color, ls=style)
    axes[0].set(yscale="log", xlabel="layer l", ylabel="‖δ_l‖ / ‖δ_L‖", title="back-propagated error")
    axes[1].set(yscale="log", xlabel="layer l", ylabel="‖dL/dW_l‖", title="weight gradient norm")
    axes[2].set(xlabel="layer l", ylabel="fraction", title="saturated (sigmoid/tanh) or dead (ReLU) entries\n(batch-norm nets: not shown)")
    axes[2].set_ylim(-0.02, 1.02)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=8, frameon=False)
    depth = records[0]["depth"] if records else ""
    fig.suptitle(f"Remedies for vanishing gradients at depth {depth} (dashed: no remedy; geometric mean over seeds)", fontsize=11)
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _mean_band(rows: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = _array(rows)
    return np.nanmean(values, axis=0), np.nanmin(values, axis=0), np.nanmax(values, axis=0)


def _plot_curves(ax_loss: Any, ax_accuracy: Any, record: dict[str, Any], color: Any, style: str, label: str) -> None:
    epochs = np.arange(1, len(record["train_loss"][0]) + 1)
    for ax, key in ((ax_loss, "train_loss"), (ax_accuracy, "test_accuracy")):
        mean, low, high = _mean_band(record[key])
        ax.plot(epochs, mean, color=color, ls=style, label=label)
        ax.fill_between(epochs, low, high, color=color, alpha=0.15, lw=0)


def _plot_exploding(results: dict[str, Any], path: Path) -> None:
    plt = _plt()
    r = results["exploding_profile"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    layers = _layers(r["depth"])
    mean, low, high = _relative_profile(r)
    axes[0].plot(layers, mean, color="C3", label="measured (geometric mean)")
    axes[0].fill_between(layers, low, high, color="C3", alpha=0.15, lw=0)
    axes[0].plot(layers, np.asarray(r["predicted_delta_norm"]) / r["predicted_delta_norm"][-1], "k--", label="mean field (layer-wise)")
    axes[0].plot(layers, np.asarray(r["fixed_point_delta_norm"]) / r["fixed_point_delta_norm"][-1], "k:", label="χ1^((L−l)/2)")
    axes[0].set(yscale="log", xlabel="layer l", ylabel="‖δ_l‖ / ‖δ_L‖", title=f"{r['label']}: exploding gradients")
    axes[0].legend(fontsize=8)
    learning_rates = sorted({c["learning_rate"] for c in results["clipping"]})
    colors = dict(zip(learning_rates, plt.cm.plasma(np.linspace(0.0, 0.8, len(learning_rates)))))
    for c in results["clipping"]:
        clipped = c["clip_norm"] is not None
        label = f"lr {c['learning_rate']:g}, " + (f"clipped to ‖g‖ ≤ {c['clip_norm']:g}" if clipped else "no clipping")
        _plot_curves(axes[1], axes[2], c, colors[c["learning_rate"]], "-" if clipped else "--", label)
    depth = results["clipping"][0]["depth"] if results["clipping"] else ""
    axes[1].set(yscale="log", xlabel="epoch", ylabel="training loss", title=f"training the same network at depth {depth}")
    axes[2].set(xlabel="epoch", ylabel="test accuracy", title="solid: clipped, dashed: not clipped")
    axes[2].set_ylim(0, 1)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_training(results: dict[str, Any], path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for color, r in zip(plt.cm.tab10.colors, results["training"]):
        _plot_curves(axes[0], axes[1], r, color, "-", r["label"])
    depth = results["training"][0]["depth"] if results["training"] else ""
    lr = results["training"][0]["learning_rate"] if results["training"] else ""
    axes[0].set(yscale="log", xlabel="epoch", ylabel="training loss (mean over the epoch)")
    axes[1].set(xlabel="epoch", ylabel="test accuracy", ylim=(0, 1))
    axes[1].axhline(0.1, color="gray", lw=0.8, ls=":")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Digits, {depth}-layer networks, SGD + momentum (lr {lr}); band: min–max over seeds; dotted: chance", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


FIGURES = {
    "gradient_norms_by_depth.png": _plot_gradient_grid,
    "slopes_measured_vs_predicted.png": _plot_slopes,
    "remedies.png": _plot_remedies,
    "exploding_and_clipping.png": _plot_exploding,
    "training_curves.png": _plot_training,
}


def write_figures(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Render every figure of :data:`FIGURES` into ``out_dir``; returns the paths."""
    results = _finite_or_none(results)
    paths = []
    for name, plot in FIGURES.items():
        plot(results, out_dir / name)
        paths.append(out_dir / name)
    return paths


# ============================================================================ report


def write_report(results: dict[str, Any], out_dir: Path) -> Path:
    """Write ``report.md`` (figures, tables, findings, configuration) and ``slope_table.md``."""
    results = _finite_or_none(results)
    config = results["config"]
    deepest = max(config["depths"])
    (out_dir / "slope_table.md").write_text(slope_table_markdown(results))
    findings = "\n".join(f"- {text}" for text in interpretation(results))
    setup = {"config": config, "environment": results.get("environment"), "timing_s": results.get("timing", {})}
    sections = [
        "# Vanishing and exploding gradients: measurement vs mean-field theory",
        "Every gradient below comes from jaxbp's hand-written backward rules; the per-layer error "
        "δ_l = ∂L/∂z_l is read from the same backward pass as the weight gradients "
        "(`jaxbp.diagnostics.gradient_statistics`, zero perturbations at each pre-activation). "
        f"Gradient measurements: {config['width']}-wide networks, a batch of {config['batch_size']} digits images, "
        f"{config['seeds']} seeds, float64, loss ⟨f(x), v⟩ for a random Gaussian direction v (so δ_L = v).",
        "## Findings\n\n" + findings,
        "## 1. Gradient norm per layer vs depth\n\n![gradient norms by depth](gradient_norms_by_depth.png)",
        "## 2. Remedies and exploding gradients\n\n![remedies](remedies.png)\n\n" + _remedy_table(results)
        + "\n![exploding gradients and clipping](exploding_and_clipping.png)\n\n" + _clipping_table(results),
        "## 3. Training curves on digits\n\n![training curves](training_curves.png)\n\n" + _training_table(results),
        "## 4. Theory vs measurement\n\n" + RATE_CONVENTION
        + f" Fit window: layers 1+s … L−s with s = max(1, round({config['fit_skip_fraction']}·L)).\n\n"
        + "![measured vs predicted](slopes_measured_vs_predicted.png)\n\n"
        + f"Deepest networks (L = {deepest}):\n\n" + slope_table_markdown(results, depths=[deepest])
        + "\nAll settings:\n\n" + slope_table_markdown(results),
        "## Configuration\n\n```json\n" + json.dumps(setup, indent=1, ensure_ascii=False) + "\n```",
        "Every number is in `results.json`; `jaxbp.studies.vanishing_report.slope_table_markdown(results, depths=[...])` "
        "renders the table from it.",
    ]
    path = out_dir / "report.md"
    path.write_text("\n\n".join(sections) + "\n")
    return path


def write_outputs(results: dict[str, Any], out_dir: Path, *, figures: bool = True) -> list[Path]:
    """``results.json``, every figure (unless ``figures=False``), ``report.md`` and ``slope_table.md``."""
    write_json(results, out_dir / "results.json")
    figure_paths = write_figures(results, out_dir) if figures else []
    return [out_dir / "results.json", *figure_paths, write_report(results, out_dir), out_dir / "slope_table.md"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m jaxbp.studies.vanishing_report RESULTS_JSON [--depths 50]``: print the
    theory-vs-measurement table of a saved run (e.g. to paste into the README)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("results", type=Path, help="results.json written by the vanishing study")
    parser.add_argument("--depths", type=int, nargs="+", help="only these depths (default: all)")
    args = parser.parse_args(argv)
    print(slope_table_markdown(json.loads(args.results.read_text()), depths=args.depths), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
