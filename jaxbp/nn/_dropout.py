"""Inverted dropout as a layer."""

from __future__ import annotations

from typing import Any

from jaxbp import ops
from jaxbp.core import Array, static_float
from jaxbp.nn._contract import Layer, Params, no_parameters, same_shape, stateless


def dropout(rate: float) -> Layer:
    """Inverted dropout with drop probability ``rate`` in ``[0, 1)``; no params, no state.

    ``apply(params, x, key=k, train=True)`` draws the mask from ``k`` (combinators
    give each layer its own key); ``train=False`` (the default) is the identity.
    """
    rate = static_float("dropout", "rate", rate, minimum=0.0, maximum=1.0, include_maximum=False)

    def fn(params: Params, x: Array, *, key: Array | None = None, train: bool = False, **kwargs: Any) -> Array:
        return ops.dropout(x, key, rate, train=train)

    return stateless(same_shape, fn, no_parameters)
