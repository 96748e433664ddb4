"""Training on top of the hand-written backward rules: a jit step, evaluation and ``fit``.

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

There is no "zero the gradients" step to forget (the seed's pitfall): each step's
gradient is a fresh value returned by a pure function, and an accumulated gradient
lives in the optimizer state that ``optax.MultiSteps`` resets itself.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbp import nn, ops
from jaxbp.checkpoint import CheckpointError, latest_checkpoint, restore_checkpoint, save_checkpoint
from jaxbp.core import Array, choose
from jaxbp.data import batches, num_batches
from jaxbp.precision import DynamicLossScale, Policy, adjust_loss_scale, all_finite, cast_floating, get_policy
from jaxbp.progress import Progress

__all__ = [
    "FitResult",
    "LossAndGrads",
    "NonFiniteError",
    "Objective",
    "StepMetrics",
    "TrainConfig",
    "TrainState",
    "activation_taps",
    "evaluate",
    "fit",
    "get_objective",
    "init_train_state",
    "loss_and_grads",
    "make_optimizer",
    "make_train_step",
    "objective_names",
    "optimizer_names",
]

Batch = tuple[Any, Any]  # (inputs (B, ...), targets (B, ...))

# fold_in tags of the independent random streams derived from the root key.
_INIT, _SHUFFLE, _DROPOUT = 0, 1, 2


# --------------------------------------------------------------------------- objectives


def _softmax_accuracy(logits: Array, labels: Array) -> Array:
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def _binary_accuracy(logits: Array, labels: Array) -> Array:
    return jnp.mean((logits > 0) == (labels > 0.5))


class Objective(NamedTuple):
    """A loss ``loss(outputs, targets) -> mean`` (an op with a hand-written VJP) and an
    optional ``accuracy(outputs, targets) -> mean``."""

    name: str
    loss: Callable[[Array, Array], Array]
    accuracy: Callable[[Array, Array], Array] | None


_OBJECTIVES: dict[str, Objective] = {
    "softmax_cross_entropy": Objective("softmax_cross_entropy", ops.softmax_cross_entropy, _softmax_accuracy),
    "binary_cross_entropy": Objective("binary_cross_entropy", ops.binary_cross_entropy_with_logits, _binary_accuracy),
    "mse": Objective("mse", ops.mse, None),
}


def objective_names() -> list[str]:
    """The loss names :func:`get_objective` accepts."""
    return list(_OBJECTIVES)


def get_objective(loss: str | Objective) -> Objective:
    """The :class:`Objective` called ``loss`` (or ``loss`` itself)."""
    if isinstance(loss, Objective):
        return loss
    return choose("get_objective", "loss", loss, _OBJECTIVES)


# --------------------------------------------------------------------------- optimizer

_OPTIMIZERS: dict[str, Callable[[float], optax.GradientTransformation]] = {
    "sgd": optax.sgd,
    "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
    "adam": optax.adam,
    "adamw": optax.adamw,
}


def optimizer_names() -> list[str]:
    """The optimizer names :func:`make_optimizer` accepts."""
    return list(_OPTIMIZERS)


@functools.lru_cache(maxsize=64)
def make_optimizer(
    learning_rate: float,
    *,
    name: str = "adam",
    clip_norm: float | None = None,
    accumulate: int = 1,
) -> optax.GradientTransformation:
    """``optax.chain(clip_by_global_norm(clip_norm), <name>(learning_rate))``, wrapped in
    ``optax.MultiSteps(every_k_schedule=accumulate)`` when ``accumulate > 1``.

    Under accumulation the optimizer sees the *mean* of ``accumulate`` micro-batch
    gradients (clipping applies to that mean), and the parameters change only on
    every ``accumulate``-th call: one step on the concatenated batch. Equal arguments
    return the same (immutable) transform, so equal runs share one compiled step.
    """
    choose("make_optimizer", "optimizer", name, _OPTIMIZERS)
    if not learning_rate > 0:
        raise ValueError(f"make_optimizer: learning_rate must be > 0, got {learning_rate!r}")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"make_optimizer: clip_norm must be > 0 or None, got {clip_norm!r}")
    if not isinstance(accumulate, int) or accumulate < 1:
        raise ValueError(f"make_optimizer: accumulate must be an int >= 1, got {accumulate!r}")
    clip = [optax.clip_by_global_norm(clip_norm)] if clip_norm is not None else []
    tx = optax.chain(*clip, _OPTIMIZERS[name](learning_rate))
    if accumulate > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accumulate).gradient_transformation()
    return tx


# ------------------------------------------------------------------------------- state


class TrainState(NamedTuple):
    """Everything a training run carries from one step to the next (and checkpoints)."""

    params: Any  # master weights, float32
    opt_state: optax.OptState  # the optimizer's state (accumulators under MultiSteps)
    model_state: Any  # batch-norm running statistics; () for stateless networks
    key: Array  # the run's root PRNG key; shuffling and dropout keys derive from it
    step: Array  # () int32: train_step calls so far (micro-steps under accumulation)
    loss_scale: DynamicLossScale | None  # float16 dynamic loss scaling, else None


class StepMetrics(NamedTuple):
    """What one training step reports (all device arrays)."""

    loss: Array  # () float32 mean loss of the batch (unscaled)
    grad_norm: Array  # () float32 global norm of the gradient, before clipping
    ok: Array  # () bool: nothing non-finite that must stop training
    loss_finite: Array  # () bool
    activations_finite: Array  # (num_taps,) bool, taps in forward order
    gradients_finite: Array  # (num_param_leaves,) bool, params leaves in tree order
    params_finite: Array  # () bool: the updated params
    skipped: Array  # () bool: update skipped because float16 gradients overflowed


class LossAndGrads(NamedTuple):
    """Result of :func:`loss_and_grads`."""

    loss: Array  # () mean loss, float32 (unscaled)
    grads: Any  # d loss / d params (unscaled), same structure and dtypes as params
    model_state: Any  # the network's new state (train mode)
    activations: tuple  # tapped activations in forward order (empty unless recorded)


def _as_key(key: int | Array) -> Array:
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    return key


def init_train_state(
    model: nn.Layer,
    optimizer: optax.GradientTransformation,
    input_shape: Sequence[int],
    *,
    key: int | Array = 0,
    precision: str | Policy = "f32",
) -> TrainState:
    """Initialise params (from ``fold_in(key, INIT)``), model state and optimizer state."""
    policy = get_policy(precision)
    root = _as_key(key)
    params, _ = model.init(jax.random.fold_in(root, _INIT), tuple(input_shape))
    params = cast_floating(params, policy.param_dtype)
    model_state = nn.init_state(model, params)
    return TrainState(params, optimizer.init(params), model_state, root, jnp.zeros((), jnp.int32), policy.initial_loss_scale())


# ----------------------------------------------------------------------------- forward


def _forward(model: nn.Layer, params: Any, model_state: Any, x: Array, policy: Policy, **kwargs: Any) -> tuple[Array, Any]:
    """``model`` applied in the policy's compute dtype; output in its output dtype."""
    compute_params, x = policy.cast_to_compute(params), policy.cast_to_compute(x)
    y, new_state = nn.apply_with_state(model, compute_params, x, state=model_state, **kwargs)
    # running statistics keep their dtype whatever the compute dtype
    new_state = jax.tree_util.tree_map(lambda new, old: new.astype(old.dtype), new_state, model_state)
    return policy.cast_to_output(y), new_state


