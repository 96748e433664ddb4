"""Markdown tables of the study, generated from ``results.json`` (estimates shown as mean ± s.e.)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from jaxbp.studies.vanishing._stats import MIN_SEEDS, assess, significant

#: A predicted rate closer to 0 than this is "critical": no relative difference is shown.
CRITICAL_RATE = 0.01


def fmt(value: float | None, spec: str = ".3f") -> str:
    """``format(value, spec)``; ``—`` for None/non-finite; no ``-0.000``."""
    if value is None or not math.isfinite(value):
        return "—"
    text = format(value, spec)
    if text.startswith("-") and float(text.rstrip("%")) == 0:
        text = format(0.0, spec)
    return text


def xi(value: float | None) -> str:
    """A depth scale ξ_c, ``∞`` where it diverges (on the critical line)."""
    return "∞" if value is None or not math.isfinite(value) else fmt(value, ".4g")


def pm(estimate: dict[str, Any] | None, spec: str = ".3f") -> str:
    """``mean ± se``."""
    if estimate is None:
        return "—"
    return f"{fmt(estimate.get('mean'), spec)} ± {fmt(estimate.get('se'), spec.lstrip('+'))}"


def verdict(effect: dict[str, Any]) -> str:
    """``differs (p = ...)``, ``consistent (p = ...)`` or ``no verdict (n < MIN_SEEDS)`` (:func:`._stats.assess`)."""
    result = assess(effect)
    if result["verdict"] == "no verdict":
        return f"no verdict (n = {result['n']} < {MIN_SEEDS})" if result["n"] < MIN_SEEDS else "no verdict"
    return f"{result['verdict']} (p = {result['p']:.2g})"


def theory_rows(results: dict[str, Any], depths: Iterable[int] | None = None) -> list[dict[str, Any]]:
    wanted = None if depths is None else set(depths)
    return [r for r in results["grid"] if "predicted_rate" in r and (wanted is None or r["depth"] in wanted)]


def relative_difference(record: dict[str, Any]) -> float | None:
    """``(measured - predicted) / |predicted|``; None at criticality (``|predicted| < CRITICAL_RATE``)."""
    measured, predicted = record["measured_rate"]["mean"], record["predicted_rate"]
    if measured is None or predicted is None or not math.isfinite(predicted) or abs(predicted) < CRITICAL_RATE:
        return None
    return (measured - predicted) / abs(predicted)


def slope_table_markdown(results: dict[str, Any], depths: Iterable[int] | None = None) -> str:
    """Theory vs measurement of the growth rate, one row per grid setting (``depths`` restricts the rows)."""
    lines = [
        "| activation | init | L | σw² | σb² | χ1 | ½ln χ1 | layer-wise (N = ∞) | width-N reference | finite-width offset | measured ± s.e. | measured − reference | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in theory_rows(results, depths):
        lines.append(
            f"| {r['activation']} | {r['init']} | {r['depth']} | {fmt(r['sigma_w2'], '.4g')} | {fmt(r['sigma_b2'], 'g')} | "
            f"{fmt(r['chi1'], '.4g')} | {fmt(r['predicted_rate'], '+.4f')} | {fmt(r['layerwise_predicted_rate'], '+.4f')} | "
            f"{pm(r['reference_rate'], '+.4f')} | {pm(r['finite_width_offset'], '+.4f')} | "
            f"{pm(r['measured_rate'], '+.4f')} | {pm(r['reference_error'], '+.4f')} | {verdict(r['reference_error'])} |"
        )
    return "\n".join(lines) + "\n"


def error_summary(results: dict[str, Any]) -> dict[str, Any]:
    """Absolute errors |measured − ½ln χ1| (median, max) over all settings, relative ones off criticality,
    and the settings whose measurement differs from the width-N reference."""
    rows = [r for r in theory_rows(results) if r["rate_error"]["mean"] is not None]
    absolute = np.abs([r["rate_error"]["mean"] for r in rows])
    relative = np.abs([v for v in (relative_difference(r) for r in rows) if v is not None])
    worst = max(rows, key=lambda r: abs(r["rate_error"]["mean"]))
    return {
        "settings": len(rows),
        "absolute_median": float(np.median(absolute)),
        "absolute_max": float(absolute.max()),
        "absolute_max_setting": f"{worst['activation']}/{worst['init']} L={worst['depth']}",
        "relative_median": float(np.median(relative)) if relative.size else None,
        "relative_max": float(relative.max()) if relative.size else None,
        "significant": [
            f"{r['activation']}/{r['init']} L={r['depth']}" for r in rows if significant(r["reference_error"])
        ],
    }


def remedy_table(results: dict[str, Any]) -> str:
    lines = [
        "| network | baseline | ln(‖δ_1‖/‖δ_L‖) | measured rate | ln(‖dL/dW_1‖/‖dL/dW_L‖) | saturated/dead fraction |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results["remedies"] + [results["exploding_profile"]]:
        lines.append(
            f"| {r['label']} | {'yes' if r['baseline'] else 'no'} | {pm(r['log_first_to_last'], '+.2f')} | {pm(r['measured_rate'], '+.4f')} | "
            f"{pm(r['log_weight_first_to_last'], '+.2f')} | {pm(r['saturated_mean'], '.2f')} |"
        )
    return "\n".join(lines) + "\n"


def training_table(results: dict[str, Any]) -> str:
    lines = [
        "| network | final training loss | final test accuracy |",
        "|---|---:|---:|",
    ]
    for r in results["training"]:
        lines.append(f"| {r['label']} | {pm(r['final_train_loss'])} | {pm(r['final_test_accuracy'])} |")
    return "\n".join(lines) + "\n"


def clipping_table(results: dict[str, Any]) -> str:
    c = results["clipping"]
    lines = [
        f"| lr η | clipped (‖g‖ ≤ {c['clip_norm']:g}) | mean clip factor f | unclipped at η | unclipped at f·η | clipped − unclipped | clipped − matched |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in c["runs"]:
        lines.append(
            f"| {e['learning_rate']:g} | {pm(e['clipped']['final_test_accuracy'])} | {pm(e['clipped']['clip_factor'], '.3f')} | "
            f"{pm(e['unclipped']['final_test_accuracy'])} | {pm(e['unclipped_matched']['final_test_accuracy'])} (η = {e['matched_learning_rate']:.3g}) | "
            f"{pm(e['clipped_minus_unclipped'], '+.3f')} | {pm(e['clipped_minus_matched'], '+.3f')} |"
        )
    return "\n".join(lines) + "\n"


def spectrum_table(results: dict[str, Any]) -> str:
    lines = [
        "| network | L | L/N | mean s² (theory) | var(s²) | var(s²) theory | var(s²)/mean(s²)² (theory) | verdict (log scale) | s_max |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in results["spectra"]:
        for d in r["depths"]:
            lines.append(
                f"| {r['label']} | {d['depth']} | {d['depth_over_width']:.2g} | {pm(d['s2_mean'])} ({fmt(d['predicted_s2_mean'])}) | "
                f"{pm(d['s2_variance'], '.3g')} | {fmt(d['predicted_s2_variance'], '.3g')} | {pm(d['s2_relative_variance'], '.3g')} "
                f"({fmt(d['predicted_s2_relative_variance'], '.3g')}) | "
                f"{'outside the N → ∞ regime' if d['relative_variance_log_error'] is None else verdict(d['relative_variance_log_error'])} | "
                f"{pm(d['s_max'], '.3g')} |"
            )
    return "\n".join(lines) + "\n"


def signal_table(results: dict[str, Any]) -> str:
    lines = [
        "| tanh σw² | χ1 | c* | ξ_c | q_L measured | q_L theory | verdict | layer l (transient) | c_l measured | c_l theory | verdict |",
        "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in results["signal"]:
        layer = r["transient_layer"]
        lines.append(
            f"| {r['sigma_w2']:.6g} | {fmt(r['chi1'], '.4f')} | {fmt(r['c_star'], '.4f')} | {xi(r['xi_c'])} | {pm(r['q_measured'][-1], '.4f')} | "
            f"{fmt(r['q_theory'][-1], '.4f')} | {verdict(r['q_last_error'])} | {layer} | {pm(r['c_measured'][layer - 1], '.4f')} | "
            f"{fmt(r['c_theory'][layer - 1], '.4f')} | {verdict(r['c_transient_error'])} |"
        )
    return "\n".join(lines) + "\n"


def finite_width_table(results: dict[str, Any]) -> str:
    lines = [
        "| network | N | L | L/N | Var ln(‖δ_1‖/‖δ_L‖) measured | width-N reference | verdict (log scale) | first-order theory |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in results["finite_width"]:
        lines.append(
            f"| {r['label']} | {r['width']} | {r['depth']} | {r['depth_over_width']:.3f} | {pm(r['log_ratio_variance'], '.4f')} | "
            f"{pm(r['reference_variance'], '.4f')} | {verdict(r['log_variance_error'])} | {r['predicted_variance']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def trainability_table(results: dict[str, Any]) -> str:
    t = results["trainability"]
    lines = [
        "| L \\ σw² | " + " | ".join(f"{s:g}" for s in t["sigma_w2"]) + " |",
        "|---:|" + "---:|" * len(t["sigma_w2"]),
    ]
    lines.append("| 6ξ_c | " + " | ".join("∞" if x is None else fmt(6 * x, ".0f") for x in t["xi_c"]) + " |")
    for depth, row in zip(t["depths"], t["test_accuracy"]):
        lines.append(f"| {depth} | " + " | ".join(pm(a, ".2f") for a in row) + " |")
    return "\n".join(lines) + "\n"


def width_control_table(results: dict[str, Any]) -> str:
    """The tanh RNN's rate minus its N = ∞ input-norm prediction at several widths H (the main width included)."""
    t = results["across_time"]
    control = t.get("rnn_width_control", [])
    sigma_w2s = {r["sigma_w2"] for r in control}
    records = control + [r for r in t["rnn"] if r["sigma_w2"] in sigma_w2s]
    lines = [
        "| σw² | H | measured rate ± s.e. | N = ∞, input norm drawn | measured − prediction | verdict |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for r in sorted(records, key=lambda r: (r["sigma_w2"], r["width"])):
        lines.append(
            f"| {r['sigma_w2']:g} | {r['width']} | {pm(r['measured_rate'], '+.4f')} | {r['input_norm_predicted_rate']:+.4f} | "
            f"{pm(r['input_norm_rate_error'], '+.4f')} | {verdict(r['input_norm_rate_error'])} |"
        )
    return "\n".join(lines) + "\n"


def across_time_table(results: dict[str, Any]) -> str:
    """Rate of ln‖∂L/∂h_t‖ per step back in time: tanh RNN vs ½ ln χ and vs the N = ∞ rate with the
    input norm drawn per step (the verdict), LSTM by forget-gate bias."""
    lines = [
        "| cell | T | H | χ | ½ln χ (input norm fixed) | N = ∞, input norm drawn | measured rate ± s.e. | "
        "measured − ½ln χ | measured − input-norm rate | verdict | ln(‖∂L/∂h_1‖/‖∂L/∂h_T‖) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    t = results["across_time"]
    for r in t["rnn"]:
        lines.append(
            f"| {r['label']} | {r['time_steps']} | {r['width']} | {fmt(r['chi'], '.4f')} | {r['predicted_rate']:+.4f} | "
            f"{r['input_norm_predicted_rate']:+.4f} | {pm(r['measured_rate'], '+.4f')} | {pm(r['rate_error'], '+.4f')} | "
            f"{pm(r['input_norm_rate_error'], '+.4f')} | {verdict(r['input_norm_rate_error'])} | {pm(r['log_first_to_last'], '+.2f')} |"
        )
    for r in t["lstm"]:
        lines.append(
            f"| {r['label']} | {r['time_steps']} | {r['width']} | — | — | — | {pm(r['measured_rate'], '+.4f')} | — | — | — | "
            f"{pm(r['log_first_to_last'], '+.2f')} |"
        )
    return "\n".join(lines) + "\n"
