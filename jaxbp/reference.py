"""Reference forward math in plain ``jax.numpy``: the ground truth for ``jax.grad``.

Each function here is the primal of the op with the same name in :mod:`jaxbp.ops`.
The ops attach hand-written backward rules to these exact functions, so
``jax.grad`` through a reference function and the hand-written VJP of its op must
agree to rounding error. Nothing here validates input; the public ops do.

Conventions at non-differentiable points are chosen so that autodiff through this
file gives the mathematical convention the ops state:
  relu'(0) = 0, leaky_relu'(0) = negative_slope, elu'(0) = alpha
(``jnp.where(x > 0, ...)`` differentiates the branch that is selected).
Low-precision inputs (bf16/f16) accumulate sums in float32 and are cast back.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from jaxbp.core import Array, accumulation_dtype

# ------------------------------------------------------------------------ activations


def sigmoid(x: Array) -> Array:
    """sigma(x) = 1 / (1 + exp(-x)), stable for large |x|."""
    return lax.logistic(x)


def tanh(x: Array) -> Array:
    """tanh(x)."""
    return jnp.tanh(x)


def relu(x: Array) -> Array:
    """max(x, 0), with derivative 1[x > 0] (0 at x = 0)."""
    return jnp.where(x > 0, x, jnp.zeros_like(x))


def leaky_relu(x: Array, negative_slope: float = 0.01) -> Array:
    """x for x > 0, negative_slope * x otherwise."""
    return jnp.where(x > 0, x, negative_slope * x)


def elu(x: Array, alpha: float = 1.0) -> Array:
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""
    return jnp.where(x > 0, x, alpha * jnp.expm1(jnp.minimum(x, 0)))


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_TANH_COEFFICIENT = 0.044715


def gelu(x: Array, approximate: bool = False) -> Array:
    """GELU: x * Phi(x) (exact, erf form) or its tanh approximation."""
    if approximate:
        inner = _SQRT_2_OVER_PI * (x + GELU_TANH_COEFFICIENT * x**3)
        return 0.5 * x * (1 + jnp.tanh(inner))
    return 0.5 * x * (1 + lax.erf(x / math.sqrt(2.0)))


# ---------------------------------------------------------------------------- softmax


def _in_accumulation_dtype(x: Array) -> Array:
    return x.astype(accumulation_dtype(x.dtype))


def logsumexp(x: Array, axis: int = -1) -> Array:
    """log sum_j exp(x_j) along ``axis`` (keeps the axis), shifted by the max for stability."""
    x = _in_accumulation_dtype(x)
    shift = lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    return shift + jnp.log(jnp.sum(jnp.exp(x - shift), axis=axis, keepdims=True))


def softmax(x: Array, axis: int = -1) -> Array:
    """exp(x_i) / sum_j exp(x_j) along ``axis``."""
    wide = _in_accumulation_dtype(x)
    return jnp.exp(wide - logsumexp(wide, axis)).astype(x.dtype)


def log_softmax(x: Array, axis: int = -1) -> Array:
    """x_i - log sum_j exp(x_j) along ``axis``."""
    wide = _in_accumulation_dtype(x)
    return (wide - logsumexp(wide, axis)).astype(x.dtype)


# ------------------------------------------------------------------------------ dense


def dense(params: dict, x: Array) -> Array:
    """y = x @ w + b for ``x: (..., in)``, ``w: (in, out)``, ``b: (out,)``."""
    w, b = params["w"], params["b"]
    out_dtype = jnp.result_type(x.dtype, w.dtype)
    y = jnp.matmul(x, w, preferred_element_type=accumulation_dtype(out_dtype))
    return (y + b).astype(out_dtype)


# ----------------------------------------------------------------------- composition


def add(a: Array, b: Array) -> Array:
    """a + b (same shapes): the junction of a residual connection."""
    return a + b


def reshape(x: Array, shape: tuple[int, ...]) -> Array:
    """x viewed with a new shape."""
    return jnp.reshape(x, shape)


# ----------------------------------------------------------------------------- losses


def mse(predictions: Array, targets: Array) -> Array:
    """L = 1/(2N) * sum (predictions - targets)^2 over all N elements (the seeds' 1/2 (y - t)^2)."""
    error = _in_accumulation_dtype(predictions) - targets
    return (0.5 * jnp.mean(error**2)).astype(predictions.dtype)


def binary_cross_entropy_with_logits(logits: Array, labels: Array) -> Array:
    """L = mean(softplus(z) - y z) = mean(-y log sigma(z) - (1 - y) log(1 - sigma(z)))."""
    z = _in_accumulation_dtype(logits)
    return jnp.mean(jnp.logaddexp(0.0, z) - labels * z).astype(logits.dtype)


def softmax_cross_entropy(logits: Array, labels: Array) -> Array:
    """L = mean over leading axes of -sum_c t_c log softmax(z)_c.

    ``labels`` are integer class indices of shape ``logits.shape[:-1]`` or float
    targets (one-hot or probabilities) of the same shape as ``logits``.
    """
    z = _in_accumulation_dtype(logits)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        targets = jax.nn.one_hot(labels, z.shape[-1], dtype=z.dtype)
    else:
        targets = labels.astype(z.dtype)
    per_example = -jnp.sum(targets * (z - logsumexp(z, -1)), axis=-1)
    return jnp.mean(per_example).astype(logits.dtype)
