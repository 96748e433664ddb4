"""Batch norm and layer norm (reference forward math)."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax import lax

from jaxbp.core import Array, in_accumulation_dtype


def moments(x: Array, axes: tuple[int, ...]) -> tuple[Array, Array]:
    """Mean and biased variance 1/N sum (x - mean)^2 over ``axes`` (kept, so they
    broadcast against ``x``), in the accumulation dtype."""
    wide = in_accumulation_dtype(x)
    mean = jnp.mean(wide, axis=axes, keepdims=True)
    return mean, jnp.mean(jnp.square(wide - mean), axis=axes, keepdims=True)


class NormalizationParts(NamedTuple):
    y: Array  # like x: gamma * x_hat + beta
    mean: Array  # broadcasts against x: the mean x was normalized with (accumulation dtype)
    inv_std: Array  # broadcasts against x: 1 / sqrt(var + eps)


def _scale_and_shift(params: dict, x: Array, mean: Array, var: Array, eps: float) -> NormalizationParts:
    """y = gamma * (x - mean) / sqrt(var + eps) + beta, in the promoted dtype of x and params."""
    gamma, beta = params["gamma"], params["beta"]
    out_dtype = jnp.result_type(x.dtype, gamma.dtype, beta.dtype)
    inv_std = lax.rsqrt(var + eps)
    x_hat = (in_accumulation_dtype(x) - mean) * inv_std
    return NormalizationParts((gamma * x_hat + beta).astype(out_dtype), mean, inv_std)


class BatchNormParts(NamedTuple):
    y: Array  # like x
    mean: Array  # (C,) batch mean
    var: Array  # (C,) biased batch variance
    inv_std: Array  # (C,) 1 / sqrt(var + eps)


def batch_norm_parts(params: dict, x: Array, eps: float = 1e-5) -> BatchNormParts:
    """Training-mode batch norm over every axis but the last (the features), with the
    batch statistics it used and ``1 / sqrt(var + eps)``."""
    mean, var = moments(x, tuple(range(x.ndim - 1)))
    parts = _scale_and_shift(params, x, mean, var, eps)
    return BatchNormParts(parts.y, mean.reshape(-1), var.reshape(-1), parts.inv_std.reshape(-1))


def batch_norm(params: dict, x: Array, eps: float = 1e-5) -> tuple[Array, Array, Array]:
    """Training-mode batch norm over every axis but the last (the features).

    Returns ``(y, mean, var)``: the normalized output and the batch mean and biased
    variance of shape ``(C,)`` it used (the inputs of the running-average update).
    """
    parts = batch_norm_parts(params, x, eps)
    return parts.y, parts.mean, parts.var


def batch_norm_inference_parts(
    params: dict, x: Array, mean: Array, var: Array, eps: float = 1e-5
) -> NormalizationParts:
    """Eval-mode batch norm with given (running) statistics ``mean, var: (C,)``, and ``1 / sqrt(var + eps)``."""
    return _scale_and_shift(params, x, mean, var, eps)


def batch_norm_inference(params: dict, x: Array, mean: Array, var: Array, eps: float = 1e-5) -> Array:
    """Eval-mode batch norm: normalize with given (running) statistics ``mean, var: (C,)``."""
    return batch_norm_inference_parts(params, x, mean, var, eps).y


def layer_norm_parts(params: dict, x: Array, eps: float = 1e-5) -> NormalizationParts:
    """Layer norm over the last axis, with the per-row mean and ``1 / sqrt(var + eps)``."""
    mean, var = moments(x, (-1,))
    return _scale_and_shift(params, x, mean, var, eps)


def layer_norm(params: dict, x: Array, eps: float = 1e-5) -> Array:
    """Layer norm over the last axis: each row normalized by its own mean and variance."""
    return layer_norm_parts(params, x, eps).y
