r"""Per-layer back-propagated error of random networks, measured with the hand-written backward rules.

Protocol: networks are fed a fixed batch of digits images in float64 and the loss is the
projection :math:`\mathcal L = \langle f(x), v\rangle` on a random Gaussian direction :math:`v`
(one per seed), so :math:`\delta_L = v` is independent of the weights, as mean-field theory
assumes.  :math:`\|\delta_l\|` comes from :func:`jaxbp.diagnostics.gradient_statistics` (zero
perturbations at each tap; one backward pass), vmapped over ``seeds`` independent networks.

A *growth rate* is the change of :math:`\ln\|\delta\|` per backward step,
:math:`r = \ln\|\delta_l\| - \ln\|\delta_{l+1}\|` (negative = vanishing towards the input);
predicted :math:`\tfrac12\ln\chi_1`; measured as minus the least-squares slope of
:math:`\ln\|\delta_l\|` against :math:`l` over the fit window, per seed, reported as mean and
standard error over seeds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import diagnostics, nn, theory
from jaxbp import init as initializers
from jaxbp.studies.vanishing._config import FiniteWidthConfig, GridConfig, Laws
from jaxbp.studies.vanishing._networks import NetworkSpec, ResolvedInit, build_network, resolve_init, setting_key
from jaxbp.studies.vanishing._progress import tick
from jaxbp.studies.vanishing._reference import layer_laws, reference_log_delta_norms
from jaxbp.studies.vanishing._stats import (
    difference,
    estimate,
    fit_window,
    growth_rates,
    log_variance_estimate,
    rows,
    variance_estimate,
)


def _draw_per_key(sampler: Callable, shape: tuple[int, ...], dtype: Any, keys: jax.Array) -> jax.Array:
    """``sampler(key, shape, dtype)`` for each key of a ``(layers, seeds)`` array of keys, stacked to
    ``(layers, seeds, *shape)``: one eager call for all the layers of one shape, vmapped over both
    axes (a call per layer spent most of the spectra's time dispatching small eager ops); layer
    ``j``'s draws are the contiguous block ``[j]``.

    Drawn with the non-partitionable threefry: the study never shards these draws, and XLA:CPU
    compiles the vmapped partitionable sampler 5-8x slower (a (16, 16) normal: 3.3 s vs 0.45 s),
    which in small runs was a third of the study's time.  The streams differ from the default
    mode's; both are threefry2x32.

    Float64 parameters are drawn in float32 and widened: a float64 normal costs twice the random
    bits and a float64 inverse error function, 2.8x the time (drawing the weights was most of the
    gradient grid's time); the networks still run in float64, with weights that are float32
    samples of the same distribution.
    """
    draw_dtype = jnp.float32 if jnp.dtype(dtype) == jnp.float64 else dtype
    with jax.threefry_partitionable(False):
        return jax.vmap(jax.vmap(lambda key: sampler(key, shape, draw_dtype)))(keys).astype(dtype)


def init_stacked(
    network: nn.Layer,
    dense: initializers.DenseInit,
    keys: jax.Array,
    input_shape: tuple[int, ...],
) -> Any:
    """``len(keys)`` parameter sets stacked on a leading seed axis, drawn like ``network.init`` would.

    Every dense weight (bias) of every seed is drawn by ``dense.weights`` (``dense.bias``) with its
    own key, split from ``keys[0]`` per group of leaves of one shape, all the layers of one shape
    at once (:func:`_draw_per_key`), so the eager compilations are reused
    by every setting of that depth and width, whatever the sampler's scale.  Other leaves (batch
    norm's scale and offset) take their deterministic initial values from one ``network.init``.
    """
    template = jax.eval_shape(lambda key: network.init(key, input_shape)[0], keys[0])
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    seeds = keys.shape[0]
    groups: dict[tuple[str, tuple[int, ...]], list[int]] = {}
    for index, (path, leaf) in enumerate(paths):
        name = getattr(path[-1], "key", None)
        groups.setdefault((name if name in ("w", "b") else "other", leaf.shape), []).append(index)
    leaves: list[Any] = [None] * len(paths)
    for number, ((name, shape), indices) in enumerate(groups.items()):
        if name == "other":
            fixed = jax.tree_util.tree_leaves(network.init(keys[0], input_shape)[0])
            for i in indices:
                leaves[i] = jnp.broadcast_to(fixed[i], (seeds, *shape))
            continue
        sampler = dense.weights if name == "w" else dense.bias
        group_keys = jax.random.split(jax.random.fold_in(keys[0], number), seeds * len(indices))
        group_keys = group_keys.reshape(len(indices), seeds, *group_keys.shape[1:])
        drawn = np.asarray(_draw_per_key(sampler, shape, paths[indices[0]][1].dtype, group_keys))
        for j, i in enumerate(indices):  # sliced on the host: an eager unstack into 200 layers compiles 2 s
            leaves[i] = jnp.asarray(drawn[j])
    return jax.tree_util.tree_unflatten(treedef, leaves)


def init_states(network: nn.Layer, params: Any) -> Any:
    return jax.vmap(network.init_state)(params)


def _projection_loss(outputs: jax.Array, direction: jax.Array) -> jax.Array:
    r""":math:`\langle f(x), v\rangle`: its gradient with respect to the outputs is the direction :math:`v`."""
    return jnp.sum(outputs * direction)


@functools.cache
def statistics_function(activation: str, depth: int, width: int, residual: bool, batch_norm: bool) -> Callable:
    """``jit(vmap(gradient_statistics))`` over seeds, compiled once per architecture (all inits share it).

    Batch-norm networks run in training mode (batch statistics) without activation statistics
    (their tap sits before the normalization).
    """
    spec = NetworkSpec(activation, "glorot", residual, batch_norm)
    network = build_network(spec, depth, width, width, initializers.dense_init("glorot_normal"))

    def one_seed(params: Any, state: Any, x: jax.Array, direction: jax.Array) -> diagnostics.GradientStatistics:
        return diagnostics.gradient_statistics(
            network, params, x, direction, _projection_loss,
            activation=None if batch_norm else activation, state=state, train=batch_norm,
        )  # fmt: skip

    return jax.jit(jax.vmap(one_seed, in_axes=(0, 0, None, 0)))


def setting_fields(spec: NetworkSpec, resolved: ResolvedInit, depth: int, width: int) -> dict[str, Any]:
    """The fields that identify a setting in every JSON record."""
    return {
        "name": spec.name,
        "label": spec.label or spec.name,
        "baseline": spec.baseline,
        "activation": spec.activation,
        "init": spec.init,
        "residual": spec.residual,
        "batch_norm": spec.batch_norm,
        "depth": depth,
        "width": width,
        "sigma_w2": resolved.sigma_w2,
        "sigma_b2": resolved.sigma_b2,
    }


def delta_statistics(
    spec: NetworkSpec,
    depth: int,
    width: int,
    laws: Laws,
    x: jax.Array,
    key: jax.Array,
    seeds: int,
) -> tuple[ResolvedInit, diagnostics.GradientStatistics]:
    """:func:`jaxbp.diagnostics.gradient_statistics` of ``seeds`` networks of ``spec`` (own keys per setting).

    The seeds run in equal chunks whose parameters fit in :data:`CHUNK_BYTES` (wide, deep settings
    of ``--full`` would otherwise hold every seed's weights at once: 64 seeds of 60 layers of
    512 x 512 in float64 are 8 GiB); each chunk draws from its own keys.
    """
    resolved = resolve_init(spec, width, laws)
    network = build_network(spec, depth, width, width, resolved.dense)
    init_key, direction_key = jax.random.split(setting_key(key, spec.name, depth, width))
    keys = jax.random.split(init_key, seeds)
    directions = jax.random.normal(direction_key, (seeds, x.shape[0], width), x.dtype)
    statistics = statistics_function(spec.activation, depth, width, spec.residual, spec.batch_norm)
    chunk = seed_chunk(seeds, depth * width * (width + 1) * x.dtype.itemsize)  # every layer as a hidden one
    parts = []
    for start in range(0, seeds, chunk):
        params = init_stacked(network, resolved.dense, keys[start : start + chunk], tuple(x.shape))
        parts.append(statistics(params, init_states(network, params), x, directions[start : start + chunk]))
    return resolved, jax.tree_util.tree_map(lambda *chunks: jnp.concatenate(chunks), *parts)


#: The most parameter bytes :func:`delta_statistics` draws and runs at once.
CHUNK_BYTES = 1 << 30


def seed_chunk(seeds: int, bytes_per_seed: int, budget: int = CHUNK_BYTES) -> int:
    """The largest divisor of ``seeds`` whose parameters fit in ``budget`` bytes (at least 1): equal
    chunks, so the statistics compile once."""
    return max(d for d in range(1, seeds + 1) if seeds % d == 0 and (d == 1 or d * bytes_per_seed <= budget))


def measure_gradients(
    spec: NetworkSpec, depth: int, grid: GridConfig, laws: Laws, x: jax.Array, key: jax.Array
) -> dict[str, Any]:
    """Per-layer gradient statistics of ``spec`` at ``depth`` over ``grid.seeds`` networks of width
    ``grid.width``, with its mean-field predictions (plain networks).  Call under ``jax.enable_x64(True)``."""
    width = grid.width
    resolved, stats = delta_statistics(spec, depth, width, laws, x, key, grid.seeds)
    tick(f"{spec.name} L={depth}")
    delta = np.asarray(stats.delta_norm, dtype=np.float64)  # (seeds, L)
    with np.errstate(divide="ignore"):
        log_delta = np.log(delta)
    window = fit_window(depth, laws.fit_skip_fraction)
    rates = growth_rates(log_delta, window)
    weights = None if stats.weight_grad_norm is None else np.asarray(stats.weight_grad_norm, np.float64)
    record: dict[str, Any] = {
        **setting_fields(spec, resolved, depth, width),
        "fit_window": list(window),
        "delta_norm": rows(delta),
        "weight_grad_norm": rows(weights),
        "preactivation_mean": rows(stats.preactivation_mean),
        "preactivation_std": rows(stats.preactivation_std),
        "saturated_fraction": rows(stats.saturated_fraction),
        "log_first_to_last": estimate(log_delta[:, 0] - log_delta[:, -1]),
        "log_weight_first_to_last": None if weights is None else estimate(np.log(weights[:, 0] / weights[:, -1])),
        "saturated_mean": None
        if stats.saturated_fraction is None
        else estimate(np.mean(np.asarray(stats.saturated_fraction)[:, :-1], axis=1)),
        "measured_rate_per_seed": rates.tolist(),
        "measured_rate": estimate(rates),
    }
    if spec.has_mean_field_theory:
        record.update(_mean_field_predictions(spec, resolved, depth, stats, log_delta, window, record["measured_rate"]))
        reference = reference_log_delta_norms(
            spec, depth, width, laws, x, setting_key(key, "reference", spec.name, depth, width), grid.seeds
        )
        reference_rates = growth_rates(reference, window)
        record["reference_rate_per_seed"] = reference_rates.tolist()
        record["reference_rate"] = estimate(reference_rates)
        record["reference_error"] = difference(record["measured_rate"], record["reference_rate"])
        record["finite_width_offset"] = difference(record["reference_rate"], record["layerwise_predicted_rate"])
    return record


def _mean_field_predictions(
    spec: NetworkSpec,
    resolved: ResolvedInit,
    depth: int,
    stats: diagnostics.GradientStatistics,
    log_delta: np.ndarray,
    window: tuple[int, int],
    measured: dict[str, Any],
) -> dict[str, Any]:
    r"""Fixed-point (:math:`\chi_1`) and layer-wise predictions for a plain network, and the errors."""
    sigma_w2, sigma_b2, activation = (
        resolved.sigma_w2,
        resolved.sigma_b2,
        spec.activation,
    )
    mean, std = (
        np.asarray(stats.preactivation_mean),
        np.asarray(stats.preactivation_std),
    )
    q1 = float(np.mean(mean[:, 0] ** 2 + std[:, 0] ** 2))  # E[z_1^2] over batch, units and seeds
    profile = theory.log_delta_profile(q1, depth, sigma_w2, sigma_b2, activation)
    predicted = theory.predicted_log_slope(sigma_w2, sigma_b2, activation)
    layerwise = float(growth_rates(profile, window))
    anchor = float(np.mean(log_delta[:, -1]))
    return {
        "q1": q1,
        "q_star": theory.fixed_point_q(sigma_w2, sigma_b2, activation),
        "chi1": theory.chi1(sigma_w2, sigma_b2, activation),
        "predicted_rate": predicted,
        "layerwise_predicted_rate": layerwise,
        "rate_error": difference(measured, predicted),
        "layerwise_rate_error": difference(measured, layerwise),
        "predicted_delta_norm": np.exp(anchor + profile).tolist(),
    }


def finite_width(finite: FiniteWidthConfig, laws: Laws, x_one: jax.Array, key: jax.Array) -> list[dict[str, Any]]:
    r""":math:`\mathrm{Var}\,\ln(\|\delta_1\|/\|\delta_L\|)` over ``finite.seeds`` single-input networks per
    (activation, width, depth), against the exact width-N reference of the same setting
    (:mod:`._reference`; the verdict compares log variances) and the derived first-order variance
    (:func:`jaxbp.theory.log_gradient_variance`: the backward factors and the forward length's
    fluctuations, from this input's :math:`q_1`), with its deep-network rate :math:`\kappa`."""
    specs = [
        NetworkSpec("relu", "he", label="ReLU + He"),
        NetworkSpec("tanh", "critical", label="tanh at criticality"),
    ]
    records = []
    for spec in specs:
        for width in finite.widths:
            for depth in finite.depths:
                resolved, stats = delta_statistics(spec, depth, width, laws, x_one, key, finite.seeds)
                log_delta = np.log(np.asarray(stats.delta_norm, dtype=np.float64))
                reference = reference_log_delta_norms(
                    spec,
                    depth,
                    width,
                    laws,
                    x_one,
                    setting_key(key, "reference", spec.name, depth, width),
                    finite.reference_factor * finite.seeds,
                )
                tick(f"{spec.name} N={width} L={depth}")
                first, _ = layer_laws(spec, resolved, x_one.shape[-1], width, laws)
                q1 = first.scale**2 * float(jnp.sum(x_one**2)) + first.bias_std**2  # z_1 given x: iid N(0, q1)
                sigma_w2, sigma_b2 = resolved.sigma_w2, resolved.sigma_b2
                measured_ratio, reference_ratio = log_delta[:, 0] - log_delta[:, -1], reference[:, 0] - reference[:, -1]
                records.append({
                    **setting_fields(spec, resolved, depth, width),
                    "depth_over_width": depth / width,
                    "log_ratio_per_seed": measured_ratio.tolist(),
                    "reference_log_ratio_per_seed": reference_ratio.tolist(),
                    "log_ratio_variance": variance_estimate(measured_ratio),
                    "reference_variance": variance_estimate(reference_ratio),
                    "log_variance_error": difference(log_variance_estimate(measured_ratio), log_variance_estimate(reference_ratio)),
                    "log_ratio_mean": estimate(measured_ratio),
                    "kappa": theory.log_gradient_variance_rate(sigma_w2, sigma_b2, spec.activation),
                    "predicted_variance": theory.log_gradient_variance(depth, width, q1, sigma_w2, sigma_b2, spec.activation),
                })  # fmt: skip
    return records
