"""Mutation benchmark: what fraction of wrong backward rules each gradient checker catches.

For every case of the op catalog (:mod:`jaxbp.gradcheck.catalog`) the script builds mutants of
its backward rule -- the op wrapped in a ``custom_vjp`` whose backward is the op's own rule
with one fault put in -- and asks three checkers about each, on the same draw:

* ``sweep``: :func:`jaxbp.gradcheck.sweep_op` (what the tests and ``gradcheck-ops`` run);
* ``check_gradients``: :func:`jaxbp.gradcheck.check_gradients` alone, default settings;
* ``check_grads``: ``jax.test_util.check_grads(f, args, order=1, modes=["rev"])``.

Mutants (``MUTANTS``): one element's sign flipped; one argument's gradient dropped; all
scaled by 1 + 1e-3 and by 1 - 1e-3; one gradient reversed (the operand read backwards); the
rule evaluated at a wrong residual (inputs 1% off); wrong only where the input exceeds 1
(1% off there); a ``stop_gradient`` on the residuals (first order right, second order not).
A mutant whose first and second derivatives equal the correct rule's on the draw (e.g. a
wrong residual of a linear op, which has none) is *equivalent*: no checker can catch it, so
it is listed and left out of the fractions.

False positives: the correct rules through each checker on ``--draws`` smooth draws and as
many edge draws (zeros, ties, saturation, huge values) per op.

Run: ``nice python benchmarks/gradcheck_mutants.py [--ops NAME ...] [--draws N] [--json PATH]``
(prints a Markdown table; with ``--json`` also writes the numbers; an existing file is refused).
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from jaxbp.gradcheck import check_gradients
from jaxbp.gradcheck._check import is_float_tree, projected_gradient
from jaxbp.gradcheck.catalog import CASES, OpCase

CHECKERS = ("sweep", "check_gradients", "check_grads")


def _is_float(leaf: Any) -> bool:
    return jnp.issubdtype(jnp.result_type(leaf), jnp.floating)


def _flip_one(grads: list, floats: list) -> list:
    g = grads[0]
    return [g.ravel().at[g.size // 2].multiply(-1).reshape(g.shape), *grads[1:]]


def _drop_last(grads: list, floats: list) -> list:
    return [*grads[:-1], jnp.zeros_like(grads[-1])]


def _reverse_first(grads: list, floats: list) -> list:
    return [grads[0].ravel()[::-1].reshape(grads[0].shape), *grads[1:]]


def _part_of_range(grads: list, floats: list) -> list:
    return [jnp.where(floats[0] > 1.0, grads[0] * 1.01, grads[0]), *grads[1:]]


#: name -> (how the residuals are changed before the rule, how its gradients are changed after)
MUTANTS: dict[str, tuple[Callable[[list], list], Callable[[list, list], list]]] = {
    "sign of one element": (lambda f: f, _flip_one),
    "term dropped": (lambda f: f, _drop_last),
    "scaled 1+1e-3": (lambda f: f, lambda g, f: [x * (1 + 1e-3) for x in g]),
    "scaled 1-1e-3": (lambda f: f, lambda g, f: [x * (1 - 1e-3) for x in g]),
    "operand reversed": (lambda f: f, _reverse_first),
    "wrong residual": (lambda f: [x * 1.01 for x in f], lambda g, f: g),
    "wrong on part of range": (lambda f: f, _part_of_range),
    "stop_gradient residual": (lambda f: [jax.lax.stop_gradient(x) for x in f], lambda g, f: g),
}


def mutant_of(op: Callable, mutant: str) -> Callable:
    """``op`` with its backward rule replaced by the rule with one fault (``MUTANTS[mutant]``)."""
    residuals_fault, gradients_fault = MUTANTS[mutant]

    def mutated(*args):
        leaves, treedef = jax.tree_util.tree_flatten(args)
        floats = [i for i, leaf in enumerate(leaves) if _is_float(leaf)]

        def of_floats(*values):
            full = list(leaves)
            for i, value in zip(floats, values):
                full[i] = value
            return op(*jax.tree_util.tree_unflatten(treedef, full))

        def bwd(values, dy):
            _, rule = jax.vjp(of_floats, *residuals_fault(list(values)))  # the op's own hand-written rule
            return tuple(gradients_fault([jnp.asarray(g) for g in rule(dy)], list(values)))

        wrapped = jax.custom_vjp(of_floats)
        wrapped.defvjp(lambda *values: (of_floats(*values), values), bwd)
        return wrapped(*(leaves[i] for i in floats))

    mutated.__name__ = f"{getattr(op, '__name__', 'op')} ({mutant})"
    return mutated


def _derivatives(op: Callable, args: tuple, seed: int) -> list[np.ndarray]:
    """The gradient of ``<c, op(args)>`` and the gradient of ``<w, that gradient>`` (flattened)."""
    positions = tuple(i for i, a in enumerate(args) if is_float_tree(a))
    first = projected_gradient(op, args, positions, seed)
    second = projected_gradient(first, args, positions, seed + 1)
    return [
        np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(jax.jit(lambda *a: (first(*a), second(*a)))(*args))
    ]


def _equivalent(case: OpCase, mutant: Callable, args: tuple, seed: int) -> bool:
    right, wrong = _derivatives(case.op, args, seed), _derivatives(mutant, args, seed)
    return all(np.allclose(a, b, rtol=1e-12, atol=1e-14, equal_nan=True) for a, b in zip(right, wrong))


def _caught(checker: str, op: Callable, case: OpCase, args: tuple, seed: int, numerical: bool = True) -> bool:
    if checker == "sweep":
        report = case._replace(op=op).sweep(case.of, seed=seed, stop_at_first_failure=True)
        return not report.passed
    if checker == "check_gradients":
        return bool(check_gradients(op, *args, seed=seed, numerical=numerical).failures())
    positions = [i for i, a in enumerate(args) if is_float_tree(a)]

    def of_floats(*floats):
        full = list(args)
        for i, value in zip(positions, floats):
            full[i] = value
        return op(*full)

    try:
        check_grads(of_floats, tuple(args[i] for i in positions), order=1, modes=["rev"])
    except AssertionError:
        return True
    return False


def measure(
    names: Sequence[str],
    draws: int,
    seed: int = 0,
    mutants: Sequence[str] = tuple(MUTANTS),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Catches per (op, mutant, checker) and false positives per (op, checker); float64 inside."""
    results: dict[str, Any] = {"mutants": {}, "false_positives": {}, "equivalent": []}
    with jax.enable_x64(True):
        for name in names:
            case, started = CASES[name], time.perf_counter()
            args = case.draw(seed)
            results["mutants"][name] = {}
            for mutant_name in mutants:
                mutant = mutant_of(case.op, mutant_name)
                if _equivalent(case, mutant, args, seed):
                    results["equivalent"].append(f"{name}: {mutant_name}")
                    continue
                results["mutants"][name][mutant_name] = {c: _caught(c, mutant, case, args, seed) for c in CHECKERS}
            false = {c: 0 for c in CHECKERS} | {"check_gradients at edges": 0, "check_grads at edges": 0, "draws": 0}
            for trial in range(seed + 1, seed + 1 + draws):
                smooth, edges = case.draw(trial), case.draw_edges(trial)
                false["sweep"] += _caught("sweep", case.op, case, smooth, trial)  # a sweep covers both draws
                false["check_gradients"] += _caught("check_gradients", case.op, case, smooth, trial)
                false["check_gradients at edges"] += _caught("check_gradients", case.op, case, edges, trial)
                false["check_grads"] += _caught("check_grads", case.op, case, smooth, trial)
                false["check_grads at edges"] += _caught("check_grads", case.op, case, edges, trial)
                false["draws"] += 2
            results["false_positives"][name] = false
            log(
                f"{name}: {time.perf_counter() - started:.0f} s; caught {results['mutants'][name]}; false positives {false}"
            )
    return results


