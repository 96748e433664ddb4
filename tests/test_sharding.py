"""Hand-written VJPs under jax.sharding: a data-parallel gradient over 4 CPU devices
equals the single-device one. Runs in a subprocess because the number of host devices
must be set before JAX starts."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from jaxbp import models, nn, ops

    assert len(jax.devices()) == 4, jax.devices()
    net = models.mlp([32, 32, 10], "gelu", batch_norm=True, dropout_rate=0.1)
    x = jax.random.normal(jax.random.key(0), (64, 16))
    y = jax.random.randint(jax.random.key(1), (64,), 0, 10)
    params, _ = net.init(jax.random.key(2), x.shape)
    state = net.init_state(params)

    def loss(params, x, y):
        logits, new_state = net.forward(params, x, state, key=jax.random.key(3), train=True)
        return ops.softmax_cross_entropy(logits, y), new_state

    grad = jax.jit(jax.value_and_grad(loss, has_aux=True))
    (value, new_state), grads = grad(params, x, y)

    mesh = Mesh(np.array(jax.devices()), ("batch",))
    shard = NamedSharding(mesh, P("batch"))
    replicated = NamedSharding(mesh, P())
    params_r = jax.device_put(params, replicated)
    (value_s, new_state_s), grads_s = grad(params_r, jax.device_put(x, shard), jax.device_put(y, shard))
    assert len(grads_s[0][0]["w"].sharding.device_set) == 4
    np.testing.assert_allclose(value_s, value, rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves((grads_s, new_state_s)), jax.tree_util.tree_leaves((grads, new_state))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    print("sharded gradients match")
    """
)


def test_data_parallel_gradients_match_single_device():
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4".strip()
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sharded gradients match" in result.stdout
