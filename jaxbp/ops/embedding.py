"""Embedding lookup with a scatter-add backward rule."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxbp import reference
from jaxbp.core import Array, as_array, as_float_array, define_op, is_concrete, require_rank
from jaxbp.reference.embedding import valid_ids


def _embedding_primal(vocabulary_size, params, ids):
    """``reference.embedding``, with the vocabulary size static for the backward's output shape."""
    return reference.embedding(params, ids)


def _embedding_fwd(vocabulary_size, params, ids):
    return reference.embedding(params, ids), ids


def _embedding_bwd(vocabulary_size, ids, dy):
    """Forward: ``y[n] = w[ids[n]]``.
    ``dL/dw[v] = sum over n with ids[n] = v of dy[n]`` (a scatter-add: repeated ids accumulate).
    Rows of invalid ids (whose output is NaN) add nothing.
    """
    rows = jnp.where(valid_ids(ids, vocabulary_size)[..., None], dy, 0).reshape(ids.size, dy.shape[-1])
    dw = jnp.zeros((vocabulary_size, dy.shape[-1]), dy.dtype).at[ids.reshape(-1)].add(rows, mode="drop")
    return {"w": dw}, None


_embedding = define_op(_embedding_primal, _embedding_fwd, _embedding_bwd, nondiff_argnums=(0,))


def embedding(params: dict, ids: Any) -> Array:
    """Look up rows of ``params["w"]``: ``y[..., :] = w[ids[...], :]``.

    Args:
      params: ``{"w": (vocab, dim)}`` floating point.
      ids: integer array of any shape, values in ``[0, vocab)``.
    Returns:
      ``ids.shape + (dim,)``. An id outside the vocabulary raises ``ValueError`` when
      ``ids`` are concrete; under ``jit``/``vmap`` (where values cannot be checked) its
      row is NaN, so the loss becomes NaN and training's non-finite guard stops. An empty
      vocabulary raises ``ValueError`` (under ``jit`` too: it is a shape).
    """
    if not isinstance(params, dict) or set(params) != {"w"}:
        found = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f'embedding: params must be a dict with the key "w", got {found}')
    w = as_float_array("embedding", 'params["w"]', params["w"])
    require_rank("embedding", 'params["w"] (vocab, dim)', w, rank=2)
    ids = as_array("embedding", "ids", ids)
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(f"embedding: ids must be integers, got dtype {ids.dtype}")
    vocabulary_size = w.shape[0]
    if vocabulary_size == 0:
        raise ValueError(f'embedding: params["w"] {tuple(w.shape)} has an empty vocabulary, no id can be looked up')
    if is_concrete(ids) and ids.size:
        values = np.asarray(ids)
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= vocabulary_size:
            bad = low if low < 0 else high
            raise ValueError(
                f"embedding: id {bad} is out of range for a vocabulary of {vocabulary_size} (valid: 0..{vocabulary_size - 1})"
            )
    return _embedding(vocabulary_size, {"w": w}, ids)
