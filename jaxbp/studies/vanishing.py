r"""The vanishing/exploding-gradient study, measured against mean-field theory.

Four experiments on fully-connected networks built with :func:`jaxbp.models.mlp`; every
gradient comes from jaxbp's hand-written backward rules, read per layer by
:func:`jaxbp.diagnostics.gradient_statistics` (one backward pass per network):

1. **Gradient norm per layer vs depth.**  For each activation (sigmoid, tanh, ReLU), each
   initialization (naive ``N(0, 0.01^2)``, Glorot, He, orthogonal, critical
   :math:`\sigma_w^2`) and each depth :math:`L`, the back-propagated error
   :math:`\|\delta_l\| = \|\partial\mathcal L/\partial z_l\|` at every layer, averaged
   (geometrically) over seeds, with the mean-field prediction drawn over it.
2. **Remedies at depth 50** (residual connections, batch norm, ReLU + He, tanh at
   criticality, orthogonal + tanh at criticality) and **exploding gradients** (tanh,
   :math:`\sigma_w^2 = 4`), whose training is compared with and without gradient-norm
   clipping (Pascanu et al. 2013).
3. **Training curves** on the digits data: a deep sigmoid network vs ReLU + He vs residual
   vs batch norm (vs tanh at criticality), plain SGD with momentum.
4. **Theory vs measurement**: for each setting of (1), the measured growth rate of
   :math:`\ln\|\delta_l\|` per backward step against :math:`\tfrac12\ln\chi_1`.

Measurement protocol (experiments 1, 2, 4)
------------------------------------------
* Networks are ``width``-wide at every layer (``width -> width`` output layer too), fed a
  fixed batch of digits images, in float64 (so that :math:`10^{-200}` is still a number).
* The loss is the projection :math:`\mathcal L = \langle f(x), v\rangle` on a random
  Gaussian direction :math:`v` (one per seed): :math:`\delta_L = v` is independent of the
  weights, as mean-field theory assumes, and every :math:`\delta_l` is a random-direction
  vector-Jacobian product of the network.
* Mean-field theory (Schoenholz et al. 2017; :mod:`jaxbp.theory`) for weights
  :math:`W_{ij}\sim\mathcal N(0,\sigma_w^2/N)` and biases :math:`\mathcal N(0,\sigma_b^2)`:
  :math:`\mathbb E\|\delta_l\|^2 = \chi(q_l)\,\mathbb E\|\delta_{l+1}\|^2` with
  :math:`\chi(q) = \sigma_w^2\,\mathbb E_z[\phi'(\sqrt q z)^2]` and :math:`q_{l+1} =
  \sigma_w^2\mathbb E_z[\phi(\sqrt{q_l}z)^2] + \sigma_b^2`; at the fixed point
  :math:`q^*`, :math:`\chi = \chi_1`.
* **Convention**: a *growth rate* is the change of :math:`\ln\|\delta\|` per backward step,
  :math:`r = \ln\|\delta_l\| - \ln\|\delta_{l+1}\|` (the norm, not its square; positive =
  exploding towards the input, negative = vanishing), as in
  :func:`jaxbp.theory.predicted_log_slope`.  Predicted: :math:`r = \tfrac12\ln\chi_1`.
  Measured: minus the least-squares slope of :math:`\ln\|\delta_l\|` against :math:`l`
  over the layers :math:`l \in [1 + s, L - s]`, :math:`s = \max(1, \mathrm{round}(f L))`
  (``fit_skip_fraction`` :math:`f`), per seed; reported as mean and standard deviation
  over seeds.  The *layer-wise* prediction iterates the length map from the measured
  :math:`q_1` instead of assuming :math:`q_l = q^*`, and is fitted over the same window.
* :math:`\sigma_w^2` of each scheme for the ``width x width`` layers: naive
  :math:`0.01^2 N`, Glorot 1, He 2, orthogonal (gain 1) 1 (an orthogonal matrix has the
  same second moment; mean-field theory sees only :math:`\sigma_w^2`), critical: the
  :math:`\sigma_w^2` with :math:`\chi_1 = 1` at :math:`\sigma_b^2 = 0.05`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbp import data, diagnostics, models, nn, ops, theory
from jaxbp import init as initializers

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_OUT",
    "INIT_SCHEMES",
    "OUTPUT_FILES",
    "PRESETS",
    "NetworkSpec",
    "ResolvedInit",
    "StudyConfig",
    "StudyConfigError",
    "add_arguments",
    "build_network",
    "fit_window",
    "growth_rates",
    "mean_field_log_profile",
    "measure_gradients",
    "prepare_output_dir",
    "resolve_init",
    "run",
    "run_study",
    "train_network",
]

ACTIVATIONS = ("sigmoid", "tanh", "relu")
#: The initializations of experiment 1 (see :func:`resolve_init`).
INIT_SCHEMES = ("naive", "glorot", "he", "orthogonal", "critical")
#: Further initializations for the named settings of experiments 2 and 3.
_EXTRA_INITS = ("mean_field", "orthogonal_critical")
DEFAULT_OUT = Path("results") / "vanishing"
Progress = Callable[[str], None]


# ============================================================================ config


class StudyConfigError(ValueError):
    """A :class:`StudyConfig` with an invalid value (the CLI reports it without a traceback)."""


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Everything the study does, in one place (all of it is written to ``results.json``).

    Gradient measurement (experiments 1, 2, 4): ``depths`` x ``activations`` x ``inits``,
    ``width``-wide networks, ``batch_size`` digits images, ``seeds`` networks per setting.
    Remedies and the exploding-gradient profile at depth ``remedy_depth``.  Training
    (experiment 3 and clipping): ``train_depth`` x ``train_width`` networks with 10 outputs,
    SGD with ``momentum``, ``train_seeds`` seeds vmapped together.
    """

    depths: tuple[int, ...] = (10, 20, 50)
    activations: tuple[str, ...] = ACTIVATIONS
    inits: tuple[str, ...] = INIT_SCHEMES
    width: int = 256
    batch_size: int = 64
    seeds: int = 4
    naive_stddev: float = 0.01
    critical_sigma_b2: float = 0.05
    fit_skip_fraction: float = 0.1
    remedy_depth: int = 50
    exploding_sigma_w2: float = 4.0
    train_depth: int = 20
    train_width: int = 128
    train_epochs: int = 20
    train_batch_size: int = 64
    train_seeds: int = 2
    learning_rate: float = 0.01
    momentum: float = 0.9
    clip_norm: float = 1.0
    clipping_learning_rates: tuple[float, ...] = (0.01, 0.02, 0.05)
    seed: int = 0

    def __post_init__(self) -> None:
        def positive_ints(name: str, values: Sequence[int], minimum: int = 1) -> None:
            if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values):
                raise StudyConfigError(f"StudyConfig: {name} must be non-empty ints >= {minimum}, got {values!r}")

        positive_ints("depths", self.depths, minimum=4)
        positive_ints("remedy_depth/train_depth", (self.remedy_depth, self.train_depth), minimum=4)
        for name in ("width", "batch_size", "seeds", "train_width", "train_epochs", "train_batch_size", "train_seeds"):
            positive_ints(name, (getattr(self, name),))
        for name, allowed, values in (("activations", ACTIVATIONS, self.activations), ("inits", INIT_SCHEMES, self.inits)):
            unknown = [v for v in values if v not in allowed]
            if not values or unknown:
                raise StudyConfigError(f"StudyConfig: {name} must be a non-empty subset of {allowed}, got {values!r}")
        if not 0.0 <= self.fit_skip_fraction < 0.5:
            raise StudyConfigError(f"StudyConfig: fit_skip_fraction must lie in [0, 0.5), got {self.fit_skip_fraction}")
        for name in ("naive_stddev", "exploding_sigma_w2", "learning_rate", "clip_norm"):
            if not getattr(self, name) > 0:
                raise StudyConfigError(f"StudyConfig: {name} must be > 0, got {getattr(self, name)}")
        if not self.clipping_learning_rates or any(not lr > 0 for lr in self.clipping_learning_rates):
            raise StudyConfigError(f"StudyConfig: clipping_learning_rates must be positive, got {self.clipping_learning_rates}")
        if self.critical_sigma_b2 < 0 or not 0 <= self.momentum < 1:
            raise StudyConfigError("StudyConfig: critical_sigma_b2 must be >= 0 and momentum in [0, 1)")

    def replace(self, **changes: Any) -> StudyConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


