"""Recurrent layers: ``rnn``, ``lstm``, ``gru`` over a whole sequence, and ``bidirectional``.

Input ``x: (B, T, F)``; output ``hs: (B, T, H)`` (``return_sequences=True``) or the final
hidden state ``h_T: (B, H)``. The initial state is zero. A network-wide keyword
``lengths: (B,)`` marks padded sequences: past its length a sequence keeps its state
and outputs 0 (see :func:`jaxbp.ops.rnn`).

Initialisation follows PyTorch: every weight and bias ``U(-1/sqrt(H), 1/sqrt(H))``;
``w_hh_init="orthogonal"`` draws each gate's recurrent block orthogonal instead (Saxe et
al. 2014). ``nn.lstm(forget_bias=1.0)`` sets the forget gate's bias to 1 (Gers et al.
2000; Jozefowicz et al. 2015) so the cell remembers by default.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxbp import ops
from jaxbp.core import Array, Shape, choose, static_float
from jaxbp.init import orthogonal
from jaxbp.nn._contract import Layer, Params, State
from jaxbp.validation import positive_int, static_bool

# cell name -> (the op, number of gates, bias names)
CELLS: dict[str, tuple[Callable, int, tuple[str, ...]]] = {
    "rnn": (ops.rnn, 1, ("b",)),
    "lstm": (ops.lstm, 4, ("b",)),
    "gru": (ops.gru, 3, ("b_ih", "b_hh")),
}
W_HH_INITS = ("uniform", "orthogonal")


def _uniform(key: Array, shape: Shape, bound: float) -> Array:
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def _init_params(cell: str, key: Array, features: int, hidden: int, w_hh_init: str) -> dict[str, Array]:
    _, gates, biases = CELLS[cell]
    bound = 1 / math.sqrt(hidden)
    keys = jax.random.split(key, 2 + len(biases))
    if w_hh_init == "orthogonal":
        blocks = jax.random.split(keys[1], gates)
        w_hh = jnp.concatenate([orthogonal()(k, (hidden, hidden), jnp.float32) for k in blocks], axis=1)
    else:
        w_hh = _uniform(keys[1], (hidden, gates * hidden), bound)
    params = {"w_ih": _uniform(keys[0], (features, gates * hidden), bound), "w_hh": w_hh}
    for k, name in zip(keys[2:], biases):
        params[name] = _uniform(k, (gates * hidden,), bound)
    return params


def _recurrent(cell: str, hidden_size: int, return_sequences: bool, w_hh_init: str, forget_bias: float | None) -> Layer:
    op = CELLS[cell][0]
    hidden_size = positive_int(cell, "hidden_size", hidden_size)
    return_sequences = static_bool(cell, "return_sequences", return_sequences)
    choose(cell, "w_hh_init", w_hh_init, dict.fromkeys(W_HH_INITS))

    def init(key: Array, input_shape: Shape) -> tuple[Params, Shape]:
        if len(input_shape) != 3:
            raise ValueError(f"{cell}: input_shape must be (batch, time, features), got {tuple(input_shape)}")
        params = _init_params(cell, key, int(input_shape[-1]), hidden_size, w_hh_init)
        if forget_bias is not None:
            params["b"] = params["b"].at[hidden_size : 2 * hidden_size].set(forget_bias)
        batch, time, _ = input_shape
        return params, (batch, time, hidden_size) if return_sequences else (batch, hidden_size)

    def forward(params: Params, x: Array, state: State, *, lengths: Array | None = None, **kwargs: Any):
        hs, final = op(params, x, lengths=lengths)
        h_last = final[0] if cell == "lstm" else final
        return (hs if return_sequences else h_last), state

    return Layer(init, forward, parameter_groups=lambda params: [(cell, params)])


def rnn(hidden_size: int, *, return_sequences: bool = True, w_hh_init: str = "uniform") -> Layer:
    """Elman RNN layer ``h_t = tanh(x_t W_ih + h_{t-1} W_hh + b)`` (:func:`jaxbp.ops.rnn`)."""
    return _recurrent("rnn", hidden_size, return_sequences, w_hh_init, None)


def lstm(
    hidden_size: int, *, return_sequences: bool = True, w_hh_init: str = "uniform", forget_bias: float | None = 1.0
) -> Layer:
    """LSTM layer, gates i, f, g, o (:func:`jaxbp.ops.lstm`); ``forget_bias`` initialises the
    forget gate's bias (None keeps PyTorch's uniform draw)."""
    if forget_bias is not None:
        forget_bias = static_float("lstm", "forget_bias", forget_bias)
    return _recurrent("lstm", hidden_size, return_sequences, w_hh_init, forget_bias)


def gru(hidden_size: int, *, return_sequences: bool = True, w_hh_init: str = "uniform") -> Layer:
    """GRU layer in PyTorch's form, gates r, z, n (:func:`jaxbp.ops.gru`)."""
    return _recurrent("gru", hidden_size, return_sequences, w_hh_init, None)


def bidirectional(layer: Layer, backward_layer: Layer | None = None) -> Layer:
    """Run ``layer`` forward in time and ``backward_layer`` (default: a second ``layer`` with
    its own params) on each sequence reversed within its length; concatenate the features.

    Sequence outputs are reversed back, so ``y[:, t] = [h_fwd_t | h_bwd_t]`` with ``h_bwd_t``
    having read steps ``t..L-1``; final-state outputs give ``[h_fwd_T | h_bwd]`` where
    ``h_bwd`` has read the whole sequence backwards. Params: ``(forward, backward)``.
    """
    backward_layer = layer if backward_layer is None else backward_layer
    for name, candidate in (("layer", layer), ("backward_layer", backward_layer)):
        if not isinstance(candidate, Layer):
            raise TypeError(
                f"bidirectional: {name} must be an nn.Layer (e.g. nn.lstm(64)), got {type(candidate).__name__}"
            )

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
        forward_y, _ = layer.forward(params[0], x, (), lengths=lengths, **kwargs)
        reversed_x = ops.reverse_sequences(x, lengths=lengths)
        backward_y, _ = backward_layer.forward(params[1], reversed_x, (), lengths=lengths, **kwargs)
        if backward_y.ndim == x.ndim:  # sequences: put the backward direction's steps back in order
            backward_y = ops.reverse_sequences(backward_y, lengths=lengths)
        return ops.concatenate([forward_y, backward_y], axis=-1), state

    def groups(params: Params) -> list[tuple[str, Params]]:
        return [*layer.parameter_groups(params[0]), *backward_layer.parameter_groups(params[1])]

    return Layer(init, forward, parameter_groups=groups)
