"""Truncated backpropagation through time (Williams & Peng 1990; Sutskever 2013, ch. 2).

A long sequence ``(B, T, ...)`` is cut into ``T / k`` chunks of ``k`` steps. The hidden
state is carried from one chunk into the next (the forward pass sees the whole history),
but ``stop_gradient`` cuts the backward pass at every chunk boundary, so chunk ``j``'s
gradient is full BPTT *restricted to its own window*: the contributions of steps inside
the window only. Memory and time per backward are O(k) instead of O(T).

``loss_fn(params, inputs_chunk, targets_chunk, state) -> (loss, new_state)`` is any
function of one chunk (e.g. embedding -> ``ops.lstm`` with the carried state -> dense ->
softmax cross-entropy); ``state`` is any pytree (``h`` or ``(h, c)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxbp.core import Array
from jaxbp.validation import positive_int

ChunkLoss = Callable[[Any, Any, Any, Any], tuple[Array, Any]]


class ChunkGradients(NamedTuple):
    """Result of :func:`truncated_bptt_gradients`."""

    losses: Array  # (num_chunks,) each chunk's loss
    grads: Any  # params-shaped; every leaf has a leading (num_chunks,) axis
    state: Any  # the carried state after the last chunk (no gradient flows through it)


def _chunked(caller: str, tree: Any, chunk_length: int) -> tuple[Any, int]:
    """Leaves ``(B, T, ...)`` -> ``(T / k, B, k, ...)``: the scan runs over the chunk axis."""
    chunk_length = positive_int(caller, "chunk_length", chunk_length)
    leaves = jax.tree_util.tree_leaves(tree)
    time = {int(leaf.shape[1]) if leaf.ndim >= 2 else -1 for leaf in leaves}
    if len(time) != 1 or -1 in time:
        raise ValueError(
            f"{caller}: inputs and targets must share a time axis 1, got shapes {[leaf.shape for leaf in leaves]}"
        )
    (length,) = time
    if length % chunk_length:
        raise ValueError(f"{caller}: the sequence length {length} is not a multiple of chunk_length {chunk_length}")
    count = length // chunk_length

    def split(leaf: Array) -> Array:
        chunks = leaf.reshape(leaf.shape[0], count, chunk_length, *leaf.shape[2:])
        return jnp.swapaxes(chunks, 0, 1)

    return jax.tree_util.tree_map(split, tree), count


def truncated_bptt_gradients(
    loss_fn: ChunkLoss, params: Any, inputs: Any, targets: Any, state: Any, chunk_length: int
) -> ChunkGradients:
    """Every chunk's loss and gradient with the state carried across chunks and gradients stopped
    between them (parameters fixed for the whole sequence; see :func:`make_truncated_bptt_step`
    for one update per chunk)."""
    chunks, _ = _chunked("truncated_bptt_gradients", (inputs, targets), chunk_length)
    value_and_grad = jax.value_and_grad(loss_fn, has_aux=True)

    def one_chunk(state, chunk):
        (loss, new_state), grads = value_and_grad(params, *chunk, state)
        return jax.lax.stop_gradient(new_state), (loss, grads)

    state, (losses, grads) = jax.lax.scan(one_chunk, jax.lax.stop_gradient(state), chunks)
    return ChunkGradients(losses, grads, state)


def make_truncated_bptt_step(
    loss_fn: ChunkLoss, optimizer: optax.GradientTransformation, chunk_length: int
) -> Callable[[Any, Any, Any, Any, Any], tuple[Any, Any, Any, Array]]:
    """A jitted ``step(params, opt_state, inputs, targets, state) -> (params, opt_state, state, losses)``
    that walks the sequence chunk by chunk, updating the parameters after every chunk (classic
    truncated BPTT with k1 = k2 = ``chunk_length``) and carrying the state forward."""

    @jax.jit
    def step(params: Any, opt_state: Any, inputs: Any, targets: Any, state: Any):
        chunks, _ = _chunked("truncated_bptt_step", (inputs, targets), chunk_length)

        def one_chunk(carry, chunk):
            params, opt_state, state = carry
            (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *chunk, state)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state, jax.lax.stop_gradient(new_state)), loss

        (params, opt_state, state), losses = jax.lax.scan(one_chunk, (params, opt_state, state), chunks)
        return params, opt_state, state, losses

    return step