#: ``default``: < 5 minutes on 2 CPU cores.  ``full``: the complete grid (L up to 100, more
#: seeds and epochs).  ``tiny``: seconds; for the test suite.
PRESETS: dict[str, StudyConfig] = {
    "default": StudyConfig(),
    "full": StudyConfig(depths=(10, 20, 50, 100), seeds=8, batch_size=128, train_epochs=40, train_seeds=4),
    "tiny": StudyConfig(
        depths=(4, 6),
        width=16,
        batch_size=8,
        seeds=2,
        remedy_depth=6,
        train_depth=4,
        train_width=16,
        train_epochs=2,
        train_batch_size=128,
        train_seeds=1,
        clipping_learning_rates=(0.05,),
    ),
}


# ============================================================================ networks


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """A network family: activation, initialization and architecture (depth comes later).

    ``init`` is one of :data:`INIT_SCHEMES`, ``"mean_field"`` (Gaussian with the given
    ``sigma_w2``, ``sigma_b2``) or ``"orthogonal_critical"`` (orthogonal weights with gain
    :math:`\\sqrt{\\sigma_w^{2*}}` and bias variance ``critical_sigma_b2``; Pennington et al. 2017).
    """

    activation: str
    init: str
    residual: bool = False
    batch_norm: bool = False
    sigma_w2: float | None = None
    sigma_b2: float = 0.0
    label: str = ""

    def __post_init__(self) -> None:
        if self.activation not in nn.ACTIVATIONS:
            raise ValueError(f"NetworkSpec: unknown activation {self.activation!r}; choose one of {sorted(nn.ACTIVATIONS)}")
        if self.init not in INIT_SCHEMES + _EXTRA_INITS:
            raise ValueError(f"NetworkSpec: unknown init {self.init!r}; choose one of {INIT_SCHEMES + _EXTRA_INITS}")
        if self.init == "mean_field" and self.sigma_w2 is None:
            raise ValueError("NetworkSpec: init='mean_field' needs sigma_w2")

    @property
    def name(self) -> str:
        """A short identifier, e.g. ``"sigmoid-glorot-residual"``."""
        parts = [self.activation, self.init if self.init != "mean_field" else f"sw2={self.sigma_w2:g}"]
        return "-".join(parts + ["residual"] * self.residual + ["batchnorm"] * self.batch_norm)

    @property
    def has_mean_field_theory(self) -> bool:
        """Plain networks only: the theory does not cover skip connections or normalization."""
        return not (self.residual or self.batch_norm)


