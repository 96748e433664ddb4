"""The tutorial documents' worked examples, reproduced with jaxbp's hand-written backward rules.

* :func:`single_neuron` -- tutorial 000 §3-4: one sigmoid neuron, MSE, one SGD step.
* :func:`graph_example` -- tutorial 000 §10.4: ``y = w x + b``, ``L = (y - 5)^2``.
* :func:`two_layer_walkthrough` -- tutorial 002: ReLU hidden layer, sigmoid output,
  squared error, every intermediate of the backward pass written out.
* :func:`train_xor` -- tutorial 003: the XOR-like task, 2-8-1 ReLU/sigmoid network,
  binary cross-entropy, full-batch gradient descent (lr 0.5, 1000 epochs), trained
  by a jit-compiled loop that uses only the manual gradients.
* :func:`three_layer_network` -- tutorial 001 exercise 5.3: a 3-layer network that
  passes ``check_gradients``.

Each returns plain numbers so the CLI can print them and the tests can check them
against hand computation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxbp import data, models, nn, ops
from jaxbp.gradcheck import GradientReport, check_gradients
from jaxbp.init import DenseInit, normal, zeros


@dataclasses.dataclass(frozen=True)
class SingleNeuronStep:
    """Every quantity of tutorial 000's single-neuron example."""

    z: float
    y_hat: float
    loss: float
    dL_dy_hat: float  # y_hat - y_true
    dy_hat_dz: float  # sigma(z) (1 - sigma(z))
    dz_dw: float  # x
    dz_db: float  # 1
    dL_dw: float
    dL_db: float
    w_updated: float
    b_updated: float


def single_neuron(
    x: float = 0.5, y_true: float = 1.0, w: float = 0.2, b: float = 0.1, lr: float = 0.01
) -> SingleNeuronStep:
    """Tutorial 000: ``z = w x + b``, ``y_hat = sigma(z)``, ``L = 1/2 (y_hat - y_true)^2``.

    The gradient is ``jax.grad`` of the loss built from jaxbp ops, i.e. the product of
    the hand-written local derivatives; the chain-rule factors are recomputed from
    the forward values for display.
    """
    params = {"w": jnp.array([[w]]), "b": jnp.array([b])}
    inputs, target = jnp.array([[x]]), jnp.array([[y_true]])

    def forward(params):
        z = ops.dense(params, inputs)
        y_hat = ops.sigmoid(z)
        return ops.mse(y_hat, target), (z, y_hat)

    (loss, (z, y_hat)), grads = jax.value_and_grad(forward, has_aux=True)(params)
    updated = jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)
    y_hat_value = float(y_hat[0, 0])
    return SingleNeuronStep(
        z=float(z[0, 0]),
        y_hat=y_hat_value,
        loss=float(loss),
        dL_dy_hat=y_hat_value - y_true,
        dy_hat_dz=y_hat_value * (1 - y_hat_value),
        dz_dw=x,
        dz_db=1.0,
        dL_dw=float(grads["w"][0, 0]),
        dL_db=float(grads["b"][0]),
        w_updated=float(updated["w"][0, 0]),
        b_updated=float(updated["b"][0]),
    )


@dataclasses.dataclass(frozen=True)
class GraphExample:
    """Tutorial 000 §10.4: ``y = w x + b``, ``L = (y - 5)^2`` at x=2, w=3, b=1."""

    y: float
    loss: float
    dL_dy: float
    dL_dw: float
    dL_db: float


def graph_example(x: float = 2.0, w: float = 3.0, b: float = 1.0, target: float = 5.0) -> GraphExample:
    """``L = (y - target)^2 = 2 * mse(y, target)`` (jaxbp's mse carries the tutorials' 1/2)."""
    params = {"w": jnp.array([[w]]), "b": jnp.array([b])}

    def loss_of(params):
        y = ops.dense(params, jnp.array([[x]]))
        return 2.0 * ops.mse(y, jnp.array([[target]])), y

    (loss, y), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    dL_dy = jax.grad(lambda y: 2.0 * ops.mse(y, jnp.array([[target]])))(y)
    return GraphExample(
        y=float(y[0, 0]),
        loss=float(loss),
        dL_dy=float(dL_dy[0, 0]),
        dL_dw=float(grads["w"][0, 0]),
        dL_db=float(grads["b"][0]),
    )


