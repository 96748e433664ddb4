"""Embedding: scatter-add backward vs jax.grad(reference) and finite differences, repeated ids,
out-of-range ids (eager error; NaN rows under jit so the loss is NaN), nn.embedding."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxbp import nn, ops
from jaxbp.gradcheck import check_gradients


@settings(max_examples=4)
@given(
    vocabulary=st.integers(1, 6), dim=st.integers(1, 3), ids_shape=st.lists(st.integers(1, 4), max_size=2).map(tuple)
)
def test_embedding_matches_reference_and_finite_differences(x64, vocabulary, dim, ids_shape):
    params = {"w": jax.random.normal(jax.random.key(vocabulary), (vocabulary, dim))}
    ids = jax.random.randint(jax.random.key(dim), ids_shape, 0, vocabulary)
    check_gradients(ops.embedding, params, ids).assert_ok()


def test_repeated_ids_accumulate():
    params = {"w": jnp.zeros((4, 2))}
    ids = jnp.array([[1, 1, 3], [1, 0, 3]])
    dy = jnp.arange(12.0).reshape(2, 3, 2)
    _, vjp = jax.vjp(lambda p: ops.embedding(p, ids), params)
    (grads,) = vjp(dy)
    expected = np.zeros((4, 2))
    for (b, t), v in np.ndenumerate(np.asarray(ids)):
        expected[v] += np.asarray(dy[b, t])
    np.testing.assert_array_equal(grads["w"], expected)
    assert not np.any(grads["w"][2])


@pytest.mark.parametrize("bad", [-1, 5, 255])
def test_out_of_range_ids_raise_eagerly(bad):
    params = {"w": jnp.ones((5, 3))}
    with pytest.raises(ValueError, match=rf"embedding: id {bad} is out of range for a vocabulary of 5 \(valid: 0..4\)"):
        ops.embedding(params, jnp.array([0, bad]))


def test_out_of_range_ids_under_jit_poison_the_loss():
    params = {"w": jnp.ones((5, 3))}

    @jax.jit
    def loss_and_grad(params, ids):
        return jax.value_and_grad(lambda p: jnp.mean(ops.embedding(p, ids)))(params)

    loss, grads = loss_and_grad(params, jnp.array([0, 1, 2]))
    assert np.isfinite(loss)
    for bad in (-1, 5):
        loss, grads = loss_and_grad(params, jnp.array([0, bad, 2]))
        assert np.isnan(loss)
        assert np.all(np.isfinite(grads["w"]))  # the valid rows' gradients stay finite; the guard stops on the loss


def test_bad_arguments():
    with pytest.raises(TypeError, match="embedding: ids must be integers"):
        ops.embedding({"w": jnp.ones((5, 3))}, jnp.array([0.0]))
    with pytest.raises(ValueError, match='embedding: params must be a dict with the key "w"'):
        ops.embedding({"weight": jnp.ones((5, 3))}, jnp.array([0]))
    with pytest.raises(ValueError, match="embedding: params"):
        ops.embedding({"w": jnp.ones((5,))}, jnp.array([0]))
    with pytest.raises(ValueError, match="embedding: dim must be a positive int"):
        nn.embedding(5, 0)


def test_nn_embedding_shapes_and_dtype():
    layer = nn.embedding(7, 4)
    params, shape = layer.init(jax.random.key(0), (2, 3))
    assert shape == (2, 3, 4)
    chex.assert_shape(params["w"], (7, 4))
    y = layer.apply(params, jnp.array([[0, 6, 3], [1, 1, 1]]))
    chex.assert_shape(y, (2, 3, 4))
    np.testing.assert_array_equal(y[1, 0], params["w"][1])
