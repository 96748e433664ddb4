"""Recurrent cells scanned over a whole sequence (reference forward math).

Layout: batch-major ``x: (B, T, F)``, weights ``(in, out)`` like dense, outputs
``hs: (B, T, H)``. The input projection of all time steps is one matmul before the
scan; the scan itself runs time-major over ``(T, B, ...)``.

Optional ``lengths: (B,)`` integers: at a step ``t >= lengths[b]`` sequence ``b``
keeps its state (``h_t = h_{t-1}``) and its output ``hs[b, t]`` is 0 (PyTorch's
padded-sequence convention), so ``h_T`` is the state after the last valid step.
A length outside ``[0, T]`` (which the ops refuse eagerly, but cannot see under ``jit``)
poisons its sequence: every step runs and its projected inputs are NaN, so its outputs,
final state and every gradient it reaches are NaN instead of silently running as if the
length were clipped.

Each ``<cell>_parts`` returns the output ``y`` first and then the time-major
intermediates the hand-written backward in :mod:`jaxbp.ops.recurrent` needs
(carried states, activated gates); ``<cell>`` returns ``.y``. Low-precision inputs
are computed in float32 and the outputs cast back.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxbp.core import Array, accumulation_dtype


def compute_dtype(params: dict, x: Array) -> jnp.dtype:
    """The dtype the recurrence runs in: float32 for bf16/f16, else the promoted dtype."""
    return accumulation_dtype(jnp.result_type(x.dtype, params["w_ih"].dtype))


def length_poison(lengths: Array, time: int, dtype: jnp.dtype) -> Array:
    """``(B,)``: 1 where ``0 <= lengths[b] <= time``, NaN elsewhere (multiplied in, so autodiff
    carries the NaN into the gradient too)."""
    return jnp.where((lengths >= 0) & (lengths <= time), 1, jnp.nan).astype(dtype)


def project_inputs(x: Array, w_ih: Array, b: Array, dtype: jnp.dtype, lengths: Array | None) -> Array:
    """All steps' input projections at once, time-major: ``(B, T, F) -> (T, B, G)``, ``x_t W_ih + b``;
    0 past a sequence's end and NaN for a sequence whose length is outside ``[0, T]``.

    The zeros keep a NaN or inf in padding out of the discarded step's arithmetic: autodiff
    of ``where(valid, cell(...), h)`` multiplies the unselected branch's derivative by 0,
    which is NaN if that branch saw a NaN."""
    projected = jnp.einsum("btf,fg->tbg", x.astype(dtype), w_ih.astype(dtype)) + b.astype(dtype)
    if lengths is None:
        return projected
    return (
        jnp.where(_valid_steps(lengths, x.shape[1]), projected, 0) * length_poison(lengths, x.shape[1], dtype)[:, None]
    )


def step_mask(lengths: Array | None, batch: int, time: int) -> Array | None:
    """``(T, B, 1)`` booleans, True where step ``t`` is inside sequence ``b`` (``t < lengths[b]``),
    and at every step of a sequence with a negative length (so its NaN reaches the outputs)."""
    return None if lengths is None else _valid_steps(lengths, time)


def _valid_steps(lengths: Array, time: int) -> Array:
    return ((jnp.arange(time)[:, None] < lengths[None, :]) | (lengths[None, :] < 0))[..., None]


def keep_where(valid: Array | None, new: Array, old: Array) -> Array:
    """``new`` at valid steps, ``old`` (state unchanged) past a sequence's end."""
    return new if valid is None else jnp.where(valid, new, old)


def batch_major_outputs(hidden: Array, mask: Array | None, dtype: jnp.dtype) -> Array:
    """Time-major carried states ``(T, B, H)`` to outputs ``(B, T, H)``, zero past each length."""
    if mask is not None:
        hidden = jnp.where(mask, hidden, 0)
    return jnp.swapaxes(hidden, 0, 1).astype(dtype)


def previous_states(initial: Array, states: Array) -> Array:
    """``(T, B, H)`` states ``s_{t-1}`` for every step: ``[s_0, s_1, ..., s_{T-1}]``."""
    return jnp.concatenate([initial[None].astype(states.dtype), states[:-1]], axis=0)


# ---------------------------------------------------------------------------- rnn


class RnnParts(NamedTuple):
    y: tuple[Array, Array]  # (hs (B, T, H), h_T (B, H))
    hidden: Array  # (T, B, H) carried states h_t, compute dtype


def rnn_parts(params: dict, x: Array, h0: Array, lengths: Array | None = None) -> RnnParts:
    """Elman RNN: ``h_t = tanh(x_t W_ih + h_{t-1} W_hh + b)``."""
    dtype = jnp.result_type(x.dtype, params["w_ih"].dtype)
    acc = compute_dtype(params, x)
    w_hh = params["w_hh"].astype(acc)
    mask = step_mask(lengths, x.shape[0], x.shape[1])

    def step(h, inputs):
        projected, valid = inputs
        h = keep_where(valid, jnp.tanh(projected + h @ w_hh), h)
        return h, h

    h_last, hidden = lax.scan(
        step, h0.astype(acc), (project_inputs(x, params["w_ih"], params["b"], acc, lengths), mask)
    )
    return RnnParts((batch_major_outputs(hidden, mask, dtype), h_last.astype(dtype)), hidden)


def rnn(params: dict, x: Array, h0: Array, lengths: Array | None = None) -> tuple[Array, Array]:
    """``(hs, h_T)`` of an Elman RNN; see :func:`rnn_parts`."""
    return rnn_parts(params, x, h0, lengths).y


# --------------------------------------------------------------------------- lstm


