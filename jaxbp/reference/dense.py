"""Fully-connected layer (reference forward math)."""

from __future__ import annotations

import jax.numpy as jnp

from jaxbp.core import Array, accumulation_dtype


def dense(params: dict, x: Array) -> Array:
    """y = x @ w + b for ``x: (..., in)``, ``w: (in, out)``, ``b: (out,)``."""
    w, b = params["w"], params["b"]
    out_dtype = jnp.result_type(x.dtype, w.dtype)
    y = jnp.matmul(x, w, preferred_element_type=accumulation_dtype(out_dtype))
    return (y + b).astype(out_dtype)
