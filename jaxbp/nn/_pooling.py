"""Pooling layers (NHWC, no parameters): ``nn.max_pool2d``, ``nn.avg_pool2d``, ``nn.global_avg_pool``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxbp import ops
from jaxbp.core import Array, Shape
from jaxbp.nn._contract import Layer, Params, no_parameters, stateless


def _pool_layer(pool: Callable[[Array], Array]) -> Layer:
    def init(key: Array, input_shape: Shape) -> tuple[Params, Shape]:
        return (), tuple(jax.eval_shape(pool, jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)).shape)

    return stateless(init, lambda params, x, **kwargs: pool(x), no_parameters)


def max_pool2d(window: Any, stride: Any = None, padding: Any = "VALID") -> Layer:
    """:func:`jaxbp.ops.max_pool2d` as a layer (gradient to the first maximum of each window)."""
    return _pool_layer(lambda x: ops.max_pool2d(x, window, stride, padding))


def avg_pool2d(window: Any, stride: Any = None, padding: Any = "VALID", *, count_include_pad: bool = True) -> Layer:
    """:func:`jaxbp.ops.avg_pool2d` as a layer."""
    return _pool_layer(lambda x: ops.avg_pool2d(x, window, stride, padding, count_include_pad=count_include_pad))


def global_avg_pool() -> Layer:
    """:func:`jaxbp.ops.global_avg_pool` as a layer: ``(N, *spatial, C) -> (N, C)``."""
    return _pool_layer(ops.global_avg_pool)
