"""Composing networks from ops: the layer contract, layers and combinators.

The contract (stated once, as in ``jax.example_libraries.stax``)::

    layer = Layer(init, apply)
    params, output_shape = layer.init(key, input_shape)     # shapes only, no data
    y = layer.apply(params, x, **kwargs)                     # pure; ignores unknown kwargs

``apply`` takes keyword arguments shared by the whole network and ignores the ones it
does not use:

* ``key``: a PRNG key for layers that need randomness (dropout); combinators hand each
  child its own key with ``jax.random.fold_in(key, child_index)``. A training step
  takes a key and returns the next one (``key, step_key = jax.random.split(key)``).
* ``train``: True in training mode (dropout on, batch statistics), default False.
* ``taps`` / ``record``: see :func:`tap` (used by :mod:`jaxbp.diagnostics`).

A *stateful* layer (batch norm keeps running statistics) also has ``init_state``::

    state = layer.init_state(params)
    y, new_state = layer.apply(params, x, state=state, **kwargs)

A combinator is stateful exactly when one of its children is, so networks without
state never see it. Every differentiable step goes through :mod:`jaxbp.ops`, so a
network built here differentiates only through hand-written rules
(``jaxbp.gradcheck.assert_fully_manual`` proves it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxbp import ops
from jaxbp.core import Array, Shape, accumulation_dtype, choose, static_float
from jaxbp.init import DenseInit, Initializer, dense_init

Params = Any
State = Any
InitFn = Callable[[Array, Shape], tuple[Params, Shape]]
ApplyFn = Callable[..., Any]


class Layer(NamedTuple):
    """A network piece: ``init(key, input_shape) -> (params, output_shape)`` and
    ``apply(params, x, **kwargs) -> y``; stateful layers add ``init_state(params)``
    and their ``apply`` takes ``state=`` and returns ``(y, new_state)``."""

    init: InitFn
    apply: ApplyFn
    init_state: Callable[[Params], State] | None = None


def is_stateful(layer: Layer) -> bool:
    """True if ``layer.apply`` takes ``state=`` and returns ``(y, new_state)``."""
    return layer.init_state is not None


def _apply_with_state(layer: Layer, params: Params, x: Array, state: State, **kwargs: Any) -> tuple[Array, State]:
    """Call any layer in the stateful form; a stateless layer's state is ``()``."""
    if is_stateful(layer):
        return layer.apply(params, x, state=state, **kwargs)
    return layer.apply(params, x, **kwargs), state


def init_state(layer: Layer, params: Params) -> State:
    """The initial state of any layer: ``layer.init_state(params)``, or ``()`` when it has none.

    With :func:`apply_with_state` this lets a training loop treat every network alike.
    """
    return layer.init_state(params) if is_stateful(layer) else ()


def apply_with_state(layer: Layer, params: Params, x: Array, *, state: State = (), **kwargs: Any) -> tuple[Array, State]:
    """Apply any layer in the stateful form ``(y, new_state)``; a stateless layer's state is ``()``."""
    return _apply_with_state(layer, params, x, state, **kwargs)


def _child_kwargs(kwargs: dict, index: int) -> dict:
    """The kwargs for child ``index``: its own key, everything else shared."""
    key = kwargs.get("key")
    if key is None:
        return kwargs
    return {**kwargs, "key": jax.random.fold_in(key, index)}


def _combine(init: InitFn, apply_with_state: Callable, children: Sequence[Layer]) -> Layer:
    """A combinator layer from its stateful apply: stateful iff a child is."""
    if any(is_stateful(child) for child in children):

        def init_state(params):
            return tuple(c.init_state(p) if is_stateful(c) else () for c, p in zip(children, params))

        def apply(params, x, *, state, **kwargs):
            return apply_with_state(params, x, state, **kwargs)

        return Layer(init, apply, init_state)

    def apply_stateless(params, x, **kwargs):
        return apply_with_state(params, x, tuple(() for _ in children), **kwargs)[0]

    return Layer(init, apply_stateless)


