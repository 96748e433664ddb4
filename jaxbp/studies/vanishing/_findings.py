"""Findings generated from the numbers: summaries (stored in ``results.json``) and the sentences built on them.

A sentence states an effect only when it is significant (|effect| > 3 s.e.,
:func:`~jaxbp.studies.vanishing._stats.significant`); otherwise it says the measurement is
consistent with theory (or with no effect).
"""

from __future__ import annotations

from typing import Any

from jaxbp.studies.vanishing._stats import difference, estimate, fit_line, significant
from jaxbp.studies.vanishing._tables import error_summary, pm, verdict


def _finite_width_fits(results: dict[str, Any]) -> list[dict[str, Any]]:
    fits = []
    for label in dict.fromkeys(r["label"] for r in results["finite_width"]):
        rows = [r for r in results["finite_width"] if r["label"] == label]
        x = [(r["depth"] - 1) / r["width"] for r in rows]
        fit = fit_line(
            x,
            [r["log_ratio_variance"]["mean"] for r in rows],
            [r["log_ratio_variance"]["se"] or 1e-12 for r in rows],
        )
        fits.append(
            {
                "label": label,
                "slope": fit,
                "kappa": rows[0]["kappa"],
                "slope_minus_kappa": difference(fit, rows[0]["kappa"]),
            }
        )
    return fits


def _isometry(results: dict[str, Any]) -> dict[str, Any] | None:
    tanh = [r for r in results["spectra"] if r["activation"] == "tanh"]
    if not tanh:
        return None
    q_min = min(r["q_star"] for r in tanh)
    pair = {r["weights"]: r for r in tanh if r["q_star"] == q_min}
    gaussian, orthogonal = (
        pair["gaussian"]["depths"][-1],
        pair["orthogonal"]["depths"][-1],
    )
    return {
        "q_star": q_min,
        "depth": gaussian["depth"],
        "gaussian_variance": gaussian["s2_variance"],
        "orthogonal_variance": orthogonal["s2_variance"],
        "gaussian_predicted": gaussian["predicted_s2_variance"],
        "orthogonal_predicted": orthogonal["predicted_s2_variance"],
        "gaussian_relative_variance": gaussian["s2_relative_variance"],
        "orthogonal_relative_variance": orthogonal["s2_relative_variance"],
        "gaussian_relative_predicted": gaussian["predicted_s2_relative_variance"],
        "orthogonal_relative_predicted": orthogonal["predicted_s2_relative_variance"],
        "largest_possible_relative_variance": gaussian["largest_possible_relative_variance"],
        "difference": difference(gaussian["s2_relative_variance"], orthogonal["s2_relative_variance"]),
        "orthogonal_minus_theory": difference(
            orthogonal["s2_relative_variance"], orthogonal["predicted_s2_relative_variance"]
        ),
        "gaussian_minus_theory": difference(
            gaussian["s2_relative_variance"], gaussian["predicted_s2_relative_variance"]
        ),
    }


def _trainability(results: dict[str, Any]) -> dict[str, Any]:
    t = results["trainability"]
    inside: list[float | None] = []
    outside: list[float | None] = []
    for depth, row in zip(t["depths"], t["test_accuracy"]):
        for xi, accuracy in zip(t["xi_c"], row):
            (inside if depth <= 6 * xi else outside).append(accuracy["mean"])
    return {
        "inside_6xi": estimate(inside),
        "outside_6xi": estimate(outside),
        "inside_minus_outside": difference(estimate(inside), estimate(outside)),
    }


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """The derived numbers every finding quotes (written to ``results.json`` under ``summary``)."""
    grid = [r for r in results["grid"] if "predicted_rate" in r]
    relu_he = [r for r in grid if r["activation"] == "relu" and r["init"] == "he"]
    baselines = {r["activation"]: r for r in results["remedies"] if r["baseline"]}
    remedies = [
        {
            "label": r["label"],
            "baseline": baselines[r["activation"]]["label"],
            "log_ratio_gain": difference(r["log_first_to_last"], baselines[r["activation"]]["log_first_to_last"]),
        }
        for r in results["remedies"]
        if not r["baseline"] and r["activation"] in baselines
    ]
    runs = results["clipping"]["runs"]
    return {
        "rate_errors": error_summary(results),
        "relu_he_deepest": max(relu_he, key=lambda r: r["depth"])["measured_rate"] if relu_he else None,
        "remedy_gains": remedies,
        "clipping": {
            "rates": len(runs),
            "significant_vs_unclipped": [e["learning_rate"] for e in runs if significant(e["clipped_minus_unclipped"])],
            "significant_vs_matched": [e["learning_rate"] for e in runs if significant(e["clipped_minus_matched"])],
            "best_difference": results["clipping"]["best_difference"],
        },
        "isometry": _isometry(results),
        "finite_width": _finite_width_fits(results),
        "trainability": _trainability(results),
    }


def _significance_sentence(effect: dict[str, Any], what: str, unit: str = "") -> str:
    if significant(effect):
        return f"{what} is {pm(effect, '+.4f')}{unit} ({abs(effect['mean']) / effect['se']:.0f} s.e.)"
    return f"{what} is {pm(effect, '+.4f')}{unit}, consistent with zero (|effect| ≤ 3 s.e.)"


