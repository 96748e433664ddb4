"""Batch norm and layer norm with closed-form backward rules.

Both compute ``x_hat = (x - mean) / sqrt(var + eps)`` and ``y = gamma * x_hat + beta``
with ``params = {"gamma": (C,), "beta": (C,)}``; they differ only in the axes the
statistics are taken over:

* ``batch_norm``: every axis but the last (one mean/variance per feature, shared by
  the batch). Training mode uses the batch statistics and returns them for the
  running-average update; eval mode uses given (running) statistics.
* ``layer_norm``: the last axis (one mean/variance per row, i.e. per example/token).

The backward is the compact closed form (no chain of primitive steps):
``dx = (g - mean(g) - x_hat * mean(g * x_hat)) / sqrt(var + eps)`` with ``g = dy * gamma``.

Residuals (as llm.c's layernorm): the input ``x`` in its own dtype, the ``mean`` and
``inv_std = 1 / sqrt(var + eps)`` per normalized group (accumulation dtype, O(groups)),
and ``gamma``. ``x_hat`` is recomputed in the backward from those (one elementwise
pass) rather than stored: storing it would cost a second full-size array, in float32
even for bf16 inputs. Statistics are accumulated in float32 for bf16/f16 inputs.
The variance is the biased one, ``1/N sum (x - mean)^2``, in both ops.
Custom VJPs are reverse-mode only: ``jax.jvp``/``jax.jacfwd`` raise on these ops.
Zero features is refused (plain jnp would return an empty ``y``): there is nothing to
normalize, and the layer is misconfigured.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from jaxbp import reference
from jaxbp.core import Array, accumulation_dtype, as_float_array, define_op, require_rank, static_float


class BatchStatistics(NamedTuple):
    """Per-feature statistics of batch norm: the batch's (training) or running (eval)."""

    mean: Array  # (C,) mean over every axis but the last
    var: Array  # (C,) biased variance 1/N sum (x - mean)^2


class NormalizationResiduals(NamedTuple):
    x: Array  # (..., C) the input, in its own dtype
    mean: Array  # broadcasts against x: the mean x was normalized with (accumulation dtype)
    inv_std: Array  # broadcasts against x: 1 / sqrt(var + eps)
    gamma: Array  # (C,)


def _x_hat(residuals: NormalizationResiduals) -> Array:
    """x_hat = (x - mean) * inv_std, recomputed in the accumulation dtype."""
    x, mean, inv_std = residuals.x, residuals.mean, residuals.inv_std
    dtype = jnp.result_type(accumulation_dtype(x.dtype), mean.dtype, inv_std.dtype)
    return (x.astype(dtype) - mean) * inv_std


def _gamma_beta_grads(residuals: NormalizationResiduals, dy: Array, x_hat: Array) -> tuple[dict, Array]:
    """Forward: y = gamma * x_hat + beta (gamma, beta shared by every row).
    dgamma = sum_rows dy * x_hat,   dbeta = sum_rows dy,   and g = dL/dx_hat = dy * gamma.
    Returns ``(dparams, g)`` with ``g`` in the accumulation dtype.
    """
    gamma = residuals.gamma
    wide_dy = dy.astype(x_hat.dtype)
    rows = tuple(range(dy.ndim - 1))
    dparams = {
        "gamma": jnp.sum(wide_dy * x_hat, axis=rows).astype(gamma.dtype),
        "beta": jnp.sum(wide_dy, axis=rows).astype(gamma.dtype),
    }
    return dparams, wide_dy * gamma.astype(x_hat.dtype)


# ------------------------------------------------------------ batch norm (training)


def _batch_norm_fwd(params, x, eps):
    y, mean, var, inv_std = reference.batch_norm_parts(params, x, eps)
    return (y, mean, var), NormalizationResiduals(x, mean, inv_std, params["gamma"])