# ------------------------------------------------------------------- combinators


def serial(*layers: Layer) -> Layer:
    """Apply ``layers`` one after the other; params (and state) are tuples, one per layer."""
    if not layers:
        raise ValueError("serial: needs at least one layer")
    for index, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"serial: argument {index} is a {type(layer).__name__}, not an nn.Layer (did you forget to call a factory, e.g. nn.relu()?)")

    def init(key, input_shape):
        params, shape = [], tuple(input_shape)
        for layer, layer_key in zip(layers, jax.random.split(key, len(layers))):
            layer_params, shape = layer.init(layer_key, shape)
            params.append(layer_params)
        return tuple(params), shape

    def apply_with_state(params, x, state, **kwargs):
        new_state = []
        for index, (layer, layer_params, layer_state) in enumerate(zip(layers, params, state)):
            x, layer_state = _apply_with_state(layer, layer_params, x, layer_state, **_child_kwargs(kwargs, index))
            new_state.append(layer_state)
        return x, tuple(new_state)

    return _combine(init, apply_with_state, layers)


def residual(*layers: Layer) -> Layer:
    """``y = x + f(x)`` with ``f = serial(*layers)``; the block must preserve the shape.

    Backward (the seeds' skip rule): ``dL/dx = dL/dy + (df/dx)^T dL/dy``.
    """
    block = serial(*layers)

    def init(key, input_shape):
        params, shape = block.init(key, input_shape)
        if tuple(shape) != tuple(input_shape):
            raise ValueError(
                f"residual: the block maps shape {tuple(input_shape)} to {tuple(shape)}; "
                "a skip connection needs equal input and output shapes"
            )
        return (params,), shape

    def apply_with_state(params, x, state, **kwargs):
        fx, block_state = _apply_with_state(block, params[0], x, state[0], **_child_kwargs(kwargs, 0))
        return ops.add(x, fx), (block_state,)

    return _combine(init, apply_with_state, [block])


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

    def apply_with_state(params, x, state, *, record=None, **kwargs):
        arrays = {k: v for k, v in kwargs.items() if _holds_only_arrays(v)}
        static = {k: v for k, v in kwargs.items() if k not in arrays}

        def run(params, x, state, arrays):
            inner_record = {} if record is not None else None
            y, new_state = _apply_with_state(layer, params, x, state, record=inner_record, **arrays, **static)
            return y, new_state, inner_record

        y, new_state, inner_record = jax.checkpoint(run)(params, x, state, arrays)
        if record is not None:
            record.update(inner_record)
        return y, new_state

    if is_stateful(layer):
        return Layer(layer.init, lambda params, x, *, state, **kw: apply_with_state(params, x, state, **kw), layer.init_state)
    return Layer(layer.init, lambda params, x, **kw: apply_with_state(params, x, (), **kw)[0])


# ------------------------------------------------------------------------ layers


def _require_features(op: str, input_shape: Shape) -> int:
    if len(input_shape) < 1:
        raise ValueError(f"{op}: input_shape {tuple(input_shape)} has no feature axis")
    return int(input_shape[-1])


def dense(out_features: int, init: str | DenseInit | Initializer = "glorot_normal") -> Layer:
    """A fully-connected layer ``y = x @ w + b`` with ``w: (in, out)``, ``b: (out,)``.

    ``init`` is a scheme name from :func:`jaxbp.init.weight_schemes`, a weight
    initializer (zero bias) or a :class:`jaxbp.init.DenseInit` (weights and bias).
    """
    if not isinstance(out_features, int) or out_features <= 0:
        raise ValueError(f"dense: out_features must be a positive int, got {out_features!r}")
    scheme = dense_init(init)

    def init_fn(key, input_shape):
        in_features = _require_features("dense", input_shape)
        w_key, b_key = jax.random.split(key)
        params = {"w": scheme.weights(w_key, (in_features, out_features)), "b": scheme.bias(b_key, (out_features,))}
        return params, (*input_shape[:-1], out_features)

    def apply(params, x, **kwargs):
        return ops.dense(params, x)

    return Layer(init_fn, apply)


