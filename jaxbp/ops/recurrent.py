"""RNN, LSTM and GRU with hand-written backpropagation through time over the whole sequence.

One custom VJP covers the whole sequence, which is what lets a hand-written BPTT beat
autodiff through a scan:

* the forward (:mod:`jaxbp.reference.recurrent`) projects the inputs of all steps with
  one matmul before the scan and saves only what the backward needs (activated gates,
  carried states), time-major so each step's tensors arrive as scan inputs;
* the backward is one reverse ``lax.scan`` whose step does the elementwise chain rule
  and a single matmul ``da_t W_hh^T`` (the only truly sequential work);
* the weight gradients are single matmuls over all ``T * B`` rows after the scan
  (``dW_hh = sum_t h_{t-1}^T da_t``, ``dW_ih = sum_t x_t^T da_t``) and so is ``dx``.

With ``lengths``, a step past a sequence's end passes the state's cotangent through
unchanged and gives that step zero gradient (its output is the constant 0). A length
outside ``[0, T]`` raises eagerly; under ``jit``/``vmap`` it cannot, so that sequence's
outputs, final state and gradients come out NaN (the reference's rule, see
:mod:`jaxbp.reference.recurrent`), and the weight gradients, summed over the batch, too.

Saturation: gate derivatives are taken from the saved activations (``sigma (1 - sigma)``,
``1 - tanh^2``), the standard choice; in float32 they are 0 once a gate saturates
(|a| >~ 17 for sigma, >~ 9 for tanh), exactly where they are below 1e-7. With cell
states near 1e30 (float64) autodiff of the reference LSTM gives gradients that central
differences contradict (``dx`` off by O(1) at T = 2); this backward agrees with them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxbp import reference
from jaxbp.core import Array, as_array, as_float_array, define_op, is_concrete, require_rank
from jaxbp.reference.recurrent import keep_where, previous_states, step_mask


def _time_major(dy: Array, dtype: Any) -> Array:
    return jnp.swapaxes(dy, 0, 1).astype(dtype)


def _mask_of(lengths: Array | None, x: Array) -> Array | None:
    return step_mask(lengths, x.shape[0], x.shape[1])


def _sequence_grads(
    x: Array, w_ih: Array, h0: Array, hidden: Array, da_input: Array, da_hidden: Array
) -> tuple[Array, Array, Array]:
    """After the reverse scan, every matmul over all ``T * B`` rows at once.

    ``a_t = x_t W_ih + h_{t-1} W_hh (+ biases)`` at every step, so
    ``dx_t = da_t W_ih^T``, ``dW_ih = sum_t x_t^T da_t``, ``dW_hh = sum_t h_{t-1}^T da_t``.
    ``da_input``/``da_hidden`` (time-major) differ only for the GRU, whose ``r`` scales
    the hidden part of the candidate's pre-activation.
    """
    compute_dtype = da_input.dtype
    dx = jnp.einsum("tbg,fg->btf", da_input, w_ih.astype(compute_dtype)).astype(x.dtype)
    dw_ih = jnp.einsum("btf,tbg->fg", x.astype(compute_dtype), da_input).astype(w_ih.dtype)
    dw_hh = jnp.einsum("tbh,tbg->hg", previous_states(h0, hidden), da_hidden)
    return dx, dw_ih, dw_hh


# ---------------------------------------------------------------------------- rnn


class RnnResiduals(NamedTuple):
    x: Array  # (B, T, F) inputs (for dW_ih)
    w_ih: Array  # (F, H)
    w_hh: Array  # (H, H)
    h0: Array  # (B, H)
    hidden: Array  # (T, B, H) carried states h_t, compute dtype
    lengths: Array | None  # (B,) ints, or None


def _rnn_fwd(params, x, h0, lengths):
    parts = reference.rnn_parts(params, x, h0, lengths)
    return parts.y, RnnResiduals(x, params["w_ih"], params["w_hh"], h0, parts.hidden, lengths)


def _rnn_bwd(residuals, cotangents):
    """Forward step: ``h_t = tanh(a_t)``, ``a_t = x_t W_ih + h_{t-1} W_hh + b``; output ``hs_t = h_t``.

    Reverse scan, carrying ``dh = dL/dh_t`` from the later steps::

        dh_t     = dhs_t + dh                     (output and recurrence paths)
        da_t     = dh_t * (1 - h_t^2)
        dh_{t-1} = da_t W_hh^T
    then ``db = sum_t da_t`` and the matmuls of :func:`_sequence_grads`; ``dh0`` is the
    final carry. Past a sequence's length: ``da_t = 0`` and ``dh_{t-1} = dh``.
    """
    x, w_ih, w_hh, h0, hidden, lengths = residuals
    dhs, dh_last = cotangents
    compute_dtype = hidden.dtype
    w_hh_t = w_hh.astype(compute_dtype).T

    def step(dh, inputs):
        dout, h, valid = inputs
        da = (dh + dout) * (1 - h * h)
        return keep_where(valid, da @ w_hh_t, dh), keep_where(valid, da, 0)

    inputs = (_time_major(dhs, compute_dtype), hidden, _mask_of(lengths, x))
    dh0, da = lax.scan(step, dh_last.astype(compute_dtype), inputs, reverse=True)
    dx, dw_ih, dw_hh = _sequence_grads(x, w_ih, h0, hidden, da, da)
    dparams = {"w_ih": dw_ih, "w_hh": dw_hh.astype(w_hh.dtype), "b": jnp.sum(da, axis=(0, 1)).astype(w_ih.dtype)}
    return dparams, dx, dh0.astype(h0.dtype), None


_rnn = define_op(reference.rnn, _rnn_fwd, _rnn_bwd)


# --------------------------------------------------------------------------- lstm


class LstmResiduals(NamedTuple):
    x: Array  # (B, T, F)
    w_ih: Array  # (F, 4H)
    w_hh: Array  # (H, 4H)
    h0: Array  # (B, H)
    c0: Array  # (B, H)
    gates: Array  # (T, B, 4H) activated i, f, g, o
    cells: Array  # (T, B, H) carried c_t
    hidden: Array  # (T, B, H) carried h_t (h_{t-1} feeds dW_hh)
    lengths: Array | None


def _lstm_fwd(params, x, state, lengths):
    parts = reference.lstm_parts(params, x, state, lengths)
    h0, c0 = state
    residuals = LstmResiduals(
        x, params["w_ih"], params["w_hh"], h0, c0, parts.gates, parts.cells, parts.hidden, lengths
    )
    return parts.y, residuals


def _lstm_bwd(residuals, cotangents):
    """Forward step: ``a_t = x_t W_ih + h_{t-1} W_hh + b`` split into i, f, g, o;
    ``c_t = f c_{t-1} + i g``, ``h_t = o tanh(c_t)``.

    Reverse scan, carrying ``(dh, dc) = (dL/dh_t, dL/dc_t)`` from the later steps::

        dh_t  = dhs_t + dh
        dc_t  = dc + dh_t * o * (1 - tanh(c_t)^2)
        da_i  = dc_t * g * i (1 - i)          da_f = dc_t * c_{t-1} * f (1 - f)
        da_g  = dc_t * i * (1 - g^2)          da_o = dh_t * tanh(c_t) * o (1 - o)
        dh_{t-1} = da_t W_hh^T,   dc_{t-1} = dc_t * f
    then ``db = sum_t da_t`` and the matmuls of :func:`_sequence_grads`; ``(dh0, dc0)``
    is the final carry. Past a sequence's length: ``da_t = 0``, the carry passes through.
    """
    x, w_ih, w_hh, h0, c0, gates, cells, hidden, lengths = residuals
    dhs, (dh_last, dc_last) = cotangents
    compute_dtype = gates.dtype
    w_hh_t = w_hh.astype(compute_dtype).T

    def step(carry, inputs):
        dh, dc = carry
        dout, gate, c, c_prev, valid = inputs
        i, f, g, o = jnp.split(gate, 4, axis=-1)
        dh_t = dh + dout
        tanh_c = jnp.tanh(c)
        dc_t = dc + dh_t * o * (1 - tanh_c * tanh_c)
        da = jnp.concatenate(
            [dc_t * g * i * (1 - i), dc_t * c_prev * f * (1 - f), dc_t * i * (1 - g * g), dh_t * tanh_c * o * (1 - o)],
            axis=-1,
        )
        carry = (keep_where(valid, da @ w_hh_t, dh), keep_where(valid, dc_t * f, dc))
        return carry, keep_where(valid, da, 0)

    inputs = (_time_major(dhs, compute_dtype), gates, cells, previous_states(c0, cells), _mask_of(lengths, x))
    (dh0, dc0), da = lax.scan(
        step, (dh_last.astype(compute_dtype), dc_last.astype(compute_dtype)), inputs, reverse=True
    )
    dx, dw_ih, dw_hh = _sequence_grads(x, w_ih, h0, hidden, da, da)
    dparams = {"w_ih": dw_ih, "w_hh": dw_hh.astype(w_hh.dtype), "b": jnp.sum(da, axis=(0, 1)).astype(w_ih.dtype)}
    return dparams, dx, (dh0.astype(h0.dtype), dc0.astype(c0.dtype)), None


_lstm = define_op(reference.lstm, _lstm_fwd, _lstm_bwd)


# ---------------------------------------------------------------------------- gru


class GruResiduals(NamedTuple):
    x: Array  # (B, T, F)
    w_ih: Array  # (F, 3H)
    w_hh: Array  # (H, 3H)
    h0: Array  # (B, H)
    gates: Array  # (T, B, 3H) activated r, z, n
    hidden_n: Array  # (T, B, H) h_{t-1} W_hn + b_hn
    hidden: Array  # (T, B, H) carried h_t
    lengths: Array | None


def _gru_fwd(params, x, h0, lengths):
    parts = reference.gru_parts(params, x, h0, lengths)
    residuals = GruResiduals(x, params["w_ih"], params["w_hh"], h0, parts.gates, parts.hidden_n, parts.hidden, lengths)
    return parts.y, residuals


def _gru_bwd(residuals, cotangents):
    """Forward step, with ``u_t = x_t W_ih + b_ih`` and ``v_t = h_{t-1} W_hh + b_hh`` split into r, z, n parts:
    ``r = sigma(u_r + v_r)``, ``z = sigma(u_z + v_z)``, ``n = tanh(u_n + r v_n)``,
    ``h_t = (1 - z) n + z h_{t-1}``.

    Reverse scan, carrying ``dh = dL/dh_t`` from the later steps::

        dh_t  = dhs_t + dh
        du_n  = dh_t (1 - z) (1 - n^2)              dv_n = du_n * r
        du_r  = dv_r = du_n * v_n * r (1 - r)
        du_z  = dv_z = dh_t (h_{t-1} - n) z (1 - z)
        dh_{t-1} = dh_t * z + dv_t W_hh^T
    then ``db_ih = sum_t du_t``, ``db_hh = sum_t dv_t``, ``dW_ih`` from ``du``, ``dW_hh``
    from ``dv`` (:func:`_sequence_grads`). Past a sequence's length: ``du = dv = 0``,
    ``dh_{t-1} = dh``.
    """
    x, w_ih, w_hh, h0, gates, hidden_n, hidden, lengths = residuals
    dhs, dh_last = cotangents
    compute_dtype = gates.dtype
    w_hh_t = w_hh.astype(compute_dtype).T

    def step(dh, inputs):
        dout, gate, v_n, h_prev, valid = inputs
        r, z, n = jnp.split(gate, 3, axis=-1)
        dh_t = dh + dout
        du_n = dh_t * (1 - z) * (1 - n * n)
        du_r = du_n * v_n * r * (1 - r)
        du_z = dh_t * (h_prev - n) * z * (1 - z)
        dv = jnp.concatenate([du_r, du_z, du_n * r], axis=-1)
        dh_prev = dh_t * z + dv @ w_hh_t
        return keep_where(valid, dh_prev, dh), (keep_where(valid, dv, 0), keep_where(valid, du_n, 0))

    inputs = (_time_major(dhs, compute_dtype), gates, hidden_n, previous_states(h0, hidden), _mask_of(lengths, x))
    dh0, (dv, du_n) = lax.scan(step, dh_last.astype(compute_dtype), inputs, reverse=True)
    hidden_size = du_n.shape[-1]
    du = jnp.concatenate([dv[..., : 2 * hidden_size], du_n], axis=-1)
    dx, dw_ih, dw_hh = _sequence_grads(x, w_ih, h0, hidden, du, dv)
    dparams = {
        "w_ih": dw_ih,
        "w_hh": dw_hh.astype(w_hh.dtype),
        "b_ih": jnp.sum(du, axis=(0, 1)).astype(w_ih.dtype),
        "b_hh": jnp.sum(dv, axis=(0, 1)).astype(w_hh.dtype),
    }
    return dparams, dx, dh0.astype(h0.dtype), None


_gru = define_op(reference.gru, _gru_fwd, _gru_bwd)


# ---------------------------------------------------------------- public ops


def _checked_params(op: str, params: Any, bias_keys: tuple[str, ...], num_gates: int) -> tuple[dict, int]:
    """Float params with ``w_ih: (F, G*H)``, ``w_hh: (H, G*H)`` and biases ``(G*H,)``; returns (params, H)."""
    keys = ("w_ih", "w_hh", *bias_keys)
    if not isinstance(params, dict) or set(params) != set(keys):
        found = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"{op}: params must be a dict with keys {list(keys)}, got {found}")
    checked = {name: as_float_array(op, f'params["{name}"]', params[name]) for name in keys}
    require_rank(op, 'params["w_ih"]', checked["w_ih"], rank=2)
    require_rank(op, 'params["w_hh"]', checked["w_hh"], rank=2)
    hidden_size = checked["w_hh"].shape[0]
    width = num_gates * hidden_size
    if checked["w_hh"].shape[1] != width:
        raise ValueError(
            f'{op}: params["w_hh"] must have shape (H, {num_gates}H) = ({hidden_size}, {width}), got {tuple(checked["w_hh"].shape)}'
        )
    if checked["w_ih"].shape[1] != width:
        raise ValueError(
            f'{op}: params["w_ih"] must have {num_gates}H = {width} columns to match w_hh {tuple(checked["w_hh"].shape)}, '
            f"got shape {tuple(checked['w_ih'].shape)}"
        )
    for name in bias_keys:
        if tuple(checked[name].shape) != (width,):
            raise ValueError(f'{op}: params["{name}"] must have shape ({width},), got {tuple(checked[name].shape)}')
    return checked, hidden_size


def _checked_sequence(op: str, x: Any, features: int) -> Array:
    x = as_float_array(op, "x", x)
    require_rank(op, "x (batch, time, features)", x, rank=3)
    if x.shape[1] == 0:
        raise ValueError(f"{op}: the time axis of x has length 0 (shape {tuple(x.shape)}); need at least one step")
    if x.shape[2] != features:
        raise ValueError(
            f'{op}: x has {x.shape[2]} features (shape {tuple(x.shape)}) but params["w_ih"] expects {features}'
        )
    return x


def _checked_state(op: str, name: str, state: Any, batch: int, hidden_size: int, dtype: Any) -> Array:
    if state is None:
        return jnp.zeros((batch, hidden_size), dtype)
    state = as_float_array(op, name, state)
    if tuple(state.shape) != (batch, hidden_size):
        raise ValueError(
            f"{op}: {name} must have shape (batch, H) = ({batch}, {hidden_size}), got {tuple(state.shape)}"
        )
    return state


def checked_lengths(op: str, lengths: Any, batch: int, time: int) -> Array | None:
    """``lengths`` as a ``(batch,)`` int array; values outside ``[0, time]`` raise when concrete
    (traced ones are poisoned with NaN by the reference math instead)."""
    if lengths is None:
        return None
    lengths = as_array(op, "lengths", lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"{op}: lengths must be integers, got dtype {lengths.dtype}")
    if tuple(lengths.shape) != (batch,):
        raise ValueError(f"{op}: lengths must have shape (batch,) = ({batch},), got {tuple(lengths.shape)}")
    if is_concrete(lengths) and batch:
        values = np.asarray(lengths)
        if values.min() < 0 or values.max() > time:
            bad = int(values.min() if values.min() < 0 else values.max())
            raise ValueError(f"{op}: length {bad} is outside [0, {time}] for a sequence of {time} steps")
    return lengths


def _checked_call(op: str, params: Any, x: Any, bias_keys: tuple[str, ...], num_gates: int, lengths: Any):
    params, hidden_size = _checked_params(op, params, bias_keys, num_gates)
    x = _checked_sequence(op, x, params["w_ih"].shape[0])
    return params, x, hidden_size, checked_lengths(op, lengths, x.shape[0], x.shape[1])


def rnn(params: dict, x: Array, h0: Array | None = None, *, lengths: Array | None = None) -> tuple[Array, Array]:
    """Elman RNN ``h_t = tanh(x_t W_ih + h_{t-1} W_hh + b)`` over a whole sequence.

    Args:
      params: ``{"w_ih": (F, H), "w_hh": (H, H), "b": (H,)}``.
      x: ``(B, T, F)`` with ``T >= 1``.
      h0: ``(B, H)`` initial state (zeros when None).
      lengths: optional ``(B,)`` ints in ``[0, T]``; past its length a sequence keeps
        its state and outputs 0. Out of range: ``ValueError`` eagerly; under ``jit`` that
        sequence's outputs and state, and the gradients, are NaN.
    Returns:
      ``(hs, h_T)``: ``(B, T, H)`` outputs and the ``(B, H)`` final state.
    """
    params, x, hidden_size, lengths = _checked_call("rnn", params, x, ("b",), 1, lengths)
    return _rnn(params, x, _checked_state("rnn", "h0", h0, x.shape[0], hidden_size, x.dtype), lengths)


def lstm(
    params: dict, x: Array, state: tuple[Array, Array] | None = None, *, lengths: Array | None = None
) -> tuple[Array, tuple[Array, Array]]:
    """LSTM over a whole sequence, gates i, f, g, o (see :func:`jaxbp.reference.lstm_parts`).

    Args:
      params: ``{"w_ih": (F, 4H), "w_hh": (H, 4H), "b": (4H,)}``.
      x: ``(B, T, F)`` with ``T >= 1``.
      state: ``(h0, c0)``, each ``(B, H)`` (zeros when None).
      lengths: optional ``(B,)`` ints in ``[0, T]`` (see :func:`rnn`).
    Returns:
      ``(hs, (h_T, c_T))``.
    """
    params, x, hidden_size, lengths = _checked_call("lstm", params, x, ("b",), 4, lengths)
    if state is not None and not (isinstance(state, (tuple, list)) and len(state) == 2):
        raise TypeError(f"lstm: state must be a pair (h0, c0), got {type(state).__name__}")
    h0, c0 = (None, None) if state is None else state
    batch = x.shape[0]
    state = (
        _checked_state("lstm", "h0", h0, batch, hidden_size, x.dtype),
        _checked_state("lstm", "c0", c0, batch, hidden_size, x.dtype),
    )
    return _lstm(params, x, state, lengths)


def gru(params: dict, x: Array, h0: Array | None = None, *, lengths: Array | None = None) -> tuple[Array, Array]:
    """GRU over a whole sequence in PyTorch's form (see :func:`jaxbp.reference.gru_parts`).

    Args:
      params: ``{"w_ih": (F, 3H), "w_hh": (H, 3H), "b_ih": (3H,), "b_hh": (3H,)}``.
      x: ``(B, T, F)`` with ``T >= 1``.
      h0: ``(B, H)`` initial state (zeros when None).
      lengths: optional ``(B,)`` ints in ``[0, T]`` (see :func:`rnn`).
    Returns:
      ``(hs, h_T)``.
    """
    params, x, hidden_size, lengths = _checked_call("gru", params, x, ("b_ih", "b_hh"), 3, lengths)
    return _gru(params, x, _checked_state("gru", "h0", h0, x.shape[0], hidden_size, x.dtype), lengths)