def _across_time_findings(results: dict[str, Any]) -> list[str]:
    t = results["across_time"]
    out = [
        f"Across time, {r['label']} (T = {r['time_steps']}, χ = {r['chi']:.3f}): ln‖∂L/∂h_t‖ changes by {pm(r['measured_rate'], '+.4f')} "
        f"per step back vs ½ ln χ = {r['predicted_rate']:+.4f}: {verdict(r['rate_error'])} with mean-field theory."
        for r in t["rnn"]
    ]
    effect = t["forget_bias_effect"]
    rates = ", ".join(f"{r['forget_bias']:g}: {pm(r['measured_rate'], '+.4f')}" for r in t["lstm"])
    out.append(
        f"Across time, LSTM rate per step back by forget-gate bias ({rates}); "
        + _significance_sentence(
            effect["rate_difference"], f"bias {effect['high']:g} minus bias {effect['low']:g}", " per step"
        )
        + "."
    )
    return out


def findings(results: dict[str, Any]) -> list[str]:
    """Markdown bullet texts, each quoting numbers of ``results["summary"]`` or the records with their s.e."""
    s = results["summary"]
    e = s["rate_errors"]
    out = [
        f"Growth rate of ln‖δ‖ vs ½ ln χ1 over {e['settings']} settings ({results['config']['seeds']} independent networks each): absolute error "
        f"median {e['absolute_median']:.4f}, max {e['absolute_max']:.4f} per layer ({e['absolute_max_setting']}); relative error off criticality "
        f"median {e['relative_median'] or 0:.2%}, max {e['relative_max'] or 0:.2%}. "
        + (
            f"Significant deviations (> 3 s.e.; see the table for the layer-wise prediction): {', '.join(e['significant'])}."
            if e["significant"]
            else "Every setting is consistent with theory (|error| ≤ 3 s.e.)."
        )
    ]
    if s["relu_he_deepest"] is not None:
        out.append(
            _significance_sentence(
                s["relu_he_deepest"],
                "ReLU + He (critical, χ1 = 1) at the deepest L: the rate",
                " per layer",
            )
            + "."
        )
    for gain in s["remedy_gains"]:
        out.append(
            _significance_sentence(
                gain["log_ratio_gain"],
                f"{gain['label']} vs {gain['baseline']}: the change of ln(‖δ_1‖/‖δ_L‖)",
            )
            + "."
        )
    explode = results["exploding_profile"]
    out.append(
        f"{explode['label']} (χ1 = {explode['chi1']:.3f}): measured rate {pm(explode['measured_rate'], '+.4f')} per layer vs ½ ln χ1 = "
        f"{explode['predicted_rate']:+.4f}: {verdict(explode['rate_error'])} with theory."
    )
    c = s["clipping"]
    out.append(
        f"Clipping the exploding network's gradient norm to {results['clipping']['clip_norm']:g}: final test accuracy differs significantly from "
        f"unclipped training at the same learning rate at {len(c['significant_vs_unclipped'])} of {c['rates']} rates "
        f"({', '.join(f'{v:g}' for v in c['significant_vs_unclipped']) or 'none'}), and from unclipped training at the matched rate f·η at "
        f"{len(c['significant_vs_matched'])} of {c['rates']} ({', '.join(f'{v:g}' for v in c['significant_vs_matched']) or 'none'}); "
        + _significance_sentence(
            c["best_difference"],
            "the best accuracy over the sweep, clipped minus unclipped,",
        )
        + "."
    )
    iso = s["isometry"]
    if iso is not None:
        out.append(
            f"Dynamical isometry (tanh on the critical line at q* = {iso['q_star']:.3g}, L = {iso['depth']}): the spread "
            f"var(s²)/mean(s²)² of the input-output Jacobian's squared singular values is "
            f"{pm(iso['orthogonal_relative_variance'], '.3g')} with orthogonal weights (free probability "
            f"{iso['orthogonal_relative_predicted']:.3g}; {verdict(iso['orthogonal_minus_theory'])}) vs "
            f"{pm(iso['gaussian_relative_variance'], '.3g')} with Gaussian weights (free probability "
            f"{iso['gaussian_relative_predicted']:.3g}, but at most N − 1 = {iso['largest_possible_relative_variance']} "
            f"for N singular values); " + _significance_sentence(iso["difference"], "Gaussian minus orthogonal") + "."
        )
    for r in results["signal"]:
        out.append(
            f"Signal propagation, tanh σw² = {r['sigma_w2']:.3g} (χ1 = {r['chi1']:.3f}, c* = {r['c_star']:.3f}, ξ_c = {r['xi_c']:.4g}): at layer {r['depth']} "
            f"q = {pm(r['q_measured'][-1], '.4f')} vs {r['q_theory'][-1]:.4f} ({verdict(r['q_last_error'])}), c = {pm(r['c_measured'][-1], '.4f')} vs "
            f"{r['c_theory'][-1]:.4f} ({verdict(r['c_last_error'])})."
        )
    for fit in s["finite_width"]:
        out.append(
            f"Finite width, {fit['label']}: Var ln(‖δ_1‖/‖δ_L‖) grows like {pm(fit['slope'], '.3f')} × (L−1)/N (weighted fit through the origin) vs the "
            f"predicted κ = {fit['kappa']:.3f}: {verdict(fit['slope_minus_kappa'])}."
        )
    out.extend(_across_time_findings(results))
    t = s["trainability"]
    out.append(
        f"Trainability (tanh, {results['trainability']['steps']} SGD steps): mean test accuracy {pm(t['inside_6xi'], '.3f')} over the cells with L ≤ 6ξ_c "
        f"and {pm(t['outside_6xi'], '.3f')} beyond; "
        + _significance_sentence(t["inside_minus_outside"], "the difference")
        + "."
    )
    for r in results["training"]:
        out.append(
            f"Training {r['label']} at depth {r['depth']} (lr {r['learning_rate']:g}): final test accuracy {pm(r['final_test_accuracy'])}."
        )
    return out
