"""CNN and ResNet: registry, fully manual (ResNet + loss), float64 gradcheck of a small ResNet,
batch norm over NHWC, the residual projection, conv/pool layers' shapes, the conv benchmark."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbp import models, nn, ops
from jaxbp.gradcheck import assert_fully_manual, check_gradients
from jaxbp.models.cnn import conv_net


def _batch(seed=0, n=2, dtype=jnp.float32):
    k_x, k_y = jax.random.split(jax.random.key(seed))
    return jax.random.normal(k_x, (n, 8, 8, 1), dtype), jax.random.randint(k_y, (n,), 0, 10)


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_registered_nhwc_builders_give_logits(name):
    spec = models.get_model(name)
    assert spec.layout == "nhwc"
    net = models.build_model(name, num_outputs=10, width=4)
    params, shape = net.init(jax.random.key(0), (3, 8, 8, 1))
    assert shape == (3, 10)
    assert net.apply(params, jnp.ones((3, 8, 8, 1))).shape == (3, 10)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_resnet_and_loss_are_fully_manual(batch_norm):
    net = models.build_model("resnet", num_outputs=10, width=4, blocks=2, batch_norm=batch_norm)
    x, labels = _batch()
    params, _ = net.init(jax.random.key(1), x.shape)
    state = net.init_state(params)

    def loss(params, x):
        logits, _ = net.forward(params, x, state, train=True)
        return ops.softmax_cross_entropy(logits, labels)

    assert_fully_manual(loss, params, x)


def test_small_resnet_gradient_matches_reference_and_finite_differences(x64):
    """Every conv, pooling, projection and the skip adds, in float64, against jax.grad through
    the reference and central differences."""
    net = conv_net(3, blocks=1, stages=2, width=2, skip=True)
    plain = conv_net(3, blocks=1, stages=2, width=2, skip=False)
    x = jax.random.normal(jax.random.key(2), (2, 6, 5, 1), jnp.float64)
    for network in (net, plain):
        params, _ = network.init(jax.random.key(3), x.shape)
        params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64) + 0.1, params)  # nonzero biases
        check_gradients(lambda p, x, network=network: network.apply(p, x), params, x).assert_ok()


def test_batch_norm_over_nhwc_normalizes_each_channel_over_batch_height_width():
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(4), (4, 5, 5, 3))
    params = {"gamma": jnp.ones(3), "beta": jnp.zeros(3)}
    y, _ = ops.batch_norm(params, x)
    np.testing.assert_allclose(jnp.mean(y, axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.var(y, axis=(0, 1, 2)), 1.0, rtol=1e-3)


def test_resnet_taps_every_tapped_conv_and_the_logits():
    net = models.build_model("resnet", num_outputs=10, width=2, blocks=2, stages=2)
    x, _ = _batch()
    params, _ = net.init(jax.random.key(0), x.shape)
    names = nn.tap_names(net, params, x)
    assert names == tuple(f"z{l}" for l in range(1, 1 + 1 + 2 * 2 * 2 + 1))  # stem + 8 block convs + logits


def test_residual_projection_and_shape_errors():
    block = [nn.conv2d(4, 3, stride=2), nn.relu(), nn.conv2d(4, 3)]
    with pytest.raises(
        ValueError, match=r"residual: the block maps shape \(1, 6, 6, 2\) to \(1, 3, 3, 4\).*projection="
    ):
        nn.residual(*block).init(jax.random.key(0), (1, 6, 6, 2))
    layer = nn.residual(*block, projection=nn.conv2d(4, 1, stride=2))
    params, shape = layer.init(jax.random.key(0), (1, 6, 6, 2))
    assert shape == (1, 3, 3, 4)
    x = jax.random.normal(jax.random.key(1), (1, 6, 6, 2))
    block_out = nn.serial(*block).apply(params[0], x)
    np.testing.assert_allclose(layer.apply(params, x), block_out + ops.conv2d(params[1], x, stride=2), rtol=1e-6)
    dense_skip = nn.residual(nn.dense(5), nn.relu(), projection=nn.dense(5))
    assert dense_skip.init(jax.random.key(0), (2, 3))[1] == (2, 5)
    with pytest.raises(TypeError, match="residual: projection must be an nn.Layer"):
        nn.residual(nn.relu(), projection=ops.relu)


def test_conv_and_pool_layers_infer_shapes():
    key = jax.random.key(0)
    params, shape = nn.conv2d(6, (3, 2), stride=2, groups=2).init(key, (2, 7, 7, 4))
    assert params["w"].shape == (3, 2, 2, 6) and shape == (2, 4, 4, 6)
    params, shape = nn.conv_transpose2d(3, 3, stride=2, padding=1, output_padding=1).init(key, (1, 4, 4, 5))
    assert params["w"].shape == (3, 3, 3, 5) and shape == (1, 8, 8, 3)
    params, shape = nn.conv1d(4, 5, padding="VALID").init(key, (2, 9, 3))
    assert params["w"].shape == (5, 3, 4) and shape == (2, 5, 4)
    assert nn.max_pool2d(3, 2, "SAME").init(key, (1, 7, 7, 2))[1] == (1, 4, 4, 2)
    assert nn.avg_pool2d(2).init(key, (1, 7, 7, 2))[1] == (1, 3, 3, 2)
    assert nn.global_avg_pool().init(key, (1, 7, 7, 2))[1] == (1, 2)
    with pytest.raises(ValueError, match="conv2d: groups=3 must divide"):
        nn.conv2d(6, 3, groups=3).init(key, (1, 5, 5, 4))
    with pytest.raises(ValueError, match=r"conv2d: x has 3 channels"):
        nn.conv2d(6, 3).apply(params := nn.conv2d(6, 3).init(key, (1, 5, 5, 2))[0], jnp.ones((1, 5, 5, 3)))
    assert params["w"].shape == (3, 3, 2, 6)


def test_conv_benchmark_runs_on_tiny_sizes():
    from benchmarks import conv

    result = conv.run(tiny=True, repeats=1)
    (row,) = result["rows"]
    assert row["model"].startswith("resnet")
    assert row["residual_bytes"]["manual"]["total"] > 0
