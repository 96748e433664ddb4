"""Sequence plumbing for bidirectional layers: reverse each sequence within its length, and
concatenate features, with hand-written backward rules (both are permutations/slices, so
the backward is the same map applied to ``dy``). Their reference twins live in
:mod:`jaxbp.reference.recurrent` next to the cells that use them."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from jaxbp import reference
from jaxbp.core import Array, as_float_array, define_op, normalize_axis, require_rank
from jaxbp.ops.recurrent import checked_lengths


def _reverse_fwd(x, lengths):
    return reference.reverse_sequences(x, lengths), lengths


def _reverse_bwd(lengths, dy):
    """Forward: ``y[b, t] = x[b, L_b - 1 - t]`` (a permutation of the steps that is its own inverse).
    ``dx = reverse(dy)`` with the same lengths."""
    return reference.reverse_sequences(dy, lengths), None


_reverse_sequences = define_op(reference.reverse_sequences, _reverse_fwd, _reverse_bwd)


def _concatenate_fwd(arrays, axis):
    return reference.concatenate(arrays, axis), tuple(a.shape[axis] for a in arrays)


def _concatenate_bwd(axis, sizes, dy):
    """Forward: ``y = [a_1 | a_2 | ...]`` along ``axis``.  ``da_i`` is ``dy``'s slice where ``a_i`` sits."""
    return (tuple(jnp.split(dy, np.cumsum(sizes)[:-1].tolist(), axis=axis)),)


def _concatenate_primal(arrays, axis):
    return reference.concatenate(arrays, axis)


_concatenate = define_op(_concatenate_primal, _concatenate_fwd, _concatenate_bwd, nondiff_argnums=(1,))


def reverse_sequences(x: Array, *, lengths: Array | None = None) -> Array:
    """Reverse every sequence of ``x: (B, T, ...)`` in time, within its length when ``lengths`` is given
    (steps past a length stay where they are), so a backward-in-time RNN reads the real steps first.
    A length outside ``[0, T]`` raises eagerly; under ``jit`` that sequence (and its gradient) is NaN."""
    x = as_float_array("reverse_sequences", "x", x)
    require_rank("reverse_sequences", "x (batch, time, ...)", x, min_rank=2)
    return _reverse_sequences(x, checked_lengths("reverse_sequences", lengths, x.shape[0], x.shape[1]))


def concatenate(arrays: Sequence[Array], axis: int = -1) -> Array:
    """Join float arrays of equal shape but along ``axis``; the backward splits ``dy`` back."""
    arrays = tuple(as_float_array("concatenate", f"arrays[{i}]", a) for i, a in enumerate(arrays))
    if not arrays:
        raise ValueError("concatenate: needs at least one array")
    axis = normalize_axis("concatenate", axis, arrays[0].ndim)
    for i, a in enumerate(arrays):
        others = a.shape[:axis] + a.shape[axis + 1 :]
        if a.ndim != arrays[0].ndim or others != arrays[0].shape[:axis] + arrays[0].shape[axis + 1 :]:
            raise ValueError(
                f"concatenate: arrays[{i}] has shape {tuple(a.shape)}, which differs from arrays[0] "
                f"{tuple(arrays[0].shape)} outside axis {axis}"
            )
    dtype = jnp.result_type(*arrays)
    return _concatenate(tuple(a.astype(dtype) for a in arrays), axis)
