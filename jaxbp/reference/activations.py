"""Activation functions (reference forward math)."""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax

from jaxbp.core import Array


def sigmoid(x: Array) -> Array:
    """sigma(x) = 1 / (1 + exp(-x)), stable for large |x|."""
    return lax.logistic(x)


def tanh(x: Array) -> Array:
    """tanh(x)."""
    return jnp.tanh(x)


def relu(x: Array) -> Array:
    """max(x, 0), with derivative 1[x > 0] (0 at x = 0); NaN stays NaN (as jax.nn.relu)."""
    return jnp.where(x <= 0, jnp.zeros_like(x), x)


def leaky_relu(x: Array, negative_slope: float = 0.01) -> Array:
    """x for x > 0, negative_slope * x otherwise."""
    return jnp.where(x > 0, x, negative_slope * x)


def elu(x: Array, alpha: float = 1.0) -> Array:
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""
    return jnp.where(x > 0, x, alpha * jnp.expm1(jnp.where(x > 0, jnp.zeros_like(x), x)))


SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_TANH_COEFFICIENT = 0.044715


def gelu(x: Array, approximate: bool = False) -> Array:
    """GELU: x * Phi(x) (exact, erf form) or its tanh approximation."""
    if approximate:
        inner = SQRT_2_OVER_PI * (x + GELU_TANH_COEFFICIENT * x**3)
        return 0.5 * x * (1 + jnp.tanh(inner))
    return 0.5 * x * (1 + lax.erf(x / math.sqrt(2.0)))
