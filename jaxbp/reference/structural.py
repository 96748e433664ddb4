"""Shape and junction ops (reference forward math)."""

from __future__ import annotations

import jax.numpy as jnp

from jaxbp.core import Array


def add(a: Array, b: Array) -> Array:
    """a + b (same shapes): the junction of a residual connection."""
    return a + b


def reshape(x: Array, shape: tuple[int, ...]) -> Array:
    """x viewed with a new shape."""
    return jnp.reshape(x, shape)
