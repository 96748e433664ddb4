"""Losses, each the mean over the batch (reference forward math)."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from jaxbp.core import Array, in_accumulation_dtype
from jaxbp.reference.softmax import log_softmax_wide


class MseParts(NamedTuple):
    y: Array  # () the loss
    error: Array  # like predictions: predictions - targets, in the accumulation dtype


def mse_parts(predictions: Array, targets: Array) -> MseParts:
    """L = 1/(2N) * sum (predictions - targets)^2 over all N elements (the tutorial documents' 1/2 (y - t)^2)."""
    error = in_accumulation_dtype(predictions) - targets
    return MseParts((0.5 * jnp.mean(error**2)).astype(predictions.dtype), error)


def mse(predictions: Array, targets: Array) -> Array:
    """L = 1/(2N) * sum (predictions - targets)^2; see :func:`mse_parts`."""
    return mse_parts(predictions, targets).y


def binary_cross_entropy_with_logits(logits: Array, labels: Array) -> Array:
    """L = mean(softplus(z) - y z) = mean(-y log sigma(z) - (1 - y) log(1 - sigma(z))).

    A label outside [0, 1] (or NaN) makes its term, and so the mean, NaN: under ``jit``
    the op cannot raise, so a bad label poisons the loss instead of biasing it.
    """
    z = in_accumulation_dtype(logits)
    per_element = jnp.logaddexp(0.0, z) - labels * z
    per_element = jnp.where((labels >= 0) & (labels <= 1), per_element, jnp.nan)
    return jnp.mean(per_element).astype(logits.dtype)


class SoftmaxCrossEntropyParts(NamedTuple):
    y: Array  # () the loss
    log_probabilities: Array  # (..., C) log softmax(z), in the accumulation dtype


def softmax_cross_entropy_parts(logits: Array, labels: Array) -> SoftmaxCrossEntropyParts:
    """L = mean over leading axes of -sum_c t_c log softmax(z)_c.

    ``labels`` are integer class indices of shape ``logits.shape[:-1]`` or float
    targets (one-hot or probabilities) of the same shape as ``logits``.

    -inf logits (masked classes) follow 0 log 0 = 0: a -inf logit on a class with
    zero target adds nothing (finite loss), on the target class it gives +inf. An
    integer label outside [0, C) makes its row's loss, and so the mean, NaN.
    """
    log_p = log_softmax_wide(logits, -1)
    num_classes = log_p.shape[-1]
    if jnp.issubdtype(labels.dtype, jnp.integer):
        picked = jnp.take_along_axis(log_p, jnp.clip(labels, 0, num_classes - 1)[..., None], axis=-1)[..., 0]
        per_row = jnp.where((labels >= 0) & (labels < num_classes), -picked, jnp.nan)
    else:
        targets = labels.astype(log_p.dtype)
        per_row = -jnp.sum(targets * jnp.where(targets == 0, 0.0, log_p), axis=-1)
    return SoftmaxCrossEntropyParts(jnp.mean(per_row).astype(logits.dtype), log_p)


def softmax_cross_entropy(logits: Array, labels: Array) -> Array:
    """Mean softmax cross-entropy; see :func:`softmax_cross_entropy_parts`."""
    return softmax_cross_entropy_parts(logits, labels).y
