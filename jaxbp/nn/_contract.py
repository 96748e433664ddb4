"""The layer contract, stated once (as in ``jax.example_libraries.stax``)::

    layer = Layer(init, forward[, init_state])
    params, output_shape = layer.init(key, input_shape)        # shapes only, no data
    y, new_state = layer.forward(params, x, state, **kwargs)    # pure; ignores unknown kwargs

Every layer has this one calling form. ``state`` is ``()`` for a layer without state
(optax's ``EmptyState`` habit); a stateful layer (batch norm's running statistics)
supplies ``init_state(params)``. Inside jaxbp every caller uses ``forward``, so nothing
branches on "stateful or not". The stateless convenience lives only at the surface:
``layer.apply(params, x, **kwargs)`` returns ``y`` for a layer without state and
``(y, new_state)`` for a stateful one, which takes ``state=`` (as Haiku separates
``transform`` from ``transform_with_state``).

Keyword arguments are shared by the whole network; a layer ignores those it does not use:

* ``key``: a PRNG key for layers that need randomness (dropout); combinators hand each
  child its own key with ``jax.random.fold_in(key, child_index)``.
* ``train``: True in training mode (dropout on, batch statistics), default False.
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


def no_state(params: Params) -> State:
    """The state of a layer without state: ``()``."""
    return ()


def no_parameter_groups(params: Params) -> list[tuple[str, Params]]:
    """The parameter groups of a parameter-free layer: none."""
    return []


class Layer(NamedTuple):
    """A network piece: ``init(key, input_shape) -> (params, output_shape)``,
    ``forward(params, x, state, **kwargs) -> (y, new_state)``,
    ``init_state(params) -> state`` (``()`` for layers without state) and
    ``parameter_groups(params) -> [(kind, params_of_one_layer), ...]`` in forward order
    (``[("dense", {"w", "b"})]`` for a dense layer; combinators concatenate their
    children's), which lets diagnostics pair gradients with layers by kind."""

    init: InitFn
    forward: ForwardFn
    init_state: Callable[[Params], State] = no_state
    parameter_groups: Callable[[Params], list[tuple[str, Params]]] = no_parameter_groups

    @property
    def stateful(self) -> bool:
        """True when the layer (or one of its children) carries state."""
        return self.init_state is not no_state

    def apply(self, params: Params, x: Array, *, state: State = (), **kwargs: Any) -> Any:
        """The surface form: ``y`` for a layer without state, ``(y, new_state)`` for a stateful one."""
        if self.stateful:
            if isinstance(state, tuple) and not state:
                raise ValueError(
                    "Layer.apply: this network carries state (batch norm); pass state=layer.init_state(params)"
                )
            return self.forward(params, x, state, **kwargs)
        return self.forward(params, x, (), **kwargs)[0]


def stateless(init: InitFn, fn: Callable[..., Array]) -> Layer:
    """A layer without state from ``fn(params, x, **kwargs) -> y``."""

    def forward(params: Params, x: Array, state: State, **kwargs: Any) -> tuple[Array, State]:
        return fn(params, x, **kwargs), state

    return Layer(init, forward)


def same_shape(key: Array, input_shape: Shape) -> tuple[Params, Shape]:
    """``init`` of a parameter-free layer that keeps the shape: ``((), input_shape)``."""
    return (), tuple(input_shape)


def is_stateful(layer: Layer) -> bool:
    """True if ``layer`` carries state (its ``apply`` takes ``state=`` and returns ``(y, new_state)``)."""
    return layer.stateful


def init_state(layer: Layer, params: Params) -> State:
    """The initial state of any layer; ``()`` when it has none."""
    return layer.init_state(params)


def apply_with_state(
    layer: Layer, params: Params, x: Array, *, state: State = (), **kwargs: Any
) -> tuple[Array, State]:
    """Apply any layer in the one calling form ``(y, new_state)``; a stateless layer's state is ``()``."""
    return layer.forward(params, x, state, **kwargs)


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

    return stateless(same_shape, fn)


def tap_shapes(
    layer: Layer, params: Params, x: Any, state: State = (), **kwargs: Any
) -> dict[str, jax.ShapeDtypeStruct]:
    """The :func:`tap` layers the forward pass meets, ``{name: ShapeDtypeStruct}`` in forward order.

    ``x`` is an input array or a ``jax.ShapeDtypeStruct``; ``kwargs`` (``train``, ``key``)
    choose the path. Traced abstractly with :func:`jax.eval_shape` (no computation).
    """
    order: list[str] = []

    def recorded(params: Params, x: Array, state: State) -> dict[str, Array]:
        record: dict[str, Array] = {}
        layer.forward(params, x, state, record=record, **kwargs)
        order.extend(record)
        return record

    shapes = jax.eval_shape(recorded, params, x, state)
    return {name: shapes[name] for name in order}


def tap_names(layer: Layer, params: Params, x: Any, state: State = (), **kwargs: Any) -> tuple[str, ...]:
    """The names of the :func:`tap` layers in forward order; see :func:`tap_shapes`."""
    return tuple(tap_shapes(layer, params, x, state, **kwargs))
