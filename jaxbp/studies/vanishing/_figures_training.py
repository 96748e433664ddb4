"""Figures of training, clipping, Jacobian spectra, signal propagation and the trainability heatmap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jaxbp.studies.vanishing._figures_gradients import legend_below, plt, relative_profile, save


def _curve(
    ax_loss: Any,
    ax_accuracy: Any,
    record: dict[str, Any],
    color: Any,
    style: str,
    label: str,
) -> None:
    for ax, key in ((ax_loss, "train_loss"), (ax_accuracy, "test_accuracy")):
        values = np.array(record[key], dtype=np.float64)
        epochs = np.arange(1, values.shape[1] + 1)
        mean, se = (
            np.nanmean(values, axis=0),
            np.nanstd(values, axis=0, ddof=1) / np.sqrt(len(values)),
        )
        ax.plot(epochs, mean, color=color, ls=style, label=label)
        ax.fill_between(epochs, mean - se, mean + se, color=color, alpha=0.2, lw=0)


def plot_training(results: dict[str, Any], path: Path) -> None:
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 2, figsize=(12, 4.6))
    for color, r in zip(pyplot.cm.tab10.colors, results["training"]):
        _curve(axes[0], axes[1], r, color, "--" if r["baseline"] else "-", r["label"])
    axes[0].set(yscale="log", xlabel="epoch", ylabel="training loss (cross-entropy, nats)")
    axes[1].set(xlabel="epoch", ylabel="test accuracy (fraction)", ylim=(0, 1))
    axes[1].axhline(0.1, color="gray", lw=0.8, ls=":", label="chance (0.1)")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    depth = results["config"]["training"]["depth"]
    save(
        fig,
        path,
        f"Digits, depth-{depth} networks, SGD + momentum; band: ±1 s.e. over seeds",
    )


def plot_clipping(results: dict[str, Any], path: Path) -> None:
    pyplot = plt()
    c = results["clipping"]
    fig, axes = pyplot.subplots(1, 2, figsize=(12, 6.2))

    def points(kind: str) -> tuple[list, list, list]:
        xs = [e["matched_learning_rate" if kind == "unclipped_matched" else "learning_rate"] for e in c["runs"]]
        return (
            xs,
            [e[kind]["final_test_accuracy"]["mean"] for e in c["runs"]],
            [3 * (e[kind]["final_test_accuracy"]["se"] or 0) for e in c["runs"]],
        )

    for kind, style, label in (
        ("unclipped", "o--", "unclipped at lr η"),
        ("unclipped_matched", "s:", "unclipped at f·η (matched control)"),
    ):
        axes[0].errorbar(*points(kind)[:2], yerr=points(kind)[2], fmt=style, capsize=2, label=label)
    xs, ys, es = points("clipped")
    axes[0].errorbar(
        xs,
        ys,
        yerr=es,
        fmt="^-",
        capsize=2,
        label=f"clipped to ‖g‖ ≤ {c['clip_norm']:g} at lr η",
    )
    effective = [e["matched_learning_rate"] for e in c["runs"]]
    axes[0].plot(
        effective,
        ys,
        "x",
        color="k",
        label="clipped, drawn at its effective rate f·η (prediction: on the unclipped curve)",
    )
    axes[0].set(
        xscale="log",
        xlabel="learning rate (per step)",
        ylabel="final test accuracy (fraction; bars ±3 s.e.)",
        ylim=(0, 1),
    )
    legend_below(axes[0])
    for color, e in zip(pyplot.cm.plasma(np.linspace(0, 0.8, len(c["runs"]))), c["runs"]):
        for kind, style in (("clipped", "-"), ("unclipped", "--")):
            norms = np.array(e[kind]["max_grad_norm"], dtype=np.float64)
            axes[1].plot(
                np.arange(1, norms.shape[1] + 1),
                np.nanmean(norms, axis=0),
                color=color,
                ls=style,
                label=f"η={e['learning_rate']:g}, {kind}",
            )
    axes[1].axhline(c["clip_norm"], color="gray", ls=":", label="clipping threshold")
    axes[1].set(
        yscale="log",
        xlabel="epoch",
        ylabel="largest ‖g‖ in the epoch (before clipping)",
    )
    legend_below(axes[1], ncol=3)
    save(
        fig,
        path,
        f"{c['label']}, depth {c['depth']}: what clipping buys beyond a smaller step",
    )


def _positive_errorbar(estimates: list[dict[str, Any]]) -> tuple[list[float], Any]:
    """Means and ``yerr`` of ``estimate`` dicts for a log axis: ± one s.e., the lower bar kept above zero."""
    means = [e["mean"] for e in estimates]
    errors = [e["se"] or 0.0 for e in estimates]
    return means, np.array([[min(se, 0.99 * m) for m, se in zip(means, errors)], errors])


def plot_spectra(results: dict[str, Any], path: Path) -> None:
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 3, figsize=(16, 7.0))
    colors = pyplot.cm.tab10.colors
    iso = results["summary"]["isometry"]
    for color, r in zip(colors, results["spectra"]):
        style = "-" if r["weights"] == "orthogonal" else "--"
        depths = [d["depth"] for d in r["depths"]]
        variance = [d["s2_relative_variance"] for d in r["depths"]]
        axes[1].errorbar(depths, *_positive_errorbar(variance), fmt="o", color=color, capsize=2)
        axes[1].plot(
            depths,
            [d["predicted_s2_relative_variance"] for d in r["depths"]],
            color=color,
            ls=style,
            label=r["label"],
        )
        axes[2].errorbar(
            depths, *_positive_errorbar([d["s_max"] for d in r["depths"]]), fmt="o" + style, color=color, capsize=2
        )
    if iso is not None:
        histograms = {
            r["weights"]: (color, np.log10(np.array(r["depths"][-1]["singular_values"]).ravel() ** 2))
            for color, r in zip(colors, results["spectra"])
            if r["activation"] == "tanh" and r["q_star"] == iso["q_star"]
        }
        every = np.concatenate([values for _, values in histograms.values()])
        bins = np.linspace(every.min(), max(every.max(), 0.5), 80)
        for weights, (color, values) in histograms.items():
            axes[0].hist(values, bins=bins, density=True, histtype="step", color=color, label=f"{weights} (measured)")
        axes[0].set(
            yscale="log",
            xlabel="log10 s² (squared singular value, dimensionless)",
            ylabel="density per unit of log10 s²",
            title=f"tanh, q* = {iso['q_star']:.3g}, L = {iso['depth']}",
        )
        axes[0].axvline(0.0, color="gray", ls=":", label="isometry: s² = 1 (theory mean)")
        legend_below(axes[0])
    depths = [d["depth"] for d in results["spectra"][0]["depths"]]
    axes[2].plot(
        depths,
        [d["linear_gaussian_s_max"] for d in results["spectra"][0]["depths"]],
        "k:",
        label="linear Gaussian network (Fuss–Catalan edge)",
    )
    axes[1].set(
        yscale="log",
        xlabel="depth L",
        ylabel="var(s²) / mean(s²)² (dimensionless)",
        title="points: measured ± s.e. over seeds; lines: free probability",
    )
    axes[2].set(
        yscale="log",
        xlabel="depth L",
        ylabel="largest singular value s_max",
        title="s_max ± s.e. (solid: orthogonal, dashed: Gaussian)",
    )
    legend_below(axes[1], fontsize=6)
    legend_below(axes[2])
    save(
        fig,
        path,
        "Input-output Jacobian spectra (hand-written VJPs against a basis) vs free-probability theory",
    )


def plot_signal(results: dict[str, Any], path: Path) -> None:
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 2, figsize=(12, 4.6))
    for color, r in zip(pyplot.cm.tab10.colors, results["signal"]):
        layers = np.arange(1, r["depth"] + 1)
        for ax, key in ((axes[0], "q"), (axes[1], "c")):
            mean = np.array([e["mean"] for e in r[f"{key}_measured"]])
            se = np.array([e["se"] or 0 for e in r[f"{key}_measured"]])
            ax.errorbar(
                layers,
                mean,
                yerr=3 * se,
                fmt="o",
                ms=3,
                color=color,
                capsize=1,
                label=f"σw²={r['sigma_w2']:.3g} measured (±3 s.e.)",
            )
            ax.plot(
                layers,
                r[f"{key}_theory"],
                color=color,
                label=f"σw²={r['sigma_w2']:.3g} mean-field map" + (f" (c* = {r['c_star']:.2f})" if key == "c" else ""),
            )
    axes[0].set(
        xlabel="layer l",
        ylabel="length q_l = mean z_l² (pre-activation variance)",
        title="length map",
    )
    axes[1].set(
        xlabel="layer l",
        ylabel="correlation c_l of two inputs (dimensionless)",
        title="correlation map",
        ylim=(-0.05, 1.05),
    )
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    save(
        fig,
        path,
        f"Forward signal propagation in tanh networks (σb² = {results['config']['laws']['critical_sigma_b2']:g})",
    )


def plot_trainability(results: dict[str, Any], path: Path) -> None:
    pyplot = plt()
    t = results["trainability"]
    accuracy = np.array([[a["mean"] for a in row] for row in t["test_accuracy"]])
    fig, ax = pyplot.subplots(figsize=(7.5, 5))
    sw, depths = np.array(t["sigma_w2"]), np.array(t["depths"])
    mesh = ax.pcolormesh(sw, depths, accuracy, shading="nearest", cmap="viridis", vmin=0.0, vmax=1.0)
    fig.colorbar(mesh, ax=ax, label="test accuracy after training (fraction)")
    curve = t["xi_c_curve"]
    ax.plot(
        curve["sigma_w2"],
        6 * np.array(curve["xi_c"]),
        "w--",
        lw=2,
        label="theory: L = 6 ξ_c",
    )
    ax.set(
        ylim=(depths.min() - 5, depths.max() + 5),
        xlabel="σw² (weight variance × fan-in)",
        ylabel="depth L (layers)",
    )
    ax.legend(loc="upper right", fontsize=8)
    fig.text(
        0.5,
        0.01,
        f"Descriptive only: {t['steps']} steps. Too few steps can leave trainable cells at chance (≈ 0.1), "
        "so a dark cell is not evidence that the depth is untrainable.",
        ha="center",
        va="bottom",
        fontsize=7,
        wrap=True,
    )
    save(
        fig,
        path,
        f"Trainability of tanh networks on digits ({t['steps']} SGD steps, width {t['width']}, σb² = {t['sigma_b2']:g})",
        rect=(0, 0.07, 1, 0.95),
    )


def plot_across_time(results: dict[str, Any], path: Path) -> None:
    """‖∂L/∂h_t‖/‖∂L/∂h_T‖ vs t (geometric mean over seeds, ±3 s.e. of the log) with the mean-field slope."""
    pyplot = plt()
    t = results["across_time"]
    fig, axes = pyplot.subplots(1, 2, figsize=(12, 4.6), sharey=False)
    for ax, records, title in (
        (axes[0], t["rnn"], "tanh RNN over σw²"),
        (axes[1], t["lstm"], "LSTM over forget-gate bias"),
    ):
        for color, r in zip(pyplot.cm.viridis(np.linspace(0, 0.9, len(records))), records):
            mean, se = relative_profile(r, "grad_norm")
            steps = np.arange(1, len(mean) + 1)
            ax.plot(steps, mean, "o", ms=3, color=color, label=f"{r['label']} (measured)")
            ax.fill_between(steps, mean * np.exp(-3 * se), mean * np.exp(3 * se), color=color, alpha=0.2)
            if "predicted_rate" in r:
                theory = np.exp(r["predicted_rate"] * (steps[-1] - steps))
                ax.plot(
                    steps,
                    theory,
                    "--",
                    color=color,
                    label=f"σw²={r['sigma_w2']:g}: ½ln χ = {r['predicted_rate']:+.3f}/step",
                )
        ax.set(
            yscale="log",
            xlabel="time step t (the loss reads h_T)",
            ylabel="‖∂L/∂h_t‖ / ‖∂L/∂h_T‖ (ratio, log scale)",
            title=title,
        )
        ax.legend(fontsize=7)
    save(
        fig,
        path,
        f"Gradients across time ({t['rnn'][0]['width']} units, {len(t['rnn'][0]['grad_norm'])} seeds; "
        "dashed: mean-field theory; bands: ±3 s.e.)",
    )
