"""What a backward pass keeps: the bytes ``jax.vjp`` saves as residuals."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np


def nbytes(avals: Any) -> int:
    """Total bytes of a pytree (or iterable) of arrays / shape-dtype structs."""
    leaves = jax.tree_util.tree_leaves(list(avals) if not hasattr(avals, "shape") else avals)
    return int(sum(math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize for leaf in leaves))


def residual_bytes(f: Callable[..., Any], *args: Any) -> dict[str, int]:
    """Bytes ``jax.vjp(f, *args)`` saves for the backward pass.

    ``total`` counts every saved array; ``arguments`` the part that is an input of ``f``
    passed through (saved either way, not created by the forward); ``intermediates`` the
    rest -- the figure a backward rule's design controls.
    """
    from jax._src.ad_checkpoint import (
        saved_residuals,  # public only as print_saved_residuals
    )

    saved = saved_residuals(f, *args)
    total = nbytes([aval for aval, _ in saved])
    arguments = nbytes([aval for aval, source in saved if source.startswith("from the argument")])
    return {"total": total, "arguments": arguments, "intermediates": total - arguments}
