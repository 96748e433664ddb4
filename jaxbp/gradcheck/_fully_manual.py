"""Is a function fully manual? A walk of its forward jaxpr.

:func:`find_non_manual` / :func:`assert_fully_manual` report every differentiable
primitive that lies on a path from the differentiated arguments to the output but is
*not* inside a ``custom_vjp`` or ``custom_jvp`` -- i.e. whose derivative autodiff would
write rather than a hand-written rule. The walk recurses into ``jit``,
``jax.checkpoint``, ``scan``, ``cond`` and ``while`` bodies. Derivatives flow along
floating-point values only: an integer or boolean result (``argmax``, a comparison)
carries none, so float math computed from it is not on a differentiated path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import source_info_util  # the public module (jax.extend); checked with JAX 0.10.2
from jax.extend.core import Jaxpr, Literal

from jaxbp.gradcheck._reference import CUSTOM_RULES, sub_jaxpr

# Primitives whose outputs carry no derivative even for float inputs.
_ZERO_DERIVATIVE = {"stop_gradient", "sign", "floor", "ceil", "round", "is_finite", "random_bits", "random_wrap"}


def _is_float(var: Any) -> bool:
    dtype = getattr(var.aval, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jnp.inexact)


# ------------------------------------------------------------- find_non_manual


@dataclasses.dataclass(frozen=True)
class NonManualPrimitive:
    """A differentiable primitive outside every custom rule."""

    primitive: str
    where: str  # "file:line (function)" of the user code that emitted it
    context: str  # enclosing jit/scan/cond bodies, outermost first

    def __str__(self) -> str:
        inside = f" inside {self.context}" if self.context else ""
        return f"{self.primitive} at {self.where}{inside}"


def _walk(jaxpr: Jaxpr, tainted_in: Sequence[bool], context: str, found: list) -> list[bool]:
    """Propagate "depends on a differentiated input" through ``jaxpr``; collect findings.

    Returns the taint of each output.
    """
    tainted: set = {v for v, t in zip(jaxpr.invars, tainted_in) if t and _is_float(v)}
    needed = _float_ancestors_of_outputs(jaxpr)

    def is_tainted(v):
        return not isinstance(v, Literal) and v in tainted

    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        ins = [is_tainted(v) for v in eqn.invars]
        if not any(ins):
            continue
        outs = _walk_eqn(eqn, ins, context, found)
        if outs is None:  # a plain primitive: autodiff would differentiate it
            differentiable = name not in _ZERO_DERIVATIVE
            outs = [differentiable] * len(eqn.outvars)
            float_in = any(t and _is_float(v) for v, t in zip(eqn.invars, ins))
            float_out = any(_is_float(v) and v in needed for v in eqn.outvars)
            if differentiable and float_in and float_out:
                found.append(NonManualPrimitive(name, source_info_util.summarize(eqn.source_info), context))
        tainted.update(v for v, t in zip(eqn.outvars, outs) if t and _is_float(v))
    return [is_tainted(v) for v in jaxpr.outvars]


def _float_ancestors_of_outputs(jaxpr: Jaxpr) -> set:
    """Variables the outputs depend on through floating-point values only.

    A comparison (bool output) cuts the chain: ``x.sum() > 0`` as a ``cond``
    predicate is not a path along which derivatives flow.
    """
    needed = {v for v in jaxpr.outvars if not isinstance(v, Literal)}
    for eqn in reversed(jaxpr.eqns):
        if any(_is_float(v) and v in needed for v in eqn.outvars):
            needed.update(v for v in eqn.invars if not isinstance(v, Literal) and _is_float(v))
    return needed


def _walk_eqn(eqn, ins: list[bool], context: str, found: list) -> list[bool] | None:
    """The taint of a container eqn's outputs (custom rule, scan, while, cond, jit,
    checkpoint), recursing into its body; ``None`` for a plain primitive."""
    name, params = eqn.primitive.name, eqn.params
    n_out = len(eqn.outvars)
    where = f"{context} > {name}" if context else name
    if name in CUSTOM_RULES:
        return [True] * n_out
    if name == "scan":
        body, n_consts, n_carry = params["jaxpr"].jaxpr, params["num_consts"], params["num_carry"]
        consts, carry, xs = ins[:n_consts], ins[n_consts : n_consts + n_carry], ins[n_consts + n_carry :]
        while True:  # fixed point: a carry becomes tainted if any iteration taints it
            outs = _walk(body, consts + carry + xs, where, [])
            new_carry = [a or b for a, b in zip(carry, outs[:n_carry])]
            if new_carry == carry:
                return _walk(body, consts + carry + xs, where, found)
            carry = new_carry
    if name == "while":
        n_cond, n_body = params["cond_nconsts"], params["body_nconsts"]
        body = params["body_jaxpr"].jaxpr
        consts, carry = ins[n_cond : n_cond + n_body], ins[n_cond + n_body :]
        while True:
            outs = _walk(body, consts + carry, where, [])
            new_carry = [a or b for a, b in zip(carry, outs)]
            if new_carry == carry:
                return _walk(body, consts + carry, where, found)
            carry = new_carry
    if name == "cond":
        branch_outs = [_walk(b.jaxpr, ins[1:], where, found) for b in params["branches"]]
        return [any(ts) for ts in zip(*branch_outs)]
    sub = sub_jaxpr(params.get("jaxpr"))
    if sub is not None and len(sub[0].invars) == len(ins):  # jit, checkpoint, closed_call
        return _walk(sub[0], ins, where, found)
    return None


def find_non_manual(f: Callable, *args: Any, argnums: int | Sequence[int] | None = None) -> list[NonManualPrimitive]:
    """List the differentiable primitives of ``f(*args)`` that are outside a custom rule.

    Only primitives on a path from the arguments in ``argnums`` (default: all) with
    a floating-point input and output are reported.
    """
    closed = jax.make_jaxpr(f)(*args)
    positions = range(len(args)) if argnums is None else ([argnums] if isinstance(argnums, int) else argnums)
    tainted_in = []
    for position, arg in enumerate(args):
        tainted_in += [position in positions] * len(jax.tree_util.tree_leaves(arg))
    found: list[NonManualPrimitive] = []
    _walk(closed.jaxpr, tainted_in, "", found)
    return found


def assert_fully_manual(f: Callable, *args: Any, argnums: int | Sequence[int] | None = None) -> None:
    """Raise ``AssertionError`` naming each differentiable primitive outside a custom rule.

    Passes when every derivative ``jax.grad(f)`` would take comes from a
    hand-written rule.
    """
    found = find_non_manual(f, *args, argnums=argnums)
    if found:
        name = getattr(f, "__name__", "function")
        lines = "\n".join(f"  - {item}" for item in found)
        raise AssertionError(
            f"{name} is not fully manual: {len(found)} differentiable primitive(s) outside a custom rule:\n{lines}\n"
            "Use the jaxbp.ops equivalent (or define_op a new op) instead of raw jax.numpy math."
        )
