"""The embedding layer: integer ids to learned vectors."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxbp import ops
from jaxbp.core import Array, Shape, static_float
from jaxbp.nn._contract import Layer, Params, State, of_kind
from jaxbp.validation import positive_int


def embedding(vocabulary_size: int, dim: int, *, stddev: float = 1.0) -> Layer:
    """``y[..., :] = w[ids[...], :]`` with ``w: (vocabulary_size, dim) ~ N(0, stddev^2)`` (PyTorch's default).

    Input: integer ids of any shape; output ``ids.shape + (dim,)`` (:func:`jaxbp.ops.embedding`).
    """
    vocabulary_size = positive_int("embedding", "vocabulary_size", vocabulary_size)
    dim = positive_int("embedding", "dim", dim)
    stddev = static_float("embedding", "stddev", stddev, minimum=0.0)

    def init(key: Array, input_shape: Shape) -> tuple[Params, Shape]:
        return {"w": stddev * jax.random.normal(key, (vocabulary_size, dim), jnp.float32)}, (*input_shape, dim)

    def forward(params: Params, ids: Array, state: State, **kwargs: Any) -> tuple[Array, State]:
        return ops.embedding(params, ids), state

    return Layer(init, forward, of_kind("embedding"))
