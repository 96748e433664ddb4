"""Combinators: layers made of layers. Params (and state) are tuples, one entry per child."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax

from jaxbp import ops
from jaxbp.core import Array, Shape
from jaxbp.nn._contract import InitFn, Layer, Params, State, no_state


def _child_kwargs(kwargs: dict, index: int) -> dict:
    """The kwargs for child ``index``: its own key, everything else shared."""
    key = kwargs.get("key")
    if key is None:
        return kwargs
    return {**kwargs, "key": jax.random.fold_in(key, index)}


def _combine(init: InitFn, forward: Callable, children: Sequence[Layer], groups: Callable) -> Layer:
    """A combinator layer: stateful iff a child is; its state is the tuple of its children's."""
    if not any(child.stateful for child in children):
        return Layer(init, forward, no_state, groups)

    def init_state(params: Params) -> State:
        return tuple(child.init_state(p) for child, p in zip(children, params))

    return Layer(init, forward, init_state, groups)


def _concatenated_groups(children: Sequence[Layer]) -> Callable:
    def groups(params: Params) -> list[tuple[str, Params]]:
        return [group for child, p in zip(children, params) for group in child.parameter_groups(p)]

    return groups


def serial(*layers: Layer) -> Layer:
    """Apply ``layers`` one after the other; params (and state) are tuples, one per layer."""
    if not layers:
        raise ValueError("serial: needs at least one layer")
    for index, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(
                f"serial: argument {index} is a {type(layer).__name__}, not an nn.Layer "
                "(did you forget to call a factory, e.g. nn.relu()?)"
            )

    def init(key: Array, input_shape: Shape) -> tuple[Params, Shape]:
        params, shape = [], tuple(input_shape)
        for layer, layer_key in zip(layers, jax.random.split(key, len(layers))):
            layer_params, shape = layer.init(layer_key, shape)
            params.append(layer_params)
        return tuple(params), shape

    def forward(params: Params, x: Array, state: State, **kwargs: Any) -> tuple[Array, State]:
        state = state or tuple(() for _ in layers)
        new_state = []
        for index, (layer, layer_params, layer_state) in enumerate(zip(layers, params, state)):
            x, layer_state = layer.forward(layer_params, x, layer_state, **_child_kwargs(kwargs, index))
            new_state.append(layer_state)
        return x, tuple(new_state) if any(layer.stateful for layer in layers) else ()

    return _combine(init, forward, layers, _concatenated_groups(layers))


def residual(*layers: Layer, projection: Layer | None = None) -> Layer:
    """``y = x + f(x)`` with ``f = serial(*layers)``, or ``y = P(x) + f(x)`` with a ``projection``
    layer ``P`` (a 1x1 ``nn.conv2d`` with the block's stride, or an ``nn.dense``) for blocks that
    change the shape; params (and state) are ``(f's,)`` or ``(f's, P's)``.

    Backward (the seeds' skip rule): ``dL/dx = dL/dy + (df/dx)^T dL/dy``, and with a projection
    ``dL/dx = (dP/dx)^T dL/dy + (df/dx)^T dL/dy``.
    """
    block = serial(*layers)
    children = [block] if projection is None else [block, projection]
    if projection is not None and not isinstance(projection, Layer):
        raise TypeError(
            f"residual: projection must be an nn.Layer (e.g. nn.conv2d(c, 1)), got {type(projection).__name__}"
        )

    def init(key: Array, input_shape: Shape) -> tuple[Params, Shape]:
        # without a projection the block gets ``key`` itself (as before projections existed)
        block_key, projection_key = (key, key) if projection is None else jax.random.split(key)
        params, shape = block.init(block_key, input_shape)
        all_params: tuple[Params, ...]
        if projection is None:
            skip_shape, what = tuple(input_shape), "a skip connection needs equal input and output shapes"
            all_params = (params,)
        else:
            projection_params, skip_shape = projection.init(projection_key, input_shape)
            what = f"the projection maps it to {tuple(skip_shape)}"
            all_params = (params, projection_params)
        if tuple(shape) != tuple(skip_shape):
            raise ValueError(
                f"residual: the block maps shape {tuple(input_shape)} to {tuple(shape)}; {what}"
                + ("" if projection is not None else " (pass projection= for a block that changes the shape)")
            )
        return all_params, shape

    def forward(params: Params, x: Array, state: State, **kwargs: Any) -> tuple[Array, State]:
        state = state or tuple(() for _ in children)
        fx, block_state = block.forward(params[0], x, state[0], **_child_kwargs(kwargs, 0))
        new_state = [block_state]
        if projection is not None:
            x, projection_state = projection.forward(params[1], x, state[1], **_child_kwargs(kwargs, 1))
            new_state.append(projection_state)
        return ops.add(x, fx), tuple(new_state) if any(child.stateful for child in children) else ()

    return _combine(init, forward, children, _concatenated_groups(children))


def _holds_only_arrays(value: Any) -> bool:
    """True for an array or a non-empty pytree of arrays (keys, taps); False for Python values."""
    leaves = jax.tree_util.tree_leaves(value)
    return bool(leaves) and all(isinstance(leaf, jax.Array) for leaf in leaves)


def checkpoint(layer: Layer) -> Layer:
    """``layer`` rematerialised with :func:`jax.checkpoint`: its activations are
    recomputed in the backward pass instead of stored. Same values, same gradients,
    less memory stored for the backward. Array kwargs (keys, taps) become arguments of
    the checkpointed function, other kwargs stay static; values a :func:`tap` records
    inside are returned from it and copied into the caller's ``record`` dict."""

    def forward(params: Params, x: Array, state: State, *, record: dict | None = None, **kwargs: Any):
        arrays = {k: v for k, v in kwargs.items() if _holds_only_arrays(v)}
        static = {k: v for k, v in kwargs.items() if k not in arrays}

        def run(params: Params, x: Array, state: State, arrays: dict):
            inner_record: dict | None = {} if record is not None else None
            y, new_state = layer.forward(params, x, state, record=inner_record, **arrays, **static)
            return y, new_state, inner_record

        y, new_state, inner_record = jax.checkpoint(run)(params, x, state, arrays)
        if record is not None:
            record.update(inner_record)
        return y, new_state

    return Layer(layer.init, forward, layer.init_state, layer.parameter_groups)
