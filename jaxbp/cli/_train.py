"""Train a registered model on a bundled data set.

    jaxbp train --model cnn --data digits            # the model's own defaults
    jaxbp train --checkpoint-dir runs/cnn_digits --resume --epochs 30

Every run saves a checkpoint after each epoch (default directory ``runs/MODEL_DATA``,
or ``runs/MODEL_DATA-2``, ... when that holds a run) and its history as JSON. The
checkpoint stores the model, the data set and every option, so ``--resume`` needs no
other flag. Everything is checked before the first compile (see :mod:`._train_plan`).
"""

from __future__ import annotations

import argparse
import functools
import shlex
import sys
from typing import Any

from jaxbp.cli._train_plan import CLI_DEFAULTS, Plan, check_run, make_plan
from jaxbp.cli._types import key_value, non_negative_int, number, path, positive_float, positive_int, rate

MAX_SAMPLES = 10_000_000


def _models_epilog() -> str:
    from jaxbp import models

    lines = ["models, their options (--model-option KEY=VALUE, or the flag where one exists) and training defaults:"]
    for name in models.model_names():
        options = " ".join(f"{key}={value}" for key, value in models.model_options(name).items())
        d = models.training_defaults(name)
        lines.append(f"  {name:12s} {options}")
        lines.append(f"  {'':12s} defaults: --epochs {d.epochs} --lr {d.learning_rate:g} --batch-size {d.batch_size}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jaxbp import data, models, nn, precision, train
    from jaxbp.init import weight_schemes

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _models_epilog()
    run = parser.add_argument_group(
        "run (a flag not given comes from the resumed checkpoint, else the model's defaults)"
    )
    run.add_argument(
        "--model", choices=models.model_names(), help=f"network builder (default: {CLI_DEFAULTS['model']})"
    )
    run.add_argument("--data", choices=list(data.DATA_SETS), help=f"data set (default: {CLI_DEFAULTS['data']})")
    run.add_argument(
        "--samples",
        type=number(int, 1, maximum=MAX_SAMPLES),
        help=f"examples generated for xor/spirals/chars (default: {CLI_DEFAULTS['samples']})",
    )
    run.add_argument("--epochs", type=positive_int, help="epochs to train in total (default: the model's)")
    run.add_argument("--batch-size", type=positive_int, help="examples per step (default: the model's)")
    run.add_argument("--lr", type=positive_float, help="learning rate (default: the model's)")
    run.add_argument("--optimizer", choices=train.optimizer_names(), help="optax optimizer (default: adam)")
    run.add_argument("--clip", type=positive_float, metavar="NORM", help="clip gradients to this global norm")
    run.add_argument("--accumulate", type=positive_int, metavar="K", help="accumulate K micro-batches per update")
    run.add_argument(
        "--precision", choices=precision.policy_names(), help="compute dtype (default: f32; f16 uses loss scaling)"
    )
    run.add_argument("--seed", type=non_negative_int, help="root PRNG seed: init, shuffling, dropout (default: 0)")
    run.add_argument(
        "--checkpoint-dir", type=path, help="where the run's checkpoints go (default: runs/MODEL_DATA, first free)"
    )
    run.add_argument("--resume", action="store_true", help="continue the run in --checkpoint-dir with its settings")
    run.add_argument("--keep", type=positive_int, default=3, help="checkpoints to keep (default: 3)")
    run.add_argument("--history", type=path, help="JSON history file (default: CHECKPOINT_DIR/history.json)")
    run.add_argument(
        "--overwrite", action="store_true", help="replace an existing --history file this run did not write"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress output")
    run.add_argument(
        "--devices", type=positive_int, metavar="N", help="data parallel over the first N devices (default: all)"
    )

    model = parser.add_argument_group("model options", "passed to the builder only when given (see the list below)")
    model.add_argument("--depth", type=non_negative_int, help="hidden layers (mlp)")
    model.add_argument("--width", type=positive_int, help="units per hidden layer (mlp), channels (cnn, resnet)")
    model.add_argument("--activation", choices=sorted(nn.ACTIVATIONS), help="hidden activation (mlp)")
    model.add_argument("--init", choices=weight_schemes(), help="weight initialisation scheme (mlp)")
    model.add_argument("--residual", action=argparse.BooleanOptionalAction, default=None, help="skip connections (mlp)")
    model.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=None, help="batch normalisation")
    model.add_argument("--dropout", type=rate, help="dropout rate in [0, 1) (mlp)")
    model.add_argument(
        "--model-option", type=key_value, action="append", default=[], metavar="KEY=VALUE", help="any builder option"
    )


def _silent(*_: object) -> None:
    """--no-progress: say nothing."""


def _interrupted(plan: Plan) -> str:
    """The line Ctrl-C prints: where the last checkpoint is and the command that resumes."""
    from jaxbp.checkpoint import latest_checkpoint, read_metadata

    last = latest_checkpoint(plan.checkpoint_dir) if plan.checkpoint_dir.is_dir() else None
    if last is None or last == plan.resume_from:
        return "jaxbp train: interrupted before the first checkpoint of this run; nothing new was saved"
    epoch = read_metadata(last)[1].get("epoch")
    resume = f"jaxbp train --checkpoint-dir {shlex.quote(str(plan.checkpoint_dir))} --resume"
    if plan.history != plan.checkpoint_dir / "history.json":
        resume += f" --history {shlex.quote(str(plan.history))}"
    return f"jaxbp train: interrupted; the last checkpoint is {last} (epoch {epoch}); resume with: {resume}"


def run(args: argparse.Namespace) -> int:
    from jaxbp import data, models, train
    from jaxbp.cli._outputs import WRITTEN_BY, write_json
    from jaxbp.progress import format_metrics

    plan = make_plan(args)
    info, settings = plan.run_info, plan.settings
    verb = f"resuming {plan.resume_from} at epoch {plan.done_epochs}" if plan.resume_from else "training"
    print_progress = functools.partial(print, file=sys.stderr, flush=True) if not args.no_progress else _silent
    print_progress(
        f"jaxbp train: {verb}: {info['model']} on {info['data']}, {settings['epochs']} epochs, "
        f"--lr {settings['learning_rate']:g}, --batch-size {settings['batch_size']}; checkpoints in {plan.checkpoint_dir}"
    )
    task = data.load_task(info["data"], models.get_model(info["model"]).layout, info["samples"])
    parallel = check_run(plan, task, args.devices)
    model = models.build_model(info["model"], num_outputs=task.num_outputs, **info["model_options"])
    config = train.TrainConfig(**settings, loss=task.loss)
    if args.resume and plan.resume_from is None:
        print(f"jaxbp train: --resume: no checkpoint in {plan.checkpoint_dir}; starting a new run", file=sys.stderr)
    resume = plan.resume_from is not None
    checkpoints = train.CheckpointConfig(plan.checkpoint_dir, resume=resume, keep=args.keep, run_info=info)
    try:
        result = train.fit(
            model, task.train, config, test_data=task.test, checkpoints=checkpoints, parallel=parallel,
            progress=not args.no_progress,
        )  # fmt: skip
    except KeyboardInterrupt:
        print(_interrupted(plan), file=sys.stderr)
        return 130

    final: dict[str, Any] = {k: v for k, v in result.history[-1].items() if k not in ("seconds", "examples_per_second")}
    payload = {"written_by": WRITTEN_BY, "checkpoint_dir": str(plan.checkpoint_dir.resolve()), **info}
    write_json(plan.history, {**payload, "config": config.to_dict(), "history": result.history, "final": final})
    from jaxbp.checkpoint import latest_checkpoint

    print(f"final  {format_metrics({k: v for k, v in final.items() if k != 'epoch'})}")
    print(f"weights written to {latest_checkpoint(plan.checkpoint_dir)}")
    print(f"history written to {plan.history}")
    return 0
