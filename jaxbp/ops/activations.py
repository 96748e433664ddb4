"""Activations: each is its reference function plus a hand-written derivative.

Conventions at kinks (the derivative the backward uses where the function is not
differentiable): relu'(0) = 0, leaky_relu'(0) = negative_slope, elu'(0) = alpha.
NaN propagates: a NaN input gives a NaN output and a NaN derivative for every
activation. At +-inf the derivatives are their limits (e.g. gelu'(+inf) = 1).
Every derivative is computed in a form exact in float32 tails (relative error
<= 1e-5 wherever the true value is a normal float32; see tests/test_activation_tails.py).
Custom VJPs are reverse-mode only: ``jax.jvp``/``jax.jacfwd`` raise on these ops;
see :func:`jaxbp.gradcheck.hvp` for second-order products.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
from jax import lax

from jaxbp import reference
from jaxbp.core import Array, as_float_array, define_elementwise_op, define_op, static_float
from jaxbp.reference.activations import SQRT_2_OVER_PI
from jaxbp.validation import static_bool

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# Beyond |x| = 40 both GELU derivatives are exactly 1 (x > 0) or 0 (x < 0) even in float64
# (the Gaussian tail is e^{-800}); clipping there keeps x^2, x^3 finite (|x| ~ 1e20 gave NaN).
_GELU_SATURATION = 40.0

# Residual of the piecewise-linear activations: one byte per element, three states, so
# a NaN input keeps a NaN derivative (a boolean mask would turn it into 0 or 1).
_NOT_POSITIVE, _POSITIVE, _NAN = 0, 1, 2


def _sign_code(x: Array) -> Array:
    """uint8 code of x: 1 where x > 0, 0 where x <= 0, 2 where x is NaN."""
    return jnp.where(jnp.isnan(x), _NAN, x > 0).astype(jnp.uint8)


def _piecewise_linear_bwd(negative_slope: float, code: Array, dy: Array) -> tuple[Array]:
    """y = x if x > 0 else a x (relu: a = 0), so dx = dy where x > 0, a dy where x <= 0, NaN where x was NaN.

    A select on ``dy`` rather than ``dy`` times a decoded 0/1/NaN derivative: one elementwise op
    fewer, which matters where activations dominate a step (the digits ResNet's). A zero slope
    gives exact zeros, even where ``dy`` is inf.
    """
    negative = jnp.zeros_like(dy) if negative_slope == 0.0 else negative_slope * dy
    return (jnp.where(code == _POSITIVE, dy, jnp.where(code == _NOT_POSITIVE, negative, jnp.nan).astype(dy.dtype)),)


def _sech_squared(x: Array) -> Array:
    """1 - tanh(x)^2 = 4 e^{-2|x|} / (1 + e^{-2|x|})^2, exact in the tails (no 1 - y^2 cancellation)."""
    t = jnp.exp(-2.0 * jnp.abs(x))
    return 4.0 * t / (1.0 + t) ** 2


# y = sigma(x)          residual: x
# dx = dy * sigma(x) * sigma(-x)      (= y (1 - y), but exact in the tails: at x = 100,
#                                      y rounds to 1 and y (1 - y) to 0, while sigma(-x) keeps 3.7e-44)
_sigmoid = define_elementwise_op(
    reference.sigmoid,
    residual=lambda x, y: x,
    derivative=lambda x: reference.sigmoid(x) * reference.sigmoid(-x),
)

# y = tanh(x)           residual: x (the same bytes as y)
# dx = dy * (1 - y^2) = dy * 4 e^{-2|x|} / (1 + e^{-2|x|})^2
#      (1 - y^2 from the saved y is exactly 0 in float32 for |x| >= 9, where the true value is 6e-8)
_tanh = define_elementwise_op(
    reference.tanh,
    residual=lambda x, y: x,
    derivative=_sech_squared,
)

# y = max(x, 0) and y = x if x > 0 else a*x; both keep a uint8 code of x (1 byte per element,
# see _sign_code) and share the backward (relu's slope is 0)
_relu = define_op(
    reference.relu, lambda x: (reference.relu(x), _sign_code(x)), functools.partial(_piecewise_linear_bwd, 0.0)
)
_leaky_relu = define_op(
    reference.leaky_relu,
    lambda x, negative_slope: (reference.leaky_relu(x, negative_slope), _sign_code(x)),
    _piecewise_linear_bwd,
    nondiff_argnums=(1,),
)

# y = x if x > 0 else alpha*(e^x - 1)     residual: x (the same bytes as y)
# dx = dy * (1 if x > 0 else alpha*e^x)
#      (alpha e^x = y + alpha from the saved y loses every digit as y -> -alpha: 44% error at x = -17;
#      a where, not jnp.minimum(x, 0), inside the exp: autodiff of minimum at the tie x = 0 is 1/2, which
#      would halve the second derivative there)
_elu = define_elementwise_op(
    reference.elu,
    residual=lambda x, y, alpha: x,
    derivative=lambda x, alpha: jnp.where(x > 0, 1.0, alpha * jnp.exp(jnp.where(x > 0, 0.0, x))),
    num_static=1,
)


def _gelu_derivative(x: Array, approximate: bool) -> Array:
    """Exact:  d/dx [x Phi(x)] = Phi(x) + x phi(x),  Phi(x) = erfc(-x / sqrt 2) / 2 (no 1 + erf cancellation).
    Tanh form: y = x (1 + tanh u) / 2 = x sigma(2u), u = sqrt(2/pi)(x + c x^3), so with s = sigma(2u):
               dy/dx = s + 2 x s sigma(-2u) sqrt(2/pi)(1 + 3c x^2)
               (1 + tanh u = 2 sigma(2u) and 1 - tanh^2 u = 4 sigma(2u) sigma(-2u): exact in both tails).
    """
    x = jnp.clip(x, -_GELU_SATURATION, _GELU_SATURATION)
    if approximate:
        c = reference.GELU_TANH_COEFFICIENT
        two_u = 2.0 * SQRT_2_OVER_PI * (x + c * x**3)
        s = reference.sigmoid(two_u)
        return s * (1.0 + 2.0 * x * reference.sigmoid(-two_u) * SQRT_2_OVER_PI * (1.0 + 3.0 * c * x * x))
    cdf = 0.5 * lax.erfc(-x / math.sqrt(2.0))
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
    """Hyperbolic tangent; backward ``dx = dy * (1 - y^2)`` computed from x, exact in the tails."""
    return _tanh(as_float_array("tanh", "x", x))


def relu(x: Array) -> Array:
    """max(x, 0); backward ``dx = dy * 1[x > 0]`` (relu'(0) = 0) from a one-byte code of x."""
    return _relu(as_float_array("relu", "x", x))


def leaky_relu(x: Array, negative_slope: float = 0.01) -> Array:
    """x if x > 0 else ``negative_slope * x``; ``negative_slope`` in [0, 1)."""
    slope = static_float(
        "leaky_relu", "negative_slope", negative_slope, minimum=0.0, maximum=1.0, include_maximum=False
    )
    return _leaky_relu(as_float_array("leaky_relu", "x", x), slope)


def elu(x: Array, alpha: float = 1.0) -> Array:
    """x if x > 0 else ``alpha (e^x - 1)``; ``alpha`` > 0."""
    alpha = static_float("elu", "alpha", alpha, minimum=0.0, include_minimum=False)
    return _elu(as_float_array("elu", "x", x), alpha)


def gelu(x: Array, approximate: bool = False) -> Array:
    """Gaussian error linear unit ``x Phi(x)``; ``approximate=True`` uses the tanh form."""
    return _gelu(as_float_array("gelu", "x", x), static_bool("gelu", "approximate", approximate))
