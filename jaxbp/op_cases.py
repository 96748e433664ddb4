"""Gradient-check every op on random shapes: the op catalog and its sweep.

The tests draw shapes with hypothesis and check each case; ``jaxbp gradcheck-ops``
sweeps many random shapes and prints the worst relative errors per op. Both use
this one catalog, so a new op is checked everywhere once it is added here.

Each case has a shape sampler (``sample_shape(rng) -> shape``, default: rank
``min_rank``..3, sizes 1-6) and a builder ``make_args(seed, shape)`` returning the op's
positional arguments in float64 (call them under ``jax.enable_x64(True)``). What a
"shape" means is the case's own business: an NHWC input plus a kernel size, a shared
``(B, T, H, D)`` for attention, ``(B, T, F)`` for a recurrent cell; ``case.draw(seed)``
samples one and builds the arguments. Inputs of kinked ops are kept
0.05 away from the kink so finite differences never straddle it; the kinks
themselves are tested separately against the stated conventions.
"""

from __future__ import annotations

import argparse
import json
import pathlib
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import ops
from jaxbp.gradcheck import check_gradients

Shape = tuple[int, ...]
ShapeSampler = Callable[[np.random.Generator], Shape]


def ranked(min_rank: int = 1, max_rank: int = 3, max_size: int = 6) -> ShapeSampler:
    """A sampler of plain array shapes: rank in [min_rank, max_rank], each size in [1, max_size]."""

    def sample(rng: np.random.Generator) -> Shape:
        rank = int(rng.integers(min_rank, max_rank + 1))
        return tuple(int(d) for d in rng.integers(1, max_size + 1, size=rank))

    return sample


class OpCase(NamedTuple):
    op: Callable[..., Any]
    make_args: Callable[[int, Shape], tuple]
    min_rank: int = 1
    sample_shape: ShapeSampler | None = None  # default: ranked(min_rank)

    def draw_shape(self, rng: np.random.Generator) -> Shape:
        """One shape from this case's sampler."""
        sampler = self.sample_shape if self.sample_shape is not None else ranked(self.min_rank)
        return sampler(rng)

    def draw(self, seed: int) -> tuple:
        """The op's arguments for a shape sampled from ``seed`` (float64: call under ``jax.enable_x64``)."""
        return self.make_args(seed, self.draw_shape(np.random.default_rng(seed)))


def _rng(seed: int) -> np.random.Generator:
    """Test data comes from NumPy: an eager ``jax.random`` draw compiles a program for every new
    shape (about 0.25 s on CPU, more than the gradient check of a small op)."""
    return np.random.default_rng(seed)


def normal(seed: int, shape: tuple[int, ...], scale: float = 1.0) -> jax.Array:
    return jnp.asarray(scale * _rng(seed).standard_normal(shape), jnp.float64)


def away_from_kinks(x: jax.Array) -> jax.Array:
    """Move values at least 0.05 away from 0."""
    return x + 0.05 * jnp.sign(x)


def _unary(transform: Callable = lambda x: x, scale: float = 2.0):
    return lambda seed, shape: (transform(normal(seed, shape, scale)),)


def _pair(second: Callable[[int, tuple[int, ...]], jax.Array], scale: float = 1.0):
    return lambda seed, shape: (normal(seed, shape, scale), second(seed + 1, shape))


def _dense_args(seed, shape):
    out = 1 + seed % 4
    params = {"w": normal(seed, (shape[-1], out)), "b": normal(seed + 1, (out,))}
    return params, normal(seed + 2, shape)


def _integer_labels(seed, shape):
    return jnp.asarray(_rng(seed).integers(0, shape[-1], shape[:-1]))


def _probabilities(seed, shape):
    return jax.nn.softmax(normal(seed, shape))


def _uniform(seed, shape):
    return jnp.asarray(_rng(seed).random(shape), jnp.float64)


def _at_least(shape: tuple[int, ...], axis: int, size: int) -> tuple[int, ...]:
    """``shape`` with ``shape[axis]`` raised to ``size``: normalising groups of two make
    the output depend on x only through eps, too flat for finite differences."""
    dims = list(shape)
    dims[axis] = max(dims[axis], size)
    return tuple(dims)


def _norm_params(seed, features):
    return {"gamma": 1 + normal(seed, (features,), 0.5), "beta": normal(seed + 100, (features,))}


def _batch_norm_args(seed, shape):
    shape = _at_least(shape, 0, 3)
    return _norm_params(seed, shape[-1]), normal(seed + 1, shape, 2.0)


def _batch_norm_eval_args(seed, shape):
    params, x = _batch_norm_args(seed, shape)
    mean = normal(seed + 2, (x.shape[-1],))
    var = 0.5 + _uniform(seed + 3, (x.shape[-1],))
    return params, x, mean, var


