"""Loss and accuracy of a saved checkpoint on a data set.

    jaxbp evaluate runs/cnn_digits                  # the run's newest valid checkpoint, its test split
    jaxbp evaluate runs/cnn_digits/ckpt_00000440.npz --split train

The checkpoint names its model, options and data set (``jaxbp train`` stores them), so
nothing else is needed; ``--data`` evaluates on another data set of the same layout and
number of classes.
"""

from __future__ import annotations

import argparse
import sys

from jaxbp.cli._types import path, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=path, help="a checkpoint file, or a run directory (its newest valid one)")
    parser.add_argument("--data", help="data set to evaluate on (default: the run's)")
    parser.add_argument("--split", choices=("test", "train"), default="test", help="which split (default: test)")
    parser.add_argument("--batch-size", type=positive_int, default=1024, help="examples per evaluation batch")


def run(args: argparse.Namespace) -> int:
    from jaxbp import data, models, train
    from jaxbp.checkpoint import latest_valid_checkpoint, read_metadata, restore_checkpoint

    path = args.checkpoint
    if path.is_dir():
        path = latest_valid_checkpoint(path)
        if path is None:
            raise ValueError(f"{args.checkpoint} holds no checkpoint (ckpt_*.npz)")
    elif not path.exists():
        raise ValueError(f"{path} does not exist; give a checkpoint file or a run directory")
    _, metadata = read_metadata(path)
    info, stored = metadata.get("run_info", {}), metadata.get("config", {})
    if "model" not in info or "loss" not in stored:
        raise ValueError(f"{path} was not written by `jaxbp train` (it does not name its model and data set)")
    name = args.data if args.data is not None else info["data"]
    if name not in data.DATA_SETS:
        raise ValueError(f"--data {name!r} is not a data set; choose one of {', '.join(data.DATA_SETS)}")
    spec = models.get_model(info["model"])
    if spec.layout not in data.DATA_SETS[name].layouts:
        raise ValueError(f"--data {name} does not give the {spec.layout!r} inputs model {info['model']} reads")
    task = data.load_task(name, spec.layout, info.get("samples", 1000))
    if task.loss != stored["loss"]:
        raise ValueError(f"--data {name} is scored with {task.loss}, but the run trained with {stored['loss']}")
    print(f"jaxbp evaluate: {info['model']} from {path} on {name} ({args.split})", file=sys.stderr, flush=True)
    model = models.build_model(info["model"], num_outputs=task.num_outputs, **info.get("model_options", {}))
    config = train.TrainConfig(**{k: v for k, v in stored.items() if k != "eval_batch_size"})
    x, y = task.test if args.split == "test" else task.train
    input_shape = (min(len(x), args.batch_size), *x.shape[1:])
    import jax

    template = jax.eval_shape(
        lambda: train.init_train_state(
            model, config.optimizer_transform(), input_shape, key=config.seed, precision=config.policy
        )
    )
    _, state, _ = restore_checkpoint(path, template)
    scores = train.evaluate(
        model, state.params, (x, y), loss=config.objective, model_state=state.model_state,
        precision=config.policy, batch_size=args.batch_size,
    )  # fmt: skip
    accuracy = scores["accuracy"]
    shown = "n/a" if accuracy is None else f"{float(accuracy):.4f}"
    print(f"loss {scores['loss']:.4f}  accuracy {shown}  ({len(x)} examples)")
    return 0
