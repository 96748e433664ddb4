"""Digits with a CNN and a ResNet built from hand-written conv/pool rules; skips against vanishing gradients.

1. Train the registry's ``"cnn"`` (plain: 3x3 convs + ReLU, max-pool between stages) and
   ``"resnet"`` (residual blocks, stride-2 block with a 1x1 projection) on scikit-learn's
   8x8 digits (NHWC) with :func:`jaxbp.train.fit` (Adam); print test accuracy and the CPU
   time each took (compile included).
2. Build a *deep* plain CNN and a ResNet of the same depth (``1 + 2 * blocks * stages``
   convs; only the skips differ) without batch norm, and measure the per-layer
   back-propagated error ``||delta_l|| = ||dL/dz_l||`` at initialisation with
   :func:`jaxbp.diagnostics.gradient_statistics` (mean over a few initialisations and
   batches). The plot goes to ``results/figures/cnn_vs_resnet_gradients.png``; pass
   ``--figure docs/figures/cnn_vs_resnet_gradients.png`` to regenerate the docs figure.

Run: ``python experiments/digits_cnn_resnet.py [--epochs 20] [--deep-blocks 6]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import data, diagnostics, models, ops, train
from jaxbp.models.cnn import conv_net

FIGURE = Path("results/figures/cnn_vs_resnet_gradients.png")


def train_and_test(name: str, epochs: int, seed: int = 0) -> dict[str, float]:
    """Train builder ``name`` on digits; test accuracy and seconds (process CPU time and wall)."""
    digits = data.digits(layout="nhwc")
    model = models.build_model(name, num_outputs=data.DIGITS_NUM_CLASSES)
    config = train.TrainConfig(epochs=epochs, batch_size=64, learning_rate=3e-3, seed=seed)
    cpu, wall = time.process_time(), time.perf_counter()
    result = train.fit(model, digits.train, config, test_data=digits.test, progress=False)
    return {
        "test_accuracy": float(result.history[-1]["test_accuracy"]),
        "cpu_seconds": time.process_time() - cpu,
        "wall_seconds": time.perf_counter() - wall,
    }


def delta_norms(skip: bool, blocks: int, trials: int = 4, batch: int = 128) -> tuple[tuple[str, ...], np.ndarray]:
    """Per-tap ||delta_l|| at initialisation, mean over ``trials`` (init seed, batch) pairs."""
    digits = data.digits(layout="nhwc")
    network = conv_net(data.DIGITS_NUM_CLASSES, blocks=blocks, stages=2, width=16, skip=skip)
    rows = []
    for trial in range(trials):
        start = trial * batch
        x = jnp.asarray(digits.x_train[start : start + batch])
        labels = jnp.asarray(digits.y_train[start : start + batch])
        params, _ = network.init(jax.random.key(trial), x.shape)
        stats = diagnostics.gradient_statistics(network, params, x, labels, ops.softmax_cross_entropy)
        rows.append(np.asarray(stats.delta_norm))
    return stats.layer_names, np.mean(rows, axis=0)


def plot(norms: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for label, values in norms.items():
        ax.semilogy(np.arange(1, len(values) + 1), values, marker="o", markersize=3, label=label)
    ax.set_xlabel("layer l (tapped pre-activation; last = logits)")
    ax.set_ylabel(r"$\|\delta_l\| = \|\partial L / \partial z_l\|$")
    ax.set_title("digits, at initialisation (He normal, no batch norm)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--deep-blocks", type=int, default=6, help="residual blocks per stage of the deep pair")
    parser.add_argument("--figure", type=Path, default=FIGURE)
    args = parser.parse_args(argv)

    for name in ("cnn", "resnet"):
        r = train_and_test(name, args.epochs)
        print(
            f"{name:7s} test accuracy {r['test_accuracy']:.4f}   "
            f"{r['cpu_seconds']:.1f} s CPU, {r['wall_seconds']:.1f} s wall ({args.epochs} epochs)"
        )

    depth = 1 + 2 * args.deep_blocks * 2
    norms = {}
    for label, skip in ((f"plain CNN, {depth} convs", False), (f"ResNet, {depth} convs", True)):
        names, values = delta_norms(skip, args.deep_blocks)
        norms[label] = values
        print(
            f"{label}: ||delta_1|| = {values[0]:.3e}, ||delta_L|| = {values[-1]:.3e}, ratio {values[0] / values[-1]:.3e}"
        )
    plot(norms, args.figure)
    print(f"figure written to {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