def loss_and_grads(
    model: nn.Layer,
    params: Any,
    batch: Batch,
    *,
    loss: str | Objective = "softmax_cross_entropy",
    model_state: Any = (),
    key: Array | None = None,
    precision: str | Policy = "f32",
    loss_scale: DynamicLossScale | None = None,
    record_activations: bool = False,
) -> LossAndGrads:
    """The mean loss of ``batch = (x, targets)`` in train mode and its gradient, which
    autodiff assembles from the hand-written VJPs of the network's ops.

    ``key`` is the dropout key. With ``loss_scale`` the loss is scaled before and the
    gradient unscaled after the backward pass. ``record_activations`` collects every
    :func:`jaxbp.nn.tap` in forward order (for the non-finite guard).
    """
    objective, policy = get_objective(loss), get_policy(precision)
    x, targets = batch

    def scaled_loss(params):
        record: dict[str, Array] = {}
        kwargs: dict[str, Any] = {"train": True}
        if key is not None:
            kwargs["key"] = key
        if record_activations:
            kwargs["record"] = record
        y, new_state = _forward(model, params, model_state, x, policy, **kwargs)
        value = objective.loss(y, targets)
        scaled = value if loss_scale is None else loss_scale.scale(value)
        return scaled, (value, new_state, tuple(record.values()))

    (_, (value, new_state, activations)), grads = jax.value_and_grad(scaled_loss, has_aux=True)(params)
    if loss_scale is not None:
        grads = loss_scale.unscale(grads)
    return LossAndGrads(value, grads, new_state, activations)


