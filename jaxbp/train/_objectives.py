"""What training optimizes: objectives (a loss op and an accuracy) and optimizers by name."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import optax

from jaxbp import ops
from jaxbp.core import Array, choose
from jaxbp.validation import positive_int


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
    accumulate = positive_int("make_optimizer", "accumulate", accumulate)
    clip = [optax.clip_by_global_norm(clip_norm)] if clip_norm is not None else []
    tx = optax.chain(*clip, _OPTIMIZERS[name](learning_rate))
    if accumulate > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accumulate).gradient_transformation()
    return tx
