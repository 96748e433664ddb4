"""Checks around the training loop that the non-finite guard cannot make: labels of the whole
data set (eagerly, once), the input batch as the culprit of an overflow, and finite divergence."""

from __future__ import annotations

import warnings
from typing import Any

import jax
import numpy as np

from jaxbp.train._guard import NonFiniteError

# Inputs this large overflow float32 in the first layer that squares or sums them (sqrt of float32's max).
_OVERFLOWING_INPUT = 1e19


def name_overflowing_input(error: NonFiniteError, inputs: Any) -> NonFiniteError:
    """Where no tap or gradient names the culprit (``layer=None``), name the batch's inputs when they
    are non-finite or large enough to overflow float32 in the first layer."""
    if error.layer is not None:
        return error
    x = np.asarray(jax.device_get(inputs), np.float64)
    bad = int(np.sum(~np.isfinite(x)))
    largest = float(np.max(np.abs(x[np.isfinite(x)]), initial=0.0))
    if bad:
        reason = f"{bad} of {x.size} input values are NaN/Inf"
    elif largest >= _OVERFLOWING_INPUT:
        reason = f"inputs reach |x| = {largest:.3g}, which overflows float32 in the first layer"
    else:
        return error
    return NonFiniteError(
        f"{error} The input batch is the culprit: {reason}; check the data (scaling, corrupt values).",
        step=error.step,
        layer="input",
    )


class DivergenceMonitor:
    """Warns once when a step's loss exceeds ``factor`` times the run's first loss: divergence
    that stays finite (Adam at lr 1e6: loss 6e19) escapes the non-finite guard."""

    def __init__(self, factor: float = 100.0, baseline: float | None = None) -> None:
        self.factor, self.baseline, self.warned = factor, baseline, False

    def check(self, step: int, loss: float) -> None:
        if self.baseline is None:
            self.baseline = loss
        if self.warned or not loss > self.factor * abs(self.baseline):
            return
        self.warned = True
        warnings.warn(
            f"fit: the loss is diverging: {loss:.4g} at step {step} is more than {self.factor:g}x the first "
            f"loss of the run ({self.baseline:.4g}); try a lower learning rate (--lr) or gradient clipping (clip_norm, --clip)",
            RuntimeWarning,
            stacklevel=4,
        )


def check_labels(objective_name: str, labels: Any, num_outputs: int) -> None:
    """Check every label of the data set once, eagerly: inside the jitted step a bad label can
    only poison the loss with NaN."""
    y = np.asarray(labels)
    if objective_name == "softmax_cross_entropy" and np.issubdtype(y.dtype, np.integer) and y.size:
        bad = (y < 0) | (y >= num_outputs)
        if bad.any():
            first = int(np.argwhere(bad.reshape(len(y), -1).any(axis=1))[0, 0])
            raise ValueError(
                f"fit: {int(bad.sum())} of {y.size} labels are out of range for {num_outputs} classes "
                f"(valid: 0..{num_outputs - 1}); the first is {y.reshape(len(y), -1)[first].tolist()} at example {first}"
            )
    if objective_name == "binary_cross_entropy" and y.size:
        values = y.astype(np.float64)
        bad = ~((values >= 0) & (values <= 1))
        if bad.any():
            raise ValueError(
                f"fit: {int(bad.sum())} of {y.size} binary targets are outside [0, 1] or NaN "
                f"(e.g. {values[bad].flat[0]} at flat index {int(np.argmax(bad.reshape(-1)))})"
            )
