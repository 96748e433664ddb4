"""Gradient checking: a function's hand-written VJP vs ``jax.grad`` and finite differences.

:func:`check_gradients` draws a random cotangent ``v`` for the output of ``f`` and
compares three vector-Jacobian products, per pytree leaf of every argument:

* ``manual``: ``jax.vjp(f)`` -- the hand-written backward rules;
* ``reference``: ``jax.vjp`` of ``f`` with every custom VJP stripped (autodiff
  through the :mod:`jaxbp.reference` math), or of a reference you pass;
* ``numerical``: central differences of the scalar ``<v, f(args)>`` in float64.

Each comparison is the relative error ``|a - b| / max(|a| + |b|, tiny)`` (2-norms
over the leaf). Rules of thumb in float64: < 1e-7 excellent, > 1e-4 a bug.

Everything runs in float64, which JAX disables by default: wrap the call in
``with jax.enable_x64(True):`` (float inputs are then promoted to float64).

Custom VJPs are reverse-mode only: ``jax.jvp``/``jax.jacfwd`` *of an op* raise. Every
form that differentiates a reverse-mode result works, to any order, through the
hand-written rules: ``jax.grad(jax.grad(f))``, ``jax.hessian``, ``jax.jacrev`` and
forward-over-reverse ``jax.jvp(jax.grad(f), ...)``, which :func:`hvp` wraps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxbp.manual import assert_fully_manual, find_non_manual, strip_custom_vjps

__all__ = [
    "GradientReport",
    "LeafComparison",
    "assert_fully_manual",
    "check_gradients",
    "find_non_manual",
    "hvp",
    "numerical_gradient",
    "relative_error",
    "strip_custom_vjps",
]

_TINY = 1e-300


def _require_x64(caller: str) -> None:
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError(
            f"{caller} needs float64, which JAX disables by default. "
            "Wrap the call in `with jax.enable_x64(True):` or set JAX_ENABLE_X64=1."
        )


def _to_float64(tree: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda x: jnp.asarray(x, jnp.float64) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else x, tree
    )


def _is_float_tree(tree: Any) -> bool:
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
    _require_x64("numerical_gradient")
    if eps <= 0:
        raise ValueError(f"numerical_gradient: eps must be positive, got {eps}")
    args = _to_float64(args)
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


@dataclasses.dataclass(frozen=True)
class LeafComparison:
    """One row of a :class:`GradientReport`: one leaf of one differentiated argument."""

    argument: int
    path: str
    shape: tuple[int, ...]
    manual_norm: float
    vs_reference: float
    vs_numerical: float | None


@dataclasses.dataclass(frozen=True)
class GradientReport:
    """The result of :func:`check_gradients`; ``print`` it for a table."""

    name: str
    rows: tuple[LeafComparison, ...]
    forward_error: float  # relative error of f's output vs the reference output

    @property
    def worst_vs_reference(self) -> float:
        return max((r.vs_reference for r in self.rows), default=0.0)

    @property
    def worst_vs_numerical(self) -> float:
        return max((r.vs_numerical for r in self.rows if r.vs_numerical is not None), default=0.0)

    def failures(self, reference_tol: float = 1e-9, numerical_tol: float = 1e-6) -> list[str]:
        """Descriptions of every comparison above its threshold."""
        problems = []
        if self.forward_error > reference_tol:
            problems.append(f"forward output differs from the reference: {self.forward_error:.2e}")
        for r in self.rows:
            label = f"argument {r.argument}{r.path} {r.shape}"
            if r.vs_reference > reference_tol:
                problems.append(f"{label}: vs jax.grad(reference) {r.vs_reference:.2e} > {reference_tol:.0e}")
            if r.vs_numerical is not None and r.vs_numerical > numerical_tol:
                problems.append(f"{label}: vs finite differences {r.vs_numerical:.2e} > {numerical_tol:.0e}")
        return problems

    def assert_ok(self, reference_tol: float = 1e-9, numerical_tol: float = 1e-6) -> GradientReport:
        """Raise ``AssertionError`` listing every leaf above a threshold; return self."""
        problems = self.failures(reference_tol, numerical_tol)
        if problems:
            raise AssertionError(f"gradient check of {self.name} failed:\n  " + "\n  ".join(problems) + f"\n{self}")
        return self

    def __str__(self) -> str:
        header = ("arg", "leaf", "shape", "|manual|", "vs jax.grad(ref)", "vs finite diff")
        body = [
            (
                str(r.argument),
                r.path or "-",
                str(r.shape),
                f"{r.manual_norm:.3e}",
                f"{r.vs_reference:.2e}",
                "skipped" if r.vs_numerical is None else f"{r.vs_numerical:.2e}",
            )
            for r in self.rows
        ]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        lines = [f"gradient check: {self.name} (float64; forward vs reference {self.forward_error:.2e})"]
        for row in [header, *body]:
            lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
        return "\n".join(lines)


def check_gradients(
    f: Callable[..., Any],
    *args: Any,
    argnums: int | Sequence[int] | None = None,
    reference: Callable[..., Any] | None = None,
    numerical: bool = True,
    eps: float = 1e-6,
    seed: int = 0,
    modes: Sequence[str] = ("rev",),
) -> GradientReport:
    """Compare ``f``'s VJP with ``jax.grad`` through the reference and with finite differences.

    Args:
      f: a function of positional arguments returning an array or pytree of arrays.
      *args: its arguments (pytrees); float leaves are promoted to float64.
      argnums: which arguments to differentiate; default: every argument whose
        leaves are all floating point (integer labels are left alone).
      reference: the ground-truth function; default ``strip_custom_vjps(f)``.
      numerical: also compare with central differences (one pair of forward
        passes per input element; turn off for large inputs).
      eps: the finite-difference step.
      seed: seeds the random (standard normal) output cotangent.
      modes: ``("rev",)``, the only mode custom VJPs have (as in
        ``jax.test_util.check_grads``); asking for ``"fwd"`` is an error that says
        what to use instead.
    Returns:
      a :class:`GradientReport`; call ``.assert_ok()`` to enforce thresholds.
    """
    _require_reverse_mode((modes,) if isinstance(modes, str) else tuple(modes))
    _require_x64("check_gradients")
    args = _to_float64(args)
    positions = tuple(i for i, a in enumerate(args) if _is_float_tree(a)) if argnums is None else _as_tuple(argnums)
    if not positions:
        raise ValueError("check_gradients: no floating-point argument to differentiate")
    reference = strip_custom_vjps(f) if reference is None else reference

    def restricted(fun):
        def of_selected(*selected):
            full = list(args)
            for position, value in zip(positions, selected):
                full[position] = value
            return fun(*full)

        return of_selected

    selected = tuple(args[i] for i in positions)
    out_leaves, out_tree = jax.tree_util.tree_flatten(jax.eval_shape(restricted(f), *selected))
    rng = np.random.default_rng(seed)
    cotangent = jax.tree_util.tree_unflatten(
        out_tree, [rng.standard_normal(x.shape).astype(x.dtype) for x in out_leaves]
    )

    @jax.jit  # one compilation instead of one per primitive: these checks run thousands of times in tests
    def vjps(selected, cotangent):
        output, manual_vjp = jax.vjp(restricted(f), *selected)
        reference_output, reference_vjp = jax.vjp(restricted(reference), *selected)
        return output, reference_output, manual_vjp(cotangent), reference_vjp(cotangent)

    output, reference_output, manual, expected = vjps(selected, cotangent)
    if numerical:

        def projected(*selected_args):
            value = restricted(f)(*selected_args)
            return sum(
                jnp.vdot(c, v) for c, v in zip(jax.tree_util.tree_leaves(cotangent), jax.tree_util.tree_leaves(value))
            )

        finite = numerical_gradient(projected, *selected, argnums=tuple(range(len(selected))), eps=eps)
    rows = []
    for index, position in enumerate(positions):
        leaves = jax.tree_util.tree_flatten_with_path(manual[index])[0]
        reference_leaves = jax.tree_util.tree_leaves(expected[index])
        finite_leaves = jax.tree_util.tree_leaves(finite[index]) if numerical else [None] * len(leaves)
        for (path, got), want, approx in zip(leaves, reference_leaves, finite_leaves):
            rows.append(
                LeafComparison(
                    argument=position,
                    path=jax.tree_util.keystr(path),
                    shape=tuple(jnp.shape(got)),
                    manual_norm=float(np.linalg.norm(np.asarray(got, np.float64))),
                    vs_reference=relative_error(got, want),
                    vs_numerical=None if approx is None else relative_error(got, approx),
                )
            )
    return GradientReport(
        name=getattr(f, "__name__", "function"),
        rows=tuple(rows),
        forward_error=relative_error(output, reference_output),
    )
