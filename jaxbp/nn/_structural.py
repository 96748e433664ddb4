"""Shape layers."""

from __future__ import annotations

import math

from jaxbp import ops
from jaxbp.core import Array, Shape
from jaxbp.nn._contract import Layer, Params, no_parameters, stateless


def flatten() -> Layer:
    """``(batch, ...) -> (batch, prod(...))``."""

    def init(key: Array, input_shape: Shape) -> tuple[Params, Shape]:
        if len(input_shape) < 1:
            raise ValueError(f"flatten: input_shape {tuple(input_shape)} has no batch axis")
        return (), (input_shape[0], math.prod(input_shape[1:]))

    return stateless(init, lambda params, x, **kwargs: ops.flatten(x), no_parameters)
