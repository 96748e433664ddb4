r"""Vanishing and exploding gradients across *time*: :math:`\|\partial L/\partial h_t\|` of recurrent cells.

Protocol: ``time_seeds`` independent cells per setting (vmapped), each fed its own batch of
standard-normal input sequences :math:`x \in \mathbb R^{B\times T\times F}`; the loss reads only
the last hidden state, :math:`L = \langle h_T, v\rangle` for a random direction :math:`v`, so
every :math:`\partial L/\partial h_t` with :math:`t < T` arrives through the recurrence.  The
norms come from :func:`jaxbp.diagnostics.hidden_gradient_norms` (the hand-written BPTT of
:func:`jaxbp.ops.rnn` / :func:`jaxbp.ops.lstm`).  The *rate* is the change of
:math:`\ln\|\partial L/\partial h_t\|` per step back in time (negative = vanishing), fitted like
the depth rates (:func:`~jaxbp.studies.vanishing._stats.growth_rates`).

* **tanh RNN** over the recurrent weight variance: :math:`W_{hh} \sim \mathcal N(0, \sigma_w^2/H)`,
  :math:`W_{ih} \sim \mathcal N(0, \sigma_x^2/F)`, :math:`b \sim \mathcal N(0, \sigma_b^2)`.  Mean-field
  theory treats the input like a bias of variance :math:`\sigma_x^2` (unit-variance inputs), so the
  pre-activation length has the fixed point :math:`q^*` of the feed-forward map with
  :math:`\sigma_b^2 + \sigma_x^2`, and each step back multiplies the squared gradient by
  :math:`\chi = \sigma_w^2\,\mathbb E[\tanh'(\sqrt{q^*}z)^2]`: predicted rate :math:`\tfrac12\ln\chi`
  (Chen, Pennington & Schoenholz 2018; it ignores that the weights are shared across steps).
* **LSTM** over the forget-gate bias :math:`b_f` (weights :math:`\mathcal N(0, 1/\text{fan-in})`, other
  biases 0): a larger :math:`b_f` opens the forget gate, :math:`\partial c_t/\partial c_{t-1} = f_t`,
  and the gradient decays more slowly (Gers et al. 2000; Jozefowicz et al. 2015).  No closed form is
  claimed; the report compares the rates of the largest and the smallest bias.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import diagnostics, theory
from jaxbp.studies.vanishing._config import AcrossTimeConfig, Laws, setting_key
from jaxbp.studies.vanishing._progress import tick
from jaxbp.studies.vanishing._stats import difference, estimate, fit_window, growth_rates, rows


def rnn_params(key: jax.Array, features: int, hidden: int, sigma_w2: float, sigma_x2: float, sigma_b2: float) -> dict:
    """One tanh RNN's ``{"w_ih", "w_hh", "b"}`` at the given variances (float64 under x64)."""
    k_ih, k_hh, k_b = jax.random.split(key, 3)
    dtype = jnp.result_type(float)
    return {
        "w_ih": jax.random.normal(k_ih, (features, hidden), dtype) * math.sqrt(sigma_x2 / features),
        "w_hh": jax.random.normal(k_hh, (hidden, hidden), dtype) * math.sqrt(sigma_w2 / hidden),
        "b": jax.random.normal(k_b, (hidden,), dtype) * math.sqrt(sigma_b2),
    }


def lstm_params(key: jax.Array, features: int, hidden: int, forget_bias: float) -> dict:
    """One LSTM's ``{"w_ih", "w_hh", "b"}`` (gates i, f, g, o), weights of variance 1/fan-in, bias ``b_f`` on f."""
    k_ih, k_hh = jax.random.split(key)
    dtype = jnp.result_type(float)
    return {
        "w_ih": jax.random.normal(k_ih, (features, 4 * hidden), dtype) / math.sqrt(features),
        "w_hh": jax.random.normal(k_hh, (hidden, 4 * hidden), dtype) / math.sqrt(hidden),
        "b": jnp.zeros(4 * hidden, dtype).at[hidden : 2 * hidden].set(forget_bias),
    }


