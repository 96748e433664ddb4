"""One sweep of everything an op with a hand-written backward rule must satisfy.

:func:`sweep_op` takes an op, its reference (the same math without the rule) and a way
to draw arguments, and on every draw checks, in float64 unless said otherwise:

* ``gradient``: the VJP vs ``jax.grad`` through the reference and vs central differences
  (:func:`jaxbp.gradcheck.check_gradients`), per element;
* ``second order``: the same for the gradient of ``args -> grad <c, op(args)>``, i.e.
  autodiff *through* the backward rule (a rule whose first order is right can still be
  wrong here, e.g. a ``stop_gradient`` on a residual);
* ``transforms``: per-example gradients under ``jax.vmap`` and under ``lax.scan``, and the
  gradient under ``jax.checkpoint``, equal the plain (jitted) gradient of each example;
* ``float32``: the float32 gradient agrees with the float64 one within :data:`FLOAT32_TOLERANCE`;
* ``low precision``: bf16 and f16 inputs give an output (the first leaf) and gradients of
  the same dtype;
* ``fully manual``: no derivative of the op comes from autodiff (:func:`find_non_manual`).

With an ``edge`` draw (arguments at zeros, ties, saturation, huge values, padding, masks),
the sweep also checks the gradient and second order against the reference there (not
against finite differences, which straddle kinks), and non-finite propagation:

**The non-finite contract.** With NaN, +inf or -inf written at one *site* of the edge
arguments, the op's output and hand-written gradient agree with autodiff through the
reference (NaN with NaN, equal infinities, finite values within :data:`FLOAT32_TOLERANCE`)
except in the one direction each case allows: a NaN input is never hidden (NaN wherever
autodiff has NaN, perhaps in more places), and an infinite input never invents a NaN (NaN
only where autodiff has NaN; a rule may give the limit where autodiff gives inf * 0 = NaN).
Sites are where edge cases live: a masked
attention key, a recurrent step past ``lengths``, an element inside a pooling window next
to a tie; by default the first and last element of the first differentiated argument.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp.gradcheck._check import check_gradients, is_float_tree, random_like, require_x64, to_float64
from jaxbp.gradcheck._compare import REFERENCE_TOLERANCE, Tolerance, worst_element
from jaxbp.gradcheck._fully_manual import find_non_manual
from jaxbp.gradcheck._reference import strip_custom_rules

#: float32 vs float64 gradients of one op on O(1) data: float32 rounds at 6e-8 relative,
#: and the catalog's longest chains (a 7-step LSTM, attention's softmax) grow that to a few
#: 1e-6; atol 1e-5 and rtol 1e-4 leave a factor 10 of room.
FLOAT32_TOLERANCE = Tolerance(atol=1e-5, rtol=1e-4)
_NON_FINITE = (math.nan, math.inf, -math.inf)
_LOW_PRECISION = (jnp.bfloat16, jnp.float16)


class Site(NamedTuple):
    """One element of the arguments: ``jax.tree_util.tree_leaves(args)[leaf][element]``."""

    leaf: int
    element: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class CheckResult:
    check: str
    seed: int
    problems: tuple[str, ...]
    scores: tuple[tuple[str, float], ...] = ()  # (comparison, worst element score) for tables

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclasses.dataclass(frozen=True)
class SweepReport:
    """Every check of every draw; ``assert_ok()`` raises listing the failures."""

    name: str
    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def failures(self) -> list[str]:
        return [f"{r.check} (draw {r.seed}): {p}" for r in self.results for p in r.problems]

    def worst_scores(self) -> dict[str, float]:
        """The worst element score per comparison over all draws (<= 1 passes)."""
        worst: dict[str, float] = {}
        for r in self.results:
            for key, score in r.scores:
                worst[key] = max(worst.get(key, 0.0), score)
        return worst

    def assert_ok(self) -> SweepReport:
        problems = self.failures()
        if problems:
            raise AssertionError(f"sweep of {self.name} failed {len(problems)} check(s):\n  " + "\n  ".join(problems))
        return self

    def __str__(self) -> str:
        lines = [f"sweep of {self.name}: {len(self.results)} checks, {len(self.failures())} failed"]
        lines += [f"  FAILED {line}" for line in self.failures()]
        return "\n".join(lines)


def _float_positions(args: tuple) -> tuple[int, ...]:
    return tuple(i for i, a in enumerate(args) if is_float_tree(a))


def _scalar(op: Callable, cotangent: Any) -> Callable:
    """``args -> <c, op(*args)>``: one fixed projection of the output."""

    def scalar(*args):
        leaves = zip(jax.tree_util.tree_leaves(cotangent), jax.tree_util.tree_leaves(op(*args)))
        return sum(jnp.vdot(c.astype(y.dtype), y) for c, y in leaves)

    return scalar


def _compare_trees(label: str, got: Any, want: Any, tol: Tolerance) -> list[str]:
    problems = []
    pairs = zip(jax.tree_util.tree_flatten_with_path(got)[0], jax.tree_util.tree_leaves(want))
    for (path, a), b in pairs:
        mismatch = worst_element(np.asarray(a, np.float64), np.asarray(b, np.float64), tol, 0.0, "expected")
        if mismatch is not None and mismatch.score > 1:
            problems.append(f"{label}{jax.tree_util.keystr(path)}: {mismatch.describe()}")
    return problems


def _gradient_check(op, reference, args, seed, numerical, order, where="") -> CheckResult:
    report = check_gradients(op, *args, reference=reference, numerical=numerical, seed=seed, order=order)
    name = ("gradient" if order == 1 else "second order") + where
    scores = [(f"{name} vs reference", report.worst_vs_reference)]
    if numerical:
        scores.append((f"{name} vs finite differences", report.worst_vs_numerical))
    problems = report.failures()
    if report.no_reference:
        problems.append(f"no reference: {report.no_reference}")
    return CheckResult(name, seed, tuple(problems), tuple(scores))


def _scaled_copy(args: tuple) -> tuple:
    """A second example for per-example checks: float leaves times 0.75 (same ranges, signs, kinks)."""
    return jax.tree_util.tree_map(lambda x: x * 0.75 if jnp.issubdtype(jnp.result_type(x), jnp.floating) else x, args)


def _transforms_check(op, args, seed) -> CheckResult:
    positions = _float_positions(args)
    scalar = _scalar(op, random_like(jax.eval_shape(op, *args), seed))
    grad = jax.grad(scalar, argnums=positions)
    examples = (args, _scaled_copy(args))
    batch = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *examples)

    @jax.jit
    def all_forms(examples, batch):
        plain = [grad(*example) for example in examples]
        return {
            "vmap": jax.vmap(grad)(*batch),
            "scan": jax.lax.scan(lambda _, example: (None, grad(*example)), None, batch)[1],
            "checkpoint": [jax.grad(jax.checkpoint(scalar), argnums=positions)(*e) for e in examples],
        }, plain

    forms, plain = all_forms(examples, batch)
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *plain)
    problems = _compare_trees("vmap", forms["vmap"], stacked, REFERENCE_TOLERANCE)
    problems += _compare_trees("lax.scan", forms["scan"], stacked, REFERENCE_TOLERANCE)
    problems += _compare_trees("jax.checkpoint", forms["checkpoint"], plain, REFERENCE_TOLERANCE)
    return CheckResult("transforms", seed, tuple(problems))


def _cast(args: tuple, dtype: Any) -> tuple:
    narrow = lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x  # noqa: E731
    return jax.tree_util.tree_map(narrow, args)


def _float32_check(op, args, seed) -> CheckResult:
    positions = _float_positions(args)
    cotangent = random_like(jax.eval_shape(op, *args), seed)
    grad = jax.jit(jax.grad(_scalar(op, cotangent), argnums=positions))
    problems = _compare_trees("float32 gradient", grad(*_cast(args, jnp.float32)), grad(*args), FLOAT32_TOLERANCE)
    return CheckResult("float32", seed, tuple(problems))


def _low_precision_check(op, args, seed) -> CheckResult:
    positions = _float_positions(args)
    cotangent = random_like(jax.eval_shape(op, *args), seed)

    @jax.jit
    def value_and_grads(*low):
        return op(*low), jax.grad(_scalar(op, cotangent), argnums=positions)(*low)

    problems = []
    for dtype in _LOW_PRECISION:
        low = _cast(args, dtype)
        output, grads = value_and_grads(*low)
        main = jax.tree_util.tree_leaves(output)[0]  # statistics beside it (batch_norm's) may stay wider
        if main.dtype != dtype:
            problems.append(f"{jnp.dtype(dtype).name} inputs gave a {main.dtype} output")
        wanted = [leaf.dtype for p in positions for leaf in jax.tree_util.tree_leaves(low[p])]
        for got, want in zip(jax.tree_util.tree_leaves(grads), wanted):
            if got.dtype != want:
                problems.append(f"{jnp.dtype(dtype).name} inputs gave a {got.dtype} gradient for a {want} argument")
    return CheckResult("low precision", seed, tuple(problems))


def _fully_manual_check(op, args, seed) -> CheckResult:
    found = find_non_manual(op, *args, argnums=_float_positions(args))
    return CheckResult("fully manual", seed, tuple(f"autodiff would differentiate {item}" for item in found))


def default_sites(args: tuple) -> list[Site]:
    """The first and last element of the first differentiated argument's first leaf."""
    leaves = jax.tree_util.tree_leaves(args)
    first_float = sum(len(jax.tree_util.tree_leaves(a)) for a in args[: _float_positions(args)[0]])
    shape = jnp.shape(leaves[first_float])
    return [Site(first_float, (0,) * len(shape)), Site(first_float, tuple(d - 1 for d in shape))]