def _batch_norm_bwd(eps, residuals, cotangents):
    """Forward (training), with N = number of positions per feature (all axes but the last):
        mean = 1/N sum_n x,   var = 1/N sum_n (x - mean)^2,   s = sqrt(var + eps),
        x_hat = (x - mean) / s,   y = gamma * x_hat + beta;   outputs (y, mean, var).
    With g = dy * gamma:
        dbeta = sum_n dy,   dgamma = sum_n dy * x_hat,
        dx = (g - mean_n(g) - x_hat * mean_n(g * x_hat)) / s        (through y)
           + dmean / N + 2 dvar (x - mean) / N                      (through mean, var)
    Since x - mean = s * x_hat, the last two fold into the per-feature means (O(C) work):
        dx = (g - [mean_n(g) - dmean s / N] - x_hat * [mean_n(g * x_hat) - 2 dvar s^2 / N]) / s.
    In a network dmean = dvar = 0 (the statistics only feed the running averages).
    """
    dy, dmean, dvar = cotangents
    x_hat = _x_hat(residuals)
    dparams, g = _gamma_beta_grads(residuals, dy, x_hat)
    rows = tuple(range(g.ndim - 1))
    count = x_hat.size // x_hat.shape[-1]
    std = 1.0 / residuals.inv_std  # (C,); dmean, dvar: (C,) in the same accumulation dtype
    g_mean = jnp.mean(g, axis=rows) - dmean * std / count
    gx_mean = jnp.mean(g * x_hat, axis=rows) - 2.0 * dvar * std**2 / count
    dx = residuals.inv_std * (g - g_mean - x_hat * gx_mean)
    return dparams, dx.astype(residuals.x.dtype)


_batch_norm = define_op(reference.batch_norm, _batch_norm_fwd, _batch_norm_bwd, nondiff_argnums=(2,))


# ---------------------------------------------------------------- batch norm (eval)


def _batch_norm_inference_fwd(params, x, mean, var, eps):
    # mean and inv_std stay in the statistics' own dtype, as in the reference math.
    y, mean, inv_std = reference.batch_norm_inference_parts(params, x, mean, var, eps)
    return y, NormalizationResiduals(x, mean, inv_std, params["gamma"])


def _batch_norm_inference_bwd(eps, residuals, dy):
    """Forward (eval): s = sqrt(var + eps),  x_hat = (x - mean) / s,  y = gamma * x_hat + beta,
    with mean and var given (the running statistics: constants of the batch).
    With g = dy * gamma:
        dx = g / s,   dgamma = sum_n dy * x_hat,   dbeta = sum_n dy,
        dmean = -sum_n g / s,   dvar = -1/2 sum_n g * x_hat / s^2.
    """
    x_hat = _x_hat(residuals)
    dparams, g = _gamma_beta_grads(residuals, dy, x_hat)
    rows = tuple(range(g.ndim - 1))
    inv_std = residuals.inv_std
    dmean = -jnp.sum(g, axis=rows) * inv_std
    dvar = -0.5 * jnp.sum(g * x_hat, axis=rows) * inv_std**2
    dx = g * inv_std
    return dparams, dx.astype(residuals.x.dtype), dmean.astype(residuals.mean.dtype), dvar.astype(inv_std.dtype)


_batch_norm_inference = define_op(
    reference.batch_norm_inference, _batch_norm_inference_fwd, _batch_norm_inference_bwd, nondiff_argnums=(4,)
)


# ----------------------------------------------------------------------- layer norm


def _layer_norm_fwd(params, x, eps):
    y, mean, inv_std = reference.layer_norm_parts(params, x, eps)
    return y, NormalizationResiduals(x, mean, inv_std, params["gamma"])


def _layer_norm_bwd(eps, residuals, dy):
    """Forward, per row over the C features:
        mean = 1/C sum_c x,   var = 1/C sum_c (x - mean)^2,   s = sqrt(var + eps),
        x_hat = (x - mean) / s,   y = gamma * x_hat + beta.
    With g = dy * gamma:
        dx = (g - mean_c(g) - x_hat * mean_c(g * x_hat)) / s,
        dgamma = sum_rows dy * x_hat,   dbeta = sum_rows dy.
    """
    x_hat = _x_hat(residuals)
    dparams, g = _gamma_beta_grads(residuals, dy, x_hat)
    g_mean = jnp.mean(g, axis=-1, keepdims=True)
    gx_mean = jnp.mean(g * x_hat, axis=-1, keepdims=True)
    dx = residuals.inv_std * (g - g_mean - x_hat * gx_mean)
    return dparams, dx.astype(residuals.x.dtype)


_layer_norm = define_op(reference.layer_norm, _layer_norm_fwd, _layer_norm_bwd, nondiff_argnums=(2,))


# --------------------------------------------------------------------- public ops


