r"""Estimates with standard errors, growth-rate fits and the calibrated tests behind every verdict.

Every number the report states is an :func:`estimate`: ``{"mean": m, "se": s, "n": n, "df": n - 1}``
with :math:`s = \mathrm{std}_{\text{ddof}=1}/\sqrt n` over ``n`` independent seeds.  A verdict is a
two-sided Student-t test at level :data:`LEVEL` with the estimate's degrees of freedom (Welch's
for a difference of two estimates, :func:`difference`): "differs" when
:math:`p < \text{LEVEL}`, "consistent" otherwise, and no verdict at all when fewer than
:data:`MIN_SEEDS` seeds back either side (:func:`assess`).  Quantities that are products of many
random factors (variances, spectral spreads) are compared on a log scale
(:func:`log_estimate`, :func:`log_variance_estimate`), where they are close to normal.  How often
each kind of verdict fires when the theory is exact is measured, not assumed
(:mod:`jaxbp.studies.vanishing._calibration`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

#: Two-sided level of every test: the false-positive rate a verdict claims when the theory is exact.
LEVEL = 0.01
#: Below this many seeds on either side no verdict is printed (a t-test on 2-7 skewed samples
#: is not calibrated; see the calibration table of the report).
MIN_SEEDS = 8


def estimate(samples: Any) -> dict[str, float | int | None]:
    """Mean and standard error of the finite entries of ``samples`` (``se`` None when fewer than two)."""
    values = np.asarray(samples, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    n = int(values.size)
    if n < 2:
        return {"mean": float(values[0]) if n else None, "se": None, "n": n, "df": None}
    return {"mean": float(values.mean()), "se": float(values.std(ddof=1) / math.sqrt(n)), "n": n, "df": n - 1}


def log_estimate(samples: Any) -> dict[str, float | int | None]:
    """:func:`estimate` of ``ln samples`` (for positive, log-normal-like quantities); non-positive entries are dropped."""
    values = np.asarray(samples, dtype=np.float64).ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        return estimate(np.log(np.where(values > 0, values, np.nan)))


def variance_estimate(samples: Any) -> dict[str, float | int | None]:
    r"""Sample variance (ddof 1) and its standard error :math:`\sqrt{(\mu_4 - \sigma^4 (n-3)/(n-1))/n}`."""
    values = np.asarray(samples, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    n = int(values.size)
    if n < 4:
        return {"mean": float(values.var(ddof=1)) if n > 1 else None, "se": None, "n": n, "df": None}
    var = float(values.var(ddof=1))
    mu4 = float(np.mean((values - values.mean()) ** 4))
    return {"mean": var, "se": math.sqrt(max(mu4 - var**2 * (n - 3) / (n - 1), 0.0) / n), "n": n, "df": n - 1}


def log_variance_estimate(samples: Any) -> dict[str, float | int | None]:
    r""":math:`\ln s^2` and its jackknife standard error.

    The leave-one-out variances are :math:`s^2_{(i)} = (SS - \tfrac{n}{n-1}(x_i - \bar x)^2)/(n-2)`
    and the s.e. is :math:`\sqrt{\tfrac{n-1}{n}\sum_i (\ln s^2_{(i)} - \overline{\ln s^2_{(\cdot)}})^2}`.
    The delta-method s.e. from the sample fourth moment (:func:`variance_estimate` over :math:`s^2`)
    runs small on the study's heavy-tailed log ratios: resampled under the null, its Welch test fired
    at 0.016 and 0.021 for a nominal 0.01 (64 vs 128 and 64 vs 256 seeds, the default's and
    ``--full``'s finite-width pools of 2026-12-03), the jackknife's at 0.011 and 0.012."""
    values = np.asarray(samples, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    n = int(values.size)
    deviations = values - values.mean() if n else values
    total = float(np.sum(deviations**2))
    if n < 4 or not total > 0:
        return {"mean": None, "se": None, "n": n, "df": None}
    leave_one_out = np.log(np.maximum(total - n / (n - 1) * deviations**2, np.finfo(float).tiny) / (n - 2))
    se = math.sqrt((n - 1) / n * float(np.sum((leave_one_out - leave_one_out.mean()) ** 2)))
    return {"mean": math.log(total / (n - 1)), "se": se, "n": n, "df": n - 1}


def difference(a: dict[str, Any], b: dict[str, Any] | float | None) -> dict[str, Any]:
    """``a - b`` for independent estimates (``b`` may be an exact number, e.g. a prediction).

    Two estimates: Welch-Satterthwaite degrees of freedom and ``n`` the smaller seed count."""
    if isinstance(b, dict):
        if a["mean"] is None or b["mean"] is None:
            return {"mean": None, "se": None, "n": 0, "df": None}
        n = min(a.get("n", 0), b.get("n", 0))
        if a["se"] is None or b["se"] is None:
            return {"mean": a["mean"] - b["mean"], "se": None, "n": n, "df": None}
        va, vb = a["se"] ** 2, b["se"] ** 2
        dfa, dfb = a.get("df") or math.inf, b.get("df") or math.inf
        denominator = va**2 / dfa + vb**2 / dfb
        df = (va + vb) ** 2 / denominator if denominator > 0 else min(dfa, dfb)
        return {"mean": a["mean"] - b["mean"], "se": math.sqrt(va + vb), "n": n, "df": df}
    if a["mean"] is None or b is None or not math.isfinite(b):
        return {"mean": None, "se": None, "n": 0, "df": None}
    return {"mean": a["mean"] - b, "se": a["se"], "n": a.get("n", 0), "df": a.get("df")}


def assess(effect: dict[str, Any]) -> dict[str, Any]:
    """The verdict on ``effect`` (an estimate or :func:`difference`): ``{"verdict", "t", "p", "n"}``.

    ``verdict`` is ``"differs"`` (two-sided Student-t p < :data:`LEVEL`), ``"consistent"``, or
    ``"no verdict"`` when the seed count is below :data:`MIN_SEEDS` or the s.e. is unknown.
    ``df`` None means a large-sample (normal) reference."""
    mean, se, n, df = effect.get("mean"), effect.get("se"), effect.get("n", 0), effect.get("df")
    if mean is None or se is None or n < MIN_SEEDS:
        return {"verdict": "no verdict", "t": None, "p": None, "n": n}
    if se == 0:
        p = 1.0 if mean == 0 else 0.0
        t = 0.0 if mean == 0 else math.copysign(math.inf, mean)
    else:
        t = mean / se
        p = float(2 * scipy_stats.t.sf(abs(t), df if df and math.isfinite(df) else 1e9))
    return {"verdict": "differs" if p < LEVEL else "consistent", "t": t, "p": p, "n": n}


def significant(effect: dict[str, Any]) -> bool:
    """True when :func:`assess` says ``"differs"``."""
    return assess(effect)["verdict"] == "differs"


def fit_window(depth: int, skip_fraction: float) -> tuple[int, int]:
    """The layers ``(first, last)`` (1-based, inclusive) the growth rate is fitted over:
    ``s = max(1, round(skip_fraction * depth))`` layers are skipped at each end."""
    skip = max(1, round(skip_fraction * depth))
    first, last = 1 + skip, depth - skip
    if last - first < 1:
        raise ValueError(f"fit_window: depth {depth} leaves fewer than 2 layers after skipping {skip} at each end")
    return first, last


def growth_rates(log_norms: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    r"""Minus the least-squares slope of ``log_norms[..., l-1]`` against ``l`` over ``window``.

    ``log_norms`` has shape ``(..., L)`` (entry ``l - 1`` is :math:`\ln\|\delta_l\|`); the result
    has shape ``(...)``: the change of :math:`\ln\|\delta\|` per backward step (negative =
    vanishing).  Rows with a non-finite value in the window give NaN.
    """
    first, last = window
    layers = np.arange(first, last + 1, dtype=np.float64)
    y = np.asarray(log_norms, dtype=np.float64)[..., first - 1 : last]
    centered = layers - layers.mean()
    with np.errstate(invalid="ignore"):
        slope = np.sum((y - y.mean(axis=-1, keepdims=True)) * centered, axis=-1) / np.sum(centered**2)
    return np.where(np.all(np.isfinite(y), axis=-1), -slope, np.nan)


def variance_slope(x: Any, samples: list[Any], *, resamples: int = 400, seed: int = 0) -> dict[str, Any]:
    r"""Unweighted least squares :math:`\mathrm{Var}(y) = a\,x` through the origin over cells, s.e. by bootstrap.

    ``samples[i]`` are the per-seed values of cell ``i`` (at abscissa ``x[i]``).  The slope is
    :math:`\sum_i x_i s_i^2 / \sum_i x_i^2` with the cells' sample variances; its s.e. is the
    standard deviation of that slope over ``resamples`` bootstrap redraws of every cell's seeds
    (weights 1/s.e.² taken from the same samples would bias the slope low and the s.e. too small).
    ``df`` is the smallest cell's ``n - 1``."""
    x = np.asarray(x, dtype=np.float64)
    cells = [np.asarray(s, dtype=np.float64)[np.isfinite(s)] for s in samples]
    norm = float(np.sum(x**2))
    slope = float(sum(xi * c.var(ddof=1) for xi, c in zip(x, cells)) / norm)
    rng = np.random.default_rng(seed)
    boot = np.zeros(resamples)
    for xi, c in zip(x, cells):
        draws = c[rng.integers(0, c.size, size=(resamples, c.size))]
        boot += xi * draws.var(axis=1, ddof=1)
    n = min(c.size for c in cells)
    return {"mean": slope, "se": float(np.std(boot / norm, ddof=1)), "n": n, "df": n - 1}


def rows(array: Any) -> list | None:
    """A JSON-ready nested list of float64 values (None stays None)."""
    return None if array is None else np.asarray(array, dtype=np.float64).tolist()
