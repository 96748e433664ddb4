"""The layer contract, stated once::

    layer = Layer(init, forward, parameter_groups[, init_state])
    params, output_shape = layer.init(key, input_shape)        # shapes only, no data
    state = layer.init_state(params)                           # () for a layer without state
    y, new_state = layer.forward(params, x, state, **kwargs)   # pure; the one calling form
    y = layer.apply(params, x, **kwargs)                       # the same, y alone

Every layer has this one form, so nothing branches on "stateful or not": a layer without
state has ``()`` (optax's ``EmptyState`` habit) and a combinator's state is the tuple of its
children's states, whatever they hold. Training threads ``(y, state)`` through ``forward``
(batch norm's running statistics, a recurrent layer's carried hidden state); ``apply`` is
``forward`` from ``state`` (default: ``init_state(params)``) with the new state dropped, so
evaluation and stateless networks never mention state.

``init`` returns ``(params, output_shape)``: the order differs from
``jax.example_libraries.stax``'s ``(output_shape, params)`` because jaxbp's callers keep the
params and mostly drop the shape (``params, _ = net.init(key, shape)``); changing it would
touch every caller for no gain, so ``init, apply = ...`` unpacking stax-style does not apply.

``parameter_groups(params) -> [(kind, params_of_one_layer), ...]`` names each weighted
layer's kind in forward order (``[("dense", {"w", "b"})]``; combinators concatenate their
children's). It has no default: a layer with parameters declares its kind
(:func:`of_kind`), a layer without declares :func:`no_parameters`, and
:func:`checked_parameter_groups` refuses groups that miss a parameter, so no weighted layer
falls out of the diagnostics or the study.

Keyword arguments are shared by the whole network; a layer ignores those it does not use:

* ``key``: a PRNG key for layers that need randomness (dropout); combinators hand each
  child its own key with ``jax.random.fold_in(key, child_index)``.
* ``train``: True in training mode (dropout on, batch statistics), default False.
* ``lengths``: ``(B,)`` valid steps of each padded sequence, for recurrent layers and
  :func:`jaxbp.nn.bidirectional` (past its length a sequence keeps its state, outputs 0).
* ``taps`` / ``record``: see :func:`tap` (used by :mod:`jaxbp.diagnostics`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from jaxbp import ops
from jaxbp.core import Array, Shape

Params = Any
State = Any
InitFn = Callable[[Array, Shape], tuple[Params, Shape]]
ForwardFn = Callable[..., tuple[Array, State]]
GroupsFn = Callable[[Params], list[tuple[str, Params]]]


def no_state(params: Params) -> State:
    """The state of a layer without state: ``()``."""
    return ()


def no_parameters(params: Params) -> list[tuple[str, Params]]:
    """The parameter groups of a parameter-free layer: none."""
    return []


def of_kind(kind: str) -> GroupsFn:
    """The parameter groups of a leaf layer whose params are one group of ``kind`` (``"dense"``)."""

    def groups(params: Params) -> list[tuple[str, Params]]:
        return [(kind, params)]

    return groups


class Layer(NamedTuple):
    """A network piece: ``init(key, input_shape) -> (params, output_shape)``,
    ``forward(params, x, state, **kwargs) -> (y, new_state)``,
    ``parameter_groups(params) -> [(kind, params_of_one_layer), ...]`` in forward order and
    ``init_state(params) -> state`` (``()`` for layers without state). See the module docstring."""

    init: InitFn
    forward: ForwardFn
    parameter_groups: GroupsFn
    init_state: Callable[[Params], State] = no_state

    def apply(self, params: Params, x: Array, *, state: State | None = None, **kwargs: Any) -> Array:
        """``y`` from ``state`` (default ``init_state(params)``: running statistics 0/1, zero
        carried hidden state); the new state is dropped -- train a stateful network with ``forward``."""
        return self.forward(params, x, self.init_state(params) if state is None else state, **kwargs)[0]


def checked_parameter_groups(layer: Layer, params: Params) -> list[tuple[str, Params]]:
    """``layer.parameter_groups(params)``, refused if the groups do not hold every parameter array once."""
    groups = layer.parameter_groups(params)
    declared = sum(len(jax.tree_util.tree_leaves(group)) for _, group in groups)
    present = len(jax.tree_util.tree_leaves(params))
    if declared != present:
        raise ValueError(
            f"parameter_groups: the network holds {present} parameter arrays but its layers declare {declared}; "
            "a layer with parameters must declare its kind (parameter_groups=nn.of_kind('...'))"
        )
    return groups


def stateless(init: InitFn, fn: Callable[..., Array], parameter_groups: GroupsFn) -> Layer:
    """A layer without state from ``fn(params, x, **kwargs) -> y``."""

    def forward(params: Params, x: Array, state: State, **kwargs: Any) -> tuple[Array, State]:
        return fn(params, x, **kwargs), state

    return Layer(init, forward, parameter_groups)


def same_shape(key: Array, input_shape: Shape) -> tuple[Params, Shape]:
    """``init`` of a parameter-free layer that keeps the shape: ``((), input_shape)``."""
    return (), tuple(input_shape)


def tap(name: str) -> Layer:
    """An identity layer that exposes the signal passing through it.

    ``apply(..., record=d)`` stores the value in ``d[name]`` (fill the dict inside
    the traced function and return it from there); ``apply(..., taps={name: e})``
    adds ``e`` (same shape) to the signal, so ``dL/de`` at ``e = 0`` is the
    backpropagated error ``dL/dz`` at this point -- from the same backward pass
    that computes the parameter gradients.
    """

    def fn(params: Params, x: Array, *, taps: dict | None = None, record: dict | None = None, **kwargs: Any) -> Array:
        if record is not None:
            record[name] = x
        if taps is not None and name in taps:
            x = ops.add(x, taps[name])
        return x

    return stateless(same_shape, fn, no_parameters)


def tap_shapes(
    layer: Layer, params: Params, x: Any, state: State | None = None, **kwargs: Any
) -> dict[str, jax.ShapeDtypeStruct]:
    """The :func:`tap` layers the forward pass meets, ``{name: ShapeDtypeStruct}`` in forward order.

    ``x`` is an input array or a ``jax.ShapeDtypeStruct``; ``state`` defaults to
    ``layer.init_state(params)``; ``kwargs`` (``train``, ``key``) choose the path. Traced
    abstractly with :func:`jax.eval_shape` (no computation).
    """
    order: list[str] = []

    def recorded(params: Params, x: Array, state: State) -> dict[str, Array]:
        record: dict[str, Array] = {}
        layer.forward(params, x, state, record=record, **kwargs)
        order.extend(record)
        return record

    shapes = jax.eval_shape(recorded, params, x, layer.init_state(params) if state is None else state)
    return {name: shapes[name] for name in order}


def tap_names(layer: Layer, params: Params, x: Any, state: State | None = None, **kwargs: Any) -> tuple[str, ...]:
    """The names of the :func:`tap` layers in forward order; see :func:`tap_shapes`."""
    return tuple(tap_shapes(layer, params, x, state, **kwargs))
