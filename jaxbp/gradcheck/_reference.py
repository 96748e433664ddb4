"""The reference twin of any function: every hand-written derivative rule stripped.

:func:`strip_custom_rules` returns the same function with every ``jax.custom_vjp`` *and*
``jax.custom_jvp`` replaced by its primal body (recursing into ``jit``, ``jax.checkpoint``,
``scan``, ``cond`` and ``while``). jaxbp ops use their :mod:`jaxbp.reference` twin as that
body, so ``jax.grad`` of the stripped function is ``jax.grad`` through the reference math:
the ground truth a network's manual gradient is checked against. :func:`count_custom_rules`
says whether there was anything to strip (if not, the "reference" is the function itself).

JAX's own ``custom_jvp`` rules (``jnp.logaddexp``, ``jax.nn.relu``, ``jax.nn.softplus``, ...)
are kept: they are part of the reference math, fixing its derivative at ties and infinities
(stripped, ``logaddexp(x, 0)`` would differentiate ``max`` and ``abs`` at 0 and give 0 where
its rule gives 1/2). Only rules defined outside JAX are stripped.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal

#: The jaxpr primitives of functions with a hand-written derivative rule (their primal body
#: is the ``call_jaxpr`` parameter).
CUSTOM_RULES = ("custom_vjp_call", "custom_jvp_call")
_TRANSPARENT_CALLS = ("jit", "pjit", "closed_call", "checkpoint", "remat")
_JAX_SOURCE = os.sep + os.path.join("jax", "_src") + os.sep


def is_stripped_rule(eqn: Any) -> bool:
    """True for a ``custom_vjp``/``custom_jvp`` call written outside JAX (jaxbp's ops, a user's rule)."""
    if eqn.primitive.name not in CUSTOM_RULES:
        return False
    rule = eqn.params.get("jvp_jaxpr_fun") or eqn.params.get("jvp_jaxpr_thunk")
    source = getattr(getattr(rule, "debug_info", None), "func_src_info", None) or ""
    return _JAX_SOURCE not in source


def sub_jaxpr(value: Any) -> tuple[Jaxpr, list] | None:
    """``(jaxpr, consts)`` of a (closed) jaxpr parameter, else ``None``."""
    if isinstance(value, ClosedJaxpr):
        return value.jaxpr, list(value.consts)
    if isinstance(value, Jaxpr):
        return value, []
    return None


def _eval_stripped(jaxpr: Jaxpr, consts: Sequence, *args: Any) -> list:
    """Evaluate ``jaxpr`` with every custom rule replaced by its primal body."""
    env: dict = {}

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        inline = sub_jaxpr(eqn.params.get("call_jaxpr" if name in CUSTOM_RULES else "jaxpr"))
        if inline is not None and (is_stripped_rule(eqn) or name in _TRANSPARENT_CALLS):
            outs = _eval_stripped(*inline, *invals)
        elif name in CUSTOM_RULES:  # one of JAX's own rules: part of the reference math
            outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
            if not eqn.primitive.multiple_results:
                outs = [outs]
        else:
            params = {key: _strip_param(value) for key, value in eqn.params.items()}
            outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(params))
            if not eqn.primitive.multiple_results:
                outs = [outs]
        env.update(zip(eqn.outvars, outs))
    return [read(v) for v in jaxpr.outvars]


def _strip_param(value: Any) -> Any:
    """Rewrite closed sub-jaxprs (scan/cond/while bodies) without custom rules."""
    if isinstance(value, ClosedJaxpr):
        avals = [
            jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype, weak_type=v.aval.weak_type) for v in value.jaxpr.invars
        ]
        return jax.make_jaxpr(lambda *a: _eval_stripped(value.jaxpr, value.consts, *a))(*avals)
    if isinstance(value, tuple) and value and all(isinstance(v, ClosedJaxpr) for v in value):
        return tuple(_strip_param(v) for v in value)
    return value


def strip_custom_rules(f: Callable) -> Callable:
    """Return ``f`` with every ``custom_vjp`` and ``custom_jvp`` written outside JAX replaced by its primal math.

    The result computes the same values; ``jax.grad`` of it differentiates the primal
    (for jaxbp ops: the reference functions) with JAX's own rules. Keyword arguments are
    held fixed (not differentiated).
    """

    def stripped(*args, **kwargs):
        closed, out_shape = jax.make_jaxpr(functools.partial(f, **kwargs), return_shape=True)(*args)
        outs = _eval_stripped(closed.jaxpr, closed.consts, *jax.tree_util.tree_leaves(args))
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), outs)

    stripped.__name__ = f"reference_{getattr(f, '__name__', 'function')}"
    return stripped


#: The name the tests and benchmarks know (it strips custom_jvp rules too).
strip_custom_vjps = strip_custom_rules


def _count(jaxpr: Jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        total += is_stripped_rule(eqn)
        for value in eqn.params.values():
            for item in value if isinstance(value, tuple) else (value,):
                inner = sub_jaxpr(item)
                total += _count(inner[0]) if inner is not None else 0
    return total


def count_custom_rules(f: Callable, *args: Any, **kwargs: Any) -> int:
    """How many ``custom_vjp``/``custom_jvp`` calls ``f(*args, **kwargs)`` makes (nested ones included)."""
    return _count(jax.make_jaxpr(functools.partial(f, **kwargs))(*args).jaxpr)
