"""Edge-case sweep: bad and degenerate inputs to the sequence, attention, conv, pooling,
embedding and normalization ops, each eager and under ``jax.jit``, forward and gradient,
against plain-jnp autodiff of the reference (float64).

Every (case, mode, pass) gets one outcome:

* ``match``      the op's result equals the reference's: same shapes, NaN and ±inf at the
                 same places, finite values within rounding;
* ``refused``    the op raised ``ValueError``/``TypeError`` whose message starts with its name;
* ``poisoned``   under jit, a value the eager call refuses (a length or an id out of range)
                 comes out NaN instead: the documented jit rule;
* ``documented`` differs from the reference for the reason the case names (stated in the
                 op's docstring);
* ``raw error``  any other exception (from deep inside JAX, or an op's error without its name);
* ``silent``     a result that differs from the reference with no documented reason.

``refused, jnp empty`` counts refusals where the reference returned an empty result
(the op should have returned it too). The target is 0 raw errors, 0 silent results and 0
refusals of an empty result.

Run: python experiments/edge_case_sweep.py [--tiny] [--show OUTCOME ...]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import ops, reference

OUTCOMES = ("match", "refused", "poisoned", "documented", "raw error", "silent")
CAUSAL_SKIP = "attention: causal, 0 * NaN in tiles the tiled passes skip (module docstring)"
MASKED_V = "attention: NaN in v at a masked key makes D = rowsum(dY Y) NaN in NaN-output rows (module docstring)"
HUGE_CELLS = "lstm: c0 ~1e30, where autodiff of the reference disagrees with central differences (module docstring)"
HUGE_SCORES = "attention: scores of ~1e30, where compiled exp gives NaN (the reference differs eager vs jit too)"


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """An op, its reference twin (both called with the same keywords) and its arguments' roles:
    ``diff`` arguments are differentiated, ``extra`` ones (lengths, ids, masks) are traced under
    jit but not differentiated, everything else is a static Python value."""

    manual: Callable
    reference: Callable
    diff: tuple[str, ...]
    extra: tuple[str, ...]
    base: Callable[[], dict]


def _normal(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def _recurrent_params(gates: int, biases: tuple[str, ...]) -> dict:
    params = {"w_ih": _normal(1, 2, 3 * gates) * 0.5, "w_hh": _normal(2, 3, 3 * gates) * 0.5}
    return params | {name: _normal(3 + i, 3 * gates) * 0.1 for i, name in enumerate(biases)}


def _zeros_state(kw: dict, key: str = "h0") -> Any:
    value = kw.get(key)
    if value is None:
        return np.zeros((np.shape(kw["x"])[0], np.shape(kw["params"]["w_hh"])[0]))
    return value


def _lengths(lengths: Any) -> Any:
    return None if lengths is None else jnp.asarray(lengths)


def _lstm_state(kw: dict) -> Any:
    state = kw.get("state")
    zeros = _zeros_state({**kw, "h0": None})
    if state is None:
        return (zeros, zeros)
    if isinstance(state, tuple):  # ops.lstm reads a None inside the pair as zeros too
        return tuple(zeros if s is None else s for s in state)
    return state


SPECS: dict[str, OpSpec] = {
    "rnn": OpSpec(
        lambda params, x, h0, lengths=None: ops.rnn(params, x, h0, lengths=lengths),
        lambda params, x, h0, lengths=None: reference.rnn(
            params, x, _zeros_state({"params": params, "x": x, "h0": h0}), _lengths(lengths)
        ),
        ("params", "x", "h0"),
        ("lengths",),
        lambda: {"params": _recurrent_params(1, ("b",)), "x": _normal(5, 2, 4, 2), "h0": _normal(6, 2, 3) * 0.5},
    ),
    "lstm": OpSpec(
        lambda params, x, state, lengths=None: ops.lstm(params, x, state, lengths=lengths),
        lambda params, x, state, lengths=None: reference.lstm(
            params, x, _lstm_state({"params": params, "x": x, "state": state}), _lengths(lengths)
        ),
        ("params", "x", "state"),
        ("lengths",),
        lambda: {
            "params": _recurrent_params(4, ("b",)),
            "x": _normal(5, 2, 4, 2),
            "state": (_normal(6, 2, 3) * 0.5, _normal(7, 2, 3) * 0.5),
        },
    ),
    "gru": OpSpec(
        lambda params, x, h0, lengths=None: ops.gru(params, x, h0, lengths=lengths),
        lambda params, x, h0, lengths=None: reference.gru(
            params, x, _zeros_state({"params": params, "x": x, "h0": h0}), _lengths(lengths)
        ),
        ("params", "x", "h0"),
        ("lengths",),
        lambda: {"params": _recurrent_params(3, ("b_ih", "b_hh")), "x": _normal(5, 2, 4, 2), "h0": _normal(6, 2, 3)},
    ),
    "reverse_sequences": OpSpec(
        lambda x, lengths=None: ops.reverse_sequences(x, lengths=lengths),
        lambda x, lengths=None: reference.reverse_sequences(x, _lengths(lengths)),
        ("x",),
        ("lengths",),
        lambda: {"x": _normal(5, 2, 4, 2)},
    ),
    "concatenate": OpSpec(
        lambda arrays, axis=-1: ops.concatenate(arrays, axis),
        lambda arrays, axis=-1: reference.concatenate(tuple(jnp.asarray(a) for a in arrays), axis),
        ("arrays",),
        (),
        lambda: {"arrays": (_normal(1, 2, 3), _normal(2, 2, 4))},
    ),
    "attention": OpSpec(
        lambda q, k, v, mask=None, causal=False, scale=None, block_size=2: ops.attention(
            q, k, v, mask=mask, causal=causal, scale=scale, block_size=block_size
        ),
        lambda q, k, v, mask=None, causal=False, scale=None, block_size=2: reference.attention(
            q,
            k,
            v,
            None if mask is None else jnp.asarray(mask).reshape((1,) * (4 - np.ndim(mask)) + np.shape(mask)),
            causal=causal,
            scale=scale,
        ),
        ("q", "k", "v"),
        ("mask",),
        lambda: {"q": _normal(1, 2, 5, 2, 3), "k": _normal(2, 2, 5, 1, 3), "v": _normal(3, 2, 5, 1, 2)},
    ),
    "conv1d": OpSpec(
        ops.conv1d,
        reference.conv1d,
        ("params", "x"),
        (),
        lambda: {"params": {"w": _normal(1, 3, 2, 4), "b": _normal(2, 4)}, "x": _normal(3, 2, 6, 2)},
    ),
    "conv2d": OpSpec(
        ops.conv2d,
        reference.conv2d,
        ("params", "x"),
        (),
        lambda: {"params": {"w": _normal(1, 2, 2, 2, 3), "b": _normal(2, 3)}, "x": _normal(3, 2, 4, 5, 2)},
    ),
    "conv_transpose2d": OpSpec(
        ops.conv_transpose2d,
        reference.conv_transpose2d,
        ("params", "x"),
        (),
        lambda: {"params": {"w": _normal(1, 2, 2, 3, 2), "b": _normal(2, 3)}, "x": _normal(3, 2, 3, 3, 2)},
    ),
    "max_pool2d": OpSpec(
        ops.max_pool2d,
        reference.max_pool2d,
        ("x",),
        (),
        lambda: {"x": _normal(1, 2, 4, 4, 2), "window": 2},
    ),
    "avg_pool2d": OpSpec(
        ops.avg_pool2d,
        reference.avg_pool2d,
        ("x",),
        (),
        lambda: {"x": _normal(1, 2, 4, 4, 2), "window": 2},
    ),
    "global_avg_pool": OpSpec(
        ops.global_avg_pool, reference.global_avg_pool, ("x",), (), lambda: {"x": _normal(1, 2, 3, 3, 2)}
    ),
    "embedding": OpSpec(
        ops.embedding,
        lambda params, ids: reference.embedding(params, jnp.asarray(ids)),
        ("params",),
        ("ids",),
        lambda: {"params": {"w": _normal(1, 5, 3)}, "ids": np.array([[0, 4], [2, 2]])},
    ),
    "batch_norm": OpSpec(
        ops.batch_norm,
        lambda params, x, eps=1e-5: reference.batch_norm(params, x, eps),
        ("params", "x"),
        (),
        lambda: {"params": {"gamma": _normal(1, 3), "beta": _normal(2, 3)}, "x": _normal(3, 4, 3)},
    ),
    "layer_norm": OpSpec(
        ops.layer_norm,
        reference.layer_norm,
        ("params", "x"),
        (),
        lambda: {"params": {"gamma": _normal(1, 3), "beta": _normal(2, 3)}, "x": _normal(3, 4, 3)},
    ),
}


@dataclasses.dataclass(frozen=True)
class Case:
    op: str
    name: str
    args: dict
    documented: str | None = None  # the docstring's reason, where the op differs from the reference on purpose


# ------------------------------------------------------------------------- the cases


def _leaf_paths(value: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(value, dict):
        return [p for key in value for p in _leaf_paths(value[key], (*path, key))]
    if isinstance(value, tuple):
        return [p for i, item in enumerate(value) for p in _leaf_paths(item, (*path, i))]
    return [path]


def _replaced(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    return tuple(_replaced(item, rest, new) if i == head else item for i, item in enumerate(value))


def _get(value: Any, path: tuple) -> Any:
    for key in path:
        value = value[key]
    return value


def _with(array: np.ndarray, index: int, fill: float) -> np.ndarray:
    out = np.array(array, dtype=np.float64)
    out.flat[index] = fill
    return out


# name -> how one float leaf is spoiled
LEAF_SPOILERS: dict[str, Callable[[np.ndarray], Any]] = {
    "NaN first": lambda a: _with(a, 0, np.nan),
    "NaN last": lambda a: _with(a, -1, np.nan),
    "+inf": lambda a: _with(a, 0, np.inf),
    "-inf": lambda a: _with(a, -1, -np.inf),
    "all zeros": lambda a: np.zeros_like(a),
    "huge": lambda a: np.asarray(a) * 1e30,  # products stay finite in float64 (1e200 overflows them)
    "None": lambda a: None,
    "string": lambda a: "abc",
    "ragged list": lambda a: [[1.0, 2.0], [3.0]],
    "int array": lambda a: np.ones(np.shape(a), np.int32),
    "extra axis": lambda a: np.asarray(a)[None],
}


VALUE_SPOILERS = ("NaN first", "NaN last", "+inf", "-inf", "all zeros", "huge")


def _generic_cases(op: str) -> list[Case]:
    """Every spoiler on each input array; the type spoilers only on each parameter."""
    base = SPECS[op].base()
    cases = []
    for name in SPECS[op].diff:
        for path in _leaf_paths(base[name]):
            label = name + "".join(f"[{key!r}]" for key in path)
            for spoil_name, spoil in LEAF_SPOILERS.items():
                if name == "params" and spoil_name in VALUE_SPOILERS:
                    continue
                args = {**base, name: _replaced(base[name], path, spoil(_get(base[name], path)))}
                documented = None
                if spoil_name == "huge" and op == "attention" and name != "v":
                    documented = HUGE_SCORES
                if spoil_name == "huge" and op == "lstm" and path == (1,):
                    documented = HUGE_CELLS
                cases.append(Case(op, f"{label}: {spoil_name}", args, documented))
    return cases


def _recurrent_cases(op: str) -> list[Case]:
    base = SPECS[op].base()
    lengths = {
        "lengths full": np.array([4, 4]),
        "lengths short and zero": np.array([2, 0]),
        "length > T": np.array([4, 5]),
        "length < 0": np.array([-1, 3]),
        "lengths float": np.array([2.0, 3.0]),
        "lengths wrong shape": np.array([1, 2, 3]),
        "lengths int64 scalar list": [np.int64(2), np.int64(3)],
        "lengths None": None,
    }
    cases = [Case(op, name, {**base, "lengths": value}) for name, value in lengths.items()]
    x = base["x"]
    empty_state = {"h0": base["h0"][:0]} if "h0" in base else {"state": None} if "state" in base else {}
    cases += [
        Case(op, "batch 0", {**base, "x": x[:0], **empty_state}),
        Case(op, "time 0", {**base, "x": x[:, :0]}),
        Case(op, "NaN at a padded step", {**base, "x": _with(x, 3 * 2, np.nan), "lengths": np.array([2, 4])}),
        Case(op, "bf16 x", {**base, "x": x.astype(jnp.bfloat16)}),
    ]
    return cases


def _attention_cases() -> list[Case]:
    base = SPECS["attention"].base()
    q, k, v = base["q"], base["k"], base["v"]
    key_mask = np.ones((2, 1, 1, 5), bool)
    key_mask[:, :, :, 3] = False
    row_mask = np.ones((2, 1, 5, 5), bool)
    row_mask[0, :, 1] = False
    cases = [
        Case("attention", "NaN in a key", {**base, "k": _with(k, 3, np.nan)}),
        Case(
            "attention",
            "NaN in v at a masked key",
            {**base, "v": _with(v, 3 * 2, np.nan), "mask": key_mask},
            documented=MASKED_V,
        ),
        Case("attention", "NaN in k at a masked key", {**base, "k": _with(k, 3 * 3, np.nan), "mask": key_mask}),
        Case("attention", "NaN in q, masked row", {**base, "q": _with(q, 6, np.nan), "mask": row_mask}),
        Case("attention", "fully masked row", {**base, "mask": row_mask}),
        Case("attention", "all masked", {**base, "mask": np.zeros((1, 1, 1, 1), bool)}),
        Case("attention", "causal", {**base, "causal": True}),
        Case("attention", "causal, NaN in v, last key", {**base, "causal": True, "v": _with(v, -1, np.nan)}),
        Case(
            "attention",
            "causal, NaN in k, last key",
            {**base, "causal": True, "k": _with(k, -1, np.nan)},
            documented=CAUSAL_SKIP,
        ),
        Case("attention", "causal, NaN in q", {**base, "causal": True, "q": _with(q, 0, np.nan)}, CAUSAL_SKIP),
        Case("attention", "batch 0", {**base, "q": q[:0], "k": k[:0], "v": v[:0]}),
        Case("attention", "q_time 0", {**base, "q": q[:, :0]}),
        Case("attention", "k_time 0", {**base, "k": k[:, :0], "v": v[:, :0]}),
        Case("attention", "zero heads", {**base, "q": q[:, :, :0]}),
        Case("attention", "zero key heads", {**base, "q": q[:, :, :0], "k": k[:, :, :0], "v": v[:, :, :0]}),
        Case("attention", "head_dim 0", {**base, "q": q[..., :0], "k": k[..., :0]}),
        Case("attention", "v_dim 0", {**base, "v": v[..., :0]}),
        Case("attention", "block_size np.int64", {**base, "block_size": np.int64(2)}),
        Case("attention", "block_size 0", {**base, "block_size": 0}),
        Case("attention", "scale 0", {**base, "scale": 0.0}),
        Case("attention", "scale NaN", {**base, "scale": float("nan")}),
        Case("attention", "mask float", {**base, "mask": np.ones((1, 1, 5, 5))}),
        Case("attention", "mask bad shape", {**base, "mask": np.ones((3, 5), bool)}),
        Case("attention", "mask None string", {**base, "mask": "all"}),
    ]
    # the masked-key NaN cases again, causal (the tiled passes skip tiles there)
    cases += [
        Case(
            "attention",
            f"causal, {c.name}",
            {**c.args, "causal": True},
            documented=c.documented or CAUSAL_SKIP,
        )
        for c in cases[1:3]
    ]
    return cases


def _conv_cases() -> list[Case]:
    cases = []
    for op in ("conv1d", "conv2d", "conv_transpose2d"):
        base = SPECS[op].base()
        w, x = base["params"]["w"], base["x"]
        cases += [
            Case(op, "zero-size kernel", {**base, "params": {**base["params"], "w": w[:0]}}),
            Case(op, "batch 0", {**base, "x": x[:0]}),
            Case(
                op, "zero input channels", {**base, "x": x[..., :0], "params": {**base["params"], "w": w[..., :0, :]}}
            ),
            Case(
                op,
                "zero output channels",
                {**base, "params": {"w": w[..., :0], "b": base["params"]["b"][:0]}}
                if op != "conv_transpose2d"
                else {**base, "params": {"w": w[..., :0, :], "b": base["params"]["b"][:0]}},
            ),
            Case(op, "stride np.int64", {**base, "stride": np.int64(2)}),
            Case(op, "stride 0", {**base, "stride": 0}),
            Case(op, "stride -1", {**base, "stride": -1}),
            Case(op, "stride float", {**base, "stride": 1.5}),
            Case(op, "dilation np.int64", {**base, "dilation": np.int64(2)}),
            Case(op, "padding bad string", {**base, "padding": "FULL"}),
            Case(op, "padding negative", {**base, "padding": -1}),
            Case(op, "padding VALID", {**base, "padding": "VALID"}),
            Case(op, "groups 0", {**base, "groups": 0}),
            Case(op, "groups np.int64", {**base, "groups": np.int64(1)}),
            Case(op, "empty spatial", {**base, "x": x[:, :0]}),
            Case(op, "kernel larger than input VALID", {**base, "x": x[:, :1], "padding": "VALID"}),
            Case(op, "wrong bias shape", {**base, "params": {**base["params"], "b": np.zeros(7)}}),
            Case(op, "params missing b", {**base, "params": {"w": w}}),
            Case(op, "params not a dict", {**base, "params": [w, base["params"]["b"]]}),
            Case(op, "w wrong rank", {**base, "params": {**base["params"], "w": w[0]}}),
        ]
    return cases


def _pool_cases() -> list[Case]:
    cases = []
    ties = np.zeros((1, 4, 4, 1))
    nan_windows = _with(_with(np.arange(16.0).reshape(1, 4, 4, 1), 0, np.nan), 5, np.nan)
    for op in ("max_pool2d", "avg_pool2d"):
        base = SPECS[op].base()
        x = base["x"]
        cases += [
            Case(op, "ties", {**base, "x": ties}),
            Case(op, "NaN windows", {**base, "x": nan_windows}),
            Case(op, "NaN window, overlapping", {**base, "x": nan_windows, "window": 3, "stride": 1}),
            Case(op, "-inf window", {**base, "x": np.full((1, 2, 2, 1), -np.inf)}),
            Case(op, "-inf window, padded", {**base, "x": np.full((1, 3, 3, 1), -np.inf), "padding": "SAME"}),
            Case(op, "NaN, padded SAME", {**base, "x": _with(x, 0, np.nan), "window": 3, "padding": "SAME"}),
            Case(op, "batch 0", {**base, "x": x[:0]}),
            Case(op, "channels 0", {**base, "x": x[..., :0]}),
            Case(op, "empty spatial", {**base, "x": x[:, :0]}),
            Case(op, "window 0", {**base, "window": 0}),
            Case(op, "window np.int64", {**base, "window": np.int64(2)}),
            Case(op, "stride np.int64", {**base, "stride": np.int64(1)}),
            Case(op, "window bigger than input", {**base, "window": 5}),
            Case(op, "window float", {**base, "window": 2.0}),
            Case(op, "window 3 ints", {**base, "window": (2, 2, 2)}),
            Case(op, "padding too big", {**base, "padding": 2}),
            Case(op, "rank 3", {**base, "x": x[0]}),
        ]
    base = SPECS["global_avg_pool"].base()
    cases += [
        Case("global_avg_pool", "batch 0", {"x": base["x"][:0]}),
        Case("global_avg_pool", "channels 0", {"x": base["x"][..., :0]}),
        Case("global_avg_pool", "empty spatial", {"x": base["x"][:, :0]}),
        Case("global_avg_pool", "rank 2", {"x": base["x"][:, 0, 0]}),
    ]
    return cases


def _embedding_cases() -> list[Case]:
    base = SPECS["embedding"].base()
    w = base["params"]["w"]
    ids = {
        "id = vocab": np.array([[0, 5]]),
        "id negative": np.array([[-1, 2]]),
        "ids float": np.array([[0.0, 1.0]]),
        "ids empty": np.zeros((0,), np.int32),
        "ids scalar": np.array(3),
        "ids bool": np.array([True, False]),
        "ids None": None,
        "ids string": "3",
        "ids ragged": [[1, 2], [3]],
        "ids np.int64 list": [np.int64(1), np.int64(2)],
        "ids int64 huge": np.array([2**40]),
    }
    cases = [Case("embedding", name, {**base, "ids": value}) for name, value in ids.items()]
    cases += [
        Case("embedding", "vocab 0", {**base, "params": {"w": w[:0]}}),
        Case("embedding", "vocab 0, ids empty", {"params": {"w": w[:0]}, "ids": np.zeros((0, 2), np.int32)}),
        Case("embedding", "dim 0", {**base, "params": {"w": w[:, :0]}}),
    ]
    return cases


def _norm_cases() -> list[Case]:
    cases = []
    for op in ("batch_norm", "layer_norm"):
        base = SPECS[op].base()
        x = base["x"]
        cases += [
            Case(op, "constant feature", {**base, "x": np.ones_like(x)}),
            Case(op, "batch 0", {**base, "x": x[:0]}),
            Case(op, "features 0", {**base, "x": x[:, :0], "params": {"gamma": np.zeros(0), "beta": np.zeros(0)}}),
            Case(op, "one row", {**base, "x": x[:1]}),
            Case(op, "eps negative", {**base, "eps": -1.0}),
            Case(op, "eps NaN", {**base, "eps": float("nan")}),
            Case(op, "eps 0, constant feature", {**base, "x": np.ones_like(x), "eps": 0.0}),
            Case(op, "rank 1", {**base, "x": x[0]}),
        ]
    return cases


def all_cases() -> list[Case]:
    cases = []
    for op in SPECS:
        cases += _generic_cases(op)
    for op in ("rnn", "lstm", "gru", "reverse_sequences"):
        cases += _recurrent_cases(op)
    return cases + _attention_cases() + _conv_cases() + _pool_cases() + _embedding_cases() + _norm_cases()


# -------------------------------------------------------------------------- running


def _is_float_array(value: Any) -> bool:
    return isinstance(value, (np.ndarray, jax.Array)) and jnp.issubdtype(value.dtype, jnp.floating)


def _traceable(value: Any, float_only: bool) -> bool:
    leaves = jax.tree_util.tree_leaves(value)
    if not leaves or not isinstance(value, (dict, tuple, np.ndarray, jax.Array)):
        return False
    is_array = _is_float_array if float_only else (lambda x: isinstance(x, (np.ndarray, jax.Array)))
    return all(is_array(leaf) for leaf in leaves)


def _seed(y: jax.Array) -> jax.Array:
    """A fixed, nowhere-zero cotangent of ``y``'s shape."""
    return (1 + 0.5 * jnp.cos(jnp.arange(y.size, dtype=jnp.float64))).reshape(y.shape).astype(y.dtype)


