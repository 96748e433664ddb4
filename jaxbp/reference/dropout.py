"""Inverted dropout (reference forward math)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxbp.core import Array, in_accumulation_dtype


def dropout_keep_mask(key: Array, rate: float, shape: tuple[int, ...]) -> Array:
    """The boolean keep mask of dropout: True with probability ``1 - rate``, a pure
    function of ``key`` (the same key gives the same mask)."""
    return jax.random.bernoulli(key, 1.0 - rate, shape)


def dropout(x: Array, key: Array, rate: float) -> Array:
    """Inverted dropout in training mode: y = x * keep / (1 - rate), keep ~ Bernoulli(1 - rate)."""
    keep = dropout_keep_mask(key, rate, x.shape)
    wide = in_accumulation_dtype(x)
    return jnp.where(keep, wide * (1.0 / (1.0 - rate)), jnp.zeros_like(wide)).astype(x.dtype)
