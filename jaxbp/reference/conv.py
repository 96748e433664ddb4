"""Convolutions (reference forward math): conv1d, conv2d and the transposed conv2d.

Layouts: inputs are channels-last (``NWC`` for 1-d, ``NHWC`` for 2-d) and kernels are
``(*kernel_size, in_channels // groups, out_channels)`` (``WIO`` / ``HWIO``). Along one
spatial axis, with input size ``n``, kernel size ``k``, stride ``s``, dilation ``d`` and
padding ``(lo, hi)``, the dilated kernel spans ``k_d = d (k - 1) + 1`` positions and

    y[i] = sum_j w[j] x_pad[i s + j d],        m = floor((n + lo + hi - k_d) / s) + 1 outputs

(a cross-correlation, as in every deep-learning framework). ``padding`` is ``"VALID"``
(no padding), ``"SAME"`` (``m = ceil(n / s)``, the extra row at the end, as in
``lax``/TensorFlow), an int (both sides), or one ``(lo, hi)`` pair per spatial axis.

:func:`convolve_transpose` is the adjoint of :func:`convolve` in ``x``: the map ``dy ->
dL/dx`` of a convolution. It is itself a convolution: ``dy`` dilated by the stride
(``lhs_dilation``), the kernel flipped in space with its in/out channel axes swapped
(per group), and padding ``(k_d - 1 - lo, k_d - 1 - hi + output_padding)``.
Nothing here validates input; :mod:`jaxbp.ops.conv` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import jax.numpy as jnp
from jax import lax

from jaxbp.core import Array, accumulation_dtype

Pairs = tuple[tuple[int, int], ...]
_SPATIAL_LETTERS = {1: "W", 2: "HW", 3: "DHW"}


def spatial_tuple(value: int | Sequence[int], num_spatial: int) -> tuple[int, ...]:
    """``value`` repeated per spatial axis when it is an int, else as a tuple."""
    return (value,) * num_spatial if isinstance(value, int) else tuple(value)


def dilated_size(kernel: int, dilation: int) -> int:
    """Positions a kernel of ``kernel`` taps spans with ``dilation``: ``d (k - 1) + 1``."""
    return dilation * (kernel - 1) + 1


def padding_pairs(
    padding: str | int | Sequence[Any],
    in_spatial: Sequence[int],
    window: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int] | None = None,
) -> Pairs:
    """Explicit ``(lo, hi)`` padding per spatial axis for any accepted ``padding`` form."""
    num_spatial = len(in_spatial)
    dilation = dilation or (1,) * num_spatial
    if isinstance(padding, str):
        spans = [dilated_size(k, d) for k, d in zip(window, dilation)]
        return cast(Pairs, tuple(tuple(p) for p in lax.padtype_to_pads(in_spatial, spans, stride, padding.upper())))
    if isinstance(padding, int):
        return ((padding, padding),) * num_spatial
    # ``str`` was handled above, but mypy does not narrow it out of ``Sequence[Any]``.
    return tuple((int(lo), int(hi)) for lo, hi in cast("Sequence[Sequence[Any]]", padding))


def output_size(n: int, k: int, stride: int, dilation: int, pad: tuple[int, int]) -> int:
    """``floor((n + lo + hi - k_d) / s) + 1``: outputs of a convolution or pooling along one axis."""
    return (n + pad[0] + pad[1] - dilated_size(k, dilation)) // stride + 1


def dimension_numbers(num_spatial: int) -> tuple[str, str, str]:
    """``("NHWC", "HWIO", "NHWC")`` for 2-d (``NWC``/``WIO`` for 1-d)."""
    letters = _SPATIAL_LETTERS[num_spatial]
    return f"N{letters}C", f"{letters}IO", f"N{letters}C"


def transpose_kernel(w: Array, groups: int) -> Array:
    """The kernel of the adjoint convolution: flipped in space, in/out channels swapped per group.

    ``w: (*k, cin // G, cout) -> (*k, cout // G, cin)`` with
    ``w_t[..., j, g cin/G + i] = w[reversed ..., i, g cout/G + j]``.
    """
    *kernel, cin_per_group, cout = w.shape
    flipped = w[(slice(None, None, -1),) * len(kernel)]
    grouped = flipped.reshape(*kernel, cin_per_group, groups, cout // groups)
    axes = tuple(range(len(kernel)))
    swapped = grouped.transpose(*axes, len(kernel) + 2, len(kernel) + 1, len(kernel))
    return swapped.reshape(*kernel, cout // groups, groups * cin_per_group)


def convolve(
    x: Array,
    w: Array,
    stride: tuple[int, ...],
    padding: Pairs,
    dilation: tuple[int, ...],
    groups: int,
) -> Array:
    """Unbiased convolution ``y[i] = sum_j w[j] x_pad[i s + j d]`` (channels-last), accumulated in float32
    for bf16/f16 and returned in the promoted dtype of ``x`` and ``w``."""
    dtype = jnp.result_type(x.dtype, w.dtype)
    y = lax.conv_general_dilated(
        x.astype(dtype),
        w.astype(dtype),
        window_strides=stride,
        padding=padding,
        rhs_dilation=dilation,
        dimension_numbers=dimension_numbers(x.ndim - 2),
        feature_group_count=groups,
        preferred_element_type=accumulation_dtype(dtype),
    )
    return y.astype(dtype)


def transpose_padding(
    window: Sequence[int],
    dilation: Sequence[int],
    padding: Pairs,
    output_padding: Sequence[int],
) -> Pairs:
    """Padding of the adjoint convolution: ``(k_d - 1 - lo, k_d - 1 - hi + output_padding)`` per axis."""
    spans = [dilated_size(k, d) for k, d in zip(window, dilation)]
    return tuple(
        (span - 1 - lo, span - 1 - hi + extra) for span, (lo, hi), extra in zip(spans, padding, output_padding)
    )


def convolve_transpose(
    x: Array,
    w: Array,
    stride: tuple[int, ...],
    padding: Pairs,
    dilation: tuple[int, ...],
    groups: int,
    output_padding: tuple[int, ...],
) -> Array:
    """The adjoint of ``convolve(., w, stride, padding, dilation, groups)`` applied to ``x``.

    ``w`` is the kernel of that convolution, ``(*k, cout // G, cin)`` with ``x`` holding ``cin``
    channels; the result has ``cout`` channels and spatial size ``(m - 1) s + k_d - lo - hi +
    output_padding`` per axis (``m`` = input size).
    """
    dtype = jnp.result_type(x.dtype, w.dtype)
    y = lax.conv_general_dilated(
        x.astype(dtype),
        transpose_kernel(w.astype(dtype), groups),
        window_strides=(1,) * len(stride),
        padding=transpose_padding(w.shape[:-2], dilation, padding, output_padding),
        lhs_dilation=stride,
        rhs_dilation=dilation,
        dimension_numbers=dimension_numbers(x.ndim - 2),
        feature_group_count=groups,
        preferred_element_type=accumulation_dtype(dtype),
    )
    return y.astype(dtype)


def _geometry(
    x: Array, w: Array, stride: Any, padding: Any, dilation: Any
) -> tuple[tuple[int, ...], Pairs, tuple[int, ...]]:
    num_spatial = x.ndim - 2
    stride = spatial_tuple(stride, num_spatial)
    dilation = spatial_tuple(dilation, num_spatial)
    return (
        stride,
        padding_pairs(padding, x.shape[1:-1], w.shape[:-2], stride, dilation),
        dilation,
    )


def _add_bias(y: Array, b: Array) -> Array:
    return y + b.astype(y.dtype)


def conv_nd(
    params: dict,
    x: Array,
    stride: Any = 1,
    padding: Any = "SAME",
    dilation: Any = 1,
    groups: int = 1,
) -> Array:
    """Channels-last convolution of any spatial rank plus bias: ``y = convolve(x, w) + b``.

    ``params = {"w": (*k, cin // groups, cout), "b": (cout,)}``, ``x: (N, *spatial, cin)``.
    """
    stride, pads, dilation = _geometry(x, params["w"], stride, padding, dilation)
    return _add_bias(convolve(x, params["w"], stride, pads, dilation, groups), params["b"])


def conv2d(
    params: dict,
    x: Array,
    stride: Any = 1,
    padding: Any = "SAME",
    dilation: Any = 1,
    groups: int = 1,
) -> Array:
    """2-d convolution: ``x: (N, H, W, cin)``, ``w: (kh, kw, cin // groups, cout)``, ``b: (cout,)``."""
    return conv_nd(params, x, stride, padding, dilation, groups)


def conv1d(
    params: dict,
    x: Array,
    stride: Any = 1,
    padding: Any = "SAME",
    dilation: Any = 1,
    groups: int = 1,
) -> Array:
    """1-d convolution: ``x: (N, W, cin)``, ``w: (k, cin // groups, cout)``, ``b: (cout,)``."""
    return conv_nd(params, x, stride, padding, dilation, groups)


def conv_transpose2d(
    params: dict,
    x: Array,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    output_padding: Any = 0,
) -> Array:
    """Transposed 2-d convolution plus bias: the adjoint of :func:`conv2d` in its input.

    ``params = {"w": (kh, kw, cout // groups, cin), "b": (cout,)}`` -- ``w`` is the HWIO kernel
    of the conv2d being transposed (which maps ``cout`` channels to ``cin``); ``x: (N, H, W, cin)``.
    Output size per axis: ``(H - 1) s - lo - hi + d (k - 1) + 1 + output_padding`` (PyTorch's
    ``ConvTranspose2d`` formula) for int, pair and ``"VALID"`` (= 0) padding; ``"SAME"`` gives
    ``H s`` (see :func:`transpose_geometry`).
    """
    w = params["w"]
    stride, dilation = spatial_tuple(stride, 2), spatial_tuple(dilation, 2)
    pads, output_padding = transpose_geometry(padding, x.shape[1:3], w.shape[:2], stride, dilation, output_padding)
    return _add_bias(
        convolve_transpose(x, w, stride, pads, dilation, groups, output_padding),
        params["b"],
    )


def transpose_geometry(
    padding: Any,
    in_spatial: Sequence[int],
    window: Sequence[int],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    output_padding: Any,
) -> tuple[Pairs, tuple[int, ...]]:
    """Explicit padding pairs and output padding of a transposed convolution.

    ``"SAME"``: the transposed conv maps ``m`` to ``n = m s`` (the size "SAME" maps back to
    ``m``); its padding is that conv's and ``output_padding`` is what makes the size exact.
    Any other form is used as given (``"VALID"`` = 0).
    """
    output_padding = spatial_tuple(output_padding, len(in_spatial))
    if not (isinstance(padding, str) and padding.upper() == "SAME"):
        return padding_pairs(padding, in_spatial, window, stride, dilation), output_padding
    sizes = [m * s for m, s in zip(in_spatial, stride)]
    pads = padding_pairs("SAME", sizes, window, stride, dilation)
    spans = [dilated_size(k, d) for k, d in zip(window, dilation)]
    extra = tuple(
        n - ((m - 1) * s + span - lo - hi) for n, m, s, span, (lo, hi) in zip(sizes, in_spatial, stride, spans, pads)
    )
    return pads, extra
