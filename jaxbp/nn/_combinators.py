"""Combinators: layers made of layers. Params and state are tuples, one entry per child."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax

from jaxbp import ops
from jaxbp.core import Array, Shape
from jaxbp.nn._contract import ForwardFn, GroupsFn, InitFn, Layer, Params, State


def _child_kwargs(kwargs: dict, index: int) -> dict:
    """The kwargs for child ``index``: its own key, everything else shared."""
    key = kwargs.get("key")
    if key is None:
        return kwargs
    return {**kwargs, "key": jax.random.fold_in(key, index)}


def _children_state(children: Sequence[Layer]) -> Callable[[Params], State]:
    """A combinator's ``init_state``: the tuple of its children's states (``((), ...)`` when none has any)."""

    def init_state(params: Params) -> State:
        return tuple(child.init_state(p) for child, p in zip(children, params))

    return init_state


def _children_groups(children: Sequence[Layer]) -> GroupsFn:
    """A combinator's ``parameter_groups``: its children's, concatenated in forward order."""

    def groups(params: Params) -> list[tuple[str, Params]]:
        return [group for child, p in zip(children, params) for group in child.parameter_groups(p)]

    return groups


def _check_state(op: str, state: State, count: int) -> None:
    if not isinstance(state, tuple) or len(state) != count:
        raise ValueError(
            f"{op}: state must hold one entry per child ({count}), got {state!r:.80}; "
            "start from layer.init_state(params)"
        )


def combinator(init: InitFn, forward: ForwardFn, children: Sequence[Layer]) -> Layer:
    """A layer made of ``children``: params and state are tuples with one entry per child."""
    return Layer(init, forward, _children_groups(children), _children_state(children))


def _require_layers(op: str, **layers: Any) -> None:
    for name, layer in layers.items():
        if not isinstance(layer, Layer):
            raise TypeError(
                f"{op}: {name} must be an nn.Layer, got a {type(layer).__name__} "
                "(did you forget to call a factory, e.g. nn.relu()?)"
            )


def serial(*layers: Layer) -> Layer:
    """Apply ``layers`` one after the other; params and state are tuples, one entry per layer."""
    if not layers:
        raise ValueError("serial: needs at least one layer")
    _require_layers("serial", **{f"argument {index}": layer for index, layer in enumerate(layers)})

    def init(key: Array, input_shape: Shape) -> tuple[Params, Shape]:
        params, shape = [], tuple(input_shape)
        for layer, layer_key in zip(layers, jax.random.split(key, len(layers))):
            layer_params, shape = layer.init(layer_key, shape)
            params.append(layer_params)
        return tuple(params), shape

    def forward(params: Params, x: Array, state: State, **kwargs: Any) -> tuple[Array, State]:
        _check_state("serial", state, len(layers))
        new_state = []
        for index, (layer, layer_params, layer_state) in enumerate(zip(layers, params, state)):
            x, layer_state = layer.forward(layer_params, x, layer_state, **_child_kwargs(kwargs, index))
            new_state.append(layer_state)
        return x, tuple(new_state)

    return combinator(init, forward, layers)


def residual(*layers: Layer, projection: Layer | None = None) -> Layer:
    """``y = x + f(x)`` with ``f = serial(*layers)``, or ``y = P(x) + f(x)`` with a ``projection``
    layer ``P`` (a 1x1 ``nn.conv2d`` with the block's stride, or an ``nn.dense``) for blocks that
    change the shape; params and state are ``(f's,)`` or ``(f's, P's)``.

    Backward (the skip rule): ``dL/dx = dL/dy + (df/dx)^T dL/dy``, and with a projection
    ``dL/dx = (dP/dx)^T dL/dy + (df/dx)^T dL/dy``.
    """
    block = serial(*layers)
    if projection is not None:
        _require_layers("residual", projection=projection)
    children = [block] if projection is None else [block, projection]

    def init(key: Array, input_shape: Shape) -> tuple[Params, Shape]:
        # without a projection the block gets ``key`` itself, so adding projections changed no existing init
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
        _check_state("residual", state, len(children))
        fx, block_state = block.forward(params[0], x, state[0], **_child_kwargs(kwargs, 0))
        if projection is None:
            return ops.add(x, fx), (block_state,)
        skip, projection_state = projection.forward(params[1], x, state[1], **_child_kwargs(kwargs, 1))
        return ops.add(skip, fx), (block_state, projection_state)

    return combinator(init, forward, children)


def shape_dependent(make_layer: Callable[[Shape], Layer], probe_shape: Shape) -> Layer:
    """A layer whose structure is built from its input shape (stax's ``shape_dependent``):
    ``make_layer(input_shape)`` at ``init``, ``make_layer(x.shape)`` in the forward pass
    (built once per shape). ``make_layer`` may use the shape for sizes only: the kinds and
    order of its parameter groups and its state's structure must not depend on it, and are
    read from ``make_layer(probe_shape)`` (any shape ``make_layer`` accepts)."""
    build = functools.lru_cache(maxsize=None)(lambda shape: make_layer(shape))
    probe = build(tuple(probe_shape))

    def init(key: Array, input_shape: Shape) -> tuple[Params, Shape]:
        return build(tuple(input_shape)).init(key, input_shape)

    def forward(params: Params, x: Array, state: State, **kwargs: Any) -> tuple[Array, State]:
        return build(tuple(x.shape)).forward(params, x, state, **kwargs)

    return Layer(init, forward, probe.parameter_groups, probe.init_state)


def _holds_only_arrays(value: Any) -> bool:
    """True for an array or a non-empty pytree of arrays (keys, taps); False for Python values."""
    leaves = jax.tree_util.tree_leaves(value)
    return bool(leaves) and all(isinstance(leaf, jax.Array) for leaf in leaves)


def checkpoint(layer: Layer) -> Layer:
    """``layer`` rematerialised with :func:`jax.checkpoint`: its activations are
    recomputed in the backward pass instead of stored. Same values, same gradients,
    less memory stored for the backward. Array kwargs (keys, taps, lengths) become arguments
    of the checkpointed function, other kwargs stay static; values a :func:`tap` records
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

    return layer._replace(forward=forward)


def bidirectional(layer: Layer, backward_layer: Layer | None = None) -> Layer:
    """Run ``layer`` forward in time and ``backward_layer`` (default: a second ``layer`` with
    its own params) on each sequence reversed within its length (``lengths=``); concatenate
    the features. Params and state are ``(forward's, backward's)``; each direction gets its
    own key (``fold_in(key, 0)``, ``fold_in(key, 1)``).

    Sequence outputs are reversed back, so ``y[:, t] = [h_fwd_t | h_bwd_t]`` with ``h_bwd_t``
    having read steps ``t..L-1``; final-state outputs give ``[h_fwd_T | h_bwd]`` where
    ``h_bwd`` has read the whole sequence backwards.
    """
    backward_layer = layer if backward_layer is None else backward_layer
    _require_layers("bidirectional", layer=layer, backward_layer=backward_layer)
    directions = (layer, backward_layer)

    def init(key: Array, input_shape: Shape) -> tuple[Params, Shape]:
        forward_key, backward_key = jax.random.split(key)
        forward_params, forward_shape = layer.init(forward_key, input_shape)
        backward_params, backward_shape = backward_layer.init(backward_key, input_shape)
        if tuple(forward_shape[:-1]) != tuple(backward_shape[:-1]):
            raise ValueError(
                f"bidirectional: the directions' outputs {forward_shape} and {backward_shape} cannot be joined"
            )
        return (forward_params, backward_params), (*forward_shape[:-1], forward_shape[-1] + backward_shape[-1])

    def forward(params: Params, x: Array, state: State, *, lengths: Array | None = None, **kwargs: Any):
        _check_state("bidirectional", state, 2)
        forward_y, forward_state = layer.forward(params[0], x, state[0], lengths=lengths, **_child_kwargs(kwargs, 0))
        reversed_x = ops.reverse_sequences(x, lengths=lengths)
        backward_y, backward_state = backward_layer.forward(
            params[1], reversed_x, state[1], lengths=lengths, **_child_kwargs(kwargs, 1)
        )
        if backward_y.ndim == x.ndim:  # sequences: put the backward direction's steps back in order
            backward_y = ops.reverse_sequences(backward_y, lengths=lengths)
        return ops.concatenate([forward_y, backward_y], axis=-1), (forward_state, backward_state)

    return combinator(init, forward, directions)