class LstmParts(NamedTuple):
    y: tuple[Array, tuple[Array, Array]]  # (hs (B, T, H), (h_T, c_T))
    gates: Array  # (T, B, 4H) activated gates i, f, g, o
    cells: Array  # (T, B, H) carried cell states c_t
    hidden: Array  # (T, B, H) carried hidden states h_t


def lstm_parts(params: dict, x: Array, state: tuple[Array, Array], lengths: Array | None = None) -> LstmParts:
    """LSTM with gates i, f, g, o along the 4H axis of ``a_t = x_t W_ih + h_{t-1} W_hh + b``::

    i = sigma(a_i), f = sigma(a_f), g = tanh(a_g), o = sigma(a_o)
    c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)
    """
    h0, c0 = state
    dtype = jnp.result_type(x.dtype, params["w_ih"].dtype)
    acc = compute_dtype(params, x)
    w_hh = params["w_hh"].astype(acc)
    mask = step_mask(lengths, x.shape[0], x.shape[1])

    def step(carry, inputs):
        h, c = carry
        projected, valid = inputs
        a = projected + h @ w_hh
        a_i, a_f, a_g, a_o = jnp.split(a, 4, axis=-1)
        i, f, g, o = jax.nn.sigmoid(a_i), jax.nn.sigmoid(a_f), jnp.tanh(a_g), jax.nn.sigmoid(a_o)
        c_new = f * c + i * g
        h = keep_where(valid, o * jnp.tanh(c_new), h)
        c = keep_where(valid, c_new, c)
        return (h, c), (jnp.concatenate([i, f, g, o], axis=-1), c, h)

    inputs = (project_inputs(x, params["w_ih"], params["b"], acc, lengths), mask)
    (h_last, c_last), (gates, cells, hidden) = lax.scan(step, (h0.astype(acc), c0.astype(acc)), inputs)
    y = (batch_major_outputs(hidden, mask, dtype), (h_last.astype(dtype), c_last.astype(dtype)))
    return LstmParts(y, gates, cells, hidden)


def lstm(
    params: dict, x: Array, state: tuple[Array, Array], lengths: Array | None = None
) -> tuple[Array, tuple[Array, Array]]:
    """``(hs, (h_T, c_T))`` of an LSTM; see :func:`lstm_parts`."""
    return lstm_parts(params, x, state, lengths).y


# ---------------------------------------------------------------------------- gru


class GruParts(NamedTuple):
    y: tuple[Array, Array]  # (hs (B, T, H), h_T (B, H))
    gates: Array  # (T, B, 3H) activated gates r, z, n
    hidden_n: Array  # (T, B, H) h_{t-1} W_hn + b_hn (what r multiplies)
    hidden: Array  # (T, B, H) carried states h_t


def gru_parts(params: dict, x: Array, h0: Array, lengths: Array | None = None) -> GruParts:
    """GRU in PyTorch's form, gates r, z, n along the 3H axis::

    r = sigma(x W_ir + b_ir + h W_hr + b_hr),  z = sigma(x W_iz + b_iz + h W_hz + b_hz)
    n = tanh(x W_in + b_in + r * (h W_hn + b_hn)),  h_t = (1 - z) * n + z * h_{t-1}
    """
    dtype = jnp.result_type(x.dtype, params["w_ih"].dtype)
    acc = compute_dtype(params, x)
    w_hh, b_hh = params["w_hh"].astype(acc), params["b_hh"].astype(acc)
    mask = step_mask(lengths, x.shape[0], x.shape[1])

    def step(h, inputs):
        projected, valid = inputs
        x_r, x_z, x_n = jnp.split(projected, 3, axis=-1)
        h_r, h_z, h_n = jnp.split(h @ w_hh + b_hh, 3, axis=-1)
        r, z = jax.nn.sigmoid(x_r + h_r), jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * h_n)
        h = keep_where(valid, (1 - z) * n + z * h, h)
        return h, (jnp.concatenate([r, z, n], axis=-1), h_n, h)

    inputs = (project_inputs(x, params["w_ih"], params["b_ih"], acc, lengths), mask)
    h_last, (gates, hidden_n, hidden) = lax.scan(step, h0.astype(acc), inputs)
    return GruParts((batch_major_outputs(hidden, mask, dtype), h_last.astype(dtype)), gates, hidden_n, hidden)


def gru(params: dict, x: Array, h0: Array, lengths: Array | None = None) -> tuple[Array, Array]:
    """``(hs, h_T)`` of a GRU; see :func:`gru_parts`."""
    return gru_parts(params, x, h0, lengths).y


# ------------------------------------------------------------------ bidirectional


def reverse_sequences(x: Array, lengths: Array | None = None) -> Array:
    """Reverse each sequence of ``x: (B, T, ...)`` within its length: ``y[b, t] = x[b, L_b - 1 - t]``
    for ``t < L_b`` (padding past ``L_b`` stays in place); all of ``T`` when ``lengths`` is None.
    A sequence whose length is outside ``[0, T]`` comes out NaN (see :func:`length_poison`)."""
    if lengths is None:
        return jnp.flip(x, axis=1)
    time = x.shape[1]
    steps = jnp.arange(time)[None, :]
    clipped = jnp.clip(lengths, 0, time)[:, None]  # keeps every gather index in bounds
    source = jnp.where(steps < clipped, clipped - 1 - steps, steps)
    trailing = (1,) * (x.ndim - 2)
    reversed_x = jnp.take_along_axis(x, source.reshape(source.shape + trailing), axis=1)
    return reversed_x * length_poison(lengths, time, x.dtype).reshape((-1, 1) + trailing)


def concatenate(arrays: tuple[Array, ...], axis: int = -1) -> Array:
    """``jnp.concatenate(arrays, axis)`` (a bidirectional layer joins its two directions)."""
    return jnp.concatenate(arrays, axis=axis)