@functools.cache
def _norms_function(cell: str) -> Callable:
    """``jit(vmap(hidden_gradient_norms))`` over seeds for ``L = <h_T, v>``; compiled once per cell."""

    def one_seed(params: dict, x: jax.Array, direction: jax.Array) -> jax.Array:
        return diagnostics.hidden_gradient_norms(cell, params, x, lambda hs, _: jnp.sum(hs[:, -1] * direction))

    return jax.jit(jax.vmap(one_seed))


def _measure(
    cell: str, make_params: Callable[[jax.Array], dict], config: AcrossTimeConfig, laws: Laws, key: jax.Array
) -> dict:
    """``||dL/dh_t||`` of ``config.seeds`` cells and their rates; call under ``jax.enable_x64(True)``."""
    seeds, steps, width = config.seeds, config.steps, config.width
    k_params, k_x, k_v = jax.random.split(key, 3)
    with jax.threefry_partitionable(False):  # vmapped draws compile ~5x faster (see _gradients._draw_per_key)
        params = jax.vmap(make_params)(jax.random.split(k_params, seeds))
        x = jax.random.normal(k_x, (seeds, config.batch, steps, config.features), jnp.float64)
        direction = jax.random.normal(k_v, (seeds, config.batch, width), jnp.float64)
    norms = np.asarray(_norms_function(cell)(params, x, direction), np.float64)  # (seeds, T)
    tick(cell)
    with np.errstate(divide="ignore"):
        log_norms = np.log(norms)
    window = fit_window(steps, laws.fit_skip_fraction)
    rates = growth_rates(log_norms, window)
    return {
        "cell": cell,
        "time_steps": steps,
        "width": width,
        "fit_window": list(window),
        "grad_norm": rows(norms),
        "log_first_to_last": estimate(log_norms[:, 0] - log_norms[:, -1]),
        "measured_rate": estimate(rates),
        "measured_rate_per_seed": np.asarray(rates, np.float64).tolist(),
    }


def across_time(config: AcrossTimeConfig, laws: Laws, key: jax.Array) -> dict[str, Any]:
    """The tanh RNN over ``config.rnn_sigma_w2s`` (with its mean-field prediction) and the LSTM over ``lstm_forget_biases``."""
    features, width = config.features, config.width
    sigma_x2, sigma_b2 = config.rnn_sigma_x2, laws.critical_sigma_b2
    rnn = []
    for sigma_w2 in config.rnn_sigma_w2s:
        record = _measure(
            "rnn",
            functools.partial(
                rnn_params, features=features, hidden=width, sigma_w2=sigma_w2, sigma_x2=sigma_x2, sigma_b2=sigma_b2
            ),
            config,
            laws,
            setting_key(key, "rnn", sigma_w2),
        )
        chi = theory.chi1(sigma_w2, sigma_b2 + sigma_x2, "tanh")
        predicted = 0.5 * math.log(chi)
        rnn.append({
            **record,
            "label": f"tanh RNN, σw²={sigma_w2:g}",
            "sigma_w2": sigma_w2, "sigma_x2": sigma_x2, "sigma_b2": sigma_b2,
            "q_star": theory.fixed_point_q(sigma_w2, sigma_b2 + sigma_x2, "tanh"),
            "chi": chi,
            "predicted_rate": predicted,
            "rate_error": difference(record["measured_rate"], predicted),
        })  # fmt: skip
    lstm = [
        {
            **_measure(
                "lstm",
                functools.partial(lstm_params, features=features, hidden=width, forget_bias=bias),
                config,
                laws,
                setting_key(key, "lstm", bias),
            ),
            "label": f"LSTM, forget bias {bias:g}",
            "forget_bias": bias,
        }
        for bias in config.lstm_forget_biases
    ]
    low, high = (min(lstm, key=lambda r: r["forget_bias"]), max(lstm, key=lambda r: r["forget_bias"]))
    return {
        "rnn": rnn,
        "lstm": lstm,
        "forget_bias_effect": {
            "low": low["forget_bias"],
            "high": high["forget_bias"],
            "rate_difference": difference(high["measured_rate"], low["measured_rate"]),
        },
    }
