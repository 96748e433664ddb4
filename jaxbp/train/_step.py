"""One training step and evaluation, on top of the hand-written backward rules.

* :func:`loss_and_grads` -- ``jax.value_and_grad`` of ``loss(model(params, x), y)``.
  Every differentiable step of an ``nn`` network is a :mod:`jaxbp.ops` op, so the
  gradient is assembled from the hand-written VJPs (autodiff only chains them).
* :func:`make_train_step` -- a pure, jit-compiled ``train_step(state, batch) ->
  (state, metrics)``: gradients, optional float16 loss scaling, the optax update, and
  finiteness checks of the loss, of every tapped activation and of every gradient.
* :func:`evaluate` -- mean loss and accuracy over a data set in eval mode.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbp import nn
from jaxbp.core import Array
from jaxbp.data import batches
from jaxbp.precision import DynamicLossScale, Policy, adjust_loss_scale, all_finite, cast_floating, get_policy
from jaxbp.train._objectives import Objective, get_objective

Batch = tuple[Any, Any]  # (inputs (B, ...), targets (B, ...))

# fold_in tags of the independent random streams derived from the root key.
INIT, SHUFFLE, DROPOUT = 0, 1, 2


class TrainState(NamedTuple):
    """Everything a training run carries from one step to the next (and checkpoints)."""

    params: Any  # master weights, float32
    opt_state: optax.OptState  # the optimizer's state (accumulators under MultiSteps)
    model_state: Any  # the network's state (model.init_state: batch-norm running statistics, ...)
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
    assert isinstance(key, jax.Array), f"init_train_state: key must be an int or a PRNG key, got {key!r}"
    return key


# XLA options for a program compiled once and run once (the initialisation): backend
# optimisations cost several times the compile time and save nothing there.
RUN_ONCE = {"xla_backend_optimization_level": 0}


def init_train_state(
    model: nn.Layer,
    optimizer: optax.GradientTransformation,
    input_shape: Sequence[int],
    *,
    key: int | Array = 0,
    precision: str | Policy = "f32",
    compiler_options: dict[str, Any] | None = None,
) -> TrainState:
    """Initialise params (from ``fold_in(key, INIT)``), model state and optimizer state.

    The whole initialisation is one compiled program: run eagerly, every weight's random
    draw would compile a program of its own shape (dozens for a ResNet). ``compiler_options``
    go to that program's ``jax.jit`` (:func:`fit` passes :data:`RUN_ONCE`); leave them out
    when calling this under a trace (``jax.eval_shape``, ``jax.jit``), where JAX refuses them.
    """
    policy = get_policy(precision)
    root = _as_key(key)

    @functools.partial(jax.jit, compiler_options=compiler_options)
    def draw(root: Array) -> tuple[Any, Any, Any]:
        params, _ = model.init(jax.random.fold_in(root, INIT), tuple(input_shape))
        params = cast_floating(params, policy.param_dtype)
        return params, optimizer.init(params), model.init_state(params)

    params, opt_state, model_state = draw(root)
    return TrainState(params, opt_state, model_state, root, jnp.zeros((), jnp.int32), policy.initial_loss_scale())


# ----------------------------------------------------------------------------- forward


def _forward(
    model: nn.Layer, params: Any, model_state: Any, x: Array, policy: Policy, **kwargs: Any
) -> tuple[Array, Any]:
    """``model`` applied in the policy's compute dtype; output in its output dtype."""
    compute_params, x = policy.cast_to_compute(params), policy.cast_to_compute(x)
    y, new_state = model.forward(compute_params, x, model_state, **kwargs)
    # running statistics keep their dtype whatever the compute dtype
    new_state = jax.tree_util.tree_map(lambda new, old: new.astype(old.dtype), new_state, model_state)
    return policy.cast_to_output(y), new_state


def loss_and_grads(
    model: nn.Layer,
    params: Any,
    batch: Batch,
    *,
    loss: str | Objective = "softmax_cross_entropy",
    model_state: Any = None,
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
    if model_state is None:
        model_state = model.init_state(params)

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
        dropout_key = jax.random.fold_in(jax.random.fold_in(state.key, DROPOUT), state.step)
        result = loss_and_grads(
            model, state.params, batch, loss=objective, model_state=state.model_state, key=dropout_key,
            precision=policy, loss_scale=state.loss_scale, record_activations=record_activations,
        )  # fmt: skip
        gradients_finite = _finite_flags(jax.tree_util.tree_leaves(result.grads))
        grads_ok = jnp.all(gradients_finite)
        updates, opt_state = optimizer.update(result.grads, state.opt_state, state.params)
        params, model_state, loss_scale = (
            optax.apply_updates(state.params, updates),
            result.model_state,
            state.loss_scale,
        )
        skipped = jnp.array(False)
        if loss_scale is not None:  # float16: skip the update on overflow, adapt the scale
            params, opt_state, model_state = _select(
                grads_ok, (params, opt_state, model_state), (state.params, state.opt_state, state.model_state)
            )
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
    model_state: Any = None,
    precision: str | Policy = "f32",
    batch_size: int = 1024,
) -> dict[str, float | None]:
    """Mean ``loss`` and ``accuracy`` (None for regression) of ``model`` on ``data = (x, y)``,
    in eval mode (no dropout, batch norm with running statistics)."""
    objective = get_objective(loss)
    if len(data[0]) == 0:
        raise ValueError("evaluate: data is empty")
    step = _eval_step(model, objective, get_policy(precision))
    if model_state is None:
        model_state = model.init_state(params)
    total_loss = total_accuracy = 0.0
    count = 0
    for x, y in batches(data, batch_size, shuffle=False):
        batch_loss, batch_accuracy = jax.device_get(step(params, model_state, (x, y)))
        total_loss += float(batch_loss) * len(x)
        total_accuracy += float(batch_accuracy) * len(x)
        count += len(x)
    return {"loss": total_loss / count, "accuracy": total_accuracy / count if objective.accuracy is not None else None}