def format_table(results: dict[str, Any]) -> str:
    lines = ["| op | mutants | " + " | ".join(f"caught by {c}" for c in CHECKERS) + " | false positives (sweep / "
             "check_gradients smooth, edges / check_grads smooth, edges) | draws |",  # fmt: skip
             "|---" * (len(CHECKERS) + 4) + "|"]  # fmt: skip
    totals = {c: 0 for c in CHECKERS}
    count = 0
    for name, mutants in results["mutants"].items():
        caught = {c: sum(m[c] for m in mutants.values()) for c in CHECKERS}
        count += len(mutants)
        for c in CHECKERS:
            totals[c] += caught[c]
        fp = results["false_positives"][name]
        false = f"{fp['sweep']} / {fp['check_gradients']}, {fp['check_gradients at edges']} / {fp['check_grads']}, {fp['check_grads at edges']}"
        lines.append(f"| `{name}` | {len(mutants)} | " + " | ".join(f"{caught[c]}" for c in CHECKERS)
                     + f" | {false} | {fp['draws']} |")  # fmt: skip
    fp_total = {k: sum(fp[k] for fp in results["false_positives"].values()) for k in
                ("sweep", "check_gradients", "check_gradients at edges", "check_grads", "check_grads at edges", "draws")}  # fmt: skip
    lines.append(
        f"| **all** | {count} | "
        + " | ".join(f"{totals[c]} ({totals[c] / max(count, 1):.1%})" for c in CHECKERS)
        + f" | {fp_total['sweep']} / {fp_total['check_gradients']}, {fp_total['check_gradients at edges']} / "
        f"{fp_total['check_grads']}, {fp_total['check_grads at edges']} | {fp_total['draws']} |"
    )
    missed = [f"{name}: {m} (missed by {', '.join(c for c in CHECKERS if not r[c])})"
              for name, ms in results["mutants"].items() for m, r in ms.items() if not all(r.values())]  # fmt: skip
    lines += ["", "Missed mutants:", *(f"- {line}" for line in missed or ["none"])]
    lines += ["", "Equivalent mutants (same first and second derivatives on the draw):"]
    lines += [f"- {line}" for line in results["equivalent"] or ["none"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", nargs="*", default=None, help=f"catalog cases (default: all {len(CASES)})")
    parser.add_argument(
        "--draws", type=int, default=3, help="correct-rule draws per op, each smooth + edges (default 3)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mutants", nargs="*", default=list(MUTANTS), help="mutant kinds (default: all)")
    parser.add_argument("--json", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    names = args.ops or list(CASES)
    unknown = sorted(set(names) - set(CASES)) + sorted(set(args.mutants) - set(MUTANTS))
    if unknown or args.draws < 1:
        problem = f"unknown op(s)/mutant(s) {unknown}" if unknown else f"--draws must be at least 1, got {args.draws}"
        print(f"gradcheck_mutants: error: {problem}", file=sys.stderr)
        return 2
    if args.json is not None and args.json.exists():
        print(f"gradcheck_mutants: error: {args.json} exists; choose another path", file=sys.stderr)
        return 2
    started = datetime.datetime.now(datetime.timezone.utc)
    results = measure(
        names, args.draws, args.seed, args.mutants, log=lambda line: print(line, file=sys.stderr, flush=True)
    )
    results["run"] = {"date": started.isoformat(timespec="seconds"), "machine": platform.node(),
                      "jax": jax.__version__, "command": " ".join(sys.argv)}  # fmt: skip
    print(format_table(results))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
