"""Embedding lookup (reference forward math)."""

from __future__ import annotations

import jax.numpy as jnp

from jaxbp.core import Array


def valid_ids(ids: Array, vocabulary_size: int) -> Array:
    """True where ``0 <= id < vocabulary_size``."""
    return (ids >= 0) & (ids < vocabulary_size)


def embedding(params: dict, ids: Array) -> Array:
    """``y[..., :] = w[ids[...], :]`` for ``w: (vocab, dim)`` and integer ``ids``.

    An id outside ``[0, vocab)`` gives a row of NaN (so a loss built on it is NaN and
    a training guard stops), never a silently clamped or wrapped row.
    """
    w = params["w"]
    valid = valid_ids(ids, w.shape[0])
    rows = jnp.take(w, jnp.where(valid, ids, 0), axis=0)
    return jnp.where(valid[..., None], rows, jnp.nan).astype(w.dtype)
