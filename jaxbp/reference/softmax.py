"""softmax and log_softmax along an axis (reference forward math)."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jaxbp.core import Array, in_accumulation_dtype


def log_softmax_wide(x: Array, axis: int) -> Array:
    """(x - m) - log sum_j exp(x_j - m), m = max x, in the accumulation dtype.

    Subtracting the max first keeps log-probabilities exact even for |x| ~ 1e4 in
    float32, where ``x - logsumexp(x)`` would lose ~1e-3 to rounding of the sum.
    """
    x = in_accumulation_dtype(x)
    shifted = x - lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=axis, keepdims=True))


def softmax(x: Array, axis: int = -1) -> Array:
    """exp(x_i) / sum_j exp(x_j) along ``axis``."""
    return jnp.exp(log_softmax_wide(x, axis)).astype(x.dtype)


def log_softmax(x: Array, axis: int = -1) -> Array:
    """x_i - log sum_j exp(x_j) along ``axis``."""
    return log_softmax_wide(x, axis).astype(x.dtype)