def _gamma_beta(op: str, params: Any, x: Array) -> dict:
    """Validate ``params = {"gamma": (C,), "beta": (C,)}`` against ``x: (..., C)``."""
    if not isinstance(params, dict) or set(params) != {"gamma", "beta"}:
        found = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f'{op}: params must be a dict with keys "gamma" and "beta", got {found}')
    if x.shape[-1] == 0:
        raise ValueError(f"{op}: x has 0 features to normalize (shape {tuple(x.shape)})")
    checked = {}
    for name in ("gamma", "beta"):
        value = as_float_array(op, f'params["{name}"]', params[name])
        if tuple(value.shape) != (x.shape[-1],):
            raise ValueError(
                f'{op}: params["{name}"] must have shape ({x.shape[-1]},) to match the features of x '
                f"{tuple(x.shape)}, got {tuple(value.shape)}"
            )
        checked[name] = value
    if checked["gamma"].dtype != checked["beta"].dtype:
        raise TypeError(
            f'{op}: params["gamma"] and params["beta"] must share a dtype, got '
            f"{checked['gamma'].dtype} and {checked['beta'].dtype}"
        )
    return checked


def _running_statistics(op: str, running: Any, num_features: int) -> BatchStatistics:
    if running is None:
        raise ValueError(
            f"{op}: train=False normalizes with running statistics; pass running=BatchStatistics(mean, var) "
            "(nn.batch_norm keeps them as its state)"
        )
    if not isinstance(running, tuple) or len(running) != 2:
        raise TypeError(f"{op}: running must be a BatchStatistics(mean, var) pair, got {type(running).__name__}")
    statistics = []
    for name, value in zip(("mean", "var"), running):
        value = as_float_array(op, f"running.{name}", value)
        if tuple(value.shape) != (num_features,):
            raise ValueError(
                f"{op}: running.{name} must have shape ({num_features},) to match the features of x, "
                f"got {tuple(value.shape)}"
            )
        statistics.append(value)
    return BatchStatistics(*statistics)


def _check_eps(op: str, eps: float) -> float:
    return static_float(op, "eps", eps, minimum=0.0)


def batch_norm(
    params: dict,
    x: Array,
    *,
    train: bool = True,
    running: BatchStatistics | None = None,
    eps: float = 1e-5,
) -> tuple[Array, BatchStatistics]:
    """Batch normalization over every axis but the last (Ioffe & Szegedy 2015).

    Args:
      params: ``{"gamma": (C,), "beta": (C,)}`` floating point.
      x: ``(..., C)`` with at least two positions per feature in training mode.
      train: static. True: normalize with the batch mean and biased variance.
        False: normalize with ``running`` (eval mode).
      running: ``BatchStatistics(mean: (C,), var: (C,))``; required when
        ``train=False``, unused (may still be passed) when ``train=True``.
      eps: static, ``>= 0``, added to the variance.
    Returns:
      ``(y, statistics)``: ``y`` like ``x`` (dtype promoted with the params), and the
      statistics ``y`` was normalized with -- the batch's (``(C,)``, accumulation
      dtype) in training mode, for the running-average update; ``running``
      itself in eval mode.

    Every output is differentiable with its true derivative: the backward folds the
    cotangents of the batch mean/var into O(C) terms (they are zero when the
    statistics only feed running averages), and in eval mode ``running`` gets its
    cotangent too. Networks never differentiate their state (:func:`jaxbp.nn.batch_norm`
    stops its gradient).
    """
    op = "batch_norm"
    x = as_float_array(op, "x", x)
    require_rank(op, "x", x, min_rank=2)
    params = _gamma_beta(op, params, x)
    eps = _check_eps(op, eps)
    if not isinstance(train, bool):
        raise TypeError(f"{op}: train must be a Python bool (static under jit), got {train!r}")
    if not train:
        statistics = _running_statistics(op, running, x.shape[-1])
        return _batch_norm_inference(params, x, statistics.mean, statistics.var, eps), statistics
    if x.size // x.shape[-1] < 2:
        raise ValueError(
            f"{op}: training mode needs at least 2 values per feature to estimate a variance, got x of shape "
            f"{tuple(x.shape)}"
        )
    y, mean, var = _batch_norm(params, x, eps)
    return y, BatchStatistics(mean, var)


def layer_norm(params: dict, x: Array, *, eps: float = 1e-5) -> Array:
    """Layer normalization over the last axis (Ba, Kiros & Hinton 2016).

    Args:
      params: ``{"gamma": (C,), "beta": (C,)}`` floating point.
      x: ``(..., C)``; each row is normalized by its own mean and biased variance.
      eps: static, ``>= 0``, added to the variance.
    Returns:
      ``y`` of the same shape, dtype promoted with the params. Same in train and eval.
    """
    op = "layer_norm"
    x = as_float_array(op, "x", x)
    require_rank(op, "x", x, min_rank=1)
    return _layer_norm(_gamma_beta(op, params, x), x, _check_eps(op, eps))