def _layer_norm_args(seed, shape):
    shape = _at_least(shape, -1, 3)
    return _norm_params(seed, shape[-1]), normal(seed + 1, shape, 2.0)


def _batch_norm_eval(params, x, mean, var):
    return ops.batch_norm(params, x, train=False, running=ops.BatchStatistics(mean, var))


def attention_shape(rng: np.random.Generator) -> Shape:
    """A shared ``(B, T, H, D)`` for attention's q (k and v get their own length from the seed):
    T >= 2, since with a single key softmax is constant and dq = dk = 0 exactly."""
    return (int(rng.integers(1, 3)), int(rng.integers(2, 6)), 2 * int(rng.integers(1, 3)), int(rng.integers(1, 4)))


def _attention_args(kv_heads_per_query: int):
    """q ``(B, T, H, D)``; k, v ``(B, T', H / kv_heads_per_query, D)`` with T' in [2, 5] from the seed."""

    def make(seed, shape):
        batch, _, heads, dim = shape
        kv_shape = (batch, 2 + seed % 4, heads // kv_heads_per_query, dim)
        return normal(seed, shape), normal(seed + 1, kv_shape), normal(seed + 2, kv_shape)

    return make


def recurrent_shape(rng: np.random.Generator) -> Shape:
    """``(B, T, F, H)`` for a recurrent cell: x is ``(B, T, F)``, the hidden size H."""
    return (int(rng.integers(1, 4)), int(rng.choice([1, 2, 7])), int(rng.integers(1, 4)), int(rng.integers(1, 4)))


def _recurrent_args(num_gates: int, biases: tuple[str, ...], lstm_state: bool = False):
    """params, x ``(B, T, F)``, the initial state and random lengths in [0, T]."""

    def make(seed, shape):
        batch, time, features, hidden = shape
        params = {
            "w_ih": normal(seed, (features, num_gates * hidden), 0.7),
            "w_hh": normal(seed + 1, (hidden, num_gates * hidden), 0.7),
        }
        params.update({name: normal(seed + 2 + i, (num_gates * hidden,), 0.5) for i, name in enumerate(biases)})
        h0 = normal(seed + 5, (batch, hidden))
        state = (h0, normal(seed + 6, (batch, hidden))) if lstm_state else h0
        lengths = jnp.asarray(_rng(seed + 7).integers(0, time + 1, batch))
        return params, normal(seed + 4, (batch, time, features)), state, lengths

    return make


def _embedding_args(seed, shape):
    ids = jnp.asarray(_rng(seed).integers(0, 1 + seed % 5, shape[:-1]))
    return {"w": normal(seed + 1, (1 + seed % 5, shape[-1]))}, ids


def nhwc_shape(rng: np.random.Generator) -> Shape:
    """An NHWC image batch ``(N, H, W, C)`` with H, W in [3, 7] (odd and even sizes), C in {2, 4}."""
    return (int(rng.integers(1, 3)), int(rng.integers(3, 8)), int(rng.integers(3, 8)), 2 * int(rng.integers(1, 3)))


def _conv_args(kernel: tuple[int, int], cout: int, groups: int = 1, transposed: bool = False):
    """params ``{"w": (kh, kw, cin / groups, cout), "b"}`` (transposed: ``(kh, kw, cout / groups, cin)``) and x."""

    def make(seed, shape):
        cin = shape[-1]
        w_shape = (*kernel, cout // groups, cin) if transposed else (*kernel, cin // groups, cout)
        return {"w": normal(seed, w_shape), "b": normal(seed + 1, (cout,))}, normal(seed + 2, shape)

    return make


CASES: dict[str, OpCase] = {
    "sigmoid": OpCase(ops.sigmoid, _unary()),
    "tanh": OpCase(ops.tanh, _unary()),
    "relu": OpCase(ops.relu, _unary(away_from_kinks)),
    "leaky_relu": OpCase(lambda x: ops.leaky_relu(x, 0.2), _unary(away_from_kinks)),
    "elu": OpCase(lambda x: ops.elu(x, 0.7), _unary(away_from_kinks)),
    "gelu": OpCase(ops.gelu, _unary()),
    "gelu_tanh": OpCase(lambda x: ops.gelu(x, approximate=True), _unary()),
    "softmax": OpCase(ops.softmax, _unary()),
    "softmax_axis0": OpCase(lambda x: ops.softmax(x, axis=0), _unary()),
    "log_softmax": OpCase(ops.log_softmax, _unary()),
    "dense": OpCase(ops.dense, _dense_args),
    "mse": OpCase(ops.mse, _pair(normal)),
    "binary_cross_entropy_with_logits": OpCase(ops.binary_cross_entropy_with_logits, _pair(_uniform, 3.0)),
    "softmax_cross_entropy_int": OpCase(ops.softmax_cross_entropy, _pair(_integer_labels, 3.0)),
    "softmax_cross_entropy_float": OpCase(ops.softmax_cross_entropy, _pair(_probabilities, 3.0)),
    "add": OpCase(ops.add, _pair(normal)),
    "flatten": OpCase(ops.flatten, _unary()),
    "batch_norm": OpCase(lambda params, x: ops.batch_norm(params, x), _batch_norm_args, min_rank=2),
    "batch_norm_eval": OpCase(_batch_norm_eval, _batch_norm_eval_args, min_rank=2),
    "layer_norm": OpCase(ops.layer_norm, _layer_norm_args),
    "dropout": OpCase(
        lambda x, key: ops.dropout(x, key, 0.3, train=True),
        lambda seed, shape: (normal(seed, shape), jax.random.key(seed)),
    ),
    "attention": OpCase(
        lambda q, k, v: ops.attention(q, k, v, block_size=2), _attention_args(1), sample_shape=attention_shape
    ),
    "attention_causal_grouped": OpCase(
        lambda q, k, v: ops.attention(q, k, v, causal=True, block_size=3),
        _attention_args(2),
        sample_shape=attention_shape,
    ),
    "rnn": OpCase(lambda p, x, h, n: ops.rnn(p, x, h), _recurrent_args(1, ("b",)), sample_shape=recurrent_shape),
    "lstm_lengths": OpCase(
        lambda p, x, s, n: ops.lstm(p, x, s, lengths=n), _recurrent_args(4, ("b",), True), sample_shape=recurrent_shape
    ),
    "gru": OpCase(
        lambda p, x, h, n: ops.gru(p, x, h), _recurrent_args(3, ("b_ih", "b_hh")), sample_shape=recurrent_shape
    ),
    "embedding": OpCase(ops.embedding, _embedding_args, min_rank=2),
    "conv2d_strided_grouped": OpCase(
        lambda p, x: ops.conv2d(p, x, stride=(2, 1), padding=((1, 2), (0, 1)), dilation=(1, 2), groups=2),
        _conv_args((3, 2), 4, groups=2),
        sample_shape=nhwc_shape,
    ),
    "conv_transpose2d": OpCase(
        lambda p, x: ops.conv_transpose2d(p, x, stride=2, padding=1, output_padding=1),
        _conv_args((3, 3), 3, transposed=True),
        sample_shape=nhwc_shape,
    ),
    "max_pool2d_overlapping": OpCase(lambda x: ops.max_pool2d(x, 3, 2, "SAME"), _unary(), sample_shape=nhwc_shape),
    "avg_pool2d_exclusive": OpCase(
        lambda x: ops.avg_pool2d(x, 2, 1, 1, count_include_pad=False), _unary(), sample_shape=nhwc_shape
    ),
}


def sweep(names: list[str], num_shapes: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """Worst relative errors per op over ``num_shapes`` shapes from each case's sampler."""
    worst: dict[str, dict[str, float]] = {}
    with jax.enable_x64(True):
        for name in names:
            case = CASES[name]
            errors = {"vs_reference": 0.0, "vs_numerical": 0.0, "shapes": num_shapes}
            for trial in range(num_shapes):
                report = check_gradients(case.op, *case.draw(seed * 100_003 + trial))
                errors["vs_reference"] = max(errors["vs_reference"], report.worst_vs_reference)
                errors["vs_numerical"] = max(errors["vs_numerical"], report.worst_vs_numerical)
            worst[name] = errors
    return worst


def format_table(worst: dict[str, dict[str, float]]) -> str:
    lines = ["| op | shapes | worst vs jax.grad(reference) | worst vs finite differences |", "|---|---|---|---|"]
    lines += [
        f"| `{name}` | {e['shapes']} | {e['vs_reference']:.1e} | {e['vs_numerical']:.1e} |" for name, e in worst.items()
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ops", nargs="*", default=None, help=f"ops to check (default: all {len(CASES)})")
    parser.add_argument("--shapes", type=int, default=20, help="random shapes per op (default 20)")
    parser.add_argument("--json", type=pathlib.Path, default=None, help="also write the numbers to this JSON file")


def run(args: argparse.Namespace) -> int:
    names = args.ops or list(CASES)
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        raise SystemExit(f"gradcheck-ops: unknown op(s) {unknown}; choose from {sorted(CASES)}")
    worst = sweep(names, args.shapes)
    print(format_table(worst))
    if args.json is not None:
        if args.json.exists():
            raise SystemExit(f"gradcheck-ops: {args.json} exists; choose another path")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(worst, indent=2))
    return 0
