"""Convolutions with hand-written backward rules, each written as another convolution.

Along one spatial axis (input size ``n``, kernel ``k``, stride ``s``, dilation ``d``,
padding ``(lo, hi)``, ``m`` outputs), the forward of ``conv2d``/``conv1d`` is

    y[i, o] = b[o] + sum_{j, c} w[j, c, o] x_pad[i s + j d, c]

and its two derivatives are convolutions again (tutorial document 000, section 6):

* ``dL/dx = conv(dilate_s(dy), flip(w)^T)``: a *full* convolution of the output gradient,
  dilated by the stride (``lhs_dilation = s``), with the kernel flipped in space and its
  in/out channels swapped (per group), kernel dilation ``d``, padding ``(k_d - 1 - lo,
  k_d - 1 - hi + r)`` where ``k_d = d (k - 1) + 1`` and ``r = n + lo + hi - k_d - (m - 1) s``
  counts the trailing input rows no window reached. That is the transposed convolution
  :func:`jaxbp.reference.convolve_transpose`.
* ``dL/dw[j, c, o] = sum_{n, i} x_pad[n, i s + j d, c] dy[n, i, o]``: a *valid* correlation
  of the input with the output gradient, in which batch and channels trade roles (``x`` as
  ``CHWN``, ``dy`` as ``IHWO``, the result as ``HWNC``) and stride and dilation trade places
  (window stride ``d``, kernel dilation ``s``); with ``groups = G`` the input channels are
  split into ``G`` batch groups (``batch_group_count``).
* ``dL/db[o] = sum_{n, i} dy[n, i, o]``.

``conv_transpose2d`` is the adjoint of ``conv2d`` in its input, so its backward is
``conv2d`` itself: ``dL/dx = conv2d(dy, w)`` (same stride, padding, dilation, groups, no
bias) and ``dL/dw`` is conv2d's kernel gradient with the roles of input and output
gradient exchanged (``x <- dy``, ``dy <- x``).

Residuals: the input ``x`` and the kernel ``w`` (the bias is not needed). Sums are
accumulated in float32 for bf16/f16. Custom VJPs are reverse-mode only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp
from jax import lax

from jaxbp import reference
from jaxbp.core import (
    Array,
    accumulation_dtype,
    define_op,
)
from jaxbp.ops._spatial_checks import (
    check_bias,
    check_channels,
    check_groups,
    check_padding,
    checked_params,
    explicit_padding,
    require_windows_fit,
    spatial_ints,
)
from jaxbp.reference.conv import (
    Pairs,
    conv_nd,
    dilated_size,
    transpose_geometry,
)

_LETTERS = {1: "W", 2: "HW"}


class ConvResiduals(NamedTuple):
    x: Array  # (N, *spatial, cin) the layer input (for conv_transpose2d: its input, the "dy" of conv2d)
    w: Array  # (*k, cin // G, cout) the kernel


def _bias_gradient(dy: Array, b_dtype: Any) -> Array:
    return jnp.sum(dy, axis=tuple(range(dy.ndim - 1)), dtype=accumulation_dtype(dy.dtype)).astype(b_dtype)


def _residue(n: int, m: int, k: int, stride: int, dilation: int, pad: tuple[int, int]) -> int:
    """``r = n + lo + hi - k_d - (m - 1) s``: padded rows after the last window (0 <= r < s)."""
    return n + pad[0] + pad[1] - dilated_size(k, dilation) - (m - 1) * stride


def _residues(
    x_spatial: Sequence[int],
    y_spatial: Sequence[int],
    window: Sequence[int],
    stride,
    dilation,
    padding,
) -> tuple[int, ...]:
    return tuple(_residue(*dims) for dims in zip(x_spatial, y_spatial, window, stride, dilation, padding))


def kernel_gradient(
    x: Array,
    dy: Array,
    window: Sequence[int],
    stride,
    padding: Pairs,
    dilation,
    groups: int,
) -> Array:
    """``dw[j, c, o] = sum_{n, i} x_pad[n, i s + j d, c] dy[n, i, o]`` as one convolution.

    ``x`` is the batch of ``cin`` channels (lhs, read as ``C<spatial>N``), ``dy`` the kernel
    (``I<spatial>O``: batch is contracted, ``cout`` kept); the window moves by ``d`` and the
    "kernel" ``dy`` is dilated by ``s``. The high padding drops the ``r`` rows no window
    reached, so exactly ``k`` positions come out.
    """
    letters = _LETTERS[x.ndim - 2]
    y_spatial = dy.shape[1:-1]
    high = [
        hi - r
        for (_, hi), r in zip(
            padding,
            _residues(x.shape[1:-1], y_spatial, window, stride, dilation, padding),
        )
    ]
    dtype = jnp.result_type(x.dtype, dy.dtype)
    dw = lax.conv_general_dilated(
        x.astype(dtype),
        dy.astype(dtype),
        window_strides=dilation,
        padding=tuple((lo, h) for (lo, _), h in zip(padding, high)),
        rhs_dilation=stride,
        dimension_numbers=(f"C{letters}N", f"I{letters}O", f"{letters}NC"),
        batch_group_count=groups,
        preferred_element_type=accumulation_dtype(dtype),
    )
    return dw


# ------------------------------------------------------------------ conv (1-d and 2-d)


def _conv_fwd(params, x, stride, padding, dilation, groups):
    return conv_nd(params, x, stride, padding, dilation, groups), ConvResiduals(x, params["w"])


def _conv_bwd(stride, padding, dilation, groups, residuals, dy):
    """Forward: y[n, i, o] = b[o] + sum_{j, c} w[j, c, o] x_pad[n, i s + j d, c].
    dL/dx = convolve_transpose(dy, w)   (dy dilated by s, w flipped and channel-swapped, full padding)
    dL/dw[j, c, o] = sum_{n, i} x_pad[n, i s + j d, c] dy[n, i, o]   (kernel_gradient)
    dL/db[o] = sum_{n, i} dy[n, i, o]
    """
    x, w = residuals
    window = w.shape[:-2]
    extra = _residues(x.shape[1:-1], dy.shape[1:-1], window, stride, dilation, padding)
    dx = reference.convolve_transpose(dy, w, stride, padding, dilation, groups, extra)
    dw = kernel_gradient(x, dy, window, stride, padding, dilation, groups)
    return {"w": dw.astype(w.dtype), "b": _bias_gradient(dy, w.dtype)}, dx.astype(x.dtype)


_conv = define_op(conv_nd, _conv_fwd, _conv_bwd, nondiff_argnums=(2, 3, 4, 5))


# ----------------------------------------------------------------- conv_transpose2d


def _conv_transpose_fwd(params, x, stride, padding, dilation, groups, output_padding):
    y = reference.conv_transpose2d(params, x, stride, padding, dilation, groups, output_padding)
    return y, ConvResiduals(x, params["w"])


def _conv_transpose_bwd(stride, padding, dilation, groups, output_padding, residuals, dy):
    """Forward: y = convolve_transpose(x, w) + b, the adjoint of x' -> convolve(x', w) (conv2d).
    Since <convolve_transpose(x, w), v> = <x, convolve(v, w)> for every v:
    dL/dx = convolve(dy, w)   (conv2d itself, same stride, padding, dilation, groups)
    dL/dw = kernel_gradient(dy, x)   (conv2d's kernel gradient with input dy and output gradient x)
    dL/db[o] = sum_{n, i} dy[n, i, o]
    """
    x, w = residuals
    dx = reference.convolve(dy, w, stride, padding, dilation, groups)
    dw = kernel_gradient(dy, x, w.shape[:-2], stride, padding, dilation, groups)
    return {"w": dw.astype(w.dtype), "b": _bias_gradient(dy, w.dtype)}, dx.astype(x.dtype)


_conv_transpose = define_op(
    reference.conv_transpose2d,
    _conv_transpose_fwd,
    _conv_transpose_bwd,
    nondiff_argnums=(2, 3, 4, 5, 6),
)


def _conv_nd(
    op: str,
    num_spatial: int,
    params: Any,
    x: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: Any,
) -> Array:
    w, b, x = checked_params(op, params, x, num_spatial)
    groups = check_groups(op, groups, x)
    if w.shape[-1] % groups:
        raise ValueError(
            f"{op}: groups={groups} does not divide the {w.shape[-1]} output channels of w {tuple(w.shape)}"
        )
    check_channels(op, x, w, w.shape[-2], groups)
    check_bias(op, b, w.shape[-1], w)
    stride = spatial_ints(op, "stride", stride, num_spatial)
    dilation = spatial_ints(op, "dilation", dilation, num_spatial)
    window = w.shape[:-2]
    pads = explicit_padding(op, padding, x.shape[1:-1], window, stride, dilation)
    require_windows_fit(op, x.shape, window, stride, dilation, pads, "kernel")
    return _conv({"w": w, "b": b}, x, stride, pads, dilation, groups)


# ------------------------------------------------------------------------ public ops


def conv2d(
    params: dict,
    x: Array,
    *,
    stride: Any = 1,
    padding: Any = "SAME",
    dilation: Any = 1,
    groups: int = 1,
) -> Array:
    """2-d convolution (cross-correlation) ``y[n,i,j,o] = b[o] + sum w[p,q,c,o] x_pad[n, i s + p d, j s + q d, c]``.

    Args:
      params: ``{"w": (kh, kw, cin // groups, cout), "b": (cout,)}`` (HWIO kernel).
      x: ``(N, H, W, cin)`` (NHWC).
      stride, dilation: int or ``(sh, sw)``, each >= 1.
      padding: ``"SAME"`` (output ``ceil(H / s)``), ``"VALID"``, an int, or ``((lo, hi), (lo, hi))``.
      groups: ``cin`` and ``cout`` split into ``groups`` independent convolutions
        (``groups = cin`` is depthwise).
    Returns:
      ``(N, H', W', cout)`` with ``H' = floor((H + lo + hi - d (kh - 1) - 1) / s) + 1``.

    Backward (see the module docstring): ``dx`` is the transposed convolution of ``dy`` with
    the flipped kernel, ``dw`` the correlation of ``x`` with ``dy``, ``db`` the sum of ``dy``.
    """
    return _conv_nd("conv2d", 2, params, x, stride, padding, dilation, groups)


def conv1d(
    params: dict,
    x: Array,
    *,
    stride: Any = 1,
    padding: Any = "SAME",
    dilation: Any = 1,
    groups: int = 1,
) -> Array:
    """1-d convolution ``y[n,i,o] = b[o] + sum_{j,c} w[j,c,o] x_pad[n, i s + j d, c]``.

    Args:
      params: ``{"w": (k, cin // groups, cout), "b": (cout,)}`` (WIO kernel).
      x: ``(N, W, cin)`` (NWC).
      stride, padding, dilation, groups: as :func:`conv2d`, one value (or pair) for the axis.
    Returns:
      ``(N, W', cout)``.
    """
    return _conv_nd("conv1d", 1, params, x, stride, padding, dilation, groups)


def conv_transpose2d(
    params: dict,
    x: Array,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    output_padding: Any = 0,
) -> Array:
    """Transposed 2-d convolution: the adjoint (in its input) of the conv2d with kernel ``w``, plus bias.

    Args:
      params: ``{"w": (kh, kw, cout // groups, cin), "b": (cout,)}``. ``w`` is the HWIO kernel of
        the conv2d being transposed (that conv2d maps ``cout`` channels to ``cin``). PyTorch's
        ``ConvTranspose2d.weight`` ``(cin, cout // groups, kh, kw)`` is ``w.transpose(3, 2, 0, 1)``,
        i.e. ``w = torch_weight.permute(2, 3, 1, 0)``.
      x: ``(N, H, W, cin)`` (NHWC).
      stride, dilation: int or pair, each >= 1.
      padding: int or pairs (PyTorch's ``padding``: removed from the output), ``"VALID"`` (= 0) or
        ``"SAME"`` (output ``H s``).
      output_padding: int or pair in ``[0, stride)``, added at the high end (PyTorch's
        ``output_padding``); only with int/pair/"VALID" padding.
    Returns:
      ``(N, H', W', cout)`` with ``H' = (H - 1) s - lo - hi + d (kh - 1) + 1 + output_padding``.

    Backward: ``dx = conv2d(dy, w)`` (no bias, same stride/padding/dilation/groups): the
    transposed convolution's backward is the convolution itself.
    """
    op = "conv_transpose2d"
    w, b, x = checked_params(op, params, x, 2)
    groups = check_groups(op, groups, x)
    if x.shape[-1] != w.shape[-1]:
        raise ValueError(
            f"{op}: x has {x.shape[-1]} channels (shape {tuple(x.shape)}) but w {tuple(w.shape)} expects {w.shape[-1]} "
            "(w is (kh, kw, cout // groups, cin))"
        )
    check_bias(op, b, w.shape[-2] * groups, w)
    stride = spatial_ints(op, "stride", stride, 2)
    dilation = spatial_ints(op, "dilation", dilation, 2)
    out_pad = spatial_ints(op, "output_padding", output_padding, 2, minimum=0)
    if any(extra >= s for extra, s in zip(out_pad, stride)):
        raise ValueError(f"{op}: output_padding must be < stride {stride}, got {output_padding!r}")
    if isinstance(padding, str) and padding.upper() == "SAME" and any(out_pad):
        raise ValueError(
            f'{op}: output_padding must be 0 with padding="SAME" (the output is H * stride), got {output_padding!r}'
        )
    padding = check_padding(op, padding, 2)
    if 0 in x.shape[1:3]:  # plain jnp's backward fails to lower here (a zero-size window)
        raise ValueError(f"{op}: x has an empty spatial axis, shape {tuple(x.shape)}")
    window = w.shape[:2]
    pads, out_pad = transpose_geometry(padding, x.shape[1:3], window, stride, dilation, out_pad)
    for axis, (m, k, s, d, (lo, hi), extra) in enumerate(zip(x.shape[1:3], window, stride, dilation, pads, out_pad)):
        if (m - 1) * s + dilated_size(k, d) + extra - lo - hi < 1:
            raise ValueError(
                f"{op}: padding {pads} leaves no output along spatial axis {axis} for input shape {tuple(x.shape)}"
            )
    return _conv_transpose({"w": w, "b": b}, x, stride, pads, dilation, groups, out_pad)
