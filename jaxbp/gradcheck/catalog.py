"""The op catalog: every public op of :mod:`jaxbp.ops`, its reference twin and its arguments.

The tests and ``jaxbp gradcheck-ops`` run every case through :func:`jaxbp.gradcheck.sweep_op`
(the function users run on their own ops), so the two cannot drift; a test fails when a
public op has no case here. Each :class:`OpCase` names the public op it covers (``of``),
the op and its ``reference`` called the same way, a shape sampler and an argument builder
(:mod:`jaxbp.gradcheck._arguments`), the arguments that get edge values, and where the
edge draw is poisoned with NaN/+-inf.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxbp import ops, reference
from jaxbp.gradcheck import _arguments as a
from jaxbp.gradcheck.sweep import Site, SweepReport, default_sites, sweep_op


class OpCase(NamedTuple):
    of: str  # the public op of jaxbp.ops this case covers
    op: Callable[..., Any]
    reference: Callable[..., Any]
    make_args: Callable[[int, a.Shape], tuple]
    min_rank: int = 1
    sample_shape: a.ShapeSampler | None = None  # default: a.ranked(min_rank)
    edge_args: tuple[int, ...] = (0,)  # the arguments an edge draw writes zeros/ties/huge values into
    nan_sites: Callable[[tuple], list[Site]] = default_sites

    def draw_shape(self, rng: np.random.Generator) -> a.Shape:
        """One shape from this case's sampler."""
        sampler = self.sample_shape if self.sample_shape is not None else a.ranked(self.min_rank)
        return sampler(rng)

    def draw(self, seed: int) -> tuple:
        """The op's arguments for a shape sampled from ``seed`` (float64: call under ``jax.enable_x64``)."""
        return self.make_args(seed, self.draw_shape(np.random.default_rng(seed)))

    def draw_edges(self, seed: int) -> tuple:
        """:meth:`draw`'s arguments with zeros, ties, saturated and huge values in ``edge_args``."""
        return a.with_edge_values(self.draw(seed), self.edge_args, seed)

    def sweep(self, name: str, draws: int = 1, seed: int = 0, **options: Any) -> SweepReport:
        """:func:`sweep_op` of this case, with its edge draws."""
        return sweep_op(self.op, self.reference, self.draw, name=name, draws=draws, seed=seed,
                        edge=self.draw_edges, nan_sites=self.nan_sites, **options)  # fmt: skip


def _masked_key_sites(args: tuple) -> list[Site]:
    """Key 0 of the first sequence is masked: poison its k and v."""
    return [Site(1, (0, 0, 0, 0)), Site(2, (0, 0, 0, 0))]


def _padded_step_sites(args: tuple) -> list[Site]:
    """Sequence 0 has length T - 1: poison its last (padded) step and its first step."""
    x_leaf, time = a.leaf_offset(args, 1), args[1].shape[1]
    return [Site(x_leaf, (0, time - 1, 0)), Site(x_leaf, (0, 0, 0))]


def _train_mode(params, x):
    """``(y, mean, var)``: the statistics as the reference returns them."""
    y, statistics = ops.batch_norm(params, x)
    return y, statistics.mean, statistics.var


def _eval_mode(params, x, mean, var):
    return ops.batch_norm(params, x, train=False, running=ops.BatchStatistics(mean, var))[0]


_CONV2D: dict[str, Any] = {"stride": (2, 1), "padding": ((1, 2), (0, 1)), "dilation": (1, 2), "groups": 2}
_RNN, _LSTM, _GRU = (
    a.recurrent_args(1, ("b",)),
    a.recurrent_args(4, ("b",), True),
    a.recurrent_args(3, ("b_ih", "b_hh")),
)


def _sequence_case(of: str, op: Callable, twin: Callable, make_args: Callable) -> OpCase:
    """A recurrent cell with lengths: edge values in x, NaN at a padded step."""
    return OpCase(of, op, twin, make_args, sample_shape=a.recurrent_shape, edge_args=(1,), nan_sites=_padded_step_sites)


