r"""Training on digits with the library's step (:func:`jaxbp.train.loss_and_grads`) and optimizer registry.

Many runs train at once, vmapped: one per (seed, learning rate) or (seed, :math:`\sigma_w^2`).  The
optimizer is ``train.make_optimizer(1, name="momentum", clip_norm=...)`` (SGD, momentum 0.9,
optionally preceded by global-norm clipping, Pascanu et al. 2013); momentum SGD's update is linear
in the learning rate, so each run multiplies the unit-rate update by its own learning rate and one
compiled epoch serves every rate.  With clipping, the run also records the mean clipping factor
:math:`\overline{\min(1, c/\|g_t\|)}`: clipping acts as that factor times the learning rate, which
gives the learning-rate-matched control.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbp import data, train
from jaxbp import init as initializers
from jaxbp.studies.vanishing._config import Laws, TrainabilityConfig, TrainingConfig
from jaxbp.studies.vanishing._gradients import init_stacked, setting_fields
from jaxbp.studies.vanishing._networks import NetworkSpec, build_network, resolve_init, setting_key
from jaxbp.studies.vanishing._progress import tick
from jaxbp.studies.vanishing._stats import difference, estimate, rows


@functools.cache
def _epoch_functions(
    activation: str,
    depth: int,
    width: int,
    residual: bool,
    batch_norm: bool,
    clip_norm: float | None,
) -> tuple:
    """``(network, optimizer, epoch, accuracy)``, jitted and vmapped over runs; compiled once per architecture."""
    spec = NetworkSpec(activation, "glorot", residual, batch_norm)
    network = build_network(
        spec,
        depth,
        width,
        data.DIGITS_NUM_CLASSES,
        initializers.dense_init("glorot_normal"),
    )
    optimizer = train.make_optimizer(1.0, name="momentum", clip_norm=clip_norm)

    def step(carry: tuple, batch: tuple) -> tuple[tuple, tuple[jax.Array, jax.Array, jax.Array]]:
        params, opt_state, model_state, learning_rate = carry
        out = train.loss_and_grads(network, params, batch, model_state=model_state)
        norm = optax.tree.norm(out.grads)
        updates, opt_state = optimizer.update(out.grads, opt_state, params)
        params = optax.apply_updates(params, jax.tree_util.tree_map(lambda u: learning_rate * u, updates))
        factor = jnp.ones(()) if clip_norm is None else jnp.minimum(1.0, clip_norm / norm)
        return (params, opt_state, out.model_state, learning_rate), (
            out.loss,
            norm,
            factor,
        )

    def epoch(
        params: Any, opt_state: Any, model_state: Any, learning_rate: jax.Array, xs: jax.Array, ys: jax.Array
    ) -> tuple:
        (params, opt_state, model_state, _), metrics = jax.lax.scan(
            step, (params, opt_state, model_state, learning_rate), (xs, ys)
        )
        return params, opt_state, model_state, metrics

    def accuracy(params: Any, model_state: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        logits, _ = network.forward(params, x, model_state, train=False)
        return jnp.mean(jnp.argmax(logits, axis=-1) == y)

    runs_epoch = jax.jit(jax.vmap(epoch, in_axes=(0, 0, 0, 0, None, None)))
    return network, optimizer, runs_epoch, jax.jit(jax.vmap(accuracy, in_axes=(0, 0, None, None)))


def train_runs(
    spec: NetworkSpec,
    depth: int,
    width: int,
    params: Any,
    learning_rates: np.ndarray,
    dataset: data.Dataset,
    *,
    epochs: int,
    batch_size: int,
    clip_norm: float | None,
    seed: int,
    steps: int | None = None,
) -> dict[str, np.ndarray]:
    """Train the stacked ``params`` (one run per leading index) with per-run ``learning_rates``.

    ``steps`` (if given) cuts every epoch to that many minibatches.  Returns per-run curves
    ``(runs, epochs)``: mean training loss, test accuracy, largest gradient norm, and the mean
    clipping factor over the whole run ``(runs,)``.
    """
    network, optimizer, epoch, accuracy = _epoch_functions(
        spec.activation, depth, width, spec.residual, spec.batch_norm, clip_norm
    )
    opt_state = jax.vmap(optimizer.init)(params)
    model_state = jax.vmap(network.init_state)(params)
    lr = jnp.asarray(learning_rates, jnp.float32)
    losses, accuracies, norms, factors = [], [], [], []
    for index in range(epochs):
        xs, ys = (
            np.stack(a)
            for a in zip(
                *data.batches(
                    dataset.train,
                    batch_size,
                    key=seed * 1009 + index,
                    drop_remainder=True,
                )
            )
        )
        if steps is not None:
            xs, ys = xs[:steps], ys[:steps]
        params, opt_state, model_state, (loss, norm, factor) = epoch(params, opt_state, model_state, lr, xs, ys)
        losses.append(np.mean(np.asarray(loss), axis=1))
        norms.append(np.max(np.asarray(norm), axis=1))
        factors.append(np.asarray(factor))
        tick(f"{spec.name} L={depth}, epoch {index + 1}/{epochs}")
        accuracies.append(np.asarray(accuracy(params, model_state, *dataset.test)))
    return {
        "train_loss": np.stack(losses, axis=1),
        "test_accuracy": np.stack(accuracies, axis=1),
        "max_grad_norm": np.stack(norms, axis=1),
        "clip_factor": np.concatenate(factors, axis=1).mean(axis=1),
    }


def _params(
    spec: NetworkSpec,
    depth: int,
    width: int,
    laws: Laws,
    batch_size: int,
    dataset: data.Dataset,
    key: jax.Array,
    runs: int,
) -> Any:
    resolved = resolve_init(spec, width, laws)
    network = build_network(spec, depth, width, dataset.num_classes, resolved.dense)
    keys = jax.random.split(setting_key(key, "train", spec.name, depth, width), runs)
    return init_stacked(
        network,
        resolved.dense,
        keys,
        (batch_size, dataset.x_train.shape[1]),
    )


def _record(curves: dict[str, np.ndarray], index: Any) -> dict[str, Any]:
    final = curves["test_accuracy"][index, -1]
    return {
        "train_loss": rows(curves["train_loss"][index]),
        "test_accuracy": rows(curves["test_accuracy"][index]),
        "max_grad_norm": rows(curves["max_grad_norm"][index]),
        "final_test_accuracy": estimate(final),
        "final_train_loss": estimate(curves["train_loss"][index, -1]),
        "clip_factor": estimate(curves["clip_factor"][index]),
    }


def training_curves(
    specs: list[NetworkSpec], config: TrainingConfig, laws: Laws, dataset: data.Dataset, key: jax.Array, seed: int
) -> list[dict[str, Any]]:
    """Each spec at ``config.depth``, ``config.seeds`` seeds, learning rate ``config.learning_rate``."""
    records = []
    for spec in specs:
        depth, width, seeds = config.depth, config.width, config.seeds
        params = _params(spec, depth, width, laws, config.batch_size, dataset, key, seeds)
        curves = train_runs(spec, depth, width, params, np.full(seeds, config.learning_rate), dataset,
                            epochs=config.epochs, batch_size=config.batch_size, clip_norm=None, seed=seed)  # fmt: skip
        fields = setting_fields(spec, resolve_init(spec, width, laws), depth, width)
        records.append(
            {
                **fields,
                "learning_rate": config.learning_rate,
                **_record(curves, slice(None)),
            }
        )
    return records


def clipping_study(
    spec: NetworkSpec, config: TrainingConfig, laws: Laws, dataset: data.Dataset, key: jax.Array, seed: int
) -> dict[str, Any]:
    """The exploding network trained over ``config.clipping_learning_rates``: clipped, unclipped, and unclipped at
    the clipped run's effective rate :math:`\\eta\\,\\overline{\\min(1, c/\\|g\\|)}` (the learning-rate-matched control)."""
    depth, width, seeds, rates = (
        config.depth,
        config.width,
        config.seeds,
        list(config.clipping_learning_rates),
    )
    common = {
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "seed": seed,
    }

    def run(learning_rates: list[float], clip: float | None) -> dict[str, np.ndarray]:
        params = _params(
            spec, depth, width, laws, config.batch_size, dataset, key, seeds
        )  # the same seeds for every rate
        stacked = jax.tree_util.tree_map(lambda a: jnp.concatenate([a] * len(learning_rates)), params)
        return train_runs(
            spec,
            depth,
            width,
            stacked,
            np.repeat(learning_rates, seeds),
            dataset,
            clip_norm=clip,
            **common,
        )

    clipped = run(rates, config.clip_norm)
    factors = clipped["clip_factor"].reshape(len(rates), seeds).mean(axis=1)
    matched = [rate * factor for rate, factor in zip(rates, factors)]
    plain = run(rates + matched, None)
    entries = []
    for i, rate in enumerate(rates):
        one = slice(i * seeds, (i + 1) * seeds)
        other = slice((len(rates) + i) * seeds, (len(rates) + i + 1) * seeds)
        entry = {
            "learning_rate": rate,
            "matched_learning_rate": matched[i],
            "clipped": _record(clipped, one),
            "unclipped": _record(plain, one),
            "unclipped_matched": _record(plain, other),
        }
        entry["clipped_minus_unclipped"] = difference(
            entry["clipped"]["final_test_accuracy"],
            entry["unclipped"]["final_test_accuracy"],
        )
        entry["clipped_minus_matched"] = difference(
            entry["clipped"]["final_test_accuracy"],
            entry["unclipped_matched"]["final_test_accuracy"],
        )
        entries.append(entry)
    best = {
        kind: max(
            (e[kind]["final_test_accuracy"] for e in entries),
            key=lambda a: a["mean"] if a["mean"] is not None else -math.inf,
        )
        for kind in ("clipped", "unclipped")
    }
    fields = setting_fields(spec, resolve_init(spec, width, laws), depth, width)
    return {
        **fields,
        "clip_norm": config.clip_norm,
        "runs": entries,
        "best": best,
        "best_difference": difference(best["clipped"], best["unclipped"]),
    }


