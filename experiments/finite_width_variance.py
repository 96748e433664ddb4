"""The first-order finite-width variance of ln(‖δ_1‖/‖δ_L‖), derived vs simulated.

For one input, prints and stores, per (network, N, L): the variance over exact width-N networks
(the study's reference simulator, ``jaxbp.studies.vanishing._reference``, itself tested against a
NumPy simulation), the derived first-order value (``theory.log_gradient_variance``: backward
factors plus the forward length's fluctuations, docs/study.md) and the backward-only value
(the first-order formula without the forward terms).  The gap between simulation and the
derived value is the O(1/N²) part the derivation leaves out.

Run: PYTHONPATH=$PWD python experiments/finite_width_variance.py [--seeds 4000] [--tiny] [--out results/finite_width_variance.json] [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import theory
from jaxbp.studies.vanishing._reference import LayerLaw, simulate_log_delta_norms

#: (label, activation, sigma_w2 or None for the critical value at sigma_b2, sigma_b2)
NETWORKS = (
    ("ReLU + He", "relu", 2.0, 0.0),
    ("tanh, critical (σb² = 0.05)", "tanh", None, 0.05),
    ("tanh, chaotic (σw² = 2.5)", "tanh", 2.5, 0.0),
    ("tanh, σw² = 1.2, σb² = 0.1", "tanh", 1.2, 0.1),
)
SHAPES = ((64, 17), (128, 9), (128, 17))
INPUT_FEATURES = 16


def backward_only_variance(
    depth: int, width: int, q1: float, sigma_w2: float, sigma_b2: float, activation: str
) -> float:
    """Σ_l (3μ2/μ1² − 1)/(4N) along the mean-field lengths: the formula without the forward terms."""
    moments = (
        theory.derivative_moments(q, activation)
        for q in theory.mean_field_lengths(q1, depth - 1, sigma_w2, sigma_b2, activation)
    )
    return sum(3 * mu2 / mu1**2 - 1 for mu1, mu2 in moments) / (4 * width)


def measure(
    label: str, activation: str, sigma_w2: float, sigma_b2: float, width: int, depth: int, seeds: int, key: jax.Array
) -> dict[str, Any]:
    x = np.random.default_rng(0).standard_normal((1, INPUT_FEATURES))
    q1 = sigma_w2 * float(np.sum(x**2)) / INPUT_FEATURES + sigma_b2
    first = LayerLaw("gaussian", math.sqrt(sigma_w2 / INPUT_FEATURES), math.sqrt(sigma_b2))
    hidden = LayerLaw("gaussian", math.sqrt(sigma_w2 / width), math.sqrt(sigma_b2))
    with jax.enable_x64(True):
        logs = simulate_log_delta_norms(key, jnp.asarray(x), activation, depth, width, first, hidden, seeds)
    ratio = logs[:, 0] - logs[:, -1]
    variance = float(np.var(ratio, ddof=1))
    return {
        "network": label,
        "activation": activation,
        "sigma_w2": sigma_w2,
        "sigma_b2": sigma_b2,
        "width": width,
        "depth": depth,
        "seeds": seeds,
        "q1": q1,
        "simulated": variance,
        "simulated_se": variance * math.sqrt(2 / (seeds - 1)),  # near-Gaussian log ratio
        "derived": theory.log_gradient_variance(depth, width, q1, sigma_w2, sigma_b2, activation),
        "backward_only": backward_only_variance(depth, width, q1, sigma_w2, sigma_b2, activation),
        "kappa": theory.log_gradient_variance_rate(sigma_w2, sigma_b2, activation),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| network | N | L | simulated ± s.e. | derived (first order) | sim / derived | backward only | sim / backward only |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['network']} | {r['width']} | {r['depth']} | {r['simulated']:.4f} ± {r['simulated_se']:.4f} | "
            f"{r['derived']:.4f} | {r['simulated'] / r['derived']:.3f} | {r['backward_only']:.4f} | "
            f"{r['simulated'] / r['backward_only']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4000)
    parser.add_argument("--tiny", action="store_true", help="two small shapes, 64 seeds (a smoke run)")
    parser.add_argument("--out", type=Path, default=Path("results/finite_width_variance.json"))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error(f"--seeds must be >= 2, got {args.seeds}")
    if args.out.exists() and not args.overwrite:
        parser.error(f"{args.out} exists; pass --overwrite to replace it")
    shapes, seeds = ((16, 4), (32, 4)) if args.tiny else SHAPES, 64 if args.tiny else args.seeds
    rows, start = [], time.perf_counter()
    for index, (label, activation, sigma_w2, sigma_b2) in enumerate(NETWORKS):
        if sigma_w2 is None:
            sigma_w2 = theory.critical_sigma_w2(sigma_b2, activation)
        for width, depth in shapes:
            key = jax.random.fold_in(jax.random.PRNGKey(index), 1000 * width + depth)
            rows.append(measure(label, activation, sigma_w2, sigma_b2, width, depth, seeds, key))
            print(f"[{time.perf_counter() - start:6.1f}s] {label} N={width} L={depth}", file=sys.stderr, flush=True)
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"seeds": seeds, "input_features": INPUT_FEATURES, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