def _allowed_difference(nan_input: bool, manual: jax.Array, expected: jax.Array) -> jax.Array:
    """``manual`` with the one allowed disagreement replaced by ``expected``: extra NaNs for a NaN
    input, a number where autodiff has NaN for an infinite input."""
    allowed = jnp.isnan(manual) & ~jnp.isnan(expected) if nan_input else jnp.isnan(expected) & ~jnp.isnan(manual)
    return jnp.where(allowed, expected, manual)


def _non_finite_check(op, reference, args, seed, sites: Sequence[Site]) -> CheckResult:
    positions = _float_positions(args)
    leaves, treedef = jax.tree_util.tree_flatten(args)
    cotangent = random_like(jax.eval_shape(op, *args), seed)

    def output_and_gradient(fun, leaves):
        args = jax.tree_util.tree_unflatten(treedef, leaves)
        return fun(*args), jax.grad(_scalar(fun, cotangent), argnums=positions)(*args)

    both = jax.jit(lambda leaves: (output_and_gradient(op, leaves), output_and_gradient(reference, leaves)))
    problems = []
    for site in sites:
        for value in _NON_FINITE:
            poisoned = list(leaves)
            poisoned[site.leaf] = poisoned[site.leaf].at[site.element].set(value)
            manual, expected = both(poisoned)
            manual = jax.tree_util.tree_map(functools.partial(_allowed_difference, math.isnan(value)), manual, expected)
            label = f"{value} at leaf {site.leaf}{list(site.element)}: "
            problems += _compare_trees(label + "output", manual[0], expected[0], FLOAT32_TOLERANCE)
            problems += _compare_trees(label + "gradient", manual[1], expected[1], FLOAT32_TOLERANCE)
    return CheckResult("non-finite", seed, tuple(problems))


