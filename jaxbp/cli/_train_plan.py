"""What ``jaxbp train`` will do, worked out and checked before any work.

A flag not given takes its value from the checkpoint of a resumed run, else from the
model's training defaults (:func:`jaxbp.models.training_defaults`), else from the CLI's
defaults. A flag given with ``--resume`` must agree with the checkpoint; the error names
the flag. Every refusal is a ``ValueError`` in the user's words (flags, not Python names).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NamedTuple

from jaxbp import data, models, train
from jaxbp.checkpoint import latest_checkpoint, latest_valid_checkpoint, lock_directory, read_metadata
from jaxbp.cli._outputs import check_output_file, check_writable_directory

# TrainConfig field -> its flag, and the value used when neither the flag nor a checkpoint gives one
CONFIG_FLAGS = {
    "batch_size": "--batch-size",
    "learning_rate": "--lr",
    "optimizer": "--optimizer",
    "clip_norm": "--clip",
    "accumulate": "--accumulate",
    "precision": "--precision",
    "seed": "--seed",
}
CLI_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "clip_norm": None,
    "accumulate": 1,
    "precision": "f32",
    "seed": 0,
    "model": "mlp",
    "data": "digits",
    "samples": 1000,
}
MODEL_FLAGS = ("depth", "width", "activation", "init", "residual", "batch_norm", "dropout")
GENERATED = ("xor", "spirals", "chars")  # the data sets --samples sizes


class Plan(NamedTuple):
    """A checked ``jaxbp train`` run."""

    run_info: dict[str, Any]  # model, model_options, data, samples (stored in every checkpoint)
    settings: dict[str, Any]  # TrainConfig fields except loss
    checkpoint_dir: Path
    history: Path
    resume_from: Path | None  # the newest valid checkpoint of a resumed run
    done_epochs: int


def _arg_name(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _given(args: argparse.Namespace, field: str) -> Any:
    return getattr(args, _arg_name(CONFIG_FLAGS.get(field, f"--{field}")))


def _model_flag(key: str) -> str:
    return f"--{key.replace('_', '-')}" if key in MODEL_FLAGS else f"--model-option {key}="


def _stored_run(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest valid checkpoint of ``directory`` and its metadata (newer corrupt ones are
    set aside as ``.corrupt``), or ``None`` when it holds none."""
    if not directory.is_dir():
        return None
    with lock_directory(directory):  # another run there is refused now, not after loading the data
        if latest_checkpoint(directory) is None:
            return None
        path = latest_valid_checkpoint(directory, set_aside=True)
    assert path is not None
    return path, read_metadata(path)[1]


def _pick(args: argparse.Namespace, field: str, stored: dict[str, Any] | None, fallback: Any, where: Path) -> Any:
    """The flag's value, else the stored one, else ``fallback``; a given flag must match the stored value."""
    value = _given(args, field)
    if stored is None or field not in stored:
        return fallback if value is None else value
    if value is not None and value != stored[field]:
        flag = CONFIG_FLAGS.get(field, f"--{field}")
        raise ValueError(
            f"{flag} {value} differs from the run in {where} ({flag} {stored[field]}); drop {flag} to resume "
            "that run, or start a new one in another --checkpoint-dir"
        )
    return stored[field]


def _model_options(args: argparse.Namespace, model: str) -> dict[str, Any]:
    given = {name: getattr(args, name) for name in MODEL_FLAGS if getattr(args, name) is not None}
    for key, value in args.model_option:
        if key in given:
            raise ValueError(f"the model option {key} is given twice ({_model_flag(key)} and --model-option {key}=)")
        given[key] = value
    accepted = models.model_options(model)
    for key in given:
        if key not in accepted:
            choices = ", ".join(f"{_model_flag(k)}" for k in accepted)
            raise ValueError(f"{_model_flag(key)} does not apply to --model {model}; its options are {choices}")
    try:
        return models.coerce_options(model, given)
    except ValueError as error:
        raise ValueError(f"--model {model}: {str(error).split(': ', 1)[-1]}") from None


def _free_directory(model: str, data_name: str) -> Path:
    """``runs/MODEL_DATA``, or ``runs/MODEL_DATA-2``, ... : the first that holds no run."""
    base = Path("runs") / f"{model}_{data_name}"
    for n in range(1, 10_000):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        if not candidate.exists() or not any(
            p.name.startswith("ckpt_") or p.name == "history.json" for p in candidate.iterdir()
        ):
            return candidate
    raise ValueError(f"{base}: 10,000 runs already; name a --checkpoint-dir")


