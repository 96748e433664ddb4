"""Activation layers: stax-style factories (``nn.relu()``, ``nn.tanh()``, ...) and a lookup by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from jaxbp import ops
from jaxbp.core import Array, choose
from jaxbp.nn._contract import Layer, no_parameters, same_shape, stateless

ACTIVATIONS: dict[str, Callable[..., Array]] = {
    "sigmoid": ops.sigmoid,
    "tanh": ops.tanh,
    "relu": ops.relu,
    "leaky_relu": ops.leaky_relu,
    "elu": ops.elu,
    "gelu": ops.gelu,
}


def pointwise(fn: Callable[[Array], Array]) -> Layer:
    """A parameter-free layer applying ``fn`` (an op from :mod:`jaxbp.ops`) to its input."""
    return stateless(same_shape, lambda params, x, **kwargs: fn(x), no_parameters)


def activation(name: str, **hyper: Any) -> Layer:
    """An activation layer by name: sigmoid, tanh, relu, leaky_relu, elu, gelu.

    ``hyper`` are the op's static options (``negative_slope``, ``alpha``, ``approximate``).
    """
    fn = choose("activation", "activation", name, ACTIVATIONS)
    fn(jnp.zeros((1,)), **hyper)  # validate the hyper-parameters now, not at apply time
    return pointwise(lambda x: fn(x, **hyper))


def sigmoid() -> Layer:
    """The logistic sigmoid layer."""
    return activation("sigmoid")


def tanh() -> Layer:
    """The tanh layer."""
    return activation("tanh")


def relu() -> Layer:
    """The ReLU layer (relu'(0) = 0)."""
    return activation("relu")


def leaky_relu(negative_slope: float = 0.01) -> Layer:
    """The leaky ReLU layer."""
    return activation("leaky_relu", negative_slope=negative_slope)


def elu(alpha: float = 1.0) -> Layer:
    """The ELU layer."""
    return activation("elu", alpha=alpha)


def gelu(approximate: bool = False) -> Layer:
    """The GELU layer (erf form, or the tanh approximation)."""
    return activation("gelu", approximate=approximate)
