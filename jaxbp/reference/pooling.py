"""Pooling (reference forward math): max, average and global average pooling, channels-last.

Windows move over the spatial axes of ``x: (N, *spatial, C)`` (``(N, H, W, C)`` for the
2-d pools); along one axis with window ``k``, stride ``s`` and padding ``(lo, hi)`` there
are ``m = floor((n + lo + hi - k) / s) + 1`` windows and window ``i`` covers padded
positions ``i s .. i s + k - 1``. ``padding`` takes the forms of the convolutions
(``"VALID"``, ``"SAME"``, an int, or ``(lo, hi)`` pairs).

* max pooling pads with ``-inf`` (padding never wins);
* average pooling pads with zeros and divides by ``k_h k_w`` when ``count_include_pad``
  (PyTorch's default) or by the number of real (unpadded) elements in the window otherwise.
Nothing here validates input; :mod:`jaxbp.ops.pooling` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxbp.core import Array, in_accumulation_dtype
from jaxbp.reference.conv import Pairs, padding_pairs, spatial_tuple


def pool_geometry(
    x_shape: Sequence[int], window: Any, stride: Any, padding: Any
) -> tuple[tuple[int, ...], tuple[int, ...], Pairs]:
    """``(window, stride, padding pairs)`` as tuples over the spatial axes of ``x_shape``."""
    num_spatial = len(x_shape) - 2
    window = spatial_tuple(window, num_spatial)
    stride = spatial_tuple(window if stride is None else stride, num_spatial)
    return window, stride, padding_pairs(padding, x_shape[1:-1], window, stride)


def _full(spatial: tuple[int, ...]) -> tuple[int, ...]:
    """Window dimensions / strides over ``(N, *spatial, C)``: 1 on the batch and channel axes."""
    return (1, *spatial, 1)


def _full_padding(padding: Pairs) -> Pairs:
    return ((0, 0), *padding, (0, 0))


def window_sum(x: Array, window: tuple[int, ...], stride: tuple[int, ...], padding: Pairs) -> Array:
    """``sum`` over each zero-padded window."""
    return lax.reduce_window(
        x,
        np.zeros((), x.dtype),
        lax.add,
        _full(window),
        _full(stride),
        _full_padding(padding),
    )


def max_pool2d(x: Array, window: Any, stride: Any = None, padding: Any = "VALID") -> Array:
    """``y[n, i, j, c] = max over the window (i s_h .. + k_h - 1, j s_w .. + k_w - 1) of x_pad[n, ., ., c]``.

    ``stride`` defaults to the window (non-overlapping windows); ``x_pad`` is padded with ``-inf``.
    """
    window, stride, pads = pool_geometry(x.shape, window, stride, padding)
    return lax.reduce_window(
        x,
        np.array(-np.inf, x.dtype),
        lax.max,
        _full(window),
        _full(stride),
        _full_padding(pads),
    )


def window_counts(
    spatial: Sequence[int],
    window: tuple[int, ...],
    stride: tuple[int, ...],
    padding: Pairs,
) -> Array:
    """``(1, *out_spatial, 1)`` float32: the number of real (unpadded) elements in each window."""
    ones = jnp.ones((1, *spatial, 1), jnp.float32)
    return window_sum(ones, window, stride, padding)


def avg_pool2d(
    x: Array,
    window: Any,
    stride: Any = None,
    padding: Any = "VALID",
    count_include_pad: bool = True,
) -> Array:
    """``y = (sum of the zero-padded window) / count``: ``count = k_h k_w`` when ``count_include_pad``,
    else the number of real elements in the window. Summed in float32 for bf16/f16."""
    window, stride, pads = pool_geometry(x.shape, window, stride, padding)
    sums = window_sum(in_accumulation_dtype(x), window, stride, pads)
    if count_include_pad:
        count: float | Array = float(math.prod(window))
    else:
        count = window_counts(x.shape[1:-1], window, stride, pads)
    return (sums / count).astype(x.dtype)


def global_avg_pool(x: Array) -> Array:
    """``y[n, c] = mean over every spatial position of x[n, ..., c]``: ``(N, *spatial, C) -> (N, C)``."""
    return jnp.mean(in_accumulation_dtype(x), axis=tuple(range(1, x.ndim - 1))).astype(x.dtype)
