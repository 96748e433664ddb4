"""Batch norm (stateful: running statistics) and layer norm as layers."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxbp import ops
from jaxbp.core import Array, Shape, accumulation_dtype, static_float
from jaxbp.nn._contract import Layer, Params, State, of_kind, stateless
from jaxbp.nn._dense import require_features


def _norm_params(op: str, input_shape: Shape) -> tuple[dict, Shape]:
    """``gamma = 1``, ``beta = 0`` for the feature axis: a norm layer starts as the plain normalization."""
    features = require_features(op, input_shape)
    return {"gamma": jnp.ones((features,)), "beta": jnp.zeros((features,))}, tuple(input_shape)


def batch_norm(momentum: float = 0.9, eps: float = 1e-5) -> Layer:
    """Batch normalization over every axis but the last; a *stateful* layer.

    ``params = {"gamma": (C,), "beta": (C,)}``; state = running
    :class:`jaxbp.ops.BatchStatistics` ``(mean, var)``, initially ``(0, 1)``, in the
    accumulation dtype of the params.

    * ``train=True``: normalize with the batch statistics; the new state is the
      exponential average ``momentum * running + (1 - momentum) * batch`` (the
      Keras/Flax convention: PyTorch's ``momentum=0.1`` is ``momentum=0.9`` here),
      with the biased batch variance. The state is not differentiated: the running
      and batch statistics pass ``stop_gradient`` before the average.
    * ``train=False`` (the default): normalize with the running statistics; the
      state comes back unchanged.
    """
    momentum = static_float("batch_norm", "momentum", momentum, minimum=0.0, maximum=1.0)
    eps = static_float("batch_norm", "eps", eps, minimum=0.0)

    def init(key: Array, input_shape: Shape) -> tuple[Params, Shape]:
        return _norm_params("batch_norm", input_shape)

    def init_state(params: Params) -> State:
        gamma = params["gamma"]
        dtype = accumulation_dtype(gamma.dtype)
        return ops.BatchStatistics(mean=jnp.zeros(gamma.shape, dtype), var=jnp.ones(gamma.shape, dtype))

    def forward(params: Params, x: Array, state: State, *, train: bool = False, **kwargs: Any) -> tuple[Array, State]:
        y, statistics = ops.batch_norm(params, x, train=train, running=state, eps=eps)
        if not train:
            return y, state
        running, batch = jax.lax.stop_gradient((tuple(state), tuple(statistics)))  # state is never differentiated
        return y, ops.BatchStatistics(
            *(momentum * old + (1.0 - momentum) * new.astype(old.dtype) for old, new in zip(running, batch))
        )

    return Layer(init, forward, of_kind("batch_norm"), init_state)


def layer_norm(eps: float = 1e-5) -> Layer:
    """Layer normalization over the last axis; ``params = {"gamma": (C,), "beta": (C,)}``.
    Stateless, and the same in train and eval mode."""
    eps = static_float("layer_norm", "eps", eps, minimum=0.0)

    def init(key: Array, input_shape: Shape) -> tuple[Params, Shape]:
        return _norm_params("layer_norm", input_shape)

    return stateless(init, lambda params, x, **kwargs: ops.layer_norm(params, x, eps=eps), of_kind("layer_norm"))