def activation_taps(model: nn.Layer, params: Any, model_state: Any, input_shape: Sequence[int]) -> tuple[str, ...]:
    """Names of the :func:`jaxbp.nn.tap` layers of ``model`` in forward order (shapes only)."""
    names: list[str] = []

    def run(params, model_state, x):
        record: dict[str, Array] = {}
        _forward(model, params, model_state, x, get_policy("f32"), train=True, key=jax.random.key(0), record=record)
        names[:] = list(record)

    jax.eval_shape(run, params, model_state, jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32))
    return tuple(names)


# ------------------------------------------------------------------------------- steps


def _finite_flags(leaves: Any) -> Array:
    """A (len(leaves),) bool vector: is each array entirely finite?"""
    flags = [all_finite(leaf) for leaf in leaves]
    return jnp.stack(flags) if flags else jnp.zeros((0,), bool)


def _select(pred: Array, on_true: Any, on_false: Any) -> Any:
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


@functools.lru_cache(maxsize=32)
def make_train_step(
    model: nn.Layer,
    optimizer: optax.GradientTransformation,
    *,
    loss: str | Objective = "softmax_cross_entropy",
    precision: str | Policy = "f32",
    record_activations: bool = False,
) -> Callable[[TrainState, Batch], tuple[TrainState, StepMetrics]]:
    """A pure, jit-compiled ``train_step(state, batch) -> (new_state, metrics)``.

    Under float16 loss scaling a step whose gradient is not finite leaves params,
    optimizer and model state unchanged and halves the loss scale (``metrics.skipped``).
    Otherwise ``metrics.ok`` is False whenever the loss, a tapped activation, a
    gradient or an updated parameter is not finite; :func:`fit` then stops.
    Cached: the same arguments give the same jitted function (and its compilations).
    """
    objective, policy = get_objective(loss), get_policy(precision)

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, StepMetrics]:
        dropout_key = jax.random.fold_in(jax.random.fold_in(state.key, _DROPOUT), state.step)
        result = loss_and_grads(
            model, state.params, batch, loss=objective, model_state=state.model_state, key=dropout_key,
            precision=policy, loss_scale=state.loss_scale, record_activations=record_activations,
        )  # fmt: skip
        gradients_finite = _finite_flags(jax.tree_util.tree_leaves(result.grads))
        grads_ok = jnp.all(gradients_finite)
        updates, opt_state = optimizer.update(result.grads, state.opt_state, state.params)
        params, model_state, loss_scale = optax.apply_updates(state.params, updates), result.model_state, state.loss_scale
        skipped = jnp.array(False)
        if loss_scale is not None:  # float16: skip the update on overflow, adapt the scale
            params, opt_state, model_state = _select(grads_ok, (params, opt_state, model_state), (state.params, state.opt_state, state.model_state))
            loss_scale, skipped = adjust_loss_scale(loss_scale, grads_ok), ~grads_ok
            grads_ok = jnp.array(True)
        activations_finite = _finite_flags(result.activations)
        loss_finite, params_finite = jnp.isfinite(result.loss), all_finite(params)
        metrics = StepMetrics(
            loss=result.loss.astype(jnp.float32),
            grad_norm=optax.tree.norm(result.grads).astype(jnp.float32),
            ok=loss_finite & jnp.all(activations_finite) & grads_ok & params_finite,
            loss_finite=loss_finite,
            activations_finite=activations_finite,
            gradients_finite=gradients_finite,
            params_finite=params_finite,
            skipped=skipped,
        )
        return TrainState(params, opt_state, model_state, state.key, state.step + 1, loss_scale), metrics

    return jax.jit(train_step)