def elementwise(fn: Callable[[Array], Array]) -> Layer:
    """A parameter-free layer applying ``fn`` (an op from :mod:`jaxbp.ops`)."""

    def init(key, input_shape):
        return (), tuple(input_shape)

    def apply(params, x, **kwargs):
        return fn(x)

    return Layer(init, apply)


ACTIVATIONS: dict[str, Callable[..., Array]] = {
    "sigmoid": ops.sigmoid,
    "tanh": ops.tanh,
    "relu": ops.relu,
    "leaky_relu": ops.leaky_relu,
    "elu": ops.elu,
    "gelu": ops.gelu,
}


def activation(name: str, **hyper: Any) -> Layer:
    """An activation layer by name: sigmoid, tanh, relu, leaky_relu, elu, gelu.

    ``hyper`` are the op's static options (``negative_slope``, ``alpha``, ``approximate``).
    """
    fn = choose("activation", "activation", name, ACTIVATIONS)
    fn(jax.numpy.zeros((1,)), **hyper)  # validate the hyper-parameters now, not at apply time
    return elementwise(lambda x: fn(x, **hyper))


def flatten() -> Layer:
    """``(batch, ...) -> (batch, prod(...))``."""

    def init(key, input_shape):
        size = 1
        for d in input_shape[1:]:
            size *= d
        return (), (input_shape[0], size)

    return Layer(init, lambda params, x, **kwargs: ops.flatten(x))


def tap(name: str) -> Layer:
    """An identity layer that exposes the signal passing through it.

    ``apply(..., record=d)`` stores the value in ``d[name]`` (fill the dict inside
    the traced function and return it from there); ``apply(..., taps={name: e})``
    adds ``e`` (same shape) to the signal, so ``dL/de`` at ``e = 0`` is the
    backpropagated error ``dL/dz`` at this point -- from the same backward pass
    that computes the parameter gradients.
    """

    def apply(params, x, *, taps=None, record=None, **kwargs):
        if record is not None:
            record[name] = x
        if taps is not None and name in taps:
            x = ops.add(x, taps[name])
        return x

    return Layer(lambda key, input_shape: ((), tuple(input_shape)), apply)


def _norm_params(op: str, input_shape: Shape) -> tuple[dict, Shape]:
    """``gamma = 1``, ``beta = 0`` for the feature axis: a norm layer starts as the plain normalization."""
    features = _require_features(op, input_shape)
    return {"gamma": jnp.ones((features,)), "beta": jnp.zeros((features,))}, tuple(input_shape)


def batch_norm(momentum: float = 0.9, eps: float = 1e-5) -> Layer:
    """Batch normalization over every axis but the last; a *stateful* layer.

    ``params = {"gamma": (C,), "beta": (C,)}``; state = running
    :class:`jaxbp.ops.BatchStatistics` ``(mean, var)``, initially ``(0, 1)``, in the
    accumulation dtype of the params.

    * ``train=True``: normalize with the batch statistics; the new state is the
      exponential average ``momentum * running + (1 - momentum) * batch`` (the
      Keras/Flax convention: PyTorch's ``momentum=0.1`` is ``momentum=0.9`` here),
      with the biased batch variance. The state is not differentiated: the running
      and batch statistics pass ``stop_gradient`` before the average.
    * ``train=False`` (the default): normalize with the running statistics; the
      state comes back unchanged.
    """
    momentum = static_float("batch_norm", "momentum", momentum, minimum=0.0, maximum=1.0)
    eps = static_float("batch_norm", "eps", eps, minimum=0.0)

    def init(key, input_shape):
        return _norm_params("batch_norm", input_shape)

    def init_state_fn(params):
        gamma = params["gamma"]
        dtype = accumulation_dtype(gamma.dtype)
        return ops.BatchStatistics(mean=jnp.zeros(gamma.shape, dtype), var=jnp.ones(gamma.shape, dtype))

    def apply(params, x, *, state, train=False, **kwargs):
        y, statistics = ops.batch_norm(params, x, train=train, running=state, eps=eps)
        if not train:
            return y, state
        running, batch = jax.lax.stop_gradient((tuple(state), tuple(statistics)))  # state is never differentiated
        return y, ops.BatchStatistics(
            *(momentum * old + (1.0 - momentum) * new.astype(old.dtype) for old, new in zip(running, batch))
        )

    return Layer(init, apply, init_state_fn)


