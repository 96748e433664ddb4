"""Tests for ``jaxbp.diagnostics.gradient_statistics``.

Expectations are computed independently of the module: the per-layer errors δ_l by
``jax.grad`` through the *reference* math (every custom VJP stripped) of the loss as a
function of zero perturbations added at the taps, the weight gradients by ``jax.grad``
through the reference with the dense layers located by hand in the params tuple, the
output error by its closed form (softmax - onehot) / B, activation statistics with NumPy.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxbp import diagnostics, models, nn, ops
from jaxbp.gradcheck import strip_custom_vjps
from jaxbp.init import mean_field

BATCH, IN_FEATURES, CLASSES = 6, 5, 4


def _data(seed: int = 0):
    x = jax.random.normal(jax.random.PRNGKey(seed), (BATCH, IN_FEATURES))
    y = jnp.arange(BATCH) % CLASSES
    return x, y


def _reference_gradients(network, params, x, y, *, state=None, train=False):
    """(dL/dparams, {tap: dL/dtap}) by jax.grad through the reference math."""
    record = {}
    network.apply(params, x, state=state, train=train, record=record)
    zeros = {name: jnp.zeros_like(z) for name, z in record.items()}

    def loss_of(params, taps):
        return ops.softmax_cross_entropy(network.apply(params, x, state=state, train=train, taps=taps), y)

    return jax.jit(jax.grad(strip_custom_vjps(loss_of), argnums=(0, 1)))(params, zeros)


def _norm(a) -> float:
    return float(np.linalg.norm(np.asarray(a).ravel()))


# Where each dense layer's params sit in an models.mlp params tuple, located by hand:
# hidden layer l is serial(dense, tap, [batch_norm,] activation) -> params[l-1][0];
# a residual hidden layer is residual(serial(that serial)) -> params[l-1][0][0][0];
# the output dense layer is params[L-1].
def _plain_dense(params, depth):
    return [params[l][0] for l in range(depth - 1)] + [params[depth - 1]]


def _residual_dense(params, depth):
    return [params[0][0]] + [params[l][0][0][0] for l in range(1, depth - 1)] + [params[depth - 1]]


ARCHITECTURES = {
    "tanh": (dict(activation_name="tanh", init=mean_field(1.76, 0.05)), _plain_dense),
    "relu-residual": (dict(activation_name="relu", init="he_normal", residual_blocks=True), _residual_dense),
    "sigmoid-batch-norm": (dict(activation_name="sigmoid", init="glorot_normal", batch_norm=True), _plain_dense),
}


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_delta_and_weight_gradients_equal_reference(x64, architecture):
    kwargs, dense_of = ARCHITECTURES[architecture]
    sizes = [7, 7, 7, 7, CLASSES]
    network = models.mlp(sizes, **kwargs)
    params, _ = network.init(jax.random.PRNGKey(1), (BATCH, IN_FEATURES))
    x, y = _data()
    stateful = bool(jax.tree_util.tree_leaves(network.init_state(params)))  # batch norm's running statistics
    state = network.init_state(params)
    activation = None if stateful else kwargs["activation_name"]  # batch norm: the tap is not the activation's input
    stats = diagnostics.gradient_statistics(
        network, params, x, y, ops.softmax_cross_entropy, activation=activation, state=state, train=stateful
    )
    dparams, dtaps = _reference_gradients(network, params, x, y, state=state, train=stateful)

    assert stats.layer_names == tuple(f"z{l}" for l in range(1, len(sizes) + 1))
    expected_delta = np.array([_norm(dtaps[name]) for name in stats.layer_names])
    np.testing.assert_allclose(np.asarray(stats.delta_norm), expected_delta, rtol=1e-10)
    dense = dense_of(dparams, len(sizes))
    np.testing.assert_allclose(np.asarray(stats.weight_grad_norm), [_norm(d["w"]) for d in dense], rtol=1e-10)
    np.testing.assert_allclose(np.asarray(stats.bias_grad_norm), [_norm(d["b"]) for d in dense], rtol=1e-10, atol=1e-14)
    reference_loss = strip_custom_vjps(
        lambda p: ops.softmax_cross_entropy(network.apply(p, x, state=state, train=stateful), y)
    )(params)
    np.testing.assert_allclose(float(stats.loss), float(reference_loss), rtol=1e-12)


def test_output_delta_is_softmax_minus_onehot_over_batch(x64):
    network = models.mlp([9, 9, CLASSES], "relu", "he_normal")
    params, _ = network.init(jax.random.PRNGKey(2), (BATCH, IN_FEATURES))
    x, y = _data(3)
    stats = diagnostics.gradient_statistics(network, params, x, y, ops.softmax_cross_entropy)
    logits = np.asarray(network.apply(params, x), np.float64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    expected = (p - np.eye(CLASSES)[np.asarray(y)]) / BATCH
    np.testing.assert_allclose(float(stats.delta_norm[-1]), np.linalg.norm(expected), rtol=1e-12)


def test_batch_norm_makes_hidden_bias_gradients_vanish(x64):
    # Training-mode batch norm subtracts the batch mean, so z_l + b_l and z_l give the same
    # output: dL/db_l = 0 exactly for every hidden layer (not for the output layer).
    network = models.mlp([8, 8, 8, CLASSES], "tanh", mean_field(1.0, 0.5), batch_norm=True)
    params, _ = network.init(jax.random.PRNGKey(4), (BATCH, IN_FEATURES))
    x, y = _data(5)
    state = network.init_state(params)
    stats = diagnostics.gradient_statistics(network, params, x, y, ops.softmax_cross_entropy, state=state, train=True)
    assert np.all(np.asarray(stats.bias_grad_norm[:-1]) < 1e-12 * np.asarray(stats.weight_grad_norm[:-1]))
    assert stats.bias_grad_norm[-1] > 0
    moved = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), stats.new_state, state)
    assert any(jax.tree_util.tree_leaves(moved)), "training mode must update the running statistics"


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_activation_statistics_match_numpy(x64, activation):
    network = models.mlp([16, 16, 16, CLASSES], activation, mean_field(9.0, 0.3))  # large weights: some saturation
    params, _ = network.init(jax.random.PRNGKey(6), (BATCH, IN_FEATURES))
    x, y = _data(7)
    stats = diagnostics.gradient_statistics(network, params, x, y, ops.softmax_cross_entropy, activation=activation)
    record = {}
    network.apply(params, x, record=record)
    phi = {"tanh": np.tanh, "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "relu": lambda z: np.maximum(z, 0)}[activation]
    blocked = {
        "tanh": lambda z: np.abs(np.tanh(z)) > 0.99,
        "sigmoid": lambda z: (phi(z) < 0.01) | (phi(z) > 0.99),
        "relu": lambda z: z <= 0,
    }[activation]
    for l, name in enumerate(stats.layer_names[:-1]):
        z = np.asarray(record[name])
        np.testing.assert_allclose(float(stats.preactivation_mean[l]), z.mean(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(float(stats.preactivation_std[l]), z.std(), rtol=1e-12)
        np.testing.assert_allclose(float(stats.activation_mean[l]), phi(z).mean(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(float(stats.activation_std[l]), phi(z).std(), rtol=1e-12)
        assert float(stats.saturated_fraction[l]) == pytest.approx(blocked(z).mean(), abs=1e-12)
        assert float(stats.saturated_unit_fraction[l]) == pytest.approx(blocked(z).all(axis=0).mean(), abs=1e-12)
    assert float(np.max(np.asarray(stats.saturated_fraction[:-1]))) > 0, "the test should exercise saturation"
    for field in (stats.activation_mean, stats.activation_std, stats.saturated_fraction, stats.saturated_unit_fraction):
        assert np.isnan(float(field[-1])), "the output layer has no activation"


def test_jit_and_vmap_over_seeds_match_single_calls():
    network = models.mlp([12, 12, 12, CLASSES], "sigmoid", "glorot_normal")
    keys = jax.random.split(jax.random.PRNGKey(8), 3)
    per_seed = [network.init(key, (BATCH, IN_FEATURES))[0] for key in keys]
    stacked = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *per_seed)
    x, y = _data(9)
    fn = functools.partial(
        diagnostics.gradient_statistics, network, loss_fn=ops.softmax_cross_entropy, activation="sigmoid"
    )
    batched = jax.jit(jax.vmap(lambda p: fn(p, x, y)))(stacked)
    assert batched.delta_norm.shape == (3, 4) and batched.layer_names == ("z1", "z2", "z3", "z4")
    single_fn = jax.jit(fn)
    for seed, params in enumerate(per_seed):
        single = single_fn(params, x, y)
        for field in ("delta_norm", "weight_grad_norm", "bias_grad_norm", "saturated_fraction"):
            np.testing.assert_allclose(getattr(batched, field)[seed], getattr(single, field), rtol=1e-5, atol=1e-7)


@settings(max_examples=6)
@given(
    sizes=st.lists(st.integers(2, 6), min_size=1, max_size=5),
    activation=st.sampled_from(["tanh", "sigmoid", "relu", "leaky_relu", "elu"]),
    seed=st.integers(0, 2**16),
)
def test_delta_equals_reference_on_random_mlps(sizes, activation, seed):
    with jax.enable_x64(True):
        network = models.mlp([*sizes, CLASSES], activation, mean_field(2.0, 0.1))
        params, _ = network.init(jax.random.PRNGKey(seed), (BATCH, IN_FEATURES))
        x, y = _data(seed)
        stats = jax.jit(
            functools.partial(
                diagnostics.gradient_statistics, network, loss_fn=ops.softmax_cross_entropy, activation=activation
            )
        )(params, x, y)
        _, dtaps = _reference_gradients(network, params, x, y)
        np.testing.assert_allclose(
            np.asarray(stats.delta_norm),
            [_norm(dtaps[f"z{l}"]) for l in range(1, len(sizes) + 2)],
            rtol=1e-10,
            atol=1e-300,
        )


def test_weighted_layer_params_in_forward_order():
    network = models.mlp([5, 6, 6, 3], "relu", residual_blocks=True, batch_norm=True)
    params, _ = network.init(jax.random.PRNGKey(0), (2, 4))
    shapes = [d["w"].shape for d in diagnostics.weighted_layer_params(network, params)]
    assert shapes == [(4, 5), (5, 6), (6, 6), (6, 3)]


def test_weighted_layers_are_found_by_kind_not_by_params_keys():
    """A layer whose params happen to be {"w", "b"} but is not a weighted kind is not paired with a tap."""
    impostor = nn.stateless(
        lambda key, shape: ({"w": jnp.ones(()), "b": jnp.zeros(())}, shape), lambda p, x, **kw: x, nn.of_kind("scale")
    )
    network = nn.serial(nn.dense(4), nn.tap("z1"), impostor, nn.dense(CLASSES), nn.tap("z2"))
    params, _ = network.init(jax.random.PRNGKey(0), (BATCH, IN_FEATURES))
    assert [d["w"].shape for d in diagnostics.weighted_layer_params(network, params)] == [
        (IN_FEATURES, 4),
        (4, CLASSES),
    ]


def test_unpaired_taps_give_no_weight_norms_but_still_delta():
    network = nn.serial(nn.dense(4), nn.activation("relu"), nn.dense(CLASSES), nn.tap("logits"))
    params, _ = network.init(jax.random.PRNGKey(0), (BATCH, IN_FEATURES))
    x, y = _data()
    stats = diagnostics.gradient_statistics(network, params, x, y, ops.softmax_cross_entropy)
    assert stats.layer_names == ("logits",) and stats.weight_grad_norm is None and stats.bias_grad_norm is None
    assert float(stats.delta_norm[0]) > 0


def test_bad_input_is_rejected_with_clear_errors():
    x, y = _data()
    no_taps = nn.serial(nn.dense(CLASSES))
    params, _ = no_taps.init(jax.random.PRNGKey(0), (BATCH, IN_FEATURES))
    with pytest.raises(ValueError, match="no nn.tap"):
        diagnostics.gradient_statistics(no_taps, params, x, y, ops.softmax_cross_entropy)
    network = models.mlp([4, CLASSES], "gelu")
    params, _ = network.init(jax.random.PRNGKey(0), (BATCH, IN_FEATURES))
    with pytest.raises(ValueError, match="no saturation rule.*gelu"):
        diagnostics.gradient_statistics(network, params, x, y, ops.softmax_cross_entropy, activation="gelu")
    undeclared = nn.serial(nn.Layer(nn.dense(4).init, nn.dense(4).forward, nn.no_parameters), nn.tap("z1"))
    params, _ = undeclared.init(jax.random.PRNGKey(0), (BATCH, IN_FEATURES))
    with pytest.raises(ValueError, match="must declare its kind"):
        diagnostics.gradient_statistics(undeclared, params, x, y, ops.softmax_cross_entropy)
    with pytest.raises(ValueError, match="unknown activation"):
        diagnostics.saturated("softsign", x)