@functools.lru_cache(maxsize=64)
def _eval_step(model: nn.Layer, objective: Objective, policy: Policy) -> Callable:
    """Jitted ``(params, model_state, batch) -> (mean loss, mean accuracy)`` in eval mode."""

    def eval_step(params, model_state, batch):
        x, targets = batch
        y, _ = _forward(model, params, model_state, x, policy, train=False)
        accuracy = objective.accuracy(y, targets) if objective.accuracy is not None else jnp.nan
        return objective.loss(y, targets), accuracy

    return jax.jit(eval_step)


def evaluate(
    model: nn.Layer,
    params: Any,
    data: Batch,
    *,
    loss: str | Objective = "softmax_cross_entropy",
    model_state: Any = (),
    precision: str | Policy = "f32",
    batch_size: int = 1024,
) -> dict[str, float | None]:
    """Mean ``loss`` and ``accuracy`` (None for regression) of ``model`` on ``data = (x, y)``,
    in eval mode (no dropout, batch norm with running statistics)."""
    objective = get_objective(loss)
    if len(data[0]) == 0:
        raise ValueError("evaluate: data is empty")
    step = _eval_step(model, objective, get_policy(precision))
    total_loss = total_accuracy = 0.0
    count = 0
    for x, y in batches(data, batch_size, shuffle=False):
        batch_loss, batch_accuracy = jax.device_get(step(params, model_state, (x, y)))
        total_loss += float(batch_loss) * len(x)
        total_accuracy += float(batch_accuracy) * len(x)
        count += len(x)
    return {"loss": total_loss / count, "accuracy": total_accuracy / count if objective.accuracy is not None else None}


# ------------------------------------------------------------------------ non-finite guard


class NonFiniteError(FloatingPointError):
    """Training produced NaN/Inf; ``step`` is the step, ``layer`` where it first appeared."""

    def __init__(self, message: str, *, step: int, layer: str | None) -> None:
        super().__init__(message)
        self.step = step
        self.layer = layer


def _non_finite_error(
    step: int, metrics: StepMetrics, *, epoch: int, tap_names: tuple[str, ...], leaf_paths: list[str], last_checkpoint: Path | None
) -> NonFiniteError:
    """The error for a step whose ``metrics.ok`` is False: step, first bad tap or gradient leaf."""
    bad_taps = [name for name, ok in zip(tap_names, np.asarray(metrics.activations_finite)) if not ok]
    bad_leaves = [path for path, ok in zip(leaf_paths, np.asarray(metrics.gradients_finite)) if not ok]
    parts = []
    if bad_taps:
        parts.append(f"first non-finite activation at tap {bad_taps[0]!r}" + (f" (then {', '.join(map(repr, bad_taps[1:4]))}{', ...' if len(bad_taps) > 4 else ''})" if len(bad_taps) > 1 else ""))
    if bad_leaves:
        parts.append(f"non-finite gradient first in params{bad_leaves[0]} ({len(bad_leaves)} of {len(leaf_paths)} leaves)")
    if not bool(metrics.params_finite):
        parts.append("the updated parameters are not finite")
    parts.append(f"loss {float(metrics.loss)}")
    layer = bad_taps[0] if bad_taps else (f"params{bad_leaves[0]}" if bad_leaves else None)
    saved = f"last good checkpoint: {last_checkpoint}" if last_checkpoint is not None else "there is no earlier checkpoint"
    message = (
        f"training stopped: non-finite values at step {step} (epoch {epoch + 1}): " + "; ".join(parts)
        + f". The state of this step was discarded, no checkpoint was written from it ({saved}). "
        "Try a lower learning rate, gradient clipping (clip_norm) or another initialisation."
    )  # fmt: skip
    return NonFiniteError(message, step=step, layer=layer)