CASES: dict[str, OpCase] = {
    "sigmoid": OpCase("sigmoid", ops.sigmoid, reference.sigmoid, a.unary()),
    "tanh": OpCase("tanh", ops.tanh, reference.tanh, a.unary()),
    "relu": OpCase("relu", ops.relu, reference.relu, a.unary(a.away_from_kinks)),
    "leaky_relu": OpCase(
        "leaky_relu",
        lambda x: ops.leaky_relu(x, 0.2),
        lambda x: reference.leaky_relu(x, 0.2),
        a.unary(a.away_from_kinks),
    ),
    "elu": OpCase("elu", lambda x: ops.elu(x, 0.7), lambda x: reference.elu(x, 0.7), a.unary(a.away_from_kinks)),
    "gelu": OpCase("gelu", ops.gelu, reference.gelu, a.unary()),
    "gelu_tanh": OpCase("gelu", lambda x: ops.gelu(x, True), lambda x: reference.gelu(x, True), a.unary()),
    "softmax": OpCase("softmax", ops.softmax, reference.softmax, a.unary()),
    "softmax_axis0": OpCase("softmax", lambda x: ops.softmax(x, 0), lambda x: reference.softmax(x, 0), a.unary()),
    "log_softmax": OpCase("log_softmax", ops.log_softmax, reference.log_softmax, a.unary()),
    "dense": OpCase("dense", ops.dense, reference.dense, a.dense_args, edge_args=(1,)),
    "mse": OpCase("mse", ops.mse, reference.mse, a.pair(a.normal)),
    "binary_cross_entropy_with_logits": OpCase(
        "binary_cross_entropy_with_logits",
        ops.binary_cross_entropy_with_logits,
        reference.binary_cross_entropy_with_logits,
        a.pair(a.uniform, 3.0),
    ),
    "softmax_cross_entropy_int": OpCase(
        "softmax_cross_entropy",
        ops.softmax_cross_entropy,
        reference.softmax_cross_entropy,
        a.pair(a.integer_labels, 3.0),
    ),  # fmt: skip
    "softmax_cross_entropy_float": OpCase(
        "softmax_cross_entropy",
        ops.softmax_cross_entropy,
        reference.softmax_cross_entropy,
        a.pair(a.probabilities, 3.0),
    ),  # fmt: skip
    "add": OpCase("add", ops.add, reference.add, a.pair(a.normal)),
    "flatten": OpCase("flatten", ops.flatten, lambda x: reference.reshape(x, (x.shape[0], -1)), a.unary()),
    "reshape": OpCase("reshape", lambda x: ops.reshape(x, (-1,)), lambda x: reference.reshape(x, (x.size,)), a.unary()),
    "concatenate": OpCase(
        "concatenate",
        lambda x, y: ops.concatenate((x, y)),
        lambda x, y: reference.concatenate((x, y)),
        a.concatenate_args,
    ),  # fmt: skip
    "reverse_sequences": OpCase(
        "reverse_sequences",
        lambda x, n: ops.reverse_sequences(x, lengths=n),
        reference.reverse_sequences,
        a.reverse_args,
        sample_shape=a.sequence_shape,
        nan_sites=lambda args: [Site(0, (0, args[0].shape[1] - 1, 0)), Site(0, (0, 0, 0))],
    ),  # fmt: skip
    "batch_norm": OpCase(
        "batch_norm",
        _train_mode,
        reference.batch_norm,
        a.batch_norm_args,
        min_rank=2,
        edge_args=(1,),
    ),  # fmt: skip
    "batch_norm_eval": OpCase(
        "batch_norm", _eval_mode, reference.batch_norm_inference, a.batch_norm_eval_args, min_rank=2, edge_args=(1,)
    ),
    "layer_norm": OpCase("layer_norm", ops.layer_norm, reference.layer_norm, a.layer_norm_args, edge_args=(1,)),
    "dropout": OpCase(
        "dropout",
        lambda x, key: ops.dropout(x, key, 0.3, train=True),
        lambda x, key: reference.dropout(x, key, 0.3),
        lambda seed, shape: (a.normal(seed, shape), jax.random.key(seed)),
    ),  # fmt: skip
    "attention": OpCase(
        "attention",
        lambda q, k, v: ops.attention(q, k, v, block_size=2),
        reference.attention,
        a.attention_args(1),
        sample_shape=a.attention_shape,
    ),  # fmt: skip
    "attention_causal_grouped": OpCase(
        "attention",
        lambda q, k, v: ops.attention(q, k, v, causal=True, block_size=3),
        lambda q, k, v: reference.attention(q, k, v, causal=True),
        a.attention_args(2),
        sample_shape=a.attention_shape,
    ),  # fmt: skip
    "attention_masked": OpCase(
        "attention",
        lambda q, k, v, m: ops.attention(q, k, v, mask=m, block_size=2),
        reference.attention,
        a.attention_args(1, masked=True),
        sample_shape=a.attention_shape,
        nan_sites=_masked_key_sites,
    ),  # fmt: skip
    "rnn": OpCase(
        "rnn",
        lambda p, x, h, n: ops.rnn(p, x, h),
        lambda p, x, h, n: reference.rnn(p, x, h),
        _RNN,
        sample_shape=a.recurrent_shape,
        edge_args=(1,),
    ),  # fmt: skip
    "lstm_lengths": _sequence_case("lstm", lambda p, x, s, n: ops.lstm(p, x, s, lengths=n), reference.lstm, _LSTM),
    "gru": _sequence_case("gru", lambda p, x, h, n: ops.gru(p, x, h, lengths=n), reference.gru, _GRU),
    "embedding": OpCase("embedding", ops.embedding, reference.embedding, a.embedding_args, min_rank=2),
    "conv2d_strided_grouped": OpCase(
        "conv2d",
        lambda p, x: ops.conv2d(p, x, **_CONV2D),
        lambda p, x: reference.conv2d(p, x, **_CONV2D),
        a.conv_args((3, 2), 4, groups=2),
        sample_shape=a.nhwc_shape,
        edge_args=(1,),
    ),  # fmt: skip
    "conv1d": OpCase(
        "conv1d",
        lambda p, x: ops.conv1d(p, x, stride=2, padding=1),
        lambda p, x: reference.conv1d(p, x, 2, 1),
        a.conv_args((3,), 3),
        sample_shape=a.nwc_shape,
        edge_args=(1,),
    ),  # fmt: skip
    "conv_transpose2d": OpCase(
        "conv_transpose2d",
        lambda p, x: ops.conv_transpose2d(p, x, stride=2, padding=1, output_padding=1),
        lambda p, x: reference.conv_transpose2d(p, x, 2, 1, output_padding=1),
        a.conv_args((3, 3), 3, transposed=True),
        sample_shape=a.nhwc_shape,
        edge_args=(1,),
    ),  # fmt: skip
    "max_pool2d_overlapping": OpCase(
        "max_pool2d",
        lambda x: ops.max_pool2d(x, 3, 2, "SAME"),
        lambda x: reference.max_pool2d(x, 3, 2, "SAME"),
        a.unary(),
        sample_shape=a.nhwc_shape,
    ),  # fmt: skip
    "avg_pool2d_exclusive": OpCase(
        "avg_pool2d",
        lambda x: ops.avg_pool2d(x, 2, 1, 1, count_include_pad=False),
        lambda x: reference.avg_pool2d(x, 2, 1, 1, False),
        a.unary(),
        sample_shape=a.nhwc_shape,
    ),  # fmt: skip
    "global_avg_pool": OpCase(
        "global_avg_pool", ops.global_avg_pool, reference.global_avg_pool, a.unary(), sample_shape=a.nhwc_shape
    ),
}


