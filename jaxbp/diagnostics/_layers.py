r"""Per-layer gradient and activation statistics from one backward pass.

For a network whose pre-activations pass :func:`jaxbp.nn.tap` layers (every
:func:`jaxbp.models.mlp` taps ``z_l`` as ``"z{l}"``, ``l = 1..L``),
:func:`gradient_statistics` returns, per tap ``l``:

* :math:`\|\delta_l\| = \|\partial L / \partial z_l\|` -- the back-propagated error at the
  pre-activation (Frobenius norm over the batch and the features);
* :math:`\|\partial L/\partial W_l\|` and :math:`\|\partial L/\partial b_l\|` -- the gradient
  norms of the dense layer that produces :math:`z_l`;
* the mean and standard deviation of :math:`z_l` and of :math:`h_l = \phi(z_l)`, and the
  fraction of saturated (sigmoid, tanh) or dead (ReLU) entries and units.

How :math:`\delta_l` is obtained: the loss is written as a function of the parameters
*and* of one perturbation :math:`e_l` per tap, added to the signal,
:math:`z_l \to z_l + e_l`.  Then

.. math::

    \frac{\partial L}{\partial e_l}\Big|_{e=0} = \frac{\partial L}{\partial z_l} = \delta_l ,

so a single ``jax.value_and_grad`` with respect to ``(params, e)`` at ``e = 0`` returns the
parameter gradients and every :math:`\delta_l` from the **same hand-written backward pass**
(the tap's ``ops.add`` passes the cotangent through unchanged).  No finite differences and
no extra backward passes; the whole function is ``jit``- and ``vmap``-compatible.

What is supported
-----------------
* Tap discovery is generic: every :func:`jaxbp.nn.tap` the forward pass reaches is found,
  in forward order, by tracing the network once with ``record=`` under
  :func:`jax.eval_shape` (no computation).
* Weight/bias gradient norms pair tap ``l`` with the ``l``-th weighted layer (dense,
  convolution, ...) in forward order, found by the *kind* of layer through
  :attr:`jaxbp.nn.Layer.parameter_groups` (never by the keys of a params dict: a
  normalization's ``{"gamma", "beta"}`` or a conv kernel are told apart by their layer).
  That is exact for :func:`jaxbp.models.mlp` -- plain, ``residual_blocks=True`` and
  batch-norm variants -- and for any network built the same way: one tap right after each
  weighted layer.  When the number of weighted layers differs from the number of taps,
  the weight/bias fields are ``None``.
* Activation statistics assume the models.mlp layout: every tap but the last feeds the named
  activation; the last tap is the network output (logits), so its activation entries
  are NaN.  In ``models.mlp(..., batch_norm=True)`` the tap sits *before* the normalization,
  so :math:`\phi(z_l)` is not what the network computes: pass ``activation=None`` there
  (:math:`\delta_l` and the weight gradients are unaffected).
* State (batch norm): pass ``state=`` (default ``network.init_state(params)``) and
  ``train=True`` for batch statistics; the updated state is returned in ``new_state``.
  Dropout: pass ``key=``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxbp import nn, reference
from jaxbp.core import Array, choose

__all__ = [
    "SATURATION_RULES",
    "WEIGHTED_KINDS",
    "GradientStatistics",
    "gradient_statistics",
    "saturated",
    "weighted_layer_params",
]

# Kinds of layer (see ``nn.Layer.parameter_groups``) whose params are a weight and a bias
# producing the pre-activation a tap follows.
WEIGHTED_KINDS = frozenset({"dense", "conv1d", "conv2d", "conv_transpose2d"})

LossFn = Callable[[Any, Any], Array]


def _relu_like_dead(z: Array) -> Array:
    return z <= 0


#: For each activation: ``(phi, is_saturated(z))``.  "Saturated" means the local derivative
#: is (nearly) zero, so the entry blocks the back-propagated error:
#: sigmoid outside ``[0.01, 0.99]`` (phi' < 0.0099), ``|tanh z| > 0.99`` (phi' < 0.0199),
#: ReLU (and leaky ReLU, whose slope drops to ``negative_slope``) dead at ``z <= 0``,
#: ELU with ``phi' = e^z < 0.01``.
SATURATION_RULES: dict[str, tuple[Callable[[Array], Array], Callable[[Array], Array]]] = {
    "sigmoid": (reference.sigmoid, lambda z: jnp.abs(reference.sigmoid(z) - 0.5) > 0.49),
    "tanh": (reference.tanh, lambda z: jnp.abs(reference.tanh(z)) > 0.99),
    "relu": (reference.relu, _relu_like_dead),
    "leaky_relu": (reference.leaky_relu, _relu_like_dead),
    "elu": (reference.elu, lambda z: z < jnp.log(0.01)),
}


def saturated(activation: str, z: Array) -> Array:
    """Boolean mask of the entries of ``z`` where ``activation`` is saturated or dead
    (see :data:`SATURATION_RULES`)."""
    return choose("saturated", "activation", activation, SATURATION_RULES)[1](z)


@dataclasses.dataclass(frozen=True)
class GradientStatistics:
    r"""Per-layer statistics of one forward/backward pass; a pytree (``layer_names`` is static).

    Every array field has shape ``(L,)`` (one entry per tap, in forward order; under
    ``vmap`` the mapped axes come first).  Norms are Frobenius norms over all axes.

    Attributes:
      layer_names: the tap names, e.g. ``("z1", ..., "zL")``.
      loss: the scalar loss.
      delta_norm: :math:`\|\delta_l\| = \|\partial L/\partial z_l\|`.
      weight_grad_norm, bias_grad_norm: :math:`\|\partial L/\partial W_l\|`,
        :math:`\|\partial L/\partial b_l\|`, or ``None`` when taps and dense layers do not pair.
      preactivation_mean, preactivation_std: mean and std of :math:`z_l` over batch and units.
      activation_mean, activation_std: of :math:`h_l = \phi(z_l)` (NaN for the output layer);
        ``None`` when no activation was named.
      saturated_fraction: fraction of entries of :math:`z_l` where :math:`\phi` is saturated
        (dead for ReLU); NaN for the output layer; ``None`` without activation.
      saturated_unit_fraction: fraction of units saturated for *every* example of the batch.
      new_state: the updated state of the network (``()`` when it has none).
    """

    layer_names: tuple[str, ...]
    loss: Array
    delta_norm: Array
    weight_grad_norm: Array | None
    bias_grad_norm: Array | None
    preactivation_mean: Array
    preactivation_std: Array
    activation_mean: Array | None = None
    activation_std: Array | None = None
    saturated_fraction: Array | None = None
    saturated_unit_fraction: Array | None = None
    new_state: Any = ()

    @property
    def num_layers(self) -> int:
        return len(self.layer_names)


_DATA_FIELDS = [f.name for f in dataclasses.fields(GradientStatistics) if f.name != "layer_names"]
jax.tree_util.register_dataclass(GradientStatistics, data_fields=_DATA_FIELDS, meta_fields=["layer_names"])


# ------------------------------------------------------------------ weighted layers


def weighted_layer_params(network: nn.Layer, params: Any) -> list[dict[str, Any]]:
    """The params of the weighted layers (kinds in :data:`WEIGHTED_KINDS`) of ``network``,
    in forward order. Applied to a gradient pytree it returns those layers' gradients."""
    return [group for kind, group in nn.checked_parameter_groups(network, params) if kind in WEIGHTED_KINDS]


