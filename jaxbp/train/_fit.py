"""``fit``: epochs of shuffled minibatches with progress, evaluation, checkpoints and the guard.

The pieces, from the inside out:

* :func:`loss_and_grads` -- ``jax.value_and_grad`` of ``loss(model(params, x), y)``.
  Every differentiable step of an ``nn`` network is a :mod:`jaxbp.ops` op, so the
  gradient is assembled from the hand-written VJPs (autodiff only chains them).
* :func:`make_train_step` -- a pure, jit-compiled ``train_step(state, batch) ->
  (state, metrics)``: gradients, optional float16 loss scaling, the optax update
  (clipping by global norm and gradient accumulation are optax transforms, see
  :func:`make_optimizer`), and finiteness checks of the loss, of every tapped
  activation and of every parameter's gradient.
* :func:`evaluate` -- mean loss and accuracy over a data set in eval mode.
* :func:`fit` -- epochs of shuffled minibatches with progress, evaluation,
  atomic checkpoints, bit-exact resume and a non-finite guard; returns a history.

Randomness is derived, never consumed: the run has one root key (``TrainState.key``);
epoch ``e`` is shuffled with ``fold_in(fold_in(key, SHUFFLE), e)`` and step ``s``
gets the dropout key ``fold_in(fold_in(key, DROPOUT), s)``. A run resumed from a
checkpoint at an epoch boundary therefore sees exactly the batches and dropout masks
of the uninterrupted run, and reproduces it bit for bit.

There is no "zero the gradients" step to forget (the tutorial documents' pitfall): each step's
gradient is a fresh value returned by a pure function, and an accumulated gradient
lives in the optimizer state that ``optax.MultiSteps`` resets itself.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from jaxbp import nn
from jaxbp.checkpoint import lock_directory, restore_checkpoint, save_checkpoint
from jaxbp.data import batches, num_batches
from jaxbp.progress import Progress
from jaxbp.train._checks import DivergenceMonitor, check_labels, name_overflowing_input
from jaxbp.train._config import TrainConfig
from jaxbp.train._guard import NonFiniteError, non_finite_error
from jaxbp.train._parallel import (
    DataParallel,
    check_batch_size,
    data_parallel,
    parallel_train_step,
    shard_batch,
    shard_state,
)
from jaxbp.train._resume import CheckpointConfig, check_run_length, start_of_run
from jaxbp.train._step import (
    RUN_ONCE,
    SHUFFLE,
    Batch,
    StepMetrics,
    TrainState,
    evaluate,
    init_train_state,
    make_train_step,
)


class _EpochLog:
    """Collects one epoch's step metrics, reading each step one step late so the host
    never waits for the device between steps; raises on a non-finite step."""

    def __init__(
        self,
        batch_size: int,
        reporter: Progress,
        error: Callable[[int, StepMetrics], NonFiniteError],
        divergence: DivergenceMonitor,
    ) -> None:
        self.batch_size, self.reporter, self.error, self.divergence = batch_size, reporter, error, divergence
        self.losses: list[float] = []
        self.grad_norms: list[float] = []
        self.skipped = 0
        self._pending: tuple[int, StepMetrics, Any] | None = None

    def add(self, step: int, metrics: StepMetrics, inputs: Any) -> None:
        """Queue step ``step``'s metrics (and its inputs, to name them if they overflow); check the previous step's."""
        self.flush()
        self._pending = (step, metrics, inputs)

    def flush(self) -> None:
        """Check the queued step, if any."""
        if self._pending is None:
            return
        step, metrics, inputs = self._pending
        self._pending = None
        metrics = jax.device_get(metrics)
        if not metrics.ok:
            raise name_overflowing_input(self.error(step, metrics), inputs)
        self.divergence.check(step, float(metrics.loss))
        self.losses.append(float(metrics.loss))
        self.grad_norms.append(float(metrics.grad_norm))
        self.skipped += int(metrics.skipped)
        done = len(self.losses)
        self.reporter.update(done, done * self.batch_size, float(np.mean(self.losses[-10:])))


class FitResult(NamedTuple):
    """What :func:`fit` returns."""

    state: TrainState
    history: list[dict[str, Any]]  # one record per epoch (loss, metrics, timing)


def _json_number(value: Any) -> float | int | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def fit(
    model: nn.Layer,
    train_data: Batch,
    config: TrainConfig = TrainConfig(),
    *,
    test_data: Batch | None = None,
    checkpoints: CheckpointConfig | None = None,
    parallel: DataParallel | None = None,
    optimizer: optax.GradientTransformation | None = None,
    progress: bool | Progress = True,
    on_step: Callable[[TrainState], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``train_data = (x, y)`` for ``config.epochs`` epochs.

    Each epoch visits ``len(x) // batch_size`` shuffled batches (the remainder is
    dropped, so every step has the same shape), then evaluates on ``test_data``.
    ``optimizer`` overrides the one built from ``config``.

    ``checkpoints`` (:class:`CheckpointConfig`) saves the run and resumes it bit-exactly
    as if never interrupted.

    Raises ``ValueError`` before any work for a run that would do nothing (a batch larger
    than the data, ``accumulate`` longer than the run, a resumed run already at
    ``config.epochs``), and :class:`NonFiniteError` naming the step and the first
    non-finite tap or gradient; no checkpoint is written after that step.
    ``on_step(state)`` is called after every step (e.g. to stop a run).

    ``parallel`` (:func:`jaxbp.train.data_parallel`) splits every batch over several
    devices (``batch_size`` must be divisible by their number) with the state replicated
    or its large weights sharded; the default is the first device. A checkpoint resumes
    on any device count.
    """
    x_train, y_train = train_data
    steps_per_epoch = num_batches(len(x_train), config.batch_size, drop_remainder=True)
    check_run_length(len(x_train), config)
    objective = config.objective
    tx = optimizer if optimizer is not None else config.optimizer_transform()
    input_shape = (config.batch_size, *np.shape(x_train)[1:])
    parallel = parallel if parallel is not None else data_parallel(jax.devices()[:1])
    check_batch_size(config.batch_size, parallel)
    reporter = (
        progress if isinstance(progress, Progress) else Progress(config.epochs, steps_per_epoch, enabled=progress)
    )
    directory = checkpoints.directory if checkpoints is not None else None
    run_lock = lock_directory(directory) if directory is not None else contextlib.nullcontext()
    with run_lock:
        start = start_of_run(checkpoints, config)  # before the first compile: a finished run is refused here
        # placed on the devices, like a restored state, so both hit the same compiled step
        state = shard_state(
            init_train_state(
                model, tx, input_shape, key=config.seed, precision=config.policy, compiler_options=RUN_ONCE
            ),
            parallel,
        )
        example = jax.ShapeDtypeStruct(input_shape, np.asarray(x_train[:1]).dtype)
        outputs = jax.eval_shape(
            lambda p, x: model.forward(p, x, state.model_state, train=False)[0], state.params, example
        )
        check_labels(objective.name, y_train, outputs.shape[-1])
        if start.checkpoint is not None:
            _, state, metadata = restore_checkpoint(start.checkpoint, state)
            reporter.message(f"resumed from {start.checkpoint} (epoch {start.epoch}, step {int(state.step)})")
        return _train(model, train_data, config, state, tx, reporter, steps_per_epoch, example, start,
                      test_data=test_data, checkpoints=checkpoints, on_step=on_step, parallel=parallel)  # fmt: skip


