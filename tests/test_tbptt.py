"""Truncated BPTT: a chunk's gradient is full BPTT restricted to the chunk's window.

The restriction is computed independently: the sequence runs one step at a time with its
own copy ``theta + eps_t`` of the parameters per step, so ``dL_j/d eps_t`` is step t's
contribution to the full-BPTT gradient of chunk j's loss; summing it over the steps of
window j must give the truncated gradient.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxbp import ops
from jaxbp.train import make_truncated_bptt_step, truncated_bptt_gradients

BATCH, TIME, FEATURES, HIDDEN, CHUNK = 2, 6, 3, 4, 2


def _problem():
    keys = jax.random.split(jax.random.key(0), 6)
    params = {
        "w_ih": 0.8 * jax.random.normal(keys[0], (FEATURES, 4 * HIDDEN)),
        "w_hh": 0.8 * jax.random.normal(keys[1], (HIDDEN, 4 * HIDDEN)),
        "b": 0.3 * jax.random.normal(keys[2], (4 * HIDDEN,)),
    }
    x = jax.random.normal(keys[3], (BATCH, TIME, FEATURES))
    targets = jax.random.normal(keys[4], (BATCH, TIME, HIDDEN))
    h0, c0 = jax.random.normal(keys[5], (2, BATCH, HIDDEN))
    return params, x, targets, (h0, c0)


def chunk_loss(params, x, targets, state):
    hs, final = ops.lstm(params, x, state)
    return ops.mse(hs, targets), final


def per_step_contributions(params, x, targets, state, window):
    """d L_window / d eps_t for every step t, running the cell one step at a time."""

    def loss_of_eps(eps):
        outputs, carried = [], state
        for t in range(TIME):
            step_params = jax.tree_util.tree_map(lambda p, e, t=t: p + e[t], params, eps)
            hs, carried = ops.lstm(step_params, x[:, t : t + 1], carried)
            outputs.append(hs)
        hs = jnp.concatenate(outputs, axis=1)
        return ops.mse(hs[:, window], targets[:, window])

    eps = jax.tree_util.tree_map(lambda p: jnp.zeros((TIME, *p.shape), p.dtype), params)
    return jax.jit(jax.grad(loss_of_eps))(eps)


def test_chunk_gradient_is_full_bptt_restricted_to_its_window(x64):
    params, x, targets, state = _problem()
    result = jax.jit(truncated_bptt_gradients, static_argnums=(0, 5))(chunk_loss, params, x, targets, state, CHUNK)
    chex.assert_shape(result.losses, (TIME // CHUNK,))
    for j in range(TIME // CHUNK):
        window = slice(j * CHUNK, (j + 1) * CHUNK)
        contributions = per_step_contributions(params, x, targets, state, window)
        restricted = jax.tree_util.tree_map(lambda c, window=window: jnp.sum(c[window], axis=0), contributions)
        full = jax.tree_util.tree_map(lambda c: jnp.sum(c, axis=0), contributions)
        chunk_grads = jax.tree_util.tree_map(lambda g, j=j: g[j], result.grads)
        chex.assert_trees_all_close(chunk_grads, restricted, rtol=1e-10, atol=1e-12)
        if j > 0:  # the earlier steps do contribute to full BPTT: truncation changes the gradient
            assert not np.allclose(chunk_grads["w_hh"], full["w_hh"], rtol=1e-3)


def test_state_is_carried_forward_values_unchanged(x64):
    params, x, targets, state = _problem()
    result = truncated_bptt_gradients(chunk_loss, params, x, targets, state, CHUNK)
    hs, final = ops.lstm(params, x, state)
    chex.assert_trees_all_close(result.state, final, rtol=1e-12)
    for j in range(TIME // CHUNK):
        window = slice(j * CHUNK, (j + 1) * CHUNK)
        np.testing.assert_allclose(result.losses[j], ops.mse(hs[:, window], targets[:, window]), rtol=1e-12)


def test_one_chunk_is_full_bptt(x64):
    params, x, targets, state = _problem()
    result = truncated_bptt_gradients(chunk_loss, params, x, targets, state, TIME)
    full = jax.grad(lambda p: chunk_loss(p, x, targets, state)[0])(params)
    chex.assert_trees_all_close(jax.tree_util.tree_map(lambda g: g[0], result.grads), full, rtol=1e-12)


def test_step_updates_after_every_chunk(x64):
    params, x, targets, state = _problem()
    optimizer = optax.sgd(0.1)
    step = make_truncated_bptt_step(chunk_loss, optimizer, CHUNK)
    new_params, _, new_state, losses = step(params, optimizer.init(params), x, targets, state)
    expected, carried = params, state
    for j in range(TIME // CHUNK):
        window = slice(j * CHUNK, (j + 1) * CHUNK)
        (loss, carried), grads = jax.value_and_grad(chunk_loss, has_aux=True)(
            expected, x[:, window], targets[:, window], carried
        )
        np.testing.assert_allclose(losses[j], loss, rtol=1e-12)
        expected = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, expected, grads)
    chex.assert_trees_all_close(new_params, expected, rtol=1e-10)
    chex.assert_trees_all_close(new_state, carried, rtol=1e-10)


def test_bad_chunk_length():
    params, x, targets, state = _problem()
    with pytest.raises(ValueError, match="sequence length 6 is not a multiple of chunk_length 4"):
        truncated_bptt_gradients(chunk_loss, params, x, targets, state, 4)
    with pytest.raises(ValueError, match="chunk_length must be a positive int"):
        truncated_bptt_gradients(chunk_loss, params, x, targets, state, 0)