def trainability(
    config: TrainabilityConfig,
    laws: Laws,
    dataset: data.Dataset,
    key: jax.Array,
    seed: int,
    depth_scale: Callable[[float], float],
) -> dict[str, Any]:
    """Test accuracy of tanh networks after ``config.steps`` steps over ``config.sigma_w2s`` x ``config.depths``
    (one compilation per depth, vmapped over :math:`\\sigma_w^2` and seeds), with :math:`6\\xi_c`."""
    sigma_b2, seeds, width = (
        laws.critical_sigma_b2,
        config.seeds,
        config.width,
    )
    sigma_w2s = list(config.sigma_w2s)
    steps_per_epoch = data.num_batches(len(dataset.x_train), config.batch_size, drop_remainder=True)
    epochs = math.ceil(config.steps / steps_per_epoch)
    accuracy = np.zeros((len(config.depths), len(sigma_w2s), seeds))
    for d, depth in enumerate(config.depths):
        specs = [NetworkSpec("tanh", "mean_field", sigma_w2=s, sigma_b2=sigma_b2) for s in sigma_w2s]
        params = [_params(spec, depth, width, laws, config.batch_size, dataset, key, seeds) for spec in specs]
        stacked = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *params)
        curves = train_runs(specs[0], depth, width, stacked, np.full(len(specs) * seeds, config.learning_rate), dataset,
                            epochs=epochs, batch_size=config.batch_size, clip_norm=None, seed=seed,
                            steps=min(config.steps, steps_per_epoch))  # fmt: skip
        accuracy[d] = np.nan_to_num(curves["test_accuracy"][:, -1], nan=0.1).reshape(len(specs), seeds)
    return {
        "depths": list(config.depths),
        "sigma_w2": sigma_w2s,
        "sigma_b2": sigma_b2,
        "steps": epochs * min(config.steps, steps_per_epoch),
        "learning_rate": config.learning_rate,
        "width": width,
        "test_accuracy": [[estimate(accuracy[d, s]) for s in range(len(sigma_w2s))] for d in range(len(config.depths))],
        "xi_c": [depth_scale(s) for s in sigma_w2s],
    }
