r"""Estimates with standard errors, growth-rate fits and the significance rule of the report.

Every number the report states is an :func:`estimate`: ``{"mean": m, "se": s, "n": n}`` with
:math:`s = \mathrm{std}_{\text{ddof}=1}/\sqrt n` over independent seeds.  A finding is stated
only when :math:`|\text{effect}| > 3\,s` (:func:`significant`); otherwise the report says the
measurement is consistent with theory.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: A finding needs |effect| > SIGNIFICANCE standard errors.
SIGNIFICANCE = 3.0


def estimate(samples: Any) -> dict[str, float | int | None]:
    """Mean and standard error of the finite entries of ``samples`` (None when fewer than two)."""
    values = np.asarray(samples, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size < 2:
        return {
            "mean": float(values[0]) if values.size else None,
            "se": None,
            "n": int(values.size),
        }
    return {
        "mean": float(values.mean()),
        "se": float(values.std(ddof=1) / math.sqrt(values.size)),
        "n": int(values.size),
    }


def variance_estimate(samples: Any) -> dict[str, float | int | None]:
    r"""Sample variance (ddof 1) and its standard error :math:`\sqrt{(\mu_4 - \sigma^4 (n-3)/(n-1))/n}`."""
    values = np.asarray(samples, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    n = values.size
    if n < 4:
        return {
            "mean": float(values.var(ddof=1)) if n > 1 else None,
            "se": None,
            "n": int(n),
        }
    var = float(values.var(ddof=1))
    mu4 = float(np.mean((values - values.mean()) ** 4))
    return {
        "mean": var,
        "se": math.sqrt(max(mu4 - var**2 * (n - 3) / (n - 1), 0.0) / n),
        "n": int(n),
    }


def difference(a: dict[str, Any], b: dict[str, Any] | float) -> dict[str, float | None]:
    """``a - b`` for independent estimates (``b`` may be an exact number, e.g. a prediction)."""
    if isinstance(b, dict):
        if a["mean"] is None or b["mean"] is None:
            return {"mean": None, "se": None}
        se = None if a["se"] is None or b["se"] is None else math.hypot(a["se"], b["se"])
        return {"mean": a["mean"] - b["mean"], "se": se}
    if a["mean"] is None or b is None or not math.isfinite(b):
        return {"mean": None, "se": None}
    return {"mean": a["mean"] - b, "se": a["se"]}


def significant(effect: dict[str, Any]) -> bool:
    """``|mean| > SIGNIFICANCE * se`` (False when either is unknown or the s.e. is 0 and the mean too)."""
    mean, se = effect.get("mean"), effect.get("se")
    if mean is None or se is None:
        return False
    return abs(mean) > SIGNIFICANCE * se


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


def fit_line(x: Any, y: Any, y_se: Any) -> dict[str, Any]:
    r"""Weighted least squares :math:`y = a x` through the origin with weights :math:`1/\mathrm{se}^2`: slope and its s.e."""
    x, y, se = (np.asarray(v, dtype=np.float64) for v in (x, y, y_se))
    weights = 1.0 / np.maximum(se, 1e-12) ** 2
    slope = float(np.sum(weights * x * y) / np.sum(weights * x * x))
    return {
        "mean": slope,
        "se": float(1.0 / math.sqrt(np.sum(weights * x * x))),
        "n": int(x.size),
    }


def rows(array: Any) -> list | None:
    """A JSON-ready nested list of float64 values (None stays None)."""
    return None if array is None else np.asarray(array, dtype=np.float64).tolist()