# ------------------------------------------------------------------ statistics


def _norm(a: Array) -> Array:
    return jnp.sqrt(jnp.sum(jnp.square(a)))


def _activation_statistics(activation: str, zs: list[Array]) -> tuple[Array, Array, Array, Array]:
    """Mean/std of phi(z), saturated fraction of entries and of units, per tap (NaN last)."""
    phi, is_saturated = SATURATION_RULES[activation]
    rows = []
    dtype = zs[-1].dtype
    for z in zs[:-1]:
        h, mask = phi(z), is_saturated(z)
        units = jnp.all(mask.reshape(-1, mask.shape[-1]), axis=0)
        rows.append((jnp.mean(h), jnp.std(h), jnp.mean(mask.astype(dtype)), jnp.mean(units.astype(dtype))))
    nan = jnp.full((), jnp.nan, dtype)
    rows.append((nan, nan, nan, nan))
    return tuple(jnp.stack([r[i].astype(dtype) for r in rows]) for i in range(4))  # type: ignore[return-value]


def gradient_statistics(
    network: nn.Layer,
    params: Any,
    x: Array,
    y: Any,
    loss_fn: LossFn,
    *,
    activation: str | None = None,
    state: Any = None,
    train: bool = False,
    key: Array | None = None,
) -> GradientStatistics:
    r"""Per-layer gradient norms, :math:`\|\delta_l\|` and activation statistics in one pass.

    Computes ``jax.value_and_grad`` of

    .. math:: (\theta, e) \mapsto \text{loss\_fn}(f_\theta(x; z_l \to z_l + e_l), y)

    at :math:`e = 0` with respect to the parameters :math:`\theta` and the tap perturbations
    :math:`e`, so :math:`\partial L/\partial e_l = \delta_l` comes from the same manual
    backward pass as :math:`\partial L/\partial\theta`.  ``jit``/``vmap`` it freely (bind
    ``network``, ``loss_fn`` and ``activation`` with :func:`functools.partial`).

    Args:
      network: an :class:`jaxbp.nn.Layer` containing :func:`jaxbp.nn.tap` layers.
      params: its parameters.
      x: the input batch, ``(batch, ...)``.
      y: the targets, passed to ``loss_fn`` unchanged (labels, or a cotangent direction).
      loss_fn: ``loss_fn(outputs, y) -> scalar``, e.g. ``ops.softmax_cross_entropy``.
      activation: the hidden activation's name (a key of :data:`SATURATION_RULES`) for the
        activation statistics; ``None`` skips them.
      state: the network's state (default ``network.init_state(params)``: batch norm's
        running statistics at 0 and 1).
      train: training mode (batch-norm batch statistics, dropout on).
      key: PRNG key for dropout.

    Returns:
      a :class:`GradientStatistics` with one entry per tap.

    Raises:
      ValueError: if the network has no taps, a layer with parameters declares no kind, or
        ``activation`` is unknown.
    """
    if activation is not None and activation not in SATURATION_RULES:
        raise ValueError(
            f"gradient_statistics: no saturation rule for activation {activation!r}; "
            f"choose one of {sorted(SATURATION_RULES)} or pass activation=None"
        )
    if state is None:
        state = network.init_state(params)
    shapes = nn.tap_shapes(network, params, x, state, train=train, key=key)
    if not shapes:
        raise ValueError(
            "gradient_statistics: the network has no nn.tap layers, so there is no delta to report; "
            "build it with models.mlp or insert nn.tap(name) after each pre-activation"
        )
    names = tuple(shapes)
    zero_taps = {name: jnp.zeros(s.shape, s.dtype) for name, s in shapes.items()}

    def objective(params, taps):
        record: dict[str, Array] = {}
        outputs, new_state = network.forward(params, x, state, train=train, key=key, taps=taps, record=record)
        return loss_fn(outputs, y), (record, new_state)

    (loss, (record, new_state)), (dparams, dtaps) = jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)(
        params, zero_taps
    )
    zs = [record[name] for name in names]

    weighted_grads = weighted_layer_params(network, dparams)
    weight_norm = bias_norm = None
    if len(weighted_grads) == len(names):
        weight_norm = jnp.stack([_norm(g["w"]) for g in weighted_grads])
        bias_norm = jnp.stack([_norm(g["b"]) for g in weighted_grads])

    activation_fields: dict[str, Array] = {}
    if activation is not None:
        mean, std, fraction, unit_fraction = _activation_statistics(activation, zs)
        activation_fields = dict(
            activation_mean=mean, activation_std=std, saturated_fraction=fraction, saturated_unit_fraction=unit_fraction
        )

    return GradientStatistics(
        layer_names=names,
        loss=loss,
        delta_norm=jnp.stack([_norm(dtaps[name]) for name in names]),
        weight_grad_norm=weight_norm,
        bias_grad_norm=bias_norm,
        preactivation_mean=jnp.stack([jnp.mean(z) for z in zs]),
        preactivation_std=jnp.stack([jnp.std(z) for z in zs]),
        new_state=new_state,
        **activation_fields,
    )