_batch_norm_layer = batch_norm  # mlp's ``batch_norm`` flag shadows the name


def layer_norm(eps: float = 1e-5) -> Layer:
    """Layer normalization over the last axis; ``params = {"gamma": (C,), "beta": (C,)}``.
    Stateless, and the same in train and eval mode."""
    eps = static_float("layer_norm", "eps", eps, minimum=0.0)

    def init(key, input_shape):
        return _norm_params("layer_norm", input_shape)

    def apply(params, x, **kwargs):
        return ops.layer_norm(params, x, eps=eps)

    return Layer(init, apply)


def dropout(rate: float) -> Layer:
    """Inverted dropout with drop probability ``rate`` in ``[0, 1)``; no params, no state.

    ``apply(params, x, key=k, train=True)`` draws the mask from ``k`` (combinators
    give each layer its own key); ``train=False`` (the default) is the identity.
    """
    rate = static_float("dropout", "rate", rate, minimum=0.0, maximum=1.0, include_maximum=False)

    def apply(params, x, *, key=None, train=False, **kwargs):
        return ops.dropout(x, key, rate, train=train)

    return Layer(lambda key, input_shape: ((), tuple(input_shape)), apply)


def mlp(
    sizes: Sequence[int],
    activation_name: str = "relu",
    init: str | DenseInit | Initializer = "glorot_normal",
    *,
    residual_blocks: bool = False,
    output_activation: str | None = None,
    batch_norm: bool = False,
    dropout_rate: float = 0.0,
    **hyper: Any,
) -> Layer:
    """A multi-layer perceptron: ``dense(sizes[i])`` followed by the activation, except
    after the last layer (``output_activation`` if given).

    Each pre-activation ``z_l`` passes a :func:`tap` named ``"z{l}"`` (l = 1..L)
    for :mod:`jaxbp.diagnostics`. With ``residual_blocks=True`` every hidden layer
    whose width equals its input width becomes ``x + act(dense(x))``.

    ``batch_norm=True`` puts a :func:`batch_norm` between each hidden dense layer
    (after its tap) and the activation, making the network stateful;
    ``dropout_rate > 0`` adds a :func:`dropout` after each hidden activation.
    """
    sizes = list(sizes)
    if not sizes or any(not isinstance(s, int) or s <= 0 for s in sizes):
        raise ValueError(f"mlp: sizes must be a non-empty list of positive ints, got {sizes}")
    if not isinstance(batch_norm, bool):
        raise TypeError(f"mlp: batch_norm must be a bool, got {batch_norm!r}")
    dropout_rate = static_float("mlp", "dropout_rate", dropout_rate, minimum=0.0, maximum=1.0, include_maximum=False)

    def hidden(l: int) -> Layer:
        norm = [_batch_norm_layer()] if batch_norm else []
        drop = [dropout(dropout_rate)] if dropout_rate > 0 else []
        return serial(dense(sizes[l - 1], init), tap(f"z{l}"), *norm, activation(activation_name, **hyper), *drop)

    layers: list[Layer] = []
    for l in range(1, len(sizes)):
        same_width = l > 1 and sizes[l - 1] == sizes[l - 2]
        layers.append(residual(hidden(l)) if residual_blocks and same_width else hidden(l))
    layers += [dense(sizes[-1], init), tap(f"z{len(sizes)}")]
    if output_activation is not None:
        layers.append(activation(output_activation))
    return serial(*layers)