class ResolvedInit(NamedTuple):
    """The initializer of a spec and the mean-field variances of its ``width x width`` layers."""

    dense: initializers.DenseInit
    sigma_w2: float
    sigma_b2: float


def resolve_init(spec: NetworkSpec, width: int, config: StudyConfig) -> ResolvedInit:
    r"""The :class:`jaxbp.init.DenseInit` of ``spec`` and its :math:`(\sigma_w^2, \sigma_b^2)`.

    For a ``width x width`` layer: naive :math:`\sigma_w^2 = s^2 N`, Glorot
    :math:`N\cdot 2/(N+N) = 1`, He 2, orthogonal (gain 1) 1, critical
    :math:`\sigma_w^{2*}(\sigma_b^2)` from :func:`jaxbp.theory.critical_sigma_w2`.
    """
    if spec.init == "naive":
        return ResolvedInit(initializers.dense_init("normal", stddev=config.naive_stddev), config.naive_stddev**2 * width, 0.0)
    if spec.init == "glorot":
        return ResolvedInit(initializers.dense_init("glorot_normal"), 1.0, 0.0)
    if spec.init == "he":
        return ResolvedInit(initializers.dense_init("he_normal"), 2.0, 0.0)
    if spec.init == "orthogonal":
        return ResolvedInit(initializers.dense_init("orthogonal", gain=1.0), 1.0, 0.0)
    if spec.init == "mean_field":
        assert spec.sigma_w2 is not None
        return ResolvedInit(initializers.mean_field(spec.sigma_w2, spec.sigma_b2), spec.sigma_w2, spec.sigma_b2)
    sigma_b2 = config.critical_sigma_b2
    sigma_w2 = theory.critical_sigma_w2(sigma_b2, spec.activation)
    if spec.init == "critical":
        return ResolvedInit(initializers.mean_field(sigma_w2, sigma_b2), sigma_w2, sigma_b2)
    # orthogonal_critical
    dense = initializers.DenseInit(initializers.orthogonal(math.sqrt(sigma_w2)), initializers.normal(math.sqrt(sigma_b2)))
    return ResolvedInit(dense, sigma_w2, sigma_b2)


def build_network(spec: NetworkSpec, depth: int, width: int, outputs: int, dense: initializers.DenseInit) -> nn.Layer:
    """``models.mlp([width] * (depth - 1) + [outputs])``: ``depth`` dense layers, taps ``z1..z{depth}``."""
    return models.mlp(
        [width] * (depth - 1) + [outputs],
        spec.activation,
        dense,
        residual_blocks=spec.residual,
        batch_norm=spec.batch_norm,
    )


def _init_stacked(network: nn.Layer, keys: jax.Array, input_shape: tuple[int, ...]) -> Any:
    """One parameter set per key, stacked on a leading seed axis.

    Initialized eagerly, one seed at a time: every initializer op is compiled once per shape
    and cached, which is far cheaper than compiling a depth-100 ``init`` under ``jit``.
    """
    sets = [network.init(key, input_shape)[0] for key in keys]
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *sets)