def run_catalog(names: list[str], num_shapes: int, seed: int = 0) -> dict[str, SweepReport]:
    """:meth:`OpCase.sweep` of each named case over ``num_shapes`` draws (float64 inside)."""
    if isinstance(num_shapes, bool) or not isinstance(num_shapes, int) or num_shapes < 1:
        raise ValueError(f"gradcheck-ops: --shapes must be at least 1, got {num_shapes!r} (nothing would be checked)")
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        raise ValueError(f"gradcheck-ops: unknown op(s) {unknown}; choose from {sorted(CASES)}")
    with jax.enable_x64(True):
        return {name: CASES[name].sweep(name, draws=num_shapes, seed=seed * 100_003) for name in names}


_COLUMNS = ("gradient vs reference", "gradient vs finite differences",
            "second order vs reference", "second order vs finite differences")  # fmt: skip


def format_table(reports: dict[str, SweepReport]) -> str:
    """Worst element scores (|manual - b| / (atol scale + rtol |b|); <= 1 passes) and failed checks per op."""
    lines = ["| op | draws | " + " | ".join(_COLUMNS) + " | failed checks |", "|---" * (len(_COLUMNS) + 3) + "|"]
    for name, report in reports.items():
        worst = report.worst_scores()
        draws = len({r.seed for r in report.results})
        cells = [f"{worst[c]:.1e}" if c in worst else "-" for c in _COLUMNS]
        lines.append(f"| `{name}` | {draws} | " + " | ".join(cells) + f" | {len(report.failures())} |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ops", nargs="*", default=None, help=f"ops to check (default: all {len(CASES)})")
    parser.add_argument("--shapes", type=int, default=20, help="random draws (shapes) per op (default 20)")
    parser.add_argument("--json", type=pathlib.Path, default=None, help="also write the numbers to this JSON file")


def run(args: argparse.Namespace) -> int:
    """Sweep the catalog; exit 1 when a check fails, 2 on bad options (one line on stderr)."""
    if args.json is not None and args.json.exists():
        print(f"jaxbp gradcheck-ops: error: {args.json} exists; choose another path", file=sys.stderr)
        return 2
    try:
        reports = run_catalog(args.ops or list(CASES), args.shapes)
    except ValueError as error:
        print(f"jaxbp {error}".replace("gradcheck-ops:", "gradcheck-ops: error:", 1), file=sys.stderr)
        return 2
    print(format_table(reports))
    failures = [f"{name}: {line}" for name, report in reports.items() for line in report.failures()]
    for line in failures:
        print(f"FAILED {line}", file=sys.stderr)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        numbers = {name: {"worst_scores": r.worst_scores(), "failures": r.failures()} for name, r in reports.items()}
        args.json.write_text(json.dumps(numbers, indent=2))
    return 1 if failures else 0
