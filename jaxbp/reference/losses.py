"""Losses, each the mean over the batch (reference forward math)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxbp.core import Array, in_accumulation_dtype
from jaxbp.reference.softmax import log_softmax_wide


class MseParts(NamedTuple):
    y: Array  # () the loss
    error: Array  # like predictions: predictions - targets, in the accumulation dtype


def mse_parts(predictions: Array, targets: Array) -> MseParts:
    """L = 1/(2N) * sum (predictions - targets)^2 over all N elements (the seeds' 1/2 (y - t)^2)."""
    error = in_accumulation_dtype(predictions) - targets
    return MseParts((0.5 * jnp.mean(error**2)).astype(predictions.dtype), error)


def mse(predictions: Array, targets: Array) -> Array:
    """L = 1/(2N) * sum (predictions - targets)^2; see :func:`mse_parts`."""
    return mse_parts(predictions, targets).y


def binary_cross_entropy_with_logits(logits: Array, labels: Array) -> Array:
    """L = mean(softplus(z) - y z) = mean(-y log sigma(z) - (1 - y) log(1 - sigma(z)))."""
    z = in_accumulation_dtype(logits)
    return jnp.mean(jnp.logaddexp(0.0, z) - labels * z).astype(logits.dtype)


class SoftmaxCrossEntropyParts(NamedTuple):
    y: Array  # () the loss
    log_probabilities: Array  # (..., C) log softmax(z), in the accumulation dtype


def softmax_cross_entropy_parts(logits: Array, labels: Array) -> SoftmaxCrossEntropyParts:
    """L = mean over leading axes of -sum_c t_c log softmax(z)_c.

    ``labels`` are integer class indices of shape ``logits.shape[:-1]`` or float
    targets (one-hot or probabilities) of the same shape as ``logits``.
    """
    log_p = log_softmax_wide(logits, -1)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        targets = jax.nn.one_hot(labels, log_p.shape[-1], dtype=log_p.dtype)
    else:
        targets = labels.astype(log_p.dtype)
    return SoftmaxCrossEntropyParts(jnp.mean(-jnp.sum(targets * log_p, axis=-1)).astype(logits.dtype), log_p)


def softmax_cross_entropy(logits: Array, labels: Array) -> Array:
    """Mean softmax cross-entropy; see :func:`softmax_cross_entropy_parts`."""
    return softmax_cross_entropy_parts(logits, labels).y
