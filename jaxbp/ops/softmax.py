"""softmax and log_softmax along an axis, with hand-written backward rules."""

from __future__ import annotations

import jax.numpy as jnp

from jaxbp import reference
from jaxbp.core import Array, accumulation_dtype, as_float_array, define_op, normalize_axis


def _softmax_fwd(x, axis):
    y = reference.softmax(x, axis)
    return y, y


def _softmax_bwd(axis, y, dy):
    """Forward: y_i = exp(x_i) / sum_j exp(x_j).
    dy_i/dx_k = y_i (1[i = k] - y_k), so dx = y * (dy - sum_i dy_i y_i).
    """
    wide = y.astype(accumulation_dtype(y.dtype))
    dx = wide * (dy - jnp.sum(dy * wide, axis=axis, keepdims=True))
    return (dx.astype(y.dtype),)


_softmax = define_op(reference.softmax, _softmax_fwd, _softmax_bwd, nondiff_argnums=(1,))


def _log_softmax_fwd(x, axis):
    y = reference.log_softmax(x, axis)
    return y, y


def _log_softmax_bwd(axis, y, dy):
    """Forward: y_i = x_i - log sum_j exp(x_j).
    dy_i/dx_k = 1[i = k] - softmax(x)_k, so dx = dy - exp(y) * sum_i dy_i.
    """
    wide = y.astype(accumulation_dtype(y.dtype))
    dx = dy - jnp.exp(wide) * jnp.sum(dy, axis=axis, keepdims=True)
    return (dx.astype(y.dtype),)


_log_softmax = define_op(reference.log_softmax, _log_softmax_fwd, _log_softmax_bwd, nondiff_argnums=(1,))


def _checked(op: str, x: Array, axis: int) -> tuple[Array, int]:
    """``x`` as a float array and ``axis`` normalized; the axis must not be empty."""
    x = as_float_array(op, "x", x)
    axis = normalize_axis(op, axis, x.ndim)
    if x.shape[axis] == 0:
        raise ValueError(f"{op}: axis {axis} has 0 classes to normalize over (shape {tuple(x.shape)})")
    return x, axis


def softmax(x: Array, axis: int = -1) -> Array:
    """Softmax along ``axis``; the backward needs only the saved output."""
    return _softmax(*_checked("softmax", x, axis))


def log_softmax(x: Array, axis: int = -1) -> Array:
    """Log-softmax along ``axis``; the backward needs only the saved output."""
    return _log_softmax(*_checked("log_softmax", x, axis))
