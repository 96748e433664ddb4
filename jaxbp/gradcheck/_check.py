"""Gradient checking: a function's hand-written derivatives vs ``jax.grad`` and finite differences.

:func:`check_gradients` draws a random cotangent ``v`` for the output of ``f`` and
compares three vector-Jacobian products, per pytree leaf of every argument:

* ``manual``: ``jax.vjp(f)`` -- the hand-written rules (``custom_vjp`` or ``custom_jvp``);
* ``reference``: ``jax.vjp`` of ``f`` with every custom rule stripped (autodiff through
  the primal math, for jaxbp ops the :mod:`jaxbp.reference` functions), or of a
  reference you pass. When ``f`` has no rule to strip and no reference is given, or
  autodiff of the reference fails (an opaque primitive), the report says so and
  compares with finite differences alone;
* ``numerical``: central differences of the scalar ``<v, f(args)>`` in float64.

Each comparison is per element, ``|a - b| <= atol + rtol |b|`` (see
:mod:`jaxbp.gradcheck._compare` for the defaults and why). ``order=2`` checks the
second derivative the same way: ``f`` is replaced by ``args -> grad <c, f(args)>``.

Everything runs in float64, which JAX disables by default: wrap the call in
``with jax.enable_x64(True):`` (float inputs are then promoted to float64).

Custom VJPs are reverse-mode only: ``jax.jvp``/``jax.jacfwd`` *of an op* raise. Every
form that differentiates a reverse-mode result works, to any order, through the
hand-written rules: ``jax.grad(jax.grad(f))``, ``jax.hessian``, ``jax.jacrev`` and
forward-over-reverse ``jax.jvp(jax.grad(f), ...)``, which :func:`hvp` wraps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxbp.gradcheck._compare import GradientReport, LeafComparison, finite_difference_floor
from jaxbp.gradcheck._reference import count_custom_rules, strip_custom_rules

_TINY = 1e-300


def require_x64(caller: str) -> None:
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError(
            f"{caller} needs float64, which JAX disables by default. "
            "Wrap the call in `with jax.enable_x64(True):` or set JAX_ENABLE_X64=1."
        )


def to_float64(tree: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda x: jnp.asarray(x, jnp.float64) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else x, tree
    )


def is_float_tree(tree: Any) -> bool:
    leaves = jax.tree_util.tree_leaves(tree)
    return bool(leaves) and all(jnp.issubdtype(jnp.result_type(x), jnp.floating) for x in leaves)


def _as_tuple(argnums: int | Sequence[int]) -> tuple[int, ...]:
    return (argnums,) if isinstance(argnums, int) else tuple(argnums)


def relative_error(a: Any, b: Any) -> float:
    """``|a - b| / max(|a| + |b|, tiny)`` with 2-norms over all leaves of two pytrees."""
    a_flat, _ = ravel_pytree(a)
    b_flat, _ = ravel_pytree(b)
    a_np, b_np = np.asarray(a_flat, np.float64), np.asarray(b_flat, np.float64)
    if a_np.shape != b_np.shape:
        raise ValueError(f"relative_error: sizes differ, {a_np.shape} vs {b_np.shape}")
    scale = max(np.linalg.norm(a_np) + np.linalg.norm(b_np), _TINY)
    return float(np.linalg.norm(a_np - b_np) / scale)


def numerical_gradient(
    f: Callable[..., Any],
    *args: Any,
    argnums: int | Sequence[int] = 0,
    eps: float = 1e-6,
    chunk_size: int = 256,
) -> Any:
    """Central-difference gradient of a scalar ``f`` in float64.

    ``df/dθ_i ≈ (f(θ + eps e_i) - f(θ - eps e_i)) / (2 eps)`` for every element of
    every argument in ``argnums`` (pytrees allowed). Returns what ``jax.grad(f,
    argnums)`` would: one gradient, or a tuple when ``argnums`` is a sequence.
    All differentiated elements form one vector; its perturbations are evaluated
    ``chunk_size`` at a time with ``vmap`` (the last chunk padded), so the whole
    gradient costs one compilation.
    """
    require_x64("numerical_gradient")
    if eps <= 0:
        raise ValueError(f"numerical_gradient: eps must be positive, got {eps}")
    args = to_float64(args)
    positions = _as_tuple(argnums)
    flat, unravel = ravel_pytree(tuple(args[p] for p in positions))
    size = flat.size

    def f_of_flat(theta: jax.Array) -> jax.Array:
        new_args = list(args)
        for position, value in zip(positions, unravel(theta)):
            new_args[position] = value
        value = f(*new_args)
        if jnp.shape(value) != ():
            raise ValueError(f"numerical_gradient: f must return a scalar, got shape {jnp.shape(value)}")
        return value

    @jax.jit
    @jax.vmap
    def difference(index: jax.Array) -> jax.Array:
        step = eps * jax.nn.one_hot(index, size, dtype=flat.dtype)  # index -1 (padding): a zero step
        return (f_of_flat(flat + step) - f_of_flat(flat - step)) / (2 * eps)

    chunk = max(1, min(chunk_size, size))
    indices = np.full(-(-size // chunk) * chunk, -1)
    indices[:size] = np.arange(size)
    parts = [difference(indices[start : start + chunk]) for start in range(0, indices.size, chunk)]
    grads = unravel(jnp.concatenate(parts)[:size] if parts else flat)
    return grads[0] if isinstance(argnums, int) else tuple(grads)


def hvp(f: Callable[..., Any], x: Any, v: Any, *args: Any) -> Any:
    """Hessian-vector product ``H v`` of a scalar ``f(x, *args)`` at ``x`` (pytrees).

    Forward-over-reverse: ``jax.jvp(jax.grad(f), (x,), (v,))``. The outer ``jvp``
    differentiates the *backward pass* (plain JAX code), so it works through
    hand-written rules where ``jax.jvp(f)`` itself raises. Costs about one gradient.
    """
    return jax.jvp(lambda point: jax.grad(f)(point, *args), (x,), (v,))[1]


_REVERSE_MODES = ("rev", "reverse")


def _require_reverse_mode(modes: Sequence[str]) -> None:
    forward = [mode for mode in modes if mode not in _REVERSE_MODES]
    if forward:
        raise ValueError(
            f"check_gradients: reverse mode only (modes {tuple(modes)}): hand-written custom_vjp rules have no "
            "forward-mode rule, so jax.jvp/jax.jacfwd of an op raise. Use modes=('rev',); for "
            "Jacobian-vector products of a gradient use jaxbp.gradcheck.hvp or jax.jvp(jax.grad(f), ...)"
        )


def random_like(tree: Any, seed: int) -> Any:
    """Standard-normal arrays shaped like the (float) leaves of ``tree`` (a cotangent)."""
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda x: jnp.asarray(rng.standard_normal(x.shape), x.dtype), tree)


def projected_gradient(fun: Callable, args: tuple, positions: tuple[int, ...], seed: int) -> Callable:
    """``(*args) -> grad_{args[positions]} <c, fun(*args)>`` with a fixed random cotangent ``c``:
    the function whose derivative is ``fun``'s second derivative along ``c``."""
    cotangent = random_like(jax.eval_shape(fun, *args), seed)

    def projected(*args):
        leaves = zip(jax.tree_util.tree_leaves(cotangent), jax.tree_util.tree_leaves(fun(*args)))
        return sum(jnp.vdot(c, y) for c, y in leaves)

    def gradient(*args):
        return jax.grad(projected, argnums=positions)(*args)

    gradient.__name__ = f"grad_{getattr(fun, '__name__', 'function')}"
    return gradient


