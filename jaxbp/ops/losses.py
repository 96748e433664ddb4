"""Losses, each returning the mean over the batch, with fused backward rules.

Targets/labels that are floating point receive their true cotangent (so a loss can
be differentiated with respect to its targets too); integer labels receive none.

Bad labels: an eager call raises a clear error. Under ``jit``/``vmap`` values cannot
be checked, so a label out of range (an integer class outside [0, C), a binary target
outside [0, 1] or NaN) makes its row's loss -- and so the mean -- NaN, and its row's
gradient NaN: the training guard then stops on the loss instead of training on a
silently biased one. An empty batch is an error.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import reference
from jaxbp.core import (
    Array,
    accumulation_dtype,
    as_float_array,
    define_op,
    is_concrete,
    require_rank,
    require_same_shape,
    same_shape_floats,
)


def _scale(dL: Array, count: int, dtype) -> Array:
    """dL / count, computed in the accumulation dtype of ``dtype``."""
    return dL.astype(accumulation_dtype(dtype)) / count


def _require_examples(op: str, name: str, x: Array) -> None:
    """Raise ``ValueError`` for an empty batch (the mean over zero examples is 0/0)."""
    if x.size == 0:
        raise ValueError(f"{op}: {name} is empty, a mean over zero examples is undefined (shape {tuple(x.shape)})")


# ---------------------------------------------------------------------------- mse


def _mse_fwd(predictions, targets):
    loss, error = reference.mse_parts(predictions, targets)
    return loss, error.astype(predictions.dtype)


def _mse_bwd(error, dL):
    """Forward: L = 1/(2N) sum (p - t)^2.
    dL/dp = (p - t) / N,   dL/dt = -(p - t) / N.
    """
    dp = error * _scale(dL, error.size, error.dtype)
    return dp.astype(error.dtype), (-dp).astype(error.dtype)


_mse = define_op(reference.mse, _mse_fwd, _mse_bwd)


def mse(predictions: Array, targets: Array) -> Array:
    """Half mean squared error ``1/(2N) sum (predictions - targets)^2`` over all N elements."""
    predictions, targets = same_shape_floats("mse", "predictions", predictions, "targets", targets)
    _require_examples("mse", "predictions", predictions)
    return _mse(predictions, targets)


# ------------------------------------------------------- binary cross-entropy


class BinaryCrossEntropyResiduals(NamedTuple):
    logits: Array  # z
    labels: Array  # y in [0, 1]


def _bce_fwd(logits, labels):
    return reference.binary_cross_entropy_with_logits(logits, labels), BinaryCrossEntropyResiduals(logits, labels)


def _bce_bwd(residuals, dL):
    """Forward: L = 1/N sum softplus(z) - y z.
    dL/dz = (sigma(z) - y) / N   (the "lucky cancellation" y_hat - y; NaN where y is outside [0, 1]),
    dL/dy = -z / N.
    """
    z, y = residuals
    scale = _scale(dL, z.size, z.dtype)
    wide = z.astype(scale.dtype)
    dz = jnp.where((y >= 0) & (y <= 1), jax.lax.logistic(wide) - y, jnp.nan) * scale
    dy = -wide * scale
    return dz.astype(z.dtype), dy.astype(y.dtype)


_bce = define_op(reference.binary_cross_entropy_with_logits, _bce_fwd, _bce_bwd)


def binary_cross_entropy_with_logits(logits: Array, labels: Array) -> Array:
    """Mean binary cross-entropy of ``sigmoid(logits)`` against ``labels`` in [0, 1].

    Stable for any logit magnitude: it never forms ``log(sigmoid(z))``. Labels outside
    [0, 1] or NaN raise eagerly and give a NaN loss under ``jit``/``vmap``.
    """
    op = "binary_cross_entropy_with_logits"
    logits, labels = same_shape_floats(op, "logits", logits, "labels", labels)
    _require_examples(op, "logits", logits)
    if is_concrete(labels):
        values = np.asarray(labels, np.float64)
        if np.isnan(values).any():
            raise ValueError(
                f"{op}: labels must lie in [0, 1], got NaN ({int(np.isnan(values).sum())} of {values.size})"
            )
        low, high = float(values.min()), float(values.max())
        if low < 0 or high > 1:
            raise ValueError(f"{op}: labels must lie in [0, 1], got values in [{low}, {high}]")
    return _bce(logits, labels)


# ---------------------------------------------------------- softmax cross-entropy


class SoftmaxCrossEntropyResiduals(NamedTuple):
    log_probabilities: Array  # (..., C) log softmax(z), in the accumulation dtype
    labels: Array  # (...) int class indices, or (..., C) float targets


def _sce_fwd(logits, labels):
    # Saving log p (one logits-sized array) instead of logits + logsumexp: same bytes,
    # no recomputation, and exact in float32 even for |z| ~ 1e4.
    loss, log_p = reference.softmax_cross_entropy_parts(logits, labels)
    return loss, SoftmaxCrossEntropyResiduals(log_p, labels)


def _sce_bwd(residuals, dL):
    """Forward: L = -1/B sum_b sum_c t_bc log p_bc,  p = softmax(z).
    dL/dz = (p * sum_c t - t) / B   (= p - onehot for one-hot targets; NaN rows for labels outside [0, C)),
    dL/dt = -log p / B               (float targets only).
    """
    log_p, labels = residuals
    num_classes = log_p.shape[-1]
    scale = _scale(dL, log_p.size // num_classes, log_p.dtype)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        targets = jax.nn.one_hot(labels, num_classes, dtype=log_p.dtype)
        scale = jnp.where(((labels >= 0) & (labels < num_classes))[..., None], scale, jnp.nan)
        dlabels = None
    else:
        targets = labels.astype(log_p.dtype)
        dlabels = (-log_p * scale).astype(labels.dtype)
    dz = (jnp.exp(log_p) * jnp.sum(targets, axis=-1, keepdims=True) - targets) * scale
    return dz.astype(dL.dtype), dlabels


_sce = define_op(reference.softmax_cross_entropy, _sce_fwd, _sce_bwd)


def softmax_cross_entropy(logits: Array, labels: Array) -> Array:
    """Mean cross-entropy of ``softmax(logits)`` against ``labels``.

    Args:
      logits: ``(..., C)`` floating point.
      labels: integer class indices of shape ``logits.shape[:-1]`` (values in
        ``[0, C)``), or float targets (one-hot or probabilities) shaped like ``logits``.
    Returns:
      the scalar mean over all leading positions; backward is ``(p - onehot) / B``.

    A -inf logit masks its class: 0 log 0 = 0, so the loss stays finite unless the
    target class itself is -inf (then +inf), the same eagerly and under ``jit``.
    """
    op = "softmax_cross_entropy"
    logits = as_float_array(op, "logits", logits)
    require_rank(op, "logits", logits, min_rank=1)
    labels = jnp.asarray(labels)
    num_classes = logits.shape[-1]
    if num_classes == 0:
        raise ValueError(f"{op}: logits have 0 classes (shape {tuple(logits.shape)})")
    _require_examples(op, "logits", logits)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        if tuple(labels.shape) != tuple(logits.shape[:-1]):
            raise ValueError(
                f"{op}: integer labels must have shape logits.shape[:-1] = {tuple(logits.shape[:-1])}, "
                f"got {tuple(labels.shape)}"
            )
        if is_concrete(labels) and labels.size:
            values = np.asarray(labels)
            low, high = int(values.min()), int(values.max())
            if low < 0 or high >= num_classes:
                bad = low if low < 0 else high
                raise ValueError(
                    f"{op}: label {bad} is out of range for {num_classes} classes (valid: 0..{num_classes - 1})"
                )
    elif jnp.issubdtype(labels.dtype, jnp.floating):
        require_same_shape(op, "logits", logits, "float labels", labels)
        labels = labels.astype(logits.dtype)
    else:
        raise TypeError(f"{op}: labels must be integer class indices or float targets, got dtype {labels.dtype}")
    return _sce(logits, labels)
