"""Figures of the gradient measurements: profiles by depth, rates vs theory, remedies, finite width."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jaxbp.studies.vanishing._tables import theory_rows


def plt():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def save(fig: Any, path: Path, title: str, rect: tuple = (0, 0, 1, 0.95)) -> None:
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=100)
    plt().close(fig)


def legend_below(ax: Any, ncol: int = 1, fontsize: float = 7) -> None:
    """The axes' legend under its x label, so it never covers data (``save``'s tight layout makes room)."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=ncol, fontsize=fontsize, frameon=False)


def relative_profile(record: dict[str, Any], field: str = "delta_norm") -> tuple[np.ndarray, np.ndarray]:
    """Geometric mean over seeds of ‖δ_l‖/‖δ_L‖ (``record[field]``: seeds x positions, normalised by
    the last position) and the standard error of its log."""
    delta = np.array(record[field], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(delta / delta[:, -1:])
    return np.exp(np.mean(logs, axis=0)), np.std(logs, axis=0, ddof=1) / np.sqrt(len(logs))


def plot_gradient_grid(results: dict[str, Any], path: Path) -> None:
    pyplot = plt()
    config = results["config"]["grid"]
    activations, inits, depths = (
        config["activations"],
        config["inits"],
        config["depths"],
    )
    colors = pyplot.cm.viridis(np.linspace(0.0, 0.85, len(depths)))
    fig, axes = pyplot.subplots(
        len(activations),
        len(inits),
        figsize=(3.3 * len(inits), 2.8 * len(activations)),
        squeeze=False,
    )
    index = {(r["activation"], r["init"], r["depth"]): r for r in results["grid"]}
    for row, activation in enumerate(activations):
        for col, init in enumerate(inits):
            ax = axes[row, col]
            for color, depth in zip(colors, depths):
                r = index[(activation, init, depth)]
                mean, se = relative_profile(r)
                layers = np.arange(1, depth + 1)
                ax.plot(layers, mean, color=color, lw=1.6, label=f"L = {depth}")
                ax.fill_between(
                    layers,
                    mean * np.exp(-3 * se),
                    mean * np.exp(3 * se),
                    color=color,
                    alpha=0.2,
                    lw=0,
                )
                ax.plot(  # drawn on top in black: in most panels it lies on the measurement
                    layers,
                    np.asarray(r["predicted_delta_norm"]) / r["predicted_delta_norm"][-1],
                    color="k",
                    lw=0.9,
                    ls=(0, (3, 3)),
                    zorder=4,
                )
            ax.set_yscale("log")
            ax.set_title(
                f"{activation} + {init}, σw²={r['sigma_w2']:.3g}, χ1={r['chi1']:.3g}",
                fontsize=8,
            )
            ax.tick_params(labelsize=7)
            ax.set_xlabel("layer l (1 = input side)", fontsize=8)
            ax.set_ylabel("‖δ_l‖ / ‖δ_L‖ (ratio)", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    handles += [
        pyplot.Line2D([], [], color="k", lw=1.6),
        pyplot.Line2D([], [], color="k", lw=0.9, ls=(0, (3, 3))),
    ]
    labels += [
        f"measured (geometric mean of {config['seeds']} seeds; band ±3 s.e.)",
        "mean-field theory (layer-wise, N = ∞; black dashes on top)",
    ]
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    save(
        fig,
        path,
        "Back-propagated error per layer: measured (hand-written backward) vs mean-field theory",
        (0, 0.04, 1, 0.96),
    )


def plot_slopes(results: dict[str, Any], path: Path) -> None:
    pyplot = plt()
    rows = theory_rows(results)
    activations, depths = results["config"]["grid"]["activations"], results["config"]["grid"]["depths"]
    markers, colors = (
        dict(zip(depths, "osD^vP*X")),
        dict(zip(activations, pyplot.cm.tab10.colors)),
    )
    fig, axes = pyplot.subplots(1, 2, figsize=(11, 4.6))
    for r in rows:
        color, marker = colors[r["activation"]], markers[r["depth"]]
        axes[0].errorbar(
            r["predicted_rate"],
            r["measured_rate"]["mean"],
            yerr=3 * (r["measured_rate"]["se"] or 0),
            fmt=marker,
            color=color,
            ms=5,
            capsize=2,
        )
        axes[1].errorbar(
            r["predicted_rate"],
            r["rate_error"]["mean"],
            yerr=3 * (r["rate_error"]["se"] or 0),
            fmt=marker,
            color=color,
            ms=5,
            capsize=2,
        )
    values = [
        v for r in rows for v in (r["predicted_rate"], r["measured_rate"]["mean"]) if v is not None and np.isfinite(v)
    ]
    if values:
        axes[0].plot(
            [min(values), max(values)],
            [min(values), max(values)],
            color="gray",
            lw=1,
            ls=":",
            label="theory: measured = ½ ln χ1",
        )
    axes[1].axhline(0, color="gray", lw=1, ls=":", label="theory: zero error")
    axes[0].set(
        xlabel="predicted ½ ln χ1 (per layer)",
        ylabel="measured growth rate of ln‖δ‖ (per layer)",
        title="all settings",
    )
    axes[1].set(
        xlabel="predicted ½ ln χ1 (per layer)",
        ylabel="measured − predicted (per layer)",
        title="error, bars ±3 s.e.",
    )
    handles = [pyplot.Line2D([], [], color=colors[a], marker="o", ls="") for a in activations]
    handles += [pyplot.Line2D([], [], color="k", marker=markers[d], ls="") for d in depths] + [
        pyplot.Line2D([], [], color="gray", ls=":")
    ]
    axes[0].legend(
        handles,
        list(activations) + [f"L = {d}" for d in depths] + ["theory"],
        fontsize=8,
    )
    save(
        fig,
        path,
        "Theory vs measurement: growth of ln‖δ‖ per backward step (negative = vanishing)",
    )


def plot_remedies(results: dict[str, Any], path: Path) -> None:
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 2, figsize=(13, 4.8))
    for color, r in zip(pyplot.cm.tab10.colors, results["remedies"]):
        mean, _ = relative_profile(r)
        axes[0].plot(
            np.arange(1, r["depth"] + 1),
            mean,
            color=color,
            ls="--" if r["baseline"] else "-",
            label=r["label"] + (" (baseline)" if r["baseline"] else ""),
        )
        if "predicted_delta_norm" in r:
            axes[0].plot(
                np.arange(1, r["depth"] + 1),
                np.asarray(r["predicted_delta_norm"]) / r["predicted_delta_norm"][-1],
                color=color,
                ls=":",
                lw=1,
            )
    axes[0].plot([], [], "k:", lw=1, label="mean-field theory (plain networks)")
    axes[0].set(
        yscale="log",
        xlabel="layer l",
        ylabel="‖δ_l‖ / ‖δ_L‖ (ratio)",
        title=f"remedies at depth {results['config']['remedies']['depth']}",
    )
    axes[0].legend(fontsize=7)
    r = results["exploding_profile"]
    mean, se = relative_profile(r)
    layers = np.arange(1, r["depth"] + 1)
    axes[1].plot(layers, mean, color="C3", label="measured (geometric mean)")
    axes[1].fill_between(
        layers,
        mean * np.exp(-3 * se),
        mean * np.exp(3 * se),
        color="C3",
        alpha=0.2,
        lw=0,
        label="±3 s.e.",
    )
    axes[1].plot(
        layers,
        np.asarray(r["predicted_delta_norm"]) / r["predicted_delta_norm"][-1],
        "k--",
        label="mean-field theory",
    )
    axes[1].set(
        yscale="log",
        xlabel="layer l",
        ylabel="‖δ_l‖ / ‖δ_L‖ (ratio)",
        title=f"{r['label']}: exploding (χ1 = {r['chi1']:.3f})",
    )
    axes[1].legend(fontsize=8)
    save(fig, path, "Remedies for vanishing gradients and the exploding phase")


def plot_finite_width(results: dict[str, Any], path: Path) -> None:
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(7, 4.8))
    fits = {f["label"]: f for f in results["summary"]["finite_width"]}
    for color, (label, fit) in zip(pyplot.cm.tab10.colors, fits.items()):
        rows = [r for r in results["finite_width"] if r["label"] == label]
        x = np.array([(r["depth"] - 1) / r["width"] for r in rows])
        y = [r["log_ratio_variance"]["mean"] for r in rows]
        ax.errorbar(
            x,
            y,
            yerr=[3 * (r["log_ratio_variance"]["se"] or 0) for r in rows],
            fmt="o",
            color=color,
            capsize=2,
            label=f"{label}: measured (±3 s.e.)",
        )
        grid = np.linspace(0, x.max() * 1.05, 20)
        ax.plot(
            grid,
            fit["slope"]["mean"] * grid,
            color=color,
            lw=1,
            label=f"fit: slope {fit['slope']['mean']:.2f} ± {fit['slope']['se']:.2f}",
        )
        ax.plot(
            grid,
            fit["reference_slope"]["mean"] * grid,
            color=color,
            lw=1.4,
            ls=":",
            label=f"exact width-N simulation: slope {fit['reference_slope']['mean']:.2f}",
        )
        ax.plot(
            grid,
            fit["first_order_slope"] * grid,
            color=color,
            lw=1,
            ls="--",
            label=f"first-order theory: slope {fit['first_order_slope']:.2f}",
        )
    ax.set(
        xlabel="(L − 1) / N (backward steps per unit of width)",
        ylabel="Var ln(‖δ_1‖/‖δ_L‖) over seeds (dimensionless)",
    )
    ax.legend(fontsize=7, loc="upper left")
    save(fig, path, "Finite width: gradient fluctuations grow like L/N")
