"""The op protocol: how a hand-written backward rule is attached to reference math.

Every op in :mod:`jaxbp.ops` is built from three pieces that sit side by side::

    def _dense_fwd(params, x):
        y = reference.dense(params, x)  # forward math lives once, in reference
        return y, (x, params["w"])      # residuals: what backward needs, nothing more
    def _dense_bwd(residuals, dy):
        x, w = residuals                # y = x w + b, so the derivative, written by hand:
        return {"w": x.T @ dy, "b": dy.sum(0)}, dy @ w.T
    dense = define_op(reference.dense, _dense_fwd, _dense_bwd)

(ops/dense.py is this for any number of leading axes, accumulating bf16/f16 in float32.) :func:`define_op` is a thin
wrapper over :func:`jax.custom_vjp`; the primal function is the reference function
itself, so stripping every custom rule from a network (see
:func:`jaxbp.gradcheck.strip_custom_rules`) gives back exactly the reference math that
``jax.grad`` differentiates as ground truth; ``tests/test_catalog.py`` checks it op by op.

Static hyper-parameters (negative slope, axis, stride, ...) travel through
``nondiff_argnums`` and must be hashable Python values; arrays (labels, masks, keys)
are ordinary arguments whose cotangent is ``None``.

The validation helpers below give every public op the same style of error message:
``"<op>: <what is wrong> (<the shape or value at fault>)"``.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array
Shape = tuple[int, ...]


def define_op(
    primal: Callable,
    fwd: Callable,
    bwd: Callable,
    *,
    nondiff_argnums: Sequence[int] = (),
) -> jax.custom_vjp:
    """Attach a hand-written backward rule to ``primal``.

    Args:
      primal: the reference forward function (from :mod:`jaxbp.reference`).
      fwd: ``fwd(*args) -> (y, residuals)``; ``y`` has exactly ``primal``'s output
        structure, ``residuals`` is the minimum the backward needs.
      bwd: ``bwd(*static_args, residuals, dy) -> tuple`` with one cotangent (or
        ``None``) per non-static primal argument.
      nondiff_argnums: positions of static (hashable, non-array) arguments.
    """
    op = jax.custom_vjp(primal, nondiff_argnums=tuple(nondiff_argnums))
    op.defvjp(fwd, bwd)
    op.__name__ = getattr(primal, "__name__", "op")  # type: ignore[attr-defined]
    op.__doc__ = primal.__doc__
    return op


def define_elementwise_op(
    primal: Callable,
    residual: Callable,
    derivative: Callable,
    *,
    num_static: int = 0,
) -> jax.custom_vjp:
    """An elementwise activation is its function plus its derivative.

    ``y = primal(x, *static)``; the forward keeps ``residual(x, y, *static)`` and the
    backward returns ``dx = dy * derivative(saved, *static)``. Choosing the residual is
    the only design decision left to each activation: sigmoid, tanh, elu and gelu keep
    the input ``x`` (the same bytes as ``y``, and their derivatives from ``x`` stay exact in
    float32 tails, where ``y (1 - y)`` or ``1 - y^2`` round to 0). relu and leaky_relu do
    not use this factory: they keep a one-byte code of ``x``'s sign that also marks NaN
    (see ops/activations.py).
    """

    def fwd(x, *static):
        y = primal(x, *static)
        return y, residual(x, y, *static)

    def bwd(*static_residuals_dy):
        *static, saved, dy = static_residuals_dy
        return (dy * derivative(saved, *static).astype(dy.dtype),)

    return define_op(primal, fwd, bwd, nondiff_argnums=tuple(range(1, 1 + num_static)))


# ----------------------------------------------------------------------------- dtypes


def accumulation_dtype(dtype: Any) -> jnp.dtype:
    """The dtype to accumulate sums in: float32 for bf16/f16, else ``dtype`` itself."""
    return jnp.promote_types(dtype, jnp.float32)


def in_accumulation_dtype(x: Array) -> Array:
    """``x`` cast to :func:`accumulation_dtype` (float32 for bf16/f16 inputs)."""
    return x.astype(accumulation_dtype(x.dtype))


# ------------------------------------------------------------------------- validation


def _describe(x: Any) -> str:
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", type(x).__name__)
    return f"dtype {dtype}, shape {shape}" if shape is not None else f"type {dtype}"


def as_array(op: str, name: str, x: Any) -> Array:
    """``x`` as a JAX array; anything ``jnp.asarray`` cannot read (None, a string, a ragged list)
    is a ``TypeError`` naming ``op`` and ``name``, raised before any work is done."""
    if x is None or isinstance(x, (str, bytes)):
        raise TypeError(f"{op}: {name} must be an array, got {type(x).__name__} {reprlib.repr(x)}")
    try:
        return jnp.asarray(x)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{op}: {name} cannot be read as an array ({reprlib.repr(x)}): {error}") from None


def as_float_array(op: str, name: str, x: Any) -> Array:
    """Return ``x`` as a JAX array, or raise ``TypeError`` if it is not floating point (or not an array)."""
    if not hasattr(x, "dtype"):
        if isinstance(x, (bool, int)):
            raise TypeError(f"{op}: {name} must be a floating-point array, got Python {type(x).__name__} {x!r}")
        x = as_array(op, name, x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{op}: {name} must be a floating-point array, got {_describe(x)}")
    return jnp.asarray(x)


def require_rank(op: str, name: str, x: Array, *, min_rank: int = 0, rank: int | None = None) -> None:
    """Raise ``ValueError`` if ``x`` has the wrong number of dimensions."""
    if rank is not None and x.ndim != rank:
        raise ValueError(f"{op}: {name} must have rank {rank}, got shape {tuple(x.shape)}")
    if x.ndim < min_rank:
        raise ValueError(f"{op}: {name} must have rank >= {min_rank}, got shape {tuple(x.shape)}")


def require_same_shape(op: str, a_name: str, a: Array, b_name: str, b: Array) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have identical shapes."""
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{op}: {a_name} and {b_name} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def same_shape_floats(op: str, a_name: str, a: Any, b_name: str, b: Any) -> tuple[Array, Array]:
    """Two floating-point arrays of one shape, ``b`` cast to ``a``'s dtype (binary ops, losses)."""
    a = as_float_array(op, a_name, a)
    b = as_float_array(op, b_name, b)
    require_same_shape(op, a_name, a, b_name, b)
    return a, b.astype(a.dtype)


