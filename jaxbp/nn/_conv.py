"""Convolution layers: ``nn.conv2d``, ``nn.conv1d``, ``nn.conv_transpose2d`` (channels-last)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxbp import ops
from jaxbp.core import Array, Shape
from jaxbp.init import DenseInit, Initializer, dense_init
from jaxbp.nn._contract import Layer, Params, State, of_kind
from jaxbp.validation import positive_int


def _output_shape(op: Callable, params: Params, input_shape: Shape, options: dict) -> Shape:
    """The op's output shape for ``input_shape``, found by tracing (errors name the op)."""
    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    return tuple(jax.eval_shape(lambda p, x: op(p, x, **options), params, x).shape)


def _conv_layer(
    name: str,
    op: Callable,
    num_spatial: int,
    out_channels: int,
    kernel_size: int | tuple[int, ...],
    init: str | DenseInit | Initializer,
    options: dict[str, Any],
    transposed: bool = False,
) -> Layer:
    out_channels = positive_int(name, "out_channels", out_channels)
    kernel = (kernel_size,) * num_spatial if isinstance(kernel_size, int) else tuple(kernel_size)
    if len(kernel) != num_spatial or not all(isinstance(k, int) and k > 0 for k in kernel):
        raise ValueError(f"{name}: kernel_size must be a positive int or {num_spatial} of them, got {kernel_size!r}")
    scheme = dense_init(init)
    groups = options.get("groups", 1)

    def init_fn(key: Array, input_shape: Shape) -> tuple[Params, Shape]:
        if len(input_shape) != num_spatial + 2:
            raise ValueError(f"{name}: input_shape must have rank {num_spatial + 2}, got {tuple(input_shape)}")
        in_channels = int(input_shape[-1])
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{name}: groups={groups} must divide in ({in_channels}) and out ({out_channels}) channels"
            )
        # conv: (*k, cin / G, cout); transposed: the kernel of the conv it transposes, (*k, cout / G, cin)
        w_shape = (
            (*kernel, out_channels // groups, in_channels)
            if transposed
            else (*kernel, in_channels // groups, out_channels)
        )
        w_key, b_key = jax.random.split(key)
        params = {"w": scheme.weights(w_key, w_shape), "b": scheme.bias(b_key, (out_channels,))}
        return params, _output_shape(op, params, input_shape, options)

    def forward(params: Params, x: Array, state: State, **kwargs: Any) -> tuple[Array, State]:
        return op(params, x, **options), state

    return Layer(init_fn, forward, of_kind(name))


def conv2d(
    out_channels: int,
    kernel_size: int | tuple[int, int],
    *,
    stride: Any = 1,
    padding: Any = "SAME",
    dilation: Any = 1,
    groups: int = 1,
    init: str | DenseInit | Initializer = "he_normal",
) -> Layer:
    """A 2-d convolution layer on NHWC input: :func:`jaxbp.ops.conv2d` with
    ``params = {"w": (kh, kw, cin // groups, cout), "b": (cout,)}``. ``init`` as :func:`jaxbp.nn.dense`
    (fans of an HWIO kernel: ``fan_in = kh kw cin / groups``); He normal by default."""
    options = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return _conv_layer("conv2d", ops.conv2d, 2, out_channels, kernel_size, init, options)


def conv1d(
    out_channels: int,
    kernel_size: int,
    *,
    stride: Any = 1,
    padding: Any = "SAME",
    dilation: Any = 1,
    groups: int = 1,
    init: str | DenseInit | Initializer = "he_normal",
) -> Layer:
    """A 1-d convolution layer on NWC input: :func:`jaxbp.ops.conv1d`, ``w: (k, cin // groups, cout)``."""
    options = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return _conv_layer("conv1d", ops.conv1d, 1, out_channels, kernel_size, init, options)


def conv_transpose2d(
    out_channels: int,
    kernel_size: int | tuple[int, int],
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    output_padding: Any = 0,
    init: str | DenseInit | Initializer = "he_normal",
) -> Layer:
    """A transposed 2-d convolution layer (NHWC): :func:`jaxbp.ops.conv_transpose2d` with
    ``params = {"w": (kh, kw, cout // groups, cin), "b": (cout,)}``."""
    options = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    options["output_padding"] = output_padding
    return _conv_layer("conv_transpose2d", ops.conv_transpose2d, 2, out_channels, kernel_size, init, options, True)