def check_fit(model: str, data_name: str, samples_given: bool) -> None:
    """The model reads the layout the data set offers; --samples only for generated data."""
    layout = models.get_model(model).layout
    offered = data.DATA_SETS[data_name].layouts
    if layout not in offered:
        fitting = [name for name, ds in data.DATA_SETS.items() if layout in ds.layouts]
        raise ValueError(
            f"--model {model} reads {layout!r} inputs but --data {data_name} gives {', '.join(map(repr, offered))}; "
            f"use --data {' or '.join(fitting)}"
        )
    if samples_given and data_name not in GENERATED:
        raise ValueError(
            f"--samples sizes the generated data sets ({', '.join(GENERATED)}); {data_name} has a fixed size"
        )


def make_plan(args: argparse.Namespace) -> Plan:
    """Every check that needs no data: flags, their combinations, the checkpoint, output paths."""
    if args.checkpoint_dir is not None:
        check_writable_directory(args.checkpoint_dir, "--checkpoint-dir")
    if args.resume and args.checkpoint_dir is None:
        raise ValueError("--resume needs --checkpoint-dir, the directory of the run to continue")
    stored_run = _stored_run(args.checkpoint_dir) if args.checkpoint_dir is not None else None
    if stored_run is not None and not args.resume:
        raise ValueError(
            f"--checkpoint-dir {args.checkpoint_dir} already holds a run ({stored_run[0].name}, epoch "
            f"{stored_run[1].get('epoch')}); add --resume to continue it, or name another --checkpoint-dir"
        )
    where = args.checkpoint_dir
    info = stored_run[1].get("run_info", {}) if stored_run else None
    config = stored_run[1].get("config", {}) if stored_run else None
    model = _pick(args, "model", info, CLI_DEFAULTS["model"], where)
    data_name = _pick(args, "data", info, CLI_DEFAULTS["data"], where)
    check_fit(model, data_name, args.samples is not None and info is None)
    samples = _pick(args, "samples", info, CLI_DEFAULTS["samples"], where)
    options = _model_options(args, model)
    if info is not None:
        stored_options = info.get("model_options", {})
        builder_defaults = models.model_options(model)
        for key, value in options.items():
            if stored_options.get(key, builder_defaults[key]) != value:
                flag = _model_flag(key)
                raise ValueError(
                    f"{flag}{'' if flag.endswith('=') else ' '}{value} differs from the run in {where} "
                    f"({stored_options.get(key, builder_defaults[key])}); drop it to resume that run, or use another --checkpoint-dir"
                )
        options = stored_options
    defaults = models.training_defaults(model)
    fallbacks = {**CLI_DEFAULTS, "batch_size": defaults.batch_size, "learning_rate": defaults.learning_rate}
    settings = {field: _pick(args, field, config, fallbacks[field], where) for field in CONFIG_FLAGS}
    epochs = int(args.epochs if args.epochs is not None else (config or {}).get("epochs", defaults.epochs))
    done = int(stored_run[1]["epoch"]) if stored_run else 0
    if done >= epochs:
        if args.epochs is not None:
            raise ValueError(
                f"--epochs {epochs} would train nothing: the run in {where} is at epoch {done} already; "
                f"pass --epochs above {done} to train it further"
            )
        raise ValueError(
            f"the run in {where} is complete (epoch {done}); pass --epochs above {done} to train it further"
        )
    directory = args.checkpoint_dir if args.checkpoint_dir is not None else _free_directory(model, data_name)
    history = args.history if args.history is not None else directory / "history.json"
    check_output_file(history, "--history", overwrite=args.overwrite, run_directory=directory)
    run_info = {"model": model, "model_options": options, "data": data_name, "samples": samples}
    return Plan(run_info, {**settings, "epochs": epochs}, directory, history, stored_run and stored_run[0], done)


def check_run(plan: Plan, task: data.Task, devices: int | None) -> train.DataParallel:
    """The checks that need the data: batch size, accumulation, splits, devices."""
    name, settings = plan.run_info["data"], plan.settings
    n_train, n_test = len(task.train[0]), len(task.test[0])
    sized = f" with --samples {plan.run_info['samples']}" if name in GENERATED else ""
    if n_test == 0:
        raise ValueError(f"--data {name}{sized} leaves no test examples; use more --samples")
    if settings["batch_size"] > n_train:
        raise ValueError(
            f"--batch-size {settings['batch_size']} is larger than the training set of {name}{sized} ({n_train} examples)"
        )
    total = n_train // settings["batch_size"] * settings["epochs"]
    if settings["accumulate"] > total:
        raise ValueError(
            f"--accumulate {settings['accumulate']} is longer than the whole run ({total} steps: --epochs "
            f"{settings['epochs']} x {n_train // settings['batch_size']} batches), so the weights would never be "
            "updated; lower --accumulate or raise --epochs"
        )
    parallel = train.data_parallel(devices)
    train.check_batch_size(settings["batch_size"], parallel, "--batch-size")
    return parallel
