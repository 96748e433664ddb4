"""Fully-connected layer ``y = x @ w + b`` with a hand-written backward rule."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from jaxbp import reference
from jaxbp.core import Array, accumulation_dtype, as_float_array, define_op, require_rank


class DenseResiduals(NamedTuple):
    x: Array  # (..., in)  the layer input
    w: Array  # (in, out)  the weights


def _dense_fwd(params, x):
    return reference.dense(params, x), DenseResiduals(x=x, w=params["w"])


def _dense_bwd(residuals, dy):
    """Forward: y = x @ w + b, with leading axes flattened into rows.
    dL/dx = dy @ w^T,   dL/dw = x^T @ dy,   dL/db = sum over rows of dy.
    """
    x, w = residuals
    acc = accumulation_dtype(dy.dtype)
    rows_x = x.reshape(-1, x.shape[-1])
    rows_dy = dy.reshape(-1, dy.shape[-1])
    dx = jnp.matmul(dy, w.T, preferred_element_type=acc).astype(x.dtype)
    dw = jnp.matmul(rows_x.T, rows_dy, preferred_element_type=acc).astype(w.dtype)
    db = jnp.sum(rows_dy, axis=0, dtype=acc).astype(w.dtype)
    return {"w": dw, "b": db}, dx


_dense = define_op(reference.dense, _dense_fwd, _dense_bwd)


def dense(params: dict, x: Array) -> Array:
    """Affine map ``y = x @ w + b``.

    Args:
      params: ``{"w": (in, out), "b": (out,)}`` floating-point arrays.
      x: ``(..., in)`` floating-point input.
    Returns:
      ``(..., out)`` in the promoted dtype of ``x`` and ``w``.
    """
    if not isinstance(params, dict) or set(params) != {"w", "b"}:
        found = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f'dense: params must be a dict with keys "w" and "b", got {found}')
    w = as_float_array("dense", 'params["w"]', params["w"])
    b = as_float_array("dense", 'params["b"]', params["b"])
    x = as_float_array("dense", "x", x)
    require_rank("dense", 'params["w"]', w, rank=2)
    require_rank("dense", "x", x, min_rank=1)
    if x.shape[-1] != w.shape[0]:
        raise ValueError(
            f"dense: x has {x.shape[-1]} features (shape {tuple(x.shape)}) "
            f"but w expects {w.shape[0]} (shape {tuple(w.shape)})"
        )
    if tuple(b.shape) != (w.shape[1],):
        raise ValueError(f"dense: b must have shape ({w.shape[1]},) to match w {tuple(w.shape)}, got {tuple(b.shape)}")
    return _dense({"w": w, "b": b}, x)
