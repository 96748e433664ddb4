"""Pooling with hand-written backward rules (tutorial 002: route the gradient to the argmax).

Along one spatial axis (input size ``n``, window ``k``, stride ``s``, padding ``(lo, hi)``,
``m`` windows), window ``i`` covers input positions ``p = i s - lo + a`` for offsets
``a = 0 .. k - 1`` (positions outside ``0 .. n - 1`` are padding).

* ``max_pool2d``: ``y[i] = max_a x[i s - lo + a]``. Backward: the whole ``dy[i]`` goes to
  the one element that won window ``i``; where windows overlap (``s < k``) an element
  collects the gradients of every window it won.
  **Tie rule**: when several elements of a window share the maximum, the *first* in
  row-major window order (smallest row offset, then smallest column offset) wins and takes
  all of ``dy`` -- the same choice as ``jax.grad`` through ``lax.reduce_window`` (XLA's
  ``select_and_scatter`` with ``>=``), so the two agree even at ties.
  **NaN rule**, the same select, so the gradient is where autodiff of the reference puts
  it: scanning the window in row-major order, the current winner is kept while
  ``winner >= next`` and replaced otherwise. A NaN is never kept past the next element, so a
  window holding NaN (whose output is NaN) sends its gradient to the first maximum of the
  elements after its last NaN, or to that NaN if it is the window's last element. (With NaN
  the select is not associative: this is the row-major order XLA reduces in on CPU.)
  **Residuals**: the winner's offset in its window, one ``uint8`` per output (``int32``
  when a window has more than 256 elements) -- not the input, and not an input-sized mask
  (which would also lose the multiplicity of overlapping windows). For 2x2/stride 2 that is
  1/16 of the float32 input's bytes.
* ``avg_pool2d``: ``y[i] = (1 / count[i]) sum_a x_pad[i s + a]`` with ``count = k_h k_w``
  (``count_include_pad=True``, the default, as PyTorch) or the number of real elements in
  the window (``count_include_pad=False``). Backward: every element of window ``i``
  receives ``dy[i] / count[i]``: ``dx = window_sum(dilate_s(dy / count))`` with full
  padding, a transposed "convolution" with a kernel of ones. No residuals besides shapes.
* ``global_avg_pool``: ``y[n, c] = mean_p x[n, p, c]``; ``dx[n, p, c] = dy[n, c] / P``.

Input shapes are static, so the backward rules receive ``x``'s spatial shape as a static
argument instead of saving anything. Custom VJPs are reverse-mode only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp
from jax import lax

from jaxbp import reference
from jaxbp.core import Array, accumulation_dtype, as_float_array, define_op
from jaxbp.ops._spatial_checks import check_padding, require_windows_fit, spatial_ints
from jaxbp.reference.conv import Pairs
from jaxbp.reference.pooling import pool_geometry, window_counts, window_sum
from jaxbp.validation import static_bool


class MaxPoolResiduals(NamedTuple):
    argmax: Array  # (N, *out_spatial, C) uint8/int32: row-major offset of each window's winner


def _offsets(window: Sequence[int]) -> list[tuple[int, ...]]:
    """Every offset in a window, in row-major order."""
    return list(itertools.product(*(range(k) for k in window)))


def _offset_dtype(window: Sequence[int]) -> Any:
    return jnp.uint8 if math.prod(window) <= 256 else jnp.int32


def _window_elements(
    x_pad: Array,
    offset: tuple[int, ...],
    out_spatial: Sequence[int],
    stride: Sequence[int],
) -> Array:
    """``x_pad[:, i s + a, ..., :]`` for every window ``i``: the element at ``offset`` of each window."""
    start = (0, *offset, 0)
    limit = (
        x_pad.shape[0],
        *(a + (m - 1) * s + 1 for a, m, s in zip(offset, out_spatial, stride)),
        x_pad.shape[-1],
    )
    return lax.slice(x_pad, start, limit, (1, *stride, 1))


def _scatter_to_input(
    g: Array,
    offset: tuple[int, ...],
    spatial: Sequence[int],
    stride: Sequence[int],
    padding: Pairs,
) -> Array:
    """The input-shaped array holding ``g[i]`` at position ``i s - lo + a`` (zero elsewhere):
    ``g`` dilated by the stride and shifted by the offset, padding cropped (``lax.pad`` with
    interior ``s - 1`` and possibly negative edges)."""
    config = [(0, 0, 0)]
    for a, n, m, s, (lo, _) in zip(offset, spatial, g.shape[1:-1], stride, padding):
        first = a - lo  # input position of window 0's element at offset a
        config.append((first, n - 1 - (first + (m - 1) * s), s - 1))
    config.append((0, 0, 0))
    return lax.pad(g, jnp.zeros((), g.dtype), config)


# ------------------------------------------------------------------------- max pool


def _max_pool_primal(x, window, stride, padding, spatial):
    """``reference.max_pool2d``; ``spatial`` (x's spatial shape) is static, for the backward."""
    return reference.max_pool2d(x, window, stride, padding)


def _max_pool_fwd(x, window, stride, padding, spatial):
    y = reference.max_pool2d(x, window, stride, padding)
    x_pad = lax.pad(
        x,
        jnp.array(-jnp.inf, x.dtype),
        [(0, 0, 0), *((lo, hi, 0) for lo, hi in padding), (0, 0, 0)],
    )
    elements = (_window_elements(x_pad, offset, y.shape[1:-1], stride) for offset in _offsets(window))
    winner = next(elements)
    argmax = jnp.zeros(y.shape, _offset_dtype(window))
    for index, element in enumerate(elements, start=1):
        # XLA's select rule, which autodiff of reduce_window uses: keep the winner while winner >= element
        take = ~(winner >= element)
        winner = jnp.where(take, element, winner)
        argmax = jnp.where(take, jnp.asarray(index, argmax.dtype), argmax)
    return y, MaxPoolResiduals(argmax)


def _max_pool_bwd(window, stride, padding, spatial, residuals, dy):
    """Forward: y[i] = max_a x_pad[i s + a] (window offsets a in row-major order).
    dL/dx[p] = sum over windows i with p = i s - lo + a*(i) of dy[i],
    a*(i) = the offset the row-major select ends on (the first maximum; see the NaN rule).
    One term per offset a: dy masked to the windows that a won, dilated by s and shifted by a - lo.
    """
    dx = jnp.zeros((dy.shape[0], *spatial, dy.shape[-1]), dy.dtype)
    for index, offset in enumerate(_offsets(window)):
        won = jnp.where(residuals.argmax == index, dy, jnp.zeros((), dy.dtype))
        dx = dx + _scatter_to_input(won, offset, spatial, stride, padding)
    return (dx,)


_max_pool = define_op(_max_pool_primal, _max_pool_fwd, _max_pool_bwd, nondiff_argnums=(1, 2, 3, 4))


# ------------------------------------------------------------------------- avg pool


def _avg_pool_primal(x, window, stride, padding, count_include_pad, spatial):
    """``reference.avg_pool2d``; ``spatial`` (x's spatial shape) is static, for the backward."""
    return reference.avg_pool2d(x, window, stride, padding, count_include_pad)


def _avg_pool_fwd(x, window, stride, padding, count_include_pad, spatial):
    return reference.avg_pool2d(x, window, stride, padding, count_include_pad), ()


def _avg_pool_bwd(window, stride, padding, count_include_pad, spatial, residuals, dy):
    """Forward: y[i] = (1 / count[i]) sum_a x_pad[i s + a].
    dL/dx[p] = sum over windows i containing p of dy[i] / count[i]
             = window_sum(g_full)[p],  g = dy / count dilated by s, placed at i s - lo, padded by k - 1
    (a full correlation of dy / count with a window of ones).
    """
    acc = accumulation_dtype(dy.dtype)
    count = float(math.prod(window)) if count_include_pad else window_counts(spatial, window, stride, padding)
    g = dy.astype(acc) / count
    config = [(0, 0, 0)]
    for k, n, m, s, (lo, _) in zip(window, spatial, g.shape[1:-1], stride, padding):
        config.append((k - 1 - lo, n + lo - (m - 1) * s - 1, s - 1))
    config.append((0, 0, 0))
    g_full = lax.pad(g, jnp.zeros((), acc), config)
    dx = window_sum(g_full, window, (1,) * len(window), ((0, 0),) * len(window))
    return (dx.astype(dy.dtype),)


_avg_pool = define_op(_avg_pool_primal, _avg_pool_fwd, _avg_pool_bwd, nondiff_argnums=(1, 2, 3, 4, 5))


# ------------------------------------------------------------------ global avg pool


def _global_avg_pool_primal(x, spatial):
    """``reference.global_avg_pool``; ``spatial`` (x's spatial shape) is static, for the backward."""
    return reference.global_avg_pool(x)


def _global_avg_pool_fwd(x, spatial):
    return reference.global_avg_pool(x), ()


def _global_avg_pool_bwd(spatial, residuals, dy):
    """Forward: y[n, c] = (1 / P) sum_p x[n, p, c] over the P = prod(spatial) positions.
    dL/dx[n, p, c] = dy[n, c] / P.
    """
    scale = jnp.asarray(1.0 / math.prod(spatial), accumulation_dtype(dy.dtype))
    per_position = (dy * scale).astype(dy.dtype).reshape(dy.shape[0], *(1,) * len(spatial), dy.shape[-1])
    return (jnp.broadcast_to(per_position, (dy.shape[0], *spatial, dy.shape[-1])),)


_global_avg_pool = define_op(
    _global_avg_pool_primal,
    _global_avg_pool_fwd,
    _global_avg_pool_bwd,
    nondiff_argnums=(1,),
)


# ----------------------------------------------------------------------- public ops


def _checked_pool_args(op: str, x: Any, window: Any, stride: Any, padding: Any) -> tuple[Array, tuple, tuple, Pairs]:
    x = as_float_array(op, "x", x)
    if x.ndim != 4:
        raise ValueError(f"{op}: x must have rank 4 (N, H, W, C), got shape {tuple(x.shape)}")
    window = spatial_ints(op, "window", window, 2)
    stride = window if stride is None else spatial_ints(op, "stride", stride, 2)
    padding = check_padding(op, padding, 2)
    window, stride, pads = pool_geometry(x.shape, window, stride, padding)
    for (lo, hi), k in zip(pads, window):
        if lo >= k or hi >= k:
            raise ValueError(f"{op}: padding {pads} must be smaller than the window {window} on each side")
    require_windows_fit(op, x.shape, window, stride, (1, 1), pads, "window")
    return x, window, stride, pads


def max_pool2d(x: Array, window: Any, stride: Any = None, padding: Any = "VALID") -> Array:
    """Max over each ``window`` of ``x: (N, H, W, C)`` (padding counts as ``-inf``).

    Args:
      x: ``(N, H, W, C)``.
      window: int or ``(kh, kw)``.
      stride: int or pair (default: the window, i.e. non-overlapping).
      padding: "VALID" (default), "SAME", an int or ``((lo, hi), (lo, hi))``; each side < window.
    Returns:
      ``(N, H', W', C)`` with ``H' = floor((H + lo + hi - kh) / sh) + 1``.

    Gradient: to the first (row-major) maximal element of each window; see the module docstring.
    """
    x, window, stride, pads = _checked_pool_args("max_pool2d", x, window, stride, padding)
    return _max_pool(x, window, stride, pads, tuple(x.shape[1:3]))


def avg_pool2d(
    x: Array,
    window: Any,
    stride: Any = None,
    padding: Any = "VALID",
    *,
    count_include_pad: bool = True,
) -> Array:
    """Mean over each ``window`` of ``x: (N, H, W, C)``, padding counted as zeros.

    Args:
      x, window, stride, padding: as :func:`max_pool2d`.
      count_include_pad: divide by ``kh kw`` (True, PyTorch's default) or by the number of
        real (unpadded) elements in each window (False).
    Returns:
      ``(N, H', W', C)``.
    """
    count_include_pad = static_bool("avg_pool2d", "count_include_pad", count_include_pad)
    x, window, stride, pads = _checked_pool_args("avg_pool2d", x, window, stride, padding)
    return _avg_pool(x, window, stride, pads, count_include_pad, tuple(x.shape[1:3]))


def global_avg_pool(x: Array) -> Array:
    """Mean over every spatial position: ``(N, *spatial, C) -> (N, C)`` (NHWC, NWC, ...).

    Gradient: ``dx[n, p, c] = dy[n, c] / P`` for each of the ``P`` positions.
    """
    x = as_float_array("global_avg_pool", "x", x)
    if x.ndim < 3:
        raise ValueError(f"global_avg_pool: x must have rank >= 3 (N, *spatial, C), got shape {tuple(x.shape)}")
    if any(d == 0 for d in x.shape[1:-1]):
        raise ValueError(f"global_avg_pool: x has an empty spatial axis, shape {tuple(x.shape)}")
    return _global_avg_pool(x, tuple(x.shape[1:-1]))
