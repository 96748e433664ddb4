"""Recurrent layers: ``rnn``, ``lstm``, ``gru`` over a whole sequence (one factory, three cells).

Input ``x: (B, T, F)``; output ``hs: (B, T, H)`` (``return_sequences=True``) or the final
hidden state ``h_T: (B, H)``. The network-wide keyword ``lengths: (B,)`` marks padded
sequences: past its length a sequence keeps its state and outputs 0 (see
:func:`jaxbp.ops.rnn`). :func:`jaxbp.nn.bidirectional` runs one in both directions.

The initial hidden state is zero, unless the layer is built with ``carry=True``: then its
*state* is the hidden state (``h``, or ``(h, c)`` for the LSTM), ``init_state`` gives zeros
``(1, H)`` (broadcast over the batch) and ``forward`` returns the final hidden state as the
new state, which the next call starts from. Truncated BPTT is then the layer contract
itself: run ``forward`` chunk by chunk, threading the state through ``stop_gradient``
(:func:`jaxbp.train.truncated_bptt_gradients` does exactly that); an explicit initial state
is a state of the same structure.

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
from jaxbp.nn._contract import Layer, Params, State, no_state, of_kind
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


def _recurrent(
    cell: str, hidden_size: int, return_sequences: bool, w_hh_init: str, forget_bias: float | None, carry: bool
) -> Layer:
    op = CELLS[cell][0]
    hidden_size = positive_int(cell, "hidden_size", hidden_size)
    return_sequences = static_bool(cell, "return_sequences", return_sequences)
    carry = static_bool(cell, "carry", carry)
    choose(cell, "w_hh_init", w_hh_init, dict.fromkeys(W_HH_INITS))

    def init(key: Array, input_shape: Shape) -> tuple[Params, Shape]:
        if len(input_shape) != 3:
            raise ValueError(f"{cell}: input_shape must be (batch, time, features), got {tuple(input_shape)}")
        params = _init_params(cell, key, int(input_shape[-1]), hidden_size, w_hh_init)
        if forget_bias is not None:
            params["b"] = params["b"].at[hidden_size : 2 * hidden_size].set(forget_bias)
        batch, time, _ = input_shape
        return params, (batch, time, hidden_size) if return_sequences else (batch, hidden_size)

    def init_state(params: Params) -> State:
        zeros = jnp.zeros((1, hidden_size), params["w_hh"].dtype)
        return (zeros, zeros) if cell == "lstm" else zeros

    def forward(params: Params, x: Array, state: State, *, lengths: Array | None = None, **kwargs: Any):
        initial = None
        if carry:  # the zeros of init_state have batch 1; a carried state already has x's batch
            initial = jax.tree_util.tree_map(lambda h: jnp.broadcast_to(h, (x.shape[0], hidden_size)), state)
        hs, final = op(params, x, initial, lengths=lengths)
        h_last = final[0] if cell == "lstm" else final
        return (hs if return_sequences else h_last), (final if carry else state)

    return Layer(init, forward, of_kind(cell), init_state if carry else no_state)


def rnn(hidden_size: int, *, return_sequences: bool = True, w_hh_init: str = "uniform", carry: bool = False) -> Layer:
    """Elman RNN layer ``h_t = tanh(x_t W_ih + h_{t-1} W_hh + b)`` (:func:`jaxbp.ops.rnn`)."""
    return _recurrent("rnn", hidden_size, return_sequences, w_hh_init, None, carry)


def lstm(
    hidden_size: int,
    *,
    return_sequences: bool = True,
    w_hh_init: str = "uniform",
    forget_bias: float | None = 1.0,
    carry: bool = False,
) -> Layer:
    """LSTM layer, gates i, f, g, o (:func:`jaxbp.ops.lstm`); ``forget_bias`` initialises the
    forget gate's bias (None keeps PyTorch's uniform draw)."""
    if forget_bias is not None:
        forget_bias = static_float("lstm", "forget_bias", forget_bias)
    return _recurrent("lstm", hidden_size, return_sequences, w_hh_init, forget_bias, carry)


def gru(hidden_size: int, *, return_sequences: bool = True, w_hh_init: str = "uniform", carry: bool = False) -> Layer:
    """GRU layer in PyTorch's form, gates r, z, n (:func:`jaxbp.ops.gru`)."""
    return _recurrent("gru", hidden_size, return_sequences, w_hh_init, None, carry)