# ----------------------------------------------------------------------------------- fit


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How :func:`fit` trains. The fields except ``epochs`` and ``eval_batch_size``
    must match to resume a run from its checkpoint."""

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    clip_norm: float | None = None
    accumulate: int = 1
    precision: str = "f32"
    loss: str = "softmax_cross_entropy"
    seed: int = 0
    shuffle: bool = True
    eval_batch_size: int = 1024

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "accumulate", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig: {name} must be an int >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"TrainConfig: seed must be an int >= 0, got {self.seed!r}")
        make_optimizer(self.learning_rate, name=self.optimizer, clip_norm=self.clip_norm, accumulate=self.accumulate)
        get_policy(self.precision)
        get_objective(self.loss)

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict."""
        return dataclasses.asdict(self)

    def optimizer_transform(self) -> optax.GradientTransformation:
        """:func:`make_optimizer` with this config's settings."""
        return make_optimizer(self.learning_rate, name=self.optimizer, clip_norm=self.clip_norm, accumulate=self.accumulate)


_NOT_RESUME_FIELDS = ("epochs", "eval_batch_size")


class _EpochLog:
    """Collects one epoch's step metrics, reading each step one step late so the host
    never waits for the device between steps; raises on a non-finite step."""

    def __init__(self, batch_size: int, reporter: Progress, error: Callable[[int, StepMetrics], NonFiniteError]) -> None:
        self.batch_size, self.reporter, self.error = batch_size, reporter, error
        self.losses: list[float] = []
        self.grad_norms: list[float] = []
        self.skipped = 0
        self._pending: tuple[int, StepMetrics] | None = None

    def add(self, step: int, metrics: StepMetrics) -> None:
        """Queue step ``step``'s metrics and check the previous step's."""
        self.flush()
        self._pending = (step, metrics)

    def flush(self) -> None:
        """Check the queued step, if any."""
        if self._pending is None:
            return
        step, metrics = self._pending
        self._pending = None
        metrics = jax.device_get(metrics)
        if not metrics.ok:
            raise self.error(step, metrics)
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
        raise CheckpointError(f"checkpoint {str(path)!r} belongs to a different run: it was written for {stored_info}, this run is {dict(run_info)}")


