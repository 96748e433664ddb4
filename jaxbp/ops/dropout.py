"""Inverted dropout with a hand-written backward rule and an explicit PRNG key.

Training mode: ``y = x * keep / (1 - rate)`` with ``keep ~ Bernoulli(1 - rate)`` drawn
from ``key``, so ``E[y] = x`` and eval mode is the identity (Srivastava et al. 2014).

The mask is a pure function of ``(key, rate, shape)``, so the backward *regenerates*
it from the key instead of saving it. Residual bytes per call (the only choice here):

* the key: 8 bytes (a threefry key is two uint32; 16 for an rbg key), whatever the
  size of ``x``;
* a boolean mask: 1 byte per element of ``x`` (the DESIGN's "masks as booleans"),
  e.g. 512 KiB for a (1024, 512) activation -- and it would have to be kept for
  every dropout layer until the backward pass.

The key wins by a factor ``x.size / 8``; the price is one more pass of the
counter-based generator in the backward (elementwise, like the forward's), the
same trade ``jax.checkpoint`` makes for cheap ops. The key is an ordinary argument
and gets no cotangent.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import reference
from jaxbp.core import Array, accumulation_dtype, as_float_array, define_op, static_float


def _dropout_fwd(x, key, rate):
    return reference.dropout(x, key, rate), key  # residuals: the key alone (8 bytes)


def _dropout_bwd(rate, key, dy):
    """Forward: y = x * keep / (1 - rate),  keep = dropout_keep_mask(key, rate, x.shape).
    dL/dx = dy * keep / (1 - rate)   (the same mask, regenerated from the key);
    dL/dkey = None                   (a key is not differentiable).
    """
    keep = reference.dropout_keep_mask(key, rate, dy.shape)
    wide = dy.astype(accumulation_dtype(dy.dtype))
    dx = jnp.where(keep, wide * (1.0 / (1.0 - rate)), jnp.zeros_like(wide))
    return dx.astype(dy.dtype), None


_dropout = define_op(reference.dropout, _dropout_fwd, _dropout_bwd, nondiff_argnums=(2,))


def _is_prng_key(key: object) -> bool:
    """A single typed key (``jax.random.key``, shape ``()``) or a single raw uint32 key
    (``jax.random.PRNGKey``: shape ``(2,)`` for threefry, ``(4,)`` for rbg)."""
    dtype = getattr(key, "dtype", None)
    if dtype is None:
        return False
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
        return getattr(key, "shape", None) == ()
    return dtype == np.uint32 and getattr(key, "shape", None) == jax.random.key_data(jax.random.key(0)).shape


def dropout(x: Array, key: Array | None, rate: float, *, train: bool) -> Array:
    """Inverted dropout: zero each element with probability ``rate`` and scale the rest by
    ``1 / (1 - rate)`` in training mode; the identity in eval mode.

    Args:
      x: floating-point array of any shape.
      key: a PRNG key (``jax.random.key``); the same key gives the same mask. Needed
        only when ``train`` and ``rate > 0``. Under ``vmap`` pass one key per example.
      rate: static drop probability in ``[0, 1)``.
      train: static Python bool.
    Returns:
      ``y`` like ``x``; ``x`` itself (an exact identity) when ``train=False`` or ``rate == 0``.
    """
    op = "dropout"
    x = as_float_array(op, "x", x)
    rate = static_float(op, "rate", rate, minimum=0.0, maximum=1.0, include_maximum=False)
    if not isinstance(train, (bool, np.bool_)):
        raise TypeError(f"{op}: train must be a Python bool (static under jit), got {train!r}")
    if not train or rate == 0.0:
        return x
    if key is None:
        raise ValueError(
            f"{op}: train=True with rate {rate} needs a PRNG key; pass key=jax.random.key(seed) "
            "(split or fold_in a fresh one every step)"
        )
    if not _is_prng_key(key):
        raise TypeError(
            f"{op}: key must be a PRNG key from jax.random.key(seed), a single one (under vmap, one per example), got "
            f"dtype {getattr(key, 'dtype', type(key).__name__)}, shape {getattr(key, 'shape', None)}"
        )
    return _dropout(x, key, rate)