def check_gradients(
    f: Callable[..., Any],
    *args: Any,
    argnums: int | Sequence[int] | None = None,
    reference: Callable[..., Any] | None = None,
    numerical: bool = True,
    eps: float = 1e-6,
    seed: int = 0,
    modes: Sequence[str] = ("rev",),
    order: int = 1,
    kwargs: dict[str, Any] | None = None,
) -> GradientReport:
    """Compare ``f``'s VJP with ``jax.grad`` through the reference and with finite differences.

    Args:
      f: a function of positional arguments returning an array or pytree of arrays.
      *args: its arguments (pytrees); float leaves are promoted to float64.
      argnums: which arguments to differentiate; default: every argument whose
        leaves are all floating point (integer labels, boolean masks are left alone).
      reference: the ground-truth function; default: ``f`` with its ``custom_vjp`` and
        ``custom_jvp`` rules stripped (:func:`strip_custom_rules`).
      numerical: also compare with central differences (one pair of forward
        passes per input element; turn off for large inputs).
      eps: the finite-difference step.
      seed: seeds the random (standard normal) output cotangent(s).
      modes: ``("rev",)``, the only mode custom VJPs have (as in
        ``jax.test_util.check_grads``); asking for ``"fwd"`` is an error that says
        what to use instead.
      order: 1 checks the gradient; 2 the second derivative, as the gradient of
        ``args -> grad <c, f(args)>`` (autodiff through the backward rules).
      kwargs: keyword arguments of ``f`` (and the reference), held fixed.
    Returns:
      a :class:`GradientReport`; call ``.assert_ok()`` to enforce the tolerances.
    """
    _require_reverse_mode((modes,) if isinstance(modes, str) else tuple(modes))
    require_x64("check_gradients")
    if order not in (1, 2):
        raise ValueError(f"check_gradients: order must be 1 or 2, got {order!r}")
    args = to_float64(args)
    kwargs = kwargs or {}
    positions = tuple(i for i, a in enumerate(args) if is_float_tree(a)) if argnums is None else _as_tuple(argnums)
    if not positions:
        raise ValueError("check_gradients: no floating-point argument to differentiate")
    function: Callable[..., Any] = functools.partial(f, **kwargs)
    no_reference = None
    if reference is not None:
        reference = functools.partial(reference, **kwargs)
    elif count_custom_rules(f, *args, **kwargs):
        reference = strip_custom_rules(function)
    else:
        no_reference = (
            "f has no custom_vjp or custom_jvp rule to strip, so its reference would be f itself; "
            "pass reference= to compare with other math"
        )
    if order == 2:
        function = projected_gradient(function, args, positions, seed + 1)
        reference = None if reference is None else projected_gradient(reference, args, positions, seed + 1)
    name = getattr(f, "__name__", "function")
    return _compare(name, order, function, reference, args, positions, numerical, eps, seed, no_reference)


