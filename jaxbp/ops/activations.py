"""Activations: each is its reference function plus a hand-written derivative.

Conventions at kinks (the derivative the backward uses where the function is not
differentiable): relu'(0) = 0, leaky_relu'(0) = negative_slope, elu'(0) = alpha.
Custom VJPs are reverse-mode only: ``jax.jvp``/``jax.jacfwd`` raise on these ops.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax

from jaxbp import reference
from jaxbp.core import Array, as_float_array, define_elementwise_op, static_float

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

# y = sigma(x)          residual: x
# dx = dy * sigma(x) * sigma(-x)      (= y (1 - y), but exact in the tails: at x = 100,
#                                      y rounds to 1 and y (1 - y) to 0, while sigma(-x) keeps 3.7e-44)
_sigmoid = define_elementwise_op(
    reference.sigmoid,
    residual=lambda x, y: x,
    derivative=lambda x: reference.sigmoid(x) * reference.sigmoid(-x),
)

# y = tanh(x)           residual: y
# dx = dy * (1 - y^2)
_tanh = define_elementwise_op(
    reference.tanh,
    residual=lambda x, y: y,
    derivative=lambda y: 1 - y * y,
)

# y = max(x, 0)         residual: the boolean mask x > 0 (1 byte per element)
# dx = dy * 1[x > 0]
_relu = define_elementwise_op(
    reference.relu,
    residual=lambda x, y: x > 0,
    derivative=lambda positive: positive,
)

# y = x if x > 0 else a*x     residual: the boolean mask x > 0
# dx = dy * (1 if x > 0 else a)
_leaky_relu = define_elementwise_op(
    reference.leaky_relu,
    residual=lambda x, y, negative_slope: x > 0,
    derivative=lambda positive, negative_slope: jnp.where(positive, 1.0, negative_slope),
    num_static=1,
)

# y = x if x > 0 else alpha*(e^x - 1)     residual: y (x > 0 <=> y > 0 since alpha > 0)
# dx = dy * (1 if x > 0 else alpha*e^x = y + alpha)
_elu = define_elementwise_op(
    reference.elu,
    residual=lambda x, y, alpha: y,
    derivative=lambda y, alpha: jnp.where(y > 0, 1.0, y + alpha),
    num_static=1,
)


def _gelu_derivative(x: Array, approximate: bool) -> Array:
    """Exact:  d/dx [x Phi(x)] = Phi(x) + x phi(x).
    Tanh form: with u = sqrt(2/pi)(x + c x^3), t = tanh(u):
               d/dx [x (1 + t) / 2] = (1 + t)/2 + x/2 (1 - t^2) sqrt(2/pi)(1 + 3c x^2).
    """
    if approximate:
        c = reference.GELU_TANH_COEFFICIENT
        t = jnp.tanh(_SQRT_2_OVER_PI * (x + c * x**3))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * c * x * x)
    cdf = 0.5 * (1 + lax.erf(x / math.sqrt(2.0)))
    pdf = _INV_SQRT_2PI * jnp.exp(-0.5 * x * x)
    return cdf + x * pdf


# y = gelu(x)           residual: x
_gelu = define_elementwise_op(
    reference.gelu,
    residual=lambda x, y, approximate: x,
    derivative=_gelu_derivative,
    num_static=1,
)


def sigmoid(x: Array) -> Array:
    """Logistic sigmoid; backward ``dx = dy * sigma(x) sigma(-x)`` (= y (1 - y), exact when saturated)."""
    return _sigmoid(as_float_array("sigmoid", "x", x))


def tanh(x: Array) -> Array:
    """Hyperbolic tangent; backward ``dx = dy * (1 - y^2)`` from the saved output."""
    return _tanh(as_float_array("tanh", "x", x))


def relu(x: Array) -> Array:
    """max(x, 0); backward ``dx = dy * 1[x > 0]`` (relu'(0) = 0) from a boolean mask."""
    return _relu(as_float_array("relu", "x", x))


def leaky_relu(x: Array, negative_slope: float = 0.01) -> Array:
    """x if x > 0 else ``negative_slope * x``; ``negative_slope`` in [0, 1)."""
    slope = static_float("leaky_relu", "negative_slope", negative_slope, minimum=0.0, maximum=1.0, include_maximum=False)
    return _leaky_relu(as_float_array("leaky_relu", "x", x), slope)


def elu(x: Array, alpha: float = 1.0) -> Array:
    """x if x > 0 else ``alpha (e^x - 1)``; ``alpha`` > 0."""
    alpha = static_float("elu", "alpha", alpha, minimum=0.0, include_minimum=False)
    return _elu(as_float_array("elu", "x", x), alpha)


def gelu(x: Array, approximate: bool = False) -> Array:
    """Gaussian error linear unit ``x Phi(x)``; ``approximate=True`` uses the tanh form."""
    if not isinstance(approximate, bool):
        raise TypeError(f"gelu: approximate must be a bool, got {approximate!r}")
    return _gelu(as_float_array("gelu", "x", x), approximate)