def fit(
    model: nn.Layer,
    train_data: Batch,
    config: TrainConfig = TrainConfig(),
    *,
    test_data: Batch | None = None,
    optimizer: optax.GradientTransformation | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    keep_checkpoints: int = 3,
    checkpoint_every: int = 1,
    run_info: Mapping[str, Any] | None = None,
    progress: bool | Progress = True,
    on_step: Callable[[TrainState], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``train_data = (x, y)`` for ``config.epochs`` epochs.

    Each epoch visits ``len(x) // batch_size`` shuffled batches (the remainder is
    dropped, so every step has the same shape), then evaluates on ``test_data``.
    ``optimizer`` overrides the one built from ``config``.

    With ``checkpoint_dir`` the full :class:`TrainState`, the history and the config
    are saved atomically every ``checkpoint_every`` epochs and after the last one
    (``keep_checkpoints`` newest kept). ``resume=True`` continues from the latest
    checkpoint there (bit-exactly as if never interrupted); without it the directory
    must hold no checkpoint. ``run_info`` (JSON, e.g. model name and options) is
    stored and must match on resume.

    Raises :class:`NonFiniteError` naming the step and the first non-finite tap or
    gradient; no checkpoint is written after that step. ``on_step(state)`` is called
    after every step (e.g. to stop a run).
    """
    x_train, y_train = train_data
    steps_per_epoch = num_batches(len(x_train), config.batch_size, drop_remainder=True)
    if steps_per_epoch == 0:
        raise ValueError(f"fit: batch_size {config.batch_size} is larger than the training set ({len(x_train)} examples)")
    if resume and checkpoint_dir is None:
        raise ValueError("fit: resume=True needs a checkpoint_dir")
    run_info = dict(run_info or {})
    policy, objective = get_policy(config.precision), get_objective(config.loss)
    tx = optimizer if optimizer is not None else config.optimizer_transform()
    input_shape = (config.batch_size, *np.shape(x_train)[1:])
    # committed to a device, like a restored state, so both hit the same compiled step
    state = jax.device_put(init_train_state(model, tx, input_shape, key=config.seed, precision=policy), jax.devices()[0])
    reporter = progress if isinstance(progress, Progress) else Progress(config.epochs, steps_per_epoch, enabled=progress)

    history: list[dict[str, Any]] = []
    start_epoch = 0
    last_checkpoint = latest_checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
    if last_checkpoint is not None and not resume:
        raise CheckpointError(f"checkpoint directory {str(checkpoint_dir)!r} already holds {last_checkpoint.name}; pass resume=True (--resume) to continue that run, or use an empty directory")
    if last_checkpoint is not None:
        _, state, metadata = restore_checkpoint(last_checkpoint, state)
        _check_resume(last_checkpoint, metadata, config, run_info)
        start_epoch, history = int(metadata["epoch"]), list(metadata["history"])
        reporter.message(f"resumed from {last_checkpoint} (epoch {start_epoch}, step {int(state.step)})")

    leaf_paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(state.params)[0]]
    tap_names = activation_taps(model, state.params, state.model_state, input_shape)
    train_step = make_train_step(model, tx, loss=objective, precision=policy, record_activations=bool(tap_names))
    if start_epoch < config.epochs:  # compile (or find in the cache) first, so epoch 1's throughput is not compile time
        compile_start = time.perf_counter()
        jax.block_until_ready(train_step(state, (x_train[: config.batch_size], y_train[: config.batch_size])))
        reporter.message(f"compiled the train step in {time.perf_counter() - compile_start:.2f}s")
    shuffle_key = jax.random.fold_in(state.key, _SHUFFLE)

    for epoch in range(start_epoch, config.epochs):
        reporter.start_epoch(epoch)
        error = functools.partial(_non_finite_error, epoch=epoch, tap_names=tap_names, leaf_paths=leaf_paths, last_checkpoint=last_checkpoint)
        log = _EpochLog(config.batch_size, reporter, error)
        epoch_key = jax.random.fold_in(shuffle_key, epoch)
        epoch_batches = batches(train_data, config.batch_size, key=epoch_key, shuffle=config.shuffle, drop_remainder=True)
        start = time.perf_counter()
        for index, batch in enumerate(epoch_batches):
            state, metrics = train_step(state, batch)
            log.add(epoch * steps_per_epoch + index, metrics)
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
            scores = evaluate(model, state.params, test_data, loss=objective, model_state=state.model_state, precision=policy, batch_size=config.eval_batch_size)
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
        if checkpoint_dir is not None and ((epoch + 1) % checkpoint_every == 0 or is_last):
            metadata = {"epoch": epoch + 1, "config": config.to_dict(), "run_info": run_info, "history": history}
            last_checkpoint = save_checkpoint(checkpoint_dir, int(state.step), state, metadata=metadata, keep=keep_checkpoints)
    return FitResult(state, history)
