"""The fully-connected layer."""

from __future__ import annotations

from typing import Any

import jax

from jaxbp import ops
from jaxbp.core import Array, Shape
from jaxbp.init import DenseInit, Initializer, dense_init
from jaxbp.nn._contract import Layer, Params, State, of_kind
from jaxbp.validation import positive_int


def require_features(op: str, input_shape: Shape) -> int:
    """The size of the last (feature) axis of ``input_shape``, or a clear error."""
    if len(input_shape) < 1:
        raise ValueError(f"{op}: input_shape {tuple(input_shape)} has no feature axis")
    return int(input_shape[-1])


def dense(out_features: int, init: str | DenseInit | Initializer = "glorot_normal") -> Layer:
    """A fully-connected layer ``y = x @ w + b`` with ``w: (in, out)``, ``b: (out,)``.

    ``init`` is a scheme name from :func:`jaxbp.init.weight_schemes`, a weight
    initializer (zero bias) or a :class:`jaxbp.init.DenseInit` (weights and bias).
    """
    out_features = positive_int("dense", "out_features", out_features)
    scheme = dense_init(init)

    def init_fn(key: Array, input_shape: Shape) -> tuple[Params, Shape]:
        in_features = require_features("dense", input_shape)
        w_key, b_key = jax.random.split(key)
        params = {"w": scheme.weights(w_key, (in_features, out_features)), "b": scheme.bias(b_key, (out_features,))}
        return params, (*input_shape[:-1], out_features)

    def forward(params: Params, x: Array, state: State, **kwargs: Any) -> tuple[Array, State]:
        return ops.dense(params, x), state

    return Layer(init_fn, forward, of_kind("dense"))
