"""Composition ops: the residual junction and reshapes, with trivial backward rules.

They exist so that a network built from :mod:`jaxbp.nn` differentiates only through
hand-written rules (``assert_fully_manual`` checks this), and because the tutorial documents'
skip-connection rule dL/dx = dL/dy + dL/dx_residual is worth seeing written down.
"""

from __future__ import annotations

import math

from jaxbp import reference
from jaxbp.core import Array, as_float_array, define_op, require_rank, same_shape_floats


def _add_fwd(a, b):
    return reference.add(a, b), None


def _add_bwd(_, dy):
    """Forward: y = a + b.   dL/da = dy,   dL/db = dy.
    At a skip connection y = x + f(x), autodiff's fan-out then sums the two paths:
    dL/dx = dy + (df/dx)^T dy.
    """
    return dy, dy


_add = define_op(reference.add, _add_fwd, _add_bwd)


def add(a: Array, b: Array) -> Array:
    """Elementwise ``a + b`` of two same-shaped arrays (no broadcasting)."""
    return _add(*same_shape_floats("add", "a", a, "b", b))


def _reshape_fwd(x, shape):
    return reference.reshape(x, shape), x.shape


def _reshape_bwd(shape, input_shape, dy):
    """Forward: y = reshape(x, shape).   dL/dx = reshape(dy, x.shape)."""
    return (dy.reshape(input_shape),)


_reshape = define_op(reference.reshape, _reshape_fwd, _reshape_bwd, nondiff_argnums=(1,))


def reshape(x: Array, shape: tuple[int, ...]) -> Array:
    """``x`` with a new shape of the same size (one entry may be -1, but not for an empty ``x``)."""
    x = as_float_array("reshape", "x", x)
    shape = tuple(int(d) for d in shape)
    known = math.prod(d for d in shape if d != -1)
    if -1 in shape and known == 0:
        raise ValueError(
            f"reshape: cannot infer the -1 entry of {shape} when the other entries multiply to 0 "
            f"(x has shape {tuple(x.shape)}); give every size explicitly"
        )
    if shape.count(-1) > 1 or (-1 not in shape and known != x.size) or (known and x.size % known):
        raise ValueError(f"reshape: cannot reshape an array of shape {tuple(x.shape)} (size {x.size}) to {shape}")
    if -1 in shape:
        shape = tuple(x.size // known if d == -1 else d for d in shape)
    return _reshape(x, shape)


def flatten(x: Array) -> Array:
    """``(batch, ...) -> (batch, prod(...))``; an empty batch gives ``(0, prod(...))``."""
    x = as_float_array("flatten", "x", x)
    require_rank("flatten", "x", x, min_rank=1)
    return reshape(x, (x.shape[0], math.prod(x.shape[1:])))