def two_layer_walkthrough(x: jax.Array, y: jax.Array, params: tuple[dict, dict]) -> dict[str, jax.Array]:
    """Tutorial 002's walkthrough: ``z1 = x W1 + b1, h = relu(z1), z2 = h W2 + b2,
    y_hat = sigmoid(z2), L = (y_hat - y)^2`` (one example, batch-major rows).

    Returns the forward values and ``dL/d*`` for every intermediate, each from the
    hand-written rules: the intermediates' gradients come from zero taps.
    """
    first, second = params

    def loss_with_taps(params, taps):
        first, second = params
        z1 = ops.add(ops.dense(first, x), taps["z1"])
        h = ops.add(ops.relu(z1), taps["h"])
        z2 = ops.add(ops.dense(second, h), taps["z2"])
        y_hat = ops.add(ops.sigmoid(z2), taps["y_hat"])
        return 2.0 * ops.mse(y_hat, y), {"z1": z1, "h": h, "z2": z2, "y_hat": y_hat}

    zero_taps = {
        "z1": jnp.zeros((x.shape[0], first["w"].shape[1])),
        "h": jnp.zeros((x.shape[0], first["w"].shape[1])),
        "z2": jnp.zeros((x.shape[0], second["w"].shape[1])),
        "y_hat": jnp.zeros((x.shape[0], second["w"].shape[1])),
    }
    (loss, values), (dparams, dtaps) = jax.value_and_grad(loss_with_taps, argnums=(0, 1), has_aux=True)(
        params, zero_taps
    )
    result: dict[str, Any] = {"loss": loss, **values}
    result.update({f"dL/d{name}": value for name, value in dtaps.items()})
    result.update(
        {"dL/dW1": dparams[0]["w"], "dL/db1": dparams[0]["b"], "dL/dW2": dparams[1]["w"], "dL/db2": dparams[1]["b"]}
    )
    return result


@dataclasses.dataclass(frozen=True)
class XorResult:
    """Tutorial 003's training run: loss and accuracy every ``report_every`` epochs."""

    epochs: tuple[int, ...]
    losses: tuple[float, ...]
    accuracies: tuple[float, ...]
    gradient_report: GradientReport  # manual vs jax.grad vs finite differences at step 0


XOR_INIT = DenseInit(normal(0.5), zeros())  # tutorial 003's randn * 0.5 weights, zero biases


def xor_network() -> nn.Layer:
    """2-8-1: dense, ReLU, dense, sigmoid applied inside the loss (logits out)."""
    return models.mlp([8, 1], "relu", XOR_INIT)


def train_xor(
    num_samples: int = 100, epochs: int = 1000, lr: float = 0.5, seed: int = 42, report_every: int = 200
) -> XorResult:
    """Full-batch gradient descent on the XOR-like task with manual gradients only.

    The loss is ``binary_cross_entropy_with_logits`` on the network's output, whose
    hand-written backward is tutorial 003's "lucky cancellation" ``y_hat - y``.
    """
    x_np, y_np = data.xor(num_samples, seed=seed)
    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    network = xor_network()
    params, _ = network.init(jax.random.key(seed), x.shape)

    def loss_fn(params, x, y):
        return ops.binary_cross_entropy_with_logits(network.apply(params, x), y)

    with jax.enable_x64(True):
        gradient_report = check_gradients(loss_fn, params, x, y, argnums=0)

    def epoch_step(params, _):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        accuracy = jnp.mean((network.apply(params, x) > 0) == (y > 0.5))
        params = jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)
        return params, (loss, accuracy)

    run = jax.jit(lambda params: jax.lax.scan(epoch_step, params, None, length=epochs))
    _, (losses, accuracies) = run(params)
    report = range(report_every - 1, epochs, report_every)
    return XorResult(
        epochs=tuple(e + 1 for e in report),
        losses=tuple(float(losses[e]) for e in report),
        accuracies=tuple(float(accuracies[e]) for e in report),
        gradient_report=gradient_report,
    )


def three_layer_network(seed: int = 0) -> GradientReport:
    """Tutorial 001 exercise 5.3: a 3-layer tanh network with softmax cross-entropy,
    checked against ``jax.grad`` through the reference and finite differences."""
    network = models.mlp([6, 5, 3], "tanh")
    key_params, key_x, key_y = jax.random.split(jax.random.key(seed), 3)
    with jax.enable_x64(True):
        x = jax.random.normal(key_x, (4, 5))
        labels = jax.random.randint(key_y, (4,), 0, 3)
        params, _ = network.init(key_params, x.shape)
        loss = lambda params, x: ops.softmax_cross_entropy(network.apply(params, x), labels)  # noqa: E731
        return check_gradients(loss, params, x)