def sweep_op(
    op: Callable[..., Any],
    reference: Callable[..., Any] | None,
    draw: Callable[[int], tuple],
    *,
    name: str | None = None,
    draws: int = 1,
    seed: int = 0,
    edge: Callable[[int], tuple] | None = None,
    nan_sites: Callable[[tuple], Sequence[Site]] = default_sites,
    numerical: bool = True,
    second_order_numerical: bool = True,
    stop_at_first_failure: bool = False,
) -> SweepReport:
    """Check ``op`` against ``reference`` on ``draws`` argument sets (float64; call under ``jax.enable_x64``).

    Args:
      op: the function with hand-written rules, of positional arguments (bind keywords and
        static hyper-parameters with a lambda); float arguments are differentiated.
      reference: the same math without rules; ``None``: ``op`` with its rules stripped.
      draw: ``draw(seed) -> args``, smooth arguments (kinks at least a few eps away: they are
        also compared with finite differences).
      draws: how many argument sets, seeds ``seed, seed + 1, ...``.
      edge: ``edge(seed) -> args`` at the edge cases (zeros, ties, saturation, huge values);
        checked against the reference only, and poisoned with NaN/+-inf at ``nan_sites(args)``.
      numerical: compare the smooth draws' gradients with finite differences.
      second_order_numerical: also their second derivatives (one more compilation of the
        gradient's finite differences: the most expensive check of a large op).
      stop_at_first_failure: return as soon as one check fails (to count catches cheaply).
    Returns:
      a :class:`SweepReport`; ``.assert_ok()`` raises listing every failed check.
    """
    require_x64("sweep_op")
    label = str(name or getattr(op, "__name__", "op"))
    if not isinstance(draws, int) or draws < 1:
        raise ValueError(f"sweep_op: draws must be a positive int, got {draws!r}")
    reference = strip_custom_rules(op) if reference is None else reference
    results: list[CheckResult] = []

    def run_all(checks) -> bool:
        for check in checks:
            results.append(check())
            if stop_at_first_failure and not results[-1].passed:
                return False
        return True

    for trial in range(seed, seed + draws):
        args = to_float64(draw(trial))
        check = functools.partial
        smooth = [
            check(_gradient_check, op, reference, args, trial, numerical, 1),
            check(_gradient_check, op, reference, args, trial, second_order_numerical, 2),
            check(_transforms_check, op, args, trial),
            check(_float32_check, op, args, trial),
            check(_low_precision_check, op, args, trial),
            check(_fully_manual_check, op, args, trial),
        ]
        if not run_all(smooth):
            break
        if edge is not None:
            at_edges = to_float64(edge(trial))
            edges = [
                check(_gradient_check, op, reference, at_edges, trial, False, 1, " at edges"),
                check(_gradient_check, op, reference, at_edges, trial, False, 2, " at edges"),
                check(_non_finite_check, op, reference, at_edges, trial, nan_sites(at_edges)),
            ]
            if not run_all(edges):
                break
    return SweepReport(label, tuple(results))
