"""Where a :func:`jaxbp.train.fit` run starts: its checkpoint settings, the checks that refuse a run
that would do nothing, and the newest valid checkpoint of a resumed run."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from jaxbp.checkpoint import CheckpointError, latest_checkpoint, latest_valid_checkpoint, read_metadata
from jaxbp.data import num_batches
from jaxbp.validation import positive_int

if TYPE_CHECKING:
    from jaxbp.train._config import TrainConfig

# TrainConfig fields a resumed run may change
_NOT_RESUME_FIELDS = ("epochs", "eval_batch_size")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """Where and how often :func:`fit` saves its state, and whether it resumes.

    The full :class:`TrainState`, the history and the :class:`TrainConfig` are saved
    atomically every ``every`` epochs and after the last one, the ``keep`` newest kept.
    ``resume=True`` continues from the newest valid checkpoint in ``directory`` (newer
    corrupt files are set aside as ``<name>.corrupt``); without it the directory must hold
    no checkpoint. ``run_info`` (JSON: the model's name and options, the data set) is
    stored with each checkpoint and must match on resume.
    """

    directory: str | Path
    resume: bool = False
    keep: int = 3
    every: int = 1
    run_info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not str(self.directory).strip():
            raise ValueError("CheckpointConfig: directory is empty; name a directory (e.g. 'runs/mlp')")
        for name in ("keep", "every"):
            positive_int("CheckpointConfig", name, getattr(self, name))


def _check_resume(path: Path, metadata: Mapping[str, Any], config: TrainConfig, run_info: Mapping[str, Any]) -> None:
    stored = metadata.get("config", {})
    current = config.to_dict()
    for name, value in current.items():
        if name not in _NOT_RESUME_FIELDS and stored.get(name) != value:
            raise CheckpointError(
                f"checkpoint {str(path)!r} was written with {name}={stored.get(name)!r} but this run has "
                f"{name}={value!r}; resuming would not reproduce the run. Use the same settings or a new checkpoint directory."
            )
    stored_info = metadata.get("run_info", {})
    if stored_info != dict(run_info):
        raise CheckpointError(
            f"checkpoint {str(path)!r} belongs to a different run: it was written for {stored_info}, this run is {dict(run_info)}"
        )


def check_run_length(num_examples: int, config: TrainConfig) -> None:
    """Refuse a run that would never update the weights: a batch larger than the training set,
    or gradient accumulation over more micro-batches than the whole run has."""
    steps_per_epoch = num_batches(num_examples, config.batch_size, drop_remainder=True)
    if steps_per_epoch == 0:
        raise ValueError(
            f"fit: batch_size {config.batch_size} is larger than the training set ({num_examples} examples)"
        )
    total = steps_per_epoch * config.epochs
    if config.accumulate > total:
        raise ValueError(
            f"fit: accumulate={config.accumulate} micro-batches per update, but the whole run has only {total} "
            f"steps ({config.epochs} epochs of {steps_per_epoch}), so the weights would never be updated"
        )


class RunStart(NamedTuple):
    """Where a run starts (see :func:`start_of_run`)."""

    checkpoint: Path | None  # the checkpoint to resume from
    epoch: int  # epochs already done
    history: list[dict[str, Any]]


def start_of_run(checkpoints: CheckpointConfig | None, config: TrainConfig) -> RunStart:
    """Where the run starts: the newest valid checkpoint (resume), or epoch 0. Refuses to
    continue into a directory that holds a run without ``resume``, and a finished run."""
    if checkpoints is None:
        return RunStart(None, 0, [])
    directory = checkpoints.directory
    last = latest_checkpoint(directory)
    if last is not None and not checkpoints.resume:
        raise CheckpointError(
            f"the checkpoint directory {str(directory)!r} already holds a run ({last.name}); resume it "
            "(resume=True, or --resume on the command line) or use another directory"
        )
    if last is None:
        if checkpoints.resume:
            print(f"fit: resume: no checkpoint in {str(directory)!r}; starting a new run", file=sys.stderr)
        return RunStart(None, 0, [])
    last = latest_valid_checkpoint(directory, set_aside=True)
    assert last is not None  # only bad files raise; a missing one was handled above
    _, metadata = read_metadata(last)
    _check_resume(last, metadata, config, checkpoints.run_info)
    epoch = int(metadata["epoch"])
    if epoch >= config.epochs:
        raise ValueError(
            f"fit: {last.name} is at epoch {epoch} already, so epochs={config.epochs} would train nothing; "
            f"ask for more than {epoch} epochs to continue the run"
        )
    return RunStart(last, epoch, list(metadata["history"]))
