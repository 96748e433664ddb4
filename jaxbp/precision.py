"""Mixed precision: a compute-dtype policy and dynamic loss scaling.

The recipe of Micikevicius et al., "Mixed Precision Training" (ICLR 2018):

* **master weights** stay float32; each step casts them to the compute dtype
  (bfloat16 or float16) before the forward pass, and the gradient flows back
  through the cast to float32, where the optimizer updates the master copy;
* the network output is cast back to float32 before the loss, so the loss and
  its first cotangent are computed in float32;
* **loss scaling** (float16 only): float16 has 5 exponent bits, so small
  gradients underflow to zero. The loss is multiplied by ``S`` before the
  backward pass and the gradients divided by ``S`` after it. ``S`` is adjusted
  dynamically: if the gradients are not finite the update is skipped and ``S``
  halved; after ``period`` consecutive finite steps ``S`` is doubled. This is the
  algorithm of ``torch.cuda.amp.GradScaler`` and ``jmp.DynamicLossScale``
  (https://github.com/google-deepmind/jmp). bfloat16 has float32's exponent
  range and needs no scaling.

Policies by name: ``"f32"`` (everything float32), ``"bf16"``, ``"f16"`` (with
dynamic loss scaling).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxbp.core import Array, choose

__all__ = [
    "DynamicLossScale",
    "Policy",
    "adjust_loss_scale",
    "all_finite",
    "cast_floating",
    "get_policy",
    "policy_names",
]


def cast_floating(tree: Any, dtype: Any) -> Any:
    """``tree`` with every floating-point leaf cast to ``dtype`` (others untouched).

    Leaves that already have ``dtype`` are returned as they are, so a float32
    policy adds no conversion to the traced computation.
    """

    def cast(leaf):
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating) and leaf.dtype != dtype:
            return leaf.astype(dtype)
        return leaf

    return jax.tree_util.tree_map(cast, tree)


def all_finite(tree: Any) -> Array:
    """A scalar bool: True iff every element of every floating leaf of ``tree`` is finite."""
    flags = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(flags)) if flags else jnp.array(True)


# --------------------------------------------------------------------------- loss scale


class DynamicLossScale(NamedTuple):
    """State of dynamic loss scaling; both leaves are arrays, so it jits and checkpoints."""

    loss_scale: Array  # () float32: S, the factor the loss is multiplied by
    counter: Array  # () int32: consecutive finite steps since S last changed

    @classmethod
    def create(cls, initial_scale: float = 2.0**15) -> DynamicLossScale:
        """A fresh state with ``S = initial_scale`` (a power of two, so scaling is exact)."""
        if not initial_scale >= 1.0:
            raise ValueError(f"DynamicLossScale: initial_scale must be >= 1, got {initial_scale!r}")
        return cls(jnp.asarray(initial_scale, jnp.float32), jnp.asarray(0, jnp.int32))

    def scale(self, loss: Array) -> Array:
        """``S * loss`` (differentiate this; every gradient is then ``S`` times too large)."""
        return loss * self.loss_scale.astype(loss.dtype)

    def unscale(self, grads: Any) -> Any:
        """``grads / S`` leaf by leaf, in each leaf's own dtype."""
        inverse = 1.0 / self.loss_scale
        return jax.tree_util.tree_map(lambda g: g * inverse.astype(g.dtype), grads)


def adjust_loss_scale(
    state: DynamicLossScale,
    grads_finite: Array,
    *,
    period: int = 2000,
    factor: float = 2.0,
    min_scale: float = 1.0,
) -> DynamicLossScale:
    """The next loss-scale state after a step whose gradients were ``grads_finite``.

    Non-finite: ``S <- max(S / factor, min_scale)``, counter reset (the caller skips
    the update). Finite: counter + 1; when it reaches ``period``, ``S <- S * factor``
    and the counter resets.
    """
    counter = state.counter + 1
    grow = counter >= period
    finite_scale = jnp.where(grow, state.loss_scale * factor, state.loss_scale)
    finite_counter = jnp.where(grow, 0, counter)
    shrunk = jnp.maximum(state.loss_scale / factor, min_scale)
    return DynamicLossScale(
        loss_scale=jnp.where(grads_finite, finite_scale, shrunk).astype(jnp.float32),
        counter=jnp.where(grads_finite, finite_counter, 0).astype(jnp.int32),
    )


# ------------------------------------------------------------------------------ policy


class Policy(NamedTuple):
    """Which dtype each part of a training step uses."""

    name: str
    compute_dtype: Any  # params and inputs are cast to this for the forward/backward pass
    param_dtype: Any = jnp.float32  # master weights and optimizer state
    output_dtype: Any = jnp.float32  # network output, loss and metrics
    loss_scaling: bool = False  # dynamic loss scaling (needed for float16)

    def cast_to_compute(self, tree: Any) -> Any:
        """Floating leaves of ``tree`` in the compute dtype."""
        return cast_floating(tree, self.compute_dtype)

    def cast_to_output(self, tree: Any) -> Any:
        """Floating leaves of ``tree`` in the output dtype."""
        return cast_floating(tree, self.output_dtype)

    def initial_loss_scale(self) -> DynamicLossScale | None:
        """A fresh :class:`DynamicLossScale` for float16, ``None`` when no scaling is needed."""
        return DynamicLossScale.create() if self.loss_scaling else None


_POLICIES: dict[str, Policy] = {
    "f32": Policy("f32", jnp.float32),
    "bf16": Policy("bf16", jnp.bfloat16),
    "f16": Policy("f16", jnp.float16, loss_scaling=True),
}


def policy_names() -> list[str]:
    """The policy names :func:`get_policy` accepts."""
    return list(_POLICIES)


def get_policy(name: str | Policy) -> Policy:
    """The policy called ``name`` (``"f32"``, ``"bf16"``, ``"f16"``), or ``name`` itself if a Policy."""
    if isinstance(name, Policy):
        return name
    return choose("get_policy", "precision", name, _POLICIES)
