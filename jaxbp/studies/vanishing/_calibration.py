"""How often each kind of verdict says "differs" when the theory is exact, measured.

Each verdict type is run through the report's own machinery (:func:`._stats.estimate`,
:func:`._stats.difference`, :func:`._stats.assess`) on synthetic data for which the null
hypothesis holds exactly: both sides (or the one side and its prediction) are drawn from one
distribution, the study's own per-seed samples resampled with replacement, at the seed counts
the study uses.  The false-positive rate should be close to :data:`._stats.LEVEL`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from jaxbp.studies.vanishing._stats import LEVEL, MIN_SEEDS, assess, difference, estimate, log_variance_estimate

Verdict = Callable[[np.ndarray, np.ndarray | float], dict[str, Any]]


def _two_means(a: np.ndarray, b: np.ndarray | float) -> dict[str, Any]:
    return assess(difference(estimate(a), estimate(b) if isinstance(b, np.ndarray) else b))


def _log_variances(a: np.ndarray, b: np.ndarray | float) -> dict[str, Any]:
    assert isinstance(b, np.ndarray)
    return assess(difference(log_variance_estimate(a), log_variance_estimate(b)))


def false_positive_rate(
    pools: list[np.ndarray], sizes: tuple[int, int | None], verdict: Verdict, replicates: int, rng: np.random.Generator
) -> dict[str, Any]:
    """Fraction of ``replicates`` draws (cycling over ``pools``) on which ``verdict`` says "differs".

    ``sizes = (n, m)``: the first side has ``n`` draws from a pool, the second ``m`` draws from the
    same pool, or (``m`` None) is the pool's exact mean."""
    n, m = sizes
    fired = 0
    for r in range(replicates):
        pool = pools[r % len(pools)]
        a = pool[rng.integers(0, pool.size, n)]
        b = pool[rng.integers(0, pool.size, m)] if m is not None else float(pool.mean())
        fired += verdict(a, b)["verdict"] == "differs"
    rate = fired / replicates
    return {
        "rate": rate,
        "se": float(np.sqrt(max(rate * (1 - rate), 1 / replicates) / replicates)),
        "replicates": replicates,
    }


def _finite(values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def calibration(results: dict[str, Any], replicates: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """One row per verdict type: what it compares, the seed counts, the measured false-positive
    rate (± its binomial s.e.) and the nominal level.  Types whose seed counts are below
    :data:`MIN_SEEDS` print no verdict and are left out."""
    rng = np.random.default_rng(seed)
    config = results["config"]
    grid_seeds, time_seeds, finite_seeds = (
        config["grid"]["seeds"],
        config["across_time"]["seeds"],
        config["finite_width"]["seeds"],
    )
    rows = []
    grid_pools = [_finite(r["reference_rate_per_seed"]) for r in results["grid"] if "reference_rate_per_seed" in r]
    if grid_pools and grid_seeds >= MIN_SEEDS:
        rows.append({
            "verdict": "growth rate vs width-N reference (Welch t)",
            "pools": "grid reference rates",
            "sizes": [grid_seeds, grid_seeds],
            **false_positive_rate(grid_pools, (grid_seeds, grid_seeds), _two_means, replicates, rng),
        })  # fmt: skip
    time_pools = [_finite(r["measured_rate_per_seed"]) for r in results.get("across_time", {}).get("rnn", [])]
    if time_pools and time_seeds >= MIN_SEEDS:
        rows.append({
            "verdict": "rate vs an exact number (one-sample t)",
            "pools": "RNN rates, recentred",
            "sizes": [time_seeds, None],
            **false_positive_rate(time_pools, (time_seeds, None), _two_means, replicates, rng),
        })  # fmt: skip
    width_pools = [_finite(r["reference_log_ratio_per_seed"]) for r in results.get("finite_width", [])]
    if width_pools and finite_seeds >= MIN_SEEDS:
        sizes = (finite_seeds, len(width_pools[0]))
        rows.append({
            "verdict": "log variance vs width-N reference",
            "pools": "finite-width reference ln(‖δ_1‖/‖δ_L‖)",
            "sizes": list(sizes),
            **false_positive_rate(width_pools, sizes, _log_variances, replicates, rng),
        })  # fmt: skip
    for row in rows:
        row["nominal"] = LEVEL
    return rows


def calibration_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| verdict type | drawn from | seeds (each side) | false-positive rate | nominal |",
        "|---|---|---|---:|---:|",
    ]
    for r in rows:
        sizes = " vs ".join("exact" if s is None else str(s) for s in r["sizes"])
        lines.append(
            f"| {r['verdict']} | {r['pools']} | {sizes} | {r['rate']:.3f} ± {r['se']:.3f} ({r['replicates']} draws) | {r['nominal']:g} |"
        )
    return "\n".join(lines) + "\n"
