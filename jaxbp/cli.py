"""The ``jaxbp`` command line.

    jaxbp train --model mlp --data digits --epochs 10 --lr 3e-3 --depth 3 --width 128 \\
                --clip 1.0 --accumulate 2 --precision bf16 --checkpoint-dir runs/mlp --resume

Each subcommand is a :class:`Command` -- ``add_arguments(parser)`` and
``run(args) -> exit code`` -- listed in :data:`COMMANDS`, either directly or as the
name of a module that defines those two functions (its docstring's first line is
the help). Adding a subcommand is one entry there; nothing else changes.

``--model`` choices and option types come from :mod:`jaxbp.models`, so a builder
registered there is usable here at once: its options are given with
``--model-option key=value`` (or the common flags ``--depth``, ``--width``, ...,
which are passed on only when given).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["COMMANDS", "Command", "build_parser", "main"]


class Command(NamedTuple):
    """A subcommand: its help line, its arguments and what it does."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ------------------------------------------------------------------- argument types


def _number(kind: type, minimum: float, inclusive: bool) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` that is >= (or >) ``minimum``."""
    relation = ">=" if inclusive else ">"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if not (value >= minimum if inclusive else value > minimum) or value != value:
            raise argparse.ArgumentTypeError(f"must be {relation} {minimum:g}, got {text}")
        return value

    return parse


positive_int = _number(int, 1, inclusive=True)
non_negative_int = _number(int, 0, inclusive=True)
positive_float = _number(float, 0.0, inclusive=False)


def _rate(text: str) -> float:
    value = _number(float, 0.0, inclusive=True)(text)
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return value


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip().replace("-", "_"), value.strip()


# --------------------------------------------------------------------------- train


_MODEL_FLAGS = ("depth", "width", "activation", "init", "residual", "batch_norm", "dropout")


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from jaxbp import data, models, nn, precision, train
    from jaxbp.init import weight_schemes

    run = parser.add_argument_group("run")
    run.add_argument("--model", default="mlp", choices=models.model_names(), help="network builder (default: mlp)")
    run.add_argument("--data", default="digits", choices=list(data.DATA_SETS), help="data set (default: digits)")
    run.add_argument(
        "--samples", type=positive_int, default=1000, help="examples generated for xor/spirals (default: 1000)"
    )
    run.add_argument("--epochs", type=positive_int, default=10, help="epochs to train in total (default: 10)")
    run.add_argument("--batch-size", type=positive_int, default=64, help="examples per step (default: 64)")
    run.add_argument("--lr", type=positive_float, default=1e-3, help="learning rate (default: 1e-3)")
    run.add_argument(
        "--optimizer", default="adam", choices=train.optimizer_names(), help="optax optimizer (default: adam)"
    )
    run.add_argument(
        "--clip", type=positive_float, default=None, metavar="NORM", help="clip gradients to this global norm"
    )
    run.add_argument(
        "--accumulate", type=positive_int, default=1, metavar="K", help="accumulate K micro-batches per update"
    )
    run.add_argument(
        "--precision",
        default="f32",
        choices=precision.policy_names(),
        help="compute dtype (f16 uses dynamic loss scaling)",
    )
    run.add_argument("--seed", type=non_negative_int, default=0, help="root PRNG seed: init, shuffling, dropout")
    run.add_argument("--checkpoint-dir", type=Path, default=None, help="save a checkpoint after every epoch here")
    run.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --checkpoint-dir")
    run.add_argument("--keep", type=positive_int, default=3, help="checkpoints to keep (default: 3)")
    run.add_argument(
        "--history",
        type=Path,
        default=None,
        help="JSON history path (default: CHECKPOINT_DIR/history.json or results/train_MODEL_DATA.json)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress output")
    run.add_argument(
        "--devices",
        type=positive_int,
        default=None,
        metavar="N",
        help="data parallel over the first N devices; --batch-size must be divisible by N (default: all)",
    )

    model = parser.add_argument_group("model options", "passed to the builder only when given")
    model.add_argument("--depth", type=non_negative_int, help="hidden layers")
    model.add_argument("--width", type=positive_int, help="units per hidden layer")
    model.add_argument("--activation", choices=sorted(nn.ACTIVATIONS), help="hidden activation")
    model.add_argument("--init", choices=weight_schemes(), help="weight initialisation scheme")
    model.add_argument(
        "--residual", action=argparse.BooleanOptionalAction, default=None, help="skip connections around hidden layers"
    )
    model.add_argument(
        "--batch-norm", action=argparse.BooleanOptionalAction, default=None, help="batch normalisation in hidden layers"
    )
    model.add_argument("--dropout", type=_rate, help="dropout rate in [0, 1)")
    model.add_argument(
        "--model-option",
        type=_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any builder option (repeatable)",
    )


def _model_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {name: getattr(args, name) for name in _MODEL_FLAGS if getattr(args, name) is not None}
    for key, value in args.model_option:
        if key in options:
            raise ValueError(f"model option {key!r} is given twice")
        options[key] = value
    return options


def _write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as JSON atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as handle:
        json.dump(payload, handle, indent=2)
    os.replace(handle.name, path)


def _run_train(args: argparse.Namespace) -> int:
    from jaxbp import data, models, train
    from jaxbp.checkpoint import CheckpointError
    from jaxbp.progress import format_metrics

    try:
        if args.resume and args.checkpoint_dir is None:
            raise ValueError("--resume needs --checkpoint-dir")
        parallel = train.data_parallel(args.devices)
        train.check_batch_size(args.batch_size, parallel, "--batch-size")
        spec = models.get_model(args.model)
        options = models.coerce_options(args.model, _model_options(args))
        task = data.load_task(args.data, spec.layout, args.samples)
        model = models.build_model(args.model, num_outputs=task.num_outputs, **options)
        config = train.TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, optimizer=args.optimizer,
            clip_norm=args.clip, accumulate=args.accumulate, precision=args.precision, loss=task.loss, seed=args.seed,
        )  # fmt: skip
    except ValueError as error:
        print(f"jaxbp train: error: {error}", file=sys.stderr)
        return 2

    run_info = {"model": args.model, "model_options": options, "data": args.data, "samples": args.samples}
    try:
        result = train.fit(
            model, task.train, config, test_data=task.test, checkpoint_dir=args.checkpoint_dir, resume=args.resume,
            keep_checkpoints=args.keep, run_info=run_info, progress=not args.no_progress, parallel=parallel,
        )  # fmt: skip
    except (train.NonFiniteError, CheckpointError, FileNotFoundError, ValueError) as error:
        print(f"jaxbp train: error: {error}", file=sys.stderr)
        return 1

    final = (
        {k: v for k, v in result.history[-1].items() if k not in ("seconds", "examples_per_second")}
        if result.history
        else {}
    )
    history_path = args.history
    if history_path is None:
        history_path = (
            args.checkpoint_dir / "history.json"
            if args.checkpoint_dir
            else Path("results") / f"train_{args.model}_{args.data}.json"
        )
    _write_json(history_path, {**run_info, "config": config.to_dict(), "history": result.history, "final": final})
    print(f"final  {format_metrics({k: v for k, v in final.items() if k != 'epoch'})}")
    print(f"history written to {history_path}")
    return 0


TRAIN = Command("train a registered model on a bundled data set", _add_train_arguments, _run_train)

# name -> Command, or the name of a module defining add_arguments(parser) and run(args)
COMMANDS: dict[str, Command | str] = {
    "train": TRAIN,
    "demo": "jaxbp.demo",
    "gradcheck-ops": "jaxbp.gradcheck.catalog",
    "vanishing": "jaxbp.studies.vanishing",
    "bench": "jaxbp.bench.suite",
}


# ---------------------------------------------------------------------------- main


def _resolve(entry: Command | str) -> Command:
    if isinstance(entry, Command):
        return entry
    module = importlib.import_module(entry)
    help_line = (module.__doc__ or "").strip().split("\n", 1)[0]
    return Command(help_line, module.add_arguments, module.run)


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxbp`` parser with one subparser per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="jaxbp", description="Backpropagation by hand in JAX.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, entry in COMMANDS.items():
        command = _resolve(entry)
        sub = subparsers.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``jaxbp`` with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    A :class:`jaxbp.checkpoint.CheckpointError` from any command (a locked, corrupt or
    unwritable checkpoint directory) is one line on stderr and exit code 1, never a traceback.
    """
    from jaxbp.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except CheckpointError as error:
        print(f"jaxbp {args.command}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
