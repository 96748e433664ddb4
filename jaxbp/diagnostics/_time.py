"""Vanishing and exploding gradients across *time*: ``||dL/dh_t||`` for every step of a recurrent cell.

The total derivative ``dL/dh_t`` (through the output at step t and through every later
step) is read off the hand-written backward pass with a tap: the sequence runs one step
at a time through the op, and a zero tensor ``e_t`` is added to each new hidden state
before it is emitted and carried on, so ``dL/de_t = dL/dh_t`` comes out of the same
backward pass. For a cell whose Jacobians ``dh_t/dh_{t-1}`` shrink (a saturated or
small-weight RNN) the norms decay as ``t`` moves away from where the loss reads the state;
LSTM and GRU keep them up (Hochreiter 1991; Bengio et al. 1994; Pascanu et al. 2013).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxbp import ops
from jaxbp.core import Array, choose

CELL_OPS: dict[str, Callable] = {"rnn": ops.rnn, "lstm": ops.lstm, "gru": ops.gru}


def hidden_gradient_norms(
    cell: str,
    params: dict,
    x: Array,
    loss_of_outputs: Callable[[Array, Any], Array],
    state: Any = None,
    *,
    lengths: Array | None = None,
) -> Array:
    """``||dL/dh_t||`` (Frobenius over batch and hidden units) for ``t = 1..T``, shape ``(T,)``.

    Args:
      cell: ``"rnn"``, ``"lstm"`` or ``"gru"`` (the op in :mod:`jaxbp.ops`).
      params, x, state, lengths: as for the op (``state`` None gives zeros).
      loss_of_outputs: ``L(hs, final_state)`` -> scalar, with ``hs: (B, T, H)`` and the
        final state in the op's form (``h_T`` or ``(h_T, c_T)``).
    Past a sequence's length its state does not change, and its gradient is reported as 0.
    """
    op = choose("hidden_gradient_norms", "cell", cell, CELL_OPS)
    batch, time = x.shape[0], x.shape[1]
    if state is None:  # let the op build (and check) the zero state once
        _, state = jax.eval_shape(lambda: op(params, x[:, :1]))
        state = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), state)
    steps = jnp.arange(time)
    valid = jnp.ones((time, batch), bool) if lengths is None else steps[:, None] < jnp.asarray(lengths)[None, :]

    def loss_of_taps(taps: Array) -> Array:
        def step(carry, inputs):
            x_t, tap, valid_t = inputs
            _, final = op(params, x_t[:, None], carry, lengths=valid_t.astype(jnp.int32))
            tap = jnp.where(valid_t[:, None], tap, 0)
            if cell == "lstm":
                h, c = final
                final = (ops.add(h, tap), c)
                h = final[0]
            else:
                final = h = ops.add(final, tap)
            return final, jnp.where(valid_t[:, None], h, 0)

        final, hs = jax.lax.scan(step, state, (jnp.swapaxes(x, 0, 1), taps, valid))
        return loss_of_outputs(jnp.swapaxes(hs, 0, 1), final)

    hidden = jax.tree_util.tree_leaves(state)[0].shape[-1]
    grads = jax.grad(loss_of_taps)(jnp.zeros((time, batch, hidden), x.dtype))
    return jnp.sqrt(jnp.sum(grads * grads, axis=(1, 2)))