def static_float(
    op: str,
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    include_minimum: bool = True,
    include_maximum: bool = True,
) -> float:
    """Return ``value`` as a Python float, checking it is static, finite and in range.

    Hyper-parameters are static (they go through ``nondiff_argnums``), so a traced
    value is refused with a message that says so.
    """
    try:
        number = float(value)
    except (TypeError, jax.errors.ConcretizationTypeError) as error:
        raise TypeError(f"{op}: {name} must be a static Python number, got {value!r}") from error
    if not math.isfinite(number):
        raise ValueError(f"{op}: {name} must be finite, got {number}")
    too_low = minimum is not None and (number < minimum or (number == minimum and not include_minimum))
    too_high = maximum is not None and (number > maximum or (number == maximum and not include_maximum))
    if too_low or too_high:
        low = "-inf" if minimum is None else f"{minimum}"
        high = "inf" if maximum is None else f"{maximum}"
        interval = f"{'[' if include_minimum else '('}{low}, {high}{']' if include_maximum else ')'}"
        raise ValueError(f"{op}: {name} must be in {interval}, got {number}")
    return number


def normalize_axis(op: str, axis: int, ndim: int) -> int:
    """Return ``axis`` as a non-negative index into an array of rank ``ndim``."""
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise TypeError(f"{op}: axis must be a static int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: axis {axis} is out of range for an input of rank {ndim}")
    return axis % ndim


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds actual values (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def choose(caller: str, what: str, name: Any, table: dict) -> Any:
    """``table[name]``, or a ``ValueError`` naming the caller and listing the choices."""
    if name not in table:
        raise ValueError(f"{caller}: unknown {what} {name!r}; choose one of {list(table)}")
    return table[name]