def _init_states(network: nn.Layer, params: Any) -> Any:
    return jax.vmap(network.init_state)(params) if nn.is_stateful(network) else None


# ============================================================================ measurement


def fit_window(depth: int, skip_fraction: float) -> tuple[int, int]:
    """The layers ``(first, last)`` (1-based, inclusive) the growth rate is fitted over:
    ``s = max(1, round(skip_fraction * depth))`` layers are skipped at each end."""
    skip = max(1, round(skip_fraction * depth))
    first, last = 1 + skip, depth - skip
    if last - first < 1:
        raise ValueError(f"fit_window: depth {depth} leaves fewer than 2 layers after skipping {skip} at each end")
    return first, last


def growth_rates(log_norms: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    r"""Minus the least-squares slope of ``log_norms[..., l-1]`` against ``l`` over ``window``.

    ``log_norms`` has shape ``(..., L)`` (entry ``l - 1`` is :math:`\ln\|\delta_l\|`); the
    result has shape ``(...)``: the change of :math:`\ln\|\delta\|` per backward step
    (negative = vanishing).  Rows with a non-finite value in the window give NaN.
    """
    first, last = window
    layers = np.arange(first, last + 1, dtype=np.float64)
    values = np.asarray(log_norms, dtype=np.float64)[..., first - 1 : last]
    centered = layers - layers.mean()
    with np.errstate(invalid="ignore"):  # rows holding -inf (an underflowed norm) become NaN
        slope = np.sum(centered * (values - values.mean(axis=-1, keepdims=True)), axis=-1) / np.sum(centered**2)
    return np.where(np.all(np.isfinite(values), axis=-1), -slope, np.nan)


def _chi(q: float, sigma_w2: float, activation: str) -> float:
    r""":math:`\chi(q) = \sigma_w^2\,\mathbb E_z[\phi'(\sqrt q z)^2]` at a given (not fixed-point) ``q``."""
    _, dphi = theory.activation_and_derivative(activation)
    return sigma_w2 * theory.gaussian_expectation(lambda u: dphi(u) ** 2, q)


def mean_field_log_profile(q1: float, depth: int, sigma_w2: float, sigma_b2: float, activation: str) -> np.ndarray:
    r"""Layer-wise mean-field prediction of :math:`\ln(\|\delta_l\|/\|\delta_L\|)`, ``l = 1..L``.

    Starting from the first layer's measured :math:`q_1 = \mathbb E[z_1^2]`, iterate the
    length map :math:`q_{l+1} = \sigma_w^2\mathbb E[\phi(\sqrt{q_l}z)^2] + \sigma_b^2` and
    accumulate :math:`\ln\|\delta_l\| = \ln\|\delta_{l+1}\| + \tfrac12\ln\chi(q_l)`
    (:math:`\delta_l = \phi'(z_l)\odot W_{l+1}^\top\delta_{l+1}` uses :math:`q_l`).  With
    :math:`q_1 = q^*` it is :math:`\tfrac12 (L-l)\ln\chi_1`.
    """
    qs = [float(q1)]
    for _ in range(depth - 2):
        qs.append(theory.length_map(qs[-1], sigma_w2, sigma_b2, activation))
    half_log_chi = np.array([0.5 * math.log(_chi(q, sigma_w2, activation)) for q in qs])  # layers 1..L-1
    return np.append(np.cumsum(half_log_chi[::-1])[::-1], 0.0)


def _projection_loss(outputs: jax.Array, direction: jax.Array) -> jax.Array:
    r""":math:`\langle f(x), v\rangle`: its gradient with respect to the outputs is the random direction :math:`v`."""
    return jnp.sum(outputs * direction)


@functools.lru_cache(maxsize=None)
def _statistics_function(activation: str, depth: int, width: int, residual: bool, batch_norm: bool) -> Callable:
    """``jit(vmap(gradient_statistics))`` over seeds, compiled once per architecture.

    ``apply`` does not depend on the initializer, so every init scheme of one architecture
    shares this function.  Batch-norm networks run in training mode (batch statistics), and
    report no activation statistics: their tap sits before the normalization.
    """
    spec = NetworkSpec(activation, "glorot", residual, batch_norm)
    network = build_network(spec, depth, width, width, initializers.dense_init("glorot_normal"))

    def one_seed(params: Any, state: Any, x: jax.Array, direction: jax.Array) -> diagnostics.GradientStatistics:
        return diagnostics.gradient_statistics(
            network,
            params,
            x,
            direction,
            _projection_loss,
            activation=None if batch_norm else activation,
            state=state,
            train=batch_norm,
        )

    return jax.jit(jax.vmap(one_seed, in_axes=(0, 0, None, 0)))


def _rows(array: Any) -> list | None:
    return None if array is None else np.asarray(array, dtype=np.float64).tolist()


def _geometric_mean(norms: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.exp(np.mean(np.log(norms), axis=0))


def _setting_fields(spec: NetworkSpec, resolved: ResolvedInit, depth: int, width: int) -> dict[str, Any]:
    """The fields that identify a setting in every JSON record."""
    return {
        "name": spec.name,
        "label": spec.label or spec.name,
        "activation": spec.activation,
        "init": spec.init,
        "residual": spec.residual,
        "batch_norm": spec.batch_norm,
        "depth": depth,
        "width": width,
        "sigma_w2": resolved.sigma_w2,
        "sigma_b2": resolved.sigma_b2,
    }


def measure_gradients(
    spec: NetworkSpec, depth: int, config: StudyConfig, x: jax.Array, init_keys: jax.Array, direction_key: jax.Array
) -> dict[str, Any]:
    """Per-layer gradient statistics of ``spec`` at ``depth``, one network per init key,
    plus its mean-field predictions (plain networks).  Call under ``jax.enable_x64(True)``.

    Returns a JSON-ready dict: the setting, per-seed per-layer norms, measured and predicted
    growth rates (see the module docstring for the conventions).
    """
    width = config.width
    resolved = resolve_init(spec, width, config)
    network = build_network(spec, depth, width, width, resolved.dense)
    params = _init_stacked(network, init_keys, tuple(x.shape))
    states = _init_states(network, params)
    directions = jax.random.normal(direction_key, (len(init_keys), x.shape[0], width), x.dtype)
    stats = _statistics_function(spec.activation, depth, width, spec.residual, spec.batch_norm)(params, states, x, directions)

    delta = np.asarray(stats.delta_norm, dtype=np.float64)  # (seeds, L)
    with np.errstate(divide="ignore"):
        log_delta = np.log(delta)
    window = fit_window(depth, config.fit_skip_fraction)
    rates = growth_rates(log_delta, window)
    record: dict[str, Any] = {
        **_setting_fields(spec, resolved, depth, width),
        "fit_window": list(window),
        "delta_norm": _rows(delta),
        "delta_norm_geometric_mean": _rows(_geometric_mean(delta)),
        "weight_grad_norm": _rows(stats.weight_grad_norm),
        "bias_grad_norm": _rows(stats.bias_grad_norm),
        "preactivation_mean": _rows(stats.preactivation_mean),
        "preactivation_std": _rows(stats.preactivation_std),
        "activation_mean": _rows(stats.activation_mean),
        "activation_std": _rows(stats.activation_std),
        "saturated_fraction": _rows(stats.saturated_fraction),
        "saturated_unit_fraction": _rows(stats.saturated_unit_fraction),
        "first_to_last_ratio": float(np.exp(np.mean(log_delta[:, 0] - log_delta[:, -1]))),
        "measured_rate_per_seed": rates.tolist(),
        "measured_rate": float(np.mean(rates)),
        "measured_rate_std": float(np.std(rates)),
    }
    if spec.has_mean_field_theory:
        record.update(_mean_field_predictions(spec, resolved, depth, stats, log_delta, window))
    return record


def _mean_field_predictions(
    spec: NetworkSpec,
    resolved: ResolvedInit,
    depth: int,
    stats: diagnostics.GradientStatistics,
    log_delta: np.ndarray,
    window: tuple[int, int],
) -> dict[str, Any]:
    """Fixed-point (:math:`\\chi_1`) and layer-wise predictions for a plain network."""
    sigma_w2, sigma_b2, activation = resolved.sigma_w2, resolved.sigma_b2, spec.activation
    mean, std = np.asarray(stats.preactivation_mean), np.asarray(stats.preactivation_std)
    q1 = float(np.mean(mean[:, 0] ** 2 + std[:, 0] ** 2))  # E[z_1^2] over batch, units and seeds
    profile = mean_field_log_profile(q1, depth, sigma_w2, sigma_b2, activation)
    chi = theory.chi1(sigma_w2, sigma_b2, activation)
    q_star = theory.fixed_point_q(sigma_w2, sigma_b2, activation)
    predicted = theory.predicted_log_slope(sigma_w2, sigma_b2, activation)
    anchor = float(np.mean(log_delta[:, -1]))
    return {
        "q1": q1,
        "q_star": q_star,
        "chi1": chi,
        "predicted_rate": predicted,
        "layerwise_predicted_rate": float(growth_rates(profile, window)),
        "predicted_delta_norm": np.exp(anchor + profile).tolist(),
        "fixed_point_delta_norm": (np.exp(anchor) * theory.predicted_delta_norms(depth, sigma_w2, sigma_b2, activation)).tolist(),
    }


# ============================================================================ training


def _make_optimizer(learning_rate: float, momentum: float, clip_norm: float | None) -> optax.GradientTransformation:
    sgd = optax.sgd(learning_rate, momentum=momentum)
    return sgd if clip_norm is None else optax.chain(optax.clip_by_global_norm(clip_norm), sgd)


def train_network(
    spec: NetworkSpec,
    depth: int,
    config: StudyConfig,
    dataset: data.Dataset,
    keys: jax.Array,
    *,
    learning_rate: float,
    clip_norm: float | None = None,
) -> dict[str, Any]:
    """Train one network per key (vmapped together) on ``dataset`` with SGD + momentum,
    optionally clipping the global gradient norm to ``clip_norm`` (Pascanu et al. 2013).

    Returns per-seed, per-epoch curves: mean training minibatch loss, test accuracy (eval
    mode), and the largest pre-clipping gradient norm of the epoch, plus the first step's
    gradient norm.  Batch-norm state is threaded through every step.
    """
    resolved = resolve_init(spec, config.train_width, config)
    network = build_network(spec, depth, config.train_width, dataset.num_classes, resolved.dense)
    batch_size = config.train_batch_size
    params = _init_stacked(network, keys, (batch_size, dataset.x_train.shape[1]))
    states = _init_states(network, params)
    optimizer = _make_optimizer(learning_rate, config.momentum, clip_norm)
    opt_states = jax.vmap(optimizer.init)(params)
    stateful = nn.is_stateful(network)

    def loss_fn(params: Any, state: Any, x: jax.Array, y: jax.Array) -> tuple[jax.Array, Any]:
        if stateful:
            logits, state = network.apply(params, x, state=state, train=True)
        else:
            logits = network.apply(params, x, train=True)
        return ops.softmax_cross_entropy(logits, y), state

    def step(params: Any, opt_state: Any, state: Any, x: jax.Array, y: jax.Array):
        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, state, loss, optax.tree.norm(grads)

    def accuracy(params: Any, state: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        logits = network.apply(params, x, state=state)[0] if stateful else network.apply(params, x)
        return jnp.mean(jnp.argmax(logits, axis=-1) == y)

    step = jax.jit(jax.vmap(step, in_axes=(0, 0, 0, None, None)))
    accuracy = jax.jit(jax.vmap(accuracy, in_axes=(0, 0, None, None)))

    losses, accuracies, grad_norms, first_grad_norm = [], [], [], None
    for epoch in range(config.train_epochs):
        epoch_losses, epoch_norms = [], []
        for xb, yb in data.batches(dataset.train, batch_size, key=config.seed * 100_003 + epoch, drop_remainder=True):
            params, opt_states, states, loss, norm = step(params, opt_states, states, xb, yb)
            epoch_losses.append(loss)
            epoch_norms.append(norm)
        if first_grad_norm is None:
            first_grad_norm = np.asarray(epoch_norms[0])
        losses.append(np.mean(np.stack(epoch_losses), axis=0))
        grad_norms.append(np.max(np.stack(epoch_norms), axis=0))
        accuracies.append(np.asarray(accuracy(params, states, *dataset.test)))
    curves = {name: np.stack(values, axis=1) for name, values in (("loss", losses), ("acc", accuracies), ("norm", grad_norms))}
    return {
        **_setting_fields(spec, resolved, depth, config.train_width),
        "name": spec.name + ("" if clip_norm is None else "-clipped"),
        "learning_rate": learning_rate,
        "clip_norm": clip_norm,
        "train_loss": _rows(curves["loss"]),  # (seeds, epochs)
        "test_accuracy": _rows(curves["acc"]),
        "max_grad_norm": _rows(curves["norm"]),
        "first_step_grad_norm": _rows(first_grad_norm),
        "final_test_accuracy": float(np.mean(curves["acc"][:, -1])),
        "final_train_loss": float(np.mean(curves["loss"][:, -1])),
    }


# ============================================================================ settings


def grid_specs(config: StudyConfig) -> list[NetworkSpec]:
    """Experiment 1: every activation x init of the config (plain networks)."""
    return [NetworkSpec(a, i, label=f"{a} + {i}") for a in config.activations for i in config.inits]


def remedy_specs(config: StudyConfig) -> list[NetworkSpec]:
    """Experiment 2: two vanishing baselines and the remedies, at ``remedy_depth``."""
    critical = f"σw²={theory.critical_sigma_w2(config.critical_sigma_b2, 'tanh'):.2f}, σb²={config.critical_sigma_b2:g}"
    return [
        NetworkSpec("sigmoid", "glorot", label="sigmoid + Glorot (no remedy)"),
        NetworkSpec("sigmoid", "glorot", residual=True, label="sigmoid + Glorot + residual"),
        NetworkSpec("sigmoid", "glorot", batch_norm=True, label="sigmoid + Glorot + batch norm"),
        NetworkSpec("relu", "glorot", label="ReLU + Glorot (no remedy)"),
        NetworkSpec("relu", "he", label="ReLU + He"),
        NetworkSpec("tanh", "critical", label=f"tanh at criticality ({critical})"),
        NetworkSpec("tanh", "orthogonal_critical", label=f"tanh + orthogonal at criticality ({critical})"),
    ]


def exploding_spec(config: StudyConfig) -> NetworkSpec:
    """tanh with :math:`\\sigma_w^2 = 4` (chaotic phase: :math:`\\chi_1 > 1`)."""
    s = config.exploding_sigma_w2
    sigma_b2 = config.critical_sigma_b2
    return NetworkSpec("tanh", "mean_field", sigma_w2=s, sigma_b2=sigma_b2, label=f"tanh, σw²={s:g}, σb²={sigma_b2:g}")


def training_specs(config: StudyConfig) -> list[NetworkSpec]:
    """Experiment 3: deep sigmoid vs ReLU + He vs residual vs batch norm vs tanh critical."""
    return [
        NetworkSpec("sigmoid", "glorot", label="sigmoid + Glorot"),
        NetworkSpec("relu", "he", label="ReLU + He"),
        NetworkSpec("sigmoid", "glorot", residual=True, label="sigmoid + Glorot + residual"),
        NetworkSpec("sigmoid", "glorot", batch_norm=True, label="sigmoid + Glorot + batch norm"),
        NetworkSpec("tanh", "critical", label="tanh at criticality"),
    ]


# ============================================================================ running

#: Every file the study writes into its output directory.
OUTPUT_FILES = (
    "results.json",
    "report.md",
    "slope_table.md",
    "gradient_norms_by_depth.png",
    "slopes_measured_vs_predicted.png",
    "remedies.png",
    "exploding_and_clipping.png",
    "training_curves.png",
)


def prepare_output_dir(out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Create ``out_dir``; refuse (``FileExistsError``) if it already holds files, unless
    ``overwrite`` -- then only the study's own files (:data:`OUTPUT_FILES`) are replaced."""
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"vanishing study: output path {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"vanishing study: {path} already holds results; choose a new --out directory "
                "or pass --overwrite to replace the study's files there"
            )
        for name in OUTPUT_FILES:
            (path / name).unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _environment() -> dict[str, Any]:
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _rate_summary(record: dict[str, Any]) -> str:
    text = f"rate {record['measured_rate']:+.3f}/layer"
    if "predicted_rate" in record:
        text += f" (theory {record['predicted_rate']:+.3f})"
    return text + f", |δ_1|/|δ_L| = {record['first_to_last_ratio']:.2e}"


def run_study(
    config: StudyConfig, out_dir: str | os.PathLike, *, overwrite: bool = False, progress: Progress | None = _stderr_progress
) -> dict[str, Any]:
    """Run all four experiments, write the outputs into ``out_dir``, return the results.

    Writes ``results.json`` (every number), PNG figures, ``report.md`` and ``slope_table.md``
    (see :data:`OUTPUT_FILES`).  ``progress`` receives one line per setting (``None``: silent).
    """
    from jaxbp.studies import vanishing_report  # matplotlib is imported only when needed

    out = prepare_output_dir(out_dir, overwrite)
    start = time.perf_counter()
    timing: dict[str, float] = {}

    def say(message: str) -> None:
        if progress is not None:
            progress(f"[{time.perf_counter() - start:7.1f}s] {message}")

    root = jax.random.PRNGKey(config.seed)
    init_key, direction_key, train_key = jax.random.split(root, 3)
    results: dict[str, Any] = {"config": config.to_dict(), "environment": _environment()}

    # ---- experiments 1, 2 (profiles) and 4: float64 gradient measurements
    with jax.enable_x64(True):
        x = jnp.asarray(data.digits("train", dtype=np.float64)[0][: config.batch_size])
        init_keys = jax.random.split(init_key, config.seeds)
        grid = []
        section = time.perf_counter()
        for depth in config.depths:
            for spec in grid_specs(config):
                record = measure_gradients(spec, depth, config, x, init_keys, direction_key)
                grid.append(record)
                say(f"grid     {spec.activation:>7s} {spec.init:<10s} L={depth:<3d} {_rate_summary(record)}")
        timing["gradient_grid_s"] = time.perf_counter() - section

        section = time.perf_counter()
        remedies = []
        for spec in remedy_specs(config) + [exploding_spec(config)]:
            record = measure_gradients(spec, config.remedy_depth, config, x, init_keys, direction_key)
            remedies.append(record)
            say(f"remedies {spec.label:<58s} L={config.remedy_depth} {_rate_summary(record)}")
        timing["remedies_s"] = time.perf_counter() - section
    results["grid"] = grid
    results["remedies"] = remedies[:-1]
    results["exploding_profile"] = remedies[-1]

    # ---- experiment 3 and clipping: float32 training on digits
    dataset = data.digits()
    train_keys = jax.random.split(train_key, config.train_seeds)
    section = time.perf_counter()
    training = []
    for spec in training_specs(config):
        record = train_network(spec, config.train_depth, config, dataset, train_keys, learning_rate=config.learning_rate)
        training.append(record)
        say(f"training {spec.label:<32s} L={config.train_depth} final test accuracy {record['final_test_accuracy']:.3f}")
    timing["training_s"] = time.perf_counter() - section

    section = time.perf_counter()
    clipping = []
    for learning_rate in config.clipping_learning_rates:
        for clip in (None, config.clip_norm):
            record = train_network(
                exploding_spec(config), config.train_depth, config, dataset, train_keys, learning_rate=learning_rate, clip_norm=clip
            )
            clipping.append(record)
            say(
                f"clipping lr={learning_rate:<5g} clip={clip!s:<5s} L={config.train_depth} "
                f"final test accuracy {record['final_test_accuracy']:.3f}"
            )
    timing["clipping_s"] = time.perf_counter() - section
    results["training"] = training
    results["clipping"] = clipping

    section = time.perf_counter()
    results["timing"] = timing
    vanishing_report.write_outputs(results, out)
    timing["report_s"] = time.perf_counter() - section
    timing["total_s"] = time.perf_counter() - start
    vanishing_report.write_outputs(results, out, figures=False)  # again, with the final timing
    say(f"done: wrote {len(OUTPUT_FILES)} files to {out}")
    return results


# ============================================================================ command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The study's options (shared by ``jaxbp vanishing`` and ``experiments/vanishing_gradients.py``)."""
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--full",
        action="store_true",
        help="the complete grid: depths 10 20 50 100, 8 seeds, batch 128, 40 epochs (about 8 minutes on 2 CPU cores; "
        "the default run takes about one)",
    )
    size.add_argument("--tiny", action="store_true", help="a half-minute smoke run (tiny widths and depths)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"output directory (default: a new {DEFAULT_OUT}/run-NNN, numbered after the existing runs); "
        "the study refuses to write into a directory that already holds files, unless --overwrite",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the study's own files in an existing --out directory")
    parser.add_argument("--depths", type=int, nargs="+", help="override the depths L of the gradient grid (each >= 4)")
    parser.add_argument("--seeds", type=int, help="override the number of networks per setting")
    parser.add_argument("--width", type=int, help="override the width of the measured networks")
    parser.add_argument("--epochs", type=int, help="override the number of training epochs")
    parser.add_argument("--seed", type=int, help="base random seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    """The preset chosen by ``--full``/``--tiny`` (else ``default``) with the overrides applied."""
    preset = "full" if args.full else "tiny" if args.tiny else "default"
    overrides = {
        "depths": tuple(args.depths) if args.depths else None,
        "seeds": args.seeds,
        "width": args.width,
        "train_epochs": args.epochs,
        "seed": args.seed,
    }
    return PRESETS[preset].replace(**{k: v for k, v in overrides.items() if v is not None})


def next_run_directory(parent: Path) -> Path:
    """``parent/run-NNN`` numbered one past the highest existing run, so reruns never collide."""
    numbers = [int(p.name[4:]) for p in parent.glob("run-*") if p.name[4:].isdigit()] if parent.is_dir() else []
    return parent / f"run-{max(numbers, default=0) + 1:03d}"


def run(args: argparse.Namespace) -> int:
    """Run the study from parsed arguments; returns the exit status."""
    out = args.out if args.out is not None else next_run_directory(DEFAULT_OUT)
    try:
        config = config_from_args(args)
        results = run_study(config, out, overwrite=args.overwrite, progress=None if args.quiet else _stderr_progress)
    except (FileExistsError, StudyConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"vanishing-gradient study written to {out} in {results['timing']['total_s']:.0f} s; see {Path(out) / 'report.md'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
