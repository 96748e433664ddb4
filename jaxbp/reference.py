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
    return jnp.where(x > 0, x, alpha * jnp.expm1(jnp.where(x > 0, jnp.zeros_like(x), x)))


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


def _log_softmax_wide(x: Array, axis: int) -> Array:
    """(x - m) - log sum_j exp(x_j - m), m = max x, in the accumulation dtype.

    Subtracting the max first keeps log-probabilities exact even for |x| ~ 1e4 in
    float32, where ``x - logsumexp(x)`` would lose ~1e-3 to rounding of the sum.
    """
    x = _in_accumulation_dtype(x)
    shifted = x - lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=axis, keepdims=True))


def softmax(x: Array, axis: int = -1) -> Array:
    """exp(x_i) / sum_j exp(x_j) along ``axis``."""
    return jnp.exp(_log_softmax_wide(x, axis)).astype(x.dtype)


def log_softmax(x: Array, axis: int = -1) -> Array:
    """x_i - log sum_j exp(x_j) along ``axis``."""
    return _log_softmax_wide(x, axis).astype(x.dtype)


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
    log_p = _log_softmax_wide(logits, -1)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        targets = jax.nn.one_hot(labels, log_p.shape[-1], dtype=log_p.dtype)
    else:
        targets = labels.astype(log_p.dtype)
    return jnp.mean(-jnp.sum(targets * log_p, axis=-1)).astype(logits.dtype)


# ---------------------------------------------------------------------- normalization


def moments(x: Array, axes: tuple[int, ...]) -> tuple[Array, Array]:
    """Mean and biased variance 1/N sum (x - mean)^2 over ``axes`` (kept, so they
    broadcast against ``x``), in the accumulation dtype."""
    wide = _in_accumulation_dtype(x)
    mean = jnp.mean(wide, axis=axes, keepdims=True)
    return mean, jnp.mean(jnp.square(wide - mean), axis=axes, keepdims=True)


def scale_and_shift(params: dict, x: Array, mean: Array, var: Array, eps: float) -> Array:
    """y = gamma * (x - mean) / sqrt(var + eps) + beta, in the promoted dtype of x and params."""
    gamma, beta = params["gamma"], params["beta"]
    out_dtype = jnp.result_type(x.dtype, gamma.dtype, beta.dtype)
    x_hat = (_in_accumulation_dtype(x) - mean) * lax.rsqrt(var + eps)
    return (gamma * x_hat + beta).astype(out_dtype)


def batch_norm(params: dict, x: Array, eps: float = 1e-5) -> tuple[Array, Array, Array]:
    """Training-mode batch norm over every axis but the last (the features).

    Returns ``(y, mean, var)``: the normalized output and the batch mean and biased
    variance of shape ``(C,)`` it used (the inputs of the running-average update).
    """
    mean, var = moments(x, tuple(range(x.ndim - 1)))
    return scale_and_shift(params, x, mean, var, eps), mean.reshape(-1), var.reshape(-1)


def batch_norm_inference(params: dict, x: Array, mean: Array, var: Array, eps: float = 1e-5) -> Array:
    """Eval-mode batch norm: normalize with given (running) statistics ``mean, var: (C,)``."""
    return scale_and_shift(params, x, mean, var, eps)


def layer_norm(params: dict, x: Array, eps: float = 1e-5) -> Array:
    """Layer norm over the last axis: each row normalized by its own mean and variance."""
    mean, var = moments(x, (-1,))
    return scale_and_shift(params, x, mean, var, eps)


# ---------------------------------------------------------------------------- dropout


def dropout_keep_mask(key: Array, rate: float, shape: tuple[int, ...]) -> Array:
    """The boolean keep mask of dropout: True with probability ``1 - rate``, a pure
    function of ``key`` (the same key gives the same mask)."""
    return jax.random.bernoulli(key, 1.0 - rate, shape)


def dropout(x: Array, key: Array, rate: float) -> Array:
    """Inverted dropout in training mode: y = x * keep / (1 - rate), keep ~ Bernoulli(1 - rate)."""
    keep = dropout_keep_mask(key, rate, x.shape)
    wide = _in_accumulation_dtype(x)
    return jnp.where(keep, wide * (1.0 / (1.0 - rate)), jnp.zeros_like(wide)).astype(x.dtype)