_COMPILED: dict[str, Callable] = {}  # one jitted function per op, pass and static arguments


def _evaluate(spec: OpSpec, fn: Callable, case: Case, jit: bool, gradient: bool) -> list:
    diff = [n for n in spec.diff if n in case.args and _traceable(case.args[n], float_only=True)]
    traced = [n for n in spec.extra if n in case.args and _traceable(case.args[n], float_only=False)]
    static = {n: v for n, v in case.args.items() if n not in diff and n not in traced}

    def forward(diff_values, traced_values):
        return fn(**static, **dict(zip(diff, diff_values)), **dict(zip(traced, traced_values)))

    def backward(diff_values, traced_values):
        y, vjp = jax.vjp(lambda *d: forward(d, traced_values), *diff_values)
        return vjp(jax.tree_util.tree_map(_seed, y))

    run = backward if gradient else forward
    if jit:  # cases that differ only in values share a compilation
        key = repr((case.op, fn is spec.manual, gradient, diff, traced, static))
        run = _COMPILED.setdefault(key, jax.jit(run))
    result = run(tuple(case.args[n] for n in diff), tuple(case.args[n] for n in traced))
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(result)]


def _same(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x.shape != y.shape:
            return False
        x, y = x.astype(np.float64), y.astype(np.float64)
        if not (np.array_equal(np.isnan(x), np.isnan(y)) and np.array_equal(np.isposinf(x), np.isposinf(y))):
            return False
        if not np.array_equal(np.isneginf(x), np.isneginf(y)):
            return False
        finite = np.isfinite(x) & np.isfinite(y)
        scale = max(1.0, float(np.max(np.abs(y[finite]), initial=0.0)))
        if not np.allclose(x[finite], y[finite], rtol=1e-6, atol=1e-9 * scale):
            return False
    return True


def _clean(op: str, error: Exception) -> bool:
    return isinstance(error, (ValueError, TypeError)) and str(error).startswith(f"{op}:")


def _has_nan(leaves: list) -> bool:
    return any(np.isnan(leaf.astype(np.float64)).any() for leaf in leaves)


def classify(case: Case, jit: bool, gradient: bool, eager_refused: bool) -> tuple[str, bool, str]:
    """``(outcome, reference returned an empty result, detail)`` for one run."""
    spec = SPECS[case.op]
    try:
        expected: list | None = _evaluate(spec, spec.reference, case, jit, gradient)
    except Exception:  # the reference validates nothing; its failure only matters for the op's answer
        expected = None
    empty = expected is not None and all(leaf.size == 0 for leaf in expected) and bool(expected)
    try:
        got = _evaluate(spec, spec.manual, case, jit, gradient)
    except Exception as error:
        outcome = "refused" if _clean(case.op, error) else "raw error"
        return outcome, empty, f"{type(error).__name__}: {str(error)[:160]}"
    if expected is not None and _same(got, expected):
        return "match", False, ""
    if jit and eager_refused and _has_nan(got):
        return "poisoned", False, ""
    if case.documented:
        return "documented", False, case.documented
    return "silent", False, "reference raised" if expected is None else "differs from the reference"


def sweep(cases: list[Case], show: tuple[str, ...] = ()) -> dict:
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    refused_empty = collections.Counter()
    for case in cases:
        eager_refused = {}
        for jit in (False, True):
            for gradient in (False, True):
                if gradient and not any(n in case.args and _traceable(case.args[n], True) for n in SPECS[case.op].diff):
                    continue
                with jax.enable_x64(True):
                    outcome, empty, detail = classify(case, jit, gradient, eager_refused.get(gradient, False))
                if not jit:
                    eager_refused[gradient] = outcome == "refused"
                counts[case.op][outcome] += 1
                refused_empty[case.op] += outcome == "refused" and empty
                if outcome in show or (outcome == "refused" and empty and "refused, jnp empty" in show):
                    mode = ("jit" if jit else "eager") + (" grad" if gradient else " fwd")
                    print(f"  [{outcome}] {case.op} / {case.name} / {mode}: {detail}")
    return {"counts": counts, "refused_empty": refused_empty, "cases": collections.Counter(c.op for c in cases)}


def print_table(result: dict) -> None:
    header = ["op", "cases", "runs", *OUTCOMES, "refused, jnp empty"]
    rows = []
    for op, counter in result["counts"].items():
        rows.append([op, result["cases"][op], sum(counter.values()), *(counter[o] for o in OUTCOMES)])
        rows[-1].append(result["refused_empty"][op])
    totals = ["total", *(sum(row[i] for row in rows) for i in range(1, len(header)))]
    widths = [max(len(str(r[i])) for r in [header, *rows, totals]) for i in range(len(header))]
    for row in [header, *rows, totals]:
        print("  ".join(str(cell).rjust(width) for cell, width in zip(row, widths)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="one case per op (a smoke run)")
    parser.add_argument("--ops", nargs="*", default=list(SPECS), help="only these ops")
    parser.add_argument("--show", nargs="*", default=["raw error", "silent", "refused, jnp empty"])
    args = parser.parse_args(argv)
    cases = [case for case in all_cases() if case.op in args.ops]
    if args.tiny:
        first = {}
        for case in cases:
            first.setdefault(case.op, case)
        cases = list(first.values())
    result = sweep(cases, tuple(args.show))
    print_table(result)
    bad = sum(c["raw error"] + c["silent"] for c in result["counts"].values()) + sum(result["refused_empty"].values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