def _compare(name, order, f, reference, args, positions, numerical, eps, seed, no_reference) -> GradientReport:
    def restricted(fun):
        def of_selected(*selected):
            full = list(args)
            for position, value in zip(positions, selected):
                full[position] = value
            return fun(*full)

        return of_selected

    selected = tuple(args[i] for i in positions)
    cotangent = random_like(jax.eval_shape(restricted(f), *selected), seed)

    @jax.jit
    def manual_vjp(selected, cotangent):
        output, vjp = jax.vjp(restricted(f), *selected)
        return output, vjp(cotangent)

    @jax.jit  # one compilation instead of one per primitive: these checks run thousands of times in tests
    def both_vjps(selected, cotangent):
        output, manual = manual_vjp(selected, cotangent)
        reference_output, reference_vjp = jax.vjp(restricted(reference), *selected)
        return output, manual, reference_output, reference_vjp(cotangent)

    reference_output = expected = None
    if reference is None:
        output, manual = manual_vjp(selected, cotangent)
    else:
        try:
            output, manual, reference_output, expected = both_vjps(selected, cotangent)
        except Exception as error:  # noqa: BLE001 - the manual VJP alone tells whether it was the reference
            output, manual = manual_vjp(selected, cotangent)
            first_line = str(error).strip().split("\n")[0]
            no_reference = f"autodiff of the reference failed ({type(error).__name__}: {first_line})"
    finite, floor = None, 0.0
    if numerical:

        def projected(*selected_args):
            leaves = zip(jax.tree_util.tree_leaves(cotangent), jax.tree_util.tree_leaves(restricted(f)(*selected_args)))
            return sum(jnp.vdot(c, v) for c, v in leaves)

        finite = numerical_gradient(projected, *selected, argnums=tuple(range(len(selected))), eps=eps)
        magnitude = sum(
            float(np.sum(np.abs(np.asarray(c) * np.asarray(y))))
            for c, y in zip(jax.tree_util.tree_leaves(cotangent), jax.tree_util.tree_leaves(output))
        )
        floor = finite_difference_floor(magnitude, eps)
    rows = []
    for index, position in enumerate(positions):
        leaves = jax.tree_util.tree_flatten_with_path(manual[index])[0]
        reference_leaves = jax.tree_util.tree_leaves(expected[index]) if expected is not None else [None] * len(leaves)
        finite_leaves = jax.tree_util.tree_leaves(finite[index]) if finite is not None else [None] * len(leaves)
        for (path, got), want, approx in zip(leaves, reference_leaves, finite_leaves):
            rows.append(
                LeafComparison(
                    argument=position,
                    path=jax.tree_util.keystr(path),
                    manual=np.asarray(got, np.float64),
                    reference=None if want is None else np.asarray(want, np.float64),
                    numerical=None if approx is None else np.asarray(approx, np.float64),
                    numerical_floor=floor,
                )
            )
    flat = lambda tree: np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree_util.tree_leaves(tree)])
    return GradientReport(
        name=name,
        order=order,
        rows=tuple(rows),
        output=None if expected is None else flat(output),
        reference_output=None if expected is None else flat(reference_output),
        no_reference=no_reference,
    )
