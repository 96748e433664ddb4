"""Reading the ops' array arguments: anything ``jnp.asarray`` cannot read (None, a string, a
ragged list) is refused with an error naming the op, before any work is done."""

from __future__ import annotations

import reprlib
from typing import Any

import jax.numpy as jnp

from jaxbp.core import Array, as_float_array


def array_input(op: str, name: str, x: Any) -> Array:
    """``x`` as a JAX array, or ``TypeError`` naming ``op`` and ``name``."""
    if x is None or isinstance(x, (str, bytes)):
        raise TypeError(f"{op}: {name} must be an array, got {type(x).__name__} {reprlib.repr(x)}")
    try:
        return jnp.asarray(x)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{op}: {name} cannot be read as an array ({reprlib.repr(x)}): {error}") from None


def float_input(op: str, name: str, x: Any) -> Array:
    """:func:`jaxbp.core.as_float_array` for any ``x`` (unreadable ones refused by :func:`array_input`)."""
    if not hasattr(x, "dtype") and not isinstance(x, (bool, int)):
        x = array_input(op, name, x)
    return as_float_array(op, name, x)
