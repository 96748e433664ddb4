"""Losses, each returning the mean over the batch, with fused backward rules.

Targets/labels that are floating point receive their true cotangent (so a loss can
be differentiated with respect to its targets too); integer labels receive none.
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
    return _mse(*same_shape_floats("mse", "predictions", predictions, "targets", targets))


# ------------------------------------------------------- binary cross-entropy


class BinaryCrossEntropyResiduals(NamedTuple):
    logits: Array  # z
    labels: Array  # y in [0, 1]


def _bce_fwd(logits, labels):
    return reference.binary_cross_entropy_with_logits(logits, labels), BinaryCrossEntropyResiduals(logits, labels)


def _bce_bwd(residuals, dL):
    """Forward: L = 1/N sum softplus(z) - y z.
    dL/dz = (sigma(z) - y) / N   (the "lucky cancellation" y_hat - y),
    dL/dy = -z / N.
    """
    z, y = residuals
    scale = _scale(dL, z.size, z.dtype)
    wide = z.astype(scale.dtype)
    dz = (jax.lax.logistic(wide) - y) * scale
    dy = -wide * scale
    return dz.astype(z.dtype), dy.astype(y.dtype)


_bce = define_op(reference.binary_cross_entropy_with_logits, _bce_fwd, _bce_bwd)


def binary_cross_entropy_with_logits(logits: Array, labels: Array) -> Array:
    """Mean binary cross-entropy of ``sigmoid(logits)`` against ``labels`` in [0, 1].

    Stable for any logit magnitude: it never forms ``log(sigmoid(z))``.
    """
    op = "binary_cross_entropy_with_logits"
    logits, labels = same_shape_floats(op, "logits", logits, "labels", labels)
    if is_concrete(labels) and labels.size:
        low, high = float(np.min(np.asarray(labels))), float(np.max(np.asarray(labels)))
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
    dL/dz = (p * sum_c t - t) / B   (= p - onehot for one-hot targets),
    dL/dt = -log p / B               (float targets only).
    """
    log_p, labels = residuals
    num_examples = log_p.size // log_p.shape[-1]
    scale = _scale(dL, num_examples, log_p.dtype)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        targets = jax.nn.one_hot(labels, log_p.shape[-1], dtype=log_p.dtype)
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
    """
    op = "softmax_cross_entropy"
    logits = as_float_array(op, "logits", logits)
    require_rank(op, "logits", logits, min_rank=1)
    labels = jnp.asarray(labels)
    num_classes = logits.shape[-1]
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
                raise ValueError(f"{op}: label {bad} is out of range for {num_classes} classes (valid: 0..{num_classes - 1})")
    elif jnp.issubdtype(labels.dtype, jnp.floating):
        require_same_shape(op, "logits", logits, "float labels", labels)
        labels = labels.astype(logits.dtype)
    else:
        raise TypeError(f"{op}: labels must be integer class indices or float targets, got dtype {labels.dtype}")
    return _sce(logits, labels)