def _train(model, train_data, config, state, tx, reporter, steps_per_epoch, example, start, *, test_data,
           checkpoints, on_step, parallel) -> FitResult:  # fmt: skip
    """The body of :func:`fit`, run while the checkpoint directory is locked."""
    x_train, y_train = train_data
    policy, objective = config.policy, config.objective
    start_epoch, history, last_checkpoint = start.epoch, start.history, start.checkpoint
    run_info = dict(checkpoints.run_info) if checkpoints is not None else {}
    leaf_paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(state.params)[0]]
    tap_names = nn.tap_names(model, state.params, example, state.model_state, train=True, key=jax.random.key(0))
    train_step = parallel_train_step(
        make_train_step(model, tx, loss=objective, precision=policy, record_activations=bool(tap_names)), parallel
    )
    if parallel.num_devices > 1:
        reporter.message(parallel.describe(config.batch_size))
    # compile (or find in the cache) first, so epoch 1's throughput is not compile time
    reporter.message("compiling the train step ...")
    compile_start = time.perf_counter()
    jax.block_until_ready(
        train_step(state, shard_batch((x_train[: config.batch_size], y_train[: config.batch_size]), parallel))
    )
    reporter.message(f"compiled the train step in {time.perf_counter() - compile_start:.2f}s")
    shuffle_key = jax.random.fold_in(state.key, SHUFFLE)
    divergence = DivergenceMonitor(baseline=history[0]["train_loss"] if history else None)

    for epoch in range(start_epoch, config.epochs):
        reporter.start_epoch(epoch)
        error = functools.partial(
            non_finite_error, epoch=epoch, tap_names=tap_names, leaf_paths=leaf_paths, last_checkpoint=last_checkpoint
        )
        log = _EpochLog(config.batch_size, reporter, error, divergence)
        epoch_key = jax.random.fold_in(shuffle_key, epoch)
        epoch_batches = batches(
            train_data, config.batch_size, key=epoch_key, shuffle=config.shuffle, drop_remainder=True
        )
        start = time.perf_counter()
        for index, batch in enumerate(epoch_batches):
            state, metrics = train_step(state, shard_batch(batch, parallel))
            log.add(epoch * steps_per_epoch + index, metrics, batch[0])
            if on_step is not None:
                on_step(state)
        log.flush()
        jax.block_until_ready(state)
        seconds = time.perf_counter() - start

        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": int(state.step),
            "train_loss": _json_number(np.mean(log.losses)),
            "grad_norm": _json_number(np.mean(log.grad_norms)),
        }
        if test_data is not None:
            scores = evaluate(
                model,
                state.params,
                test_data,
                loss=objective,
                model_state=state.model_state,
                precision=policy,
                batch_size=config.eval_batch_size,
            )
            record["test_loss"] = _json_number(scores["loss"])
            record["test_accuracy"] = _json_number(scores["accuracy"])
        if state.loss_scale is not None:
            record["loss_scale"] = _json_number(state.loss_scale.loss_scale)
            record["skipped_steps"] = log.skipped
        record["seconds"] = seconds
        record["examples_per_second"] = steps_per_epoch * config.batch_size / seconds
        history.append(record)
        reporter.end_epoch({k: v for k, v in record.items() if k not in ("epoch", "step")})

        is_last = epoch + 1 == config.epochs
        if checkpoints is not None and ((epoch + 1) % checkpoints.every == 0 or is_last):
            metadata = {"epoch": epoch + 1, "config": config.to_dict(), "run_info": run_info, "history": history}
            last_checkpoint = save_checkpoint(
                checkpoints.directory, int(state.step), state, metadata=metadata, keep=checkpoints.keep
            )
    return FitResult(state, history)
