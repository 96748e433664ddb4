"""The tutorial documents' worked examples, checked against hand computation (plain Python math)."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from jaxbp.tutorial import worked_examples


def test_tutorial000_single_sigmoid_neuron_matches_hand_computation():
    x, y_true, w, b, lr = 0.5, 1.0, 0.2, 0.1, 0.01
    z = w * x + b
    y_hat = 1 / (1 + math.exp(-z))
    dL_dy = y_hat - y_true
    dy_dz = y_hat * (1 - y_hat)
    result = worked_examples.single_neuron(x, y_true, w, b, lr)
    assert result.z == pytest.approx(0.2, rel=1e-6)
    assert result.y_hat == pytest.approx(y_hat, rel=1e-6)
    assert result.loss == pytest.approx(0.5 * (y_hat - y_true) ** 2, rel=1e-6)
    assert result.dL_dw == pytest.approx(dL_dy * dy_dz * x, rel=1e-5)
    assert result.dL_db == pytest.approx(dL_dy * dy_dz, rel=1e-5)
    assert result.w_updated == pytest.approx(w - lr * dL_dy * dy_dz * x, rel=1e-6)
    assert result.b_updated == pytest.approx(b - lr * dL_dy * dy_dz, rel=1e-6)
    # the chain rule: the product of the displayed factors is the gradient
    assert result.dL_dy_hat * result.dy_hat_dz * result.dz_dw == pytest.approx(result.dL_dw, rel=1e-5)


def test_tutorial000_graph_example():
    result = worked_examples.graph_example()  # y = 3*2 + 1 = 7, L = (7 - 5)^2 = 4
    assert (result.y, result.loss, result.dL_dy, result.dL_dw, result.dL_db) == pytest.approx((7.0, 4.0, 4.0, 8.0, 4.0))


def test_tutorial002_two_layer_walkthrough_matches_the_written_out_backward():
    x = np.array([[1.0, -2.0]])
    y = np.array([[1.0]])
    w1, b1 = np.array([[0.5, -0.3, 0.8], [0.2, 0.4, -0.1]]), np.array([0.1, 0.0, -0.2])
    w2, b2 = np.array([[0.7], [-0.5], [0.3]]), np.array([0.05])
    params = ({"w": jnp.array(w1), "b": jnp.array(b1)}, {"w": jnp.array(w2), "b": jnp.array(b2)})
    out = worked_examples.two_layer_walkthrough(jnp.array(x), jnp.array(y), params)
    # the tutorial's steps, in numpy
    z1 = x @ w1 + b1
    h = np.maximum(z1, 0)
    z2 = h @ w2 + b2
    y_hat = 1 / (1 + np.exp(-z2))
    dL_dyhat = 2 * (y_hat - y)
    dL_dz2 = dL_dyhat * y_hat * (1 - y_hat)
    dL_dh = dL_dz2 @ w2.T
    dL_dz1 = dL_dh * (z1 > 0)
    expected = {
        "dL/dy_hat": dL_dyhat,
        "dL/dz2": dL_dz2,
        "dL/dW2": h.T @ dL_dz2,
        "dL/db2": dL_dz2.sum(0),
        "dL/dh": dL_dh,
        "dL/dz1": dL_dz1,
        "dL/dW1": x.T @ dL_dz1,
        "dL/db1": dL_dz1.sum(0),
    }
    assert float(out["loss"]) == pytest.approx(((y_hat - y) ** 2).item(), rel=1e-6)
    for name, value in expected.items():
        np.testing.assert_allclose(out[name], value, rtol=1e-5, atol=1e-7, err_msg=name)


def test_tutorial003_xor_trains_with_manual_gradients_and_passes_the_gradient_check():
    result = worked_examples.train_xor(epochs=600, report_every=200)
    result.gradient_report.assert_ok()
    assert result.epochs == (200, 400, 600)
    assert list(result.losses) == sorted(result.losses, reverse=True)  # loss decreases
    assert result.accuracies[-1] >= 0.95


def test_tutorial001_three_layer_network_passes_check_gradients():
    report = worked_examples.three_layer_network()
    report.assert_ok()
    assert len(report.rows) == 7  # three (w, b) pairs and the input


def test_demo_subcommand_prints_every_tutorial_example(capsys):
    from jaxbp import cli

    assert cli.main(["demo", "--xor-epochs", "200"]) == 0
    out = capsys.readouterr().out
    hand_dL_dw = (1 / (1 + math.exp(-0.2)) - 1) * (1 / (1 + math.exp(-0.2))) * (1 - 1 / (1 + math.exp(-0.2))) * 0.5
    assert f"dL/dw = {hand_dL_dw:.6f}" in out
    assert "y = 7   L = 4   dL/dy = 4   dL/dw = 8   dL/db = 4" in out
    assert "Epoch 200: Loss =" in out and "OK: manual == jax.grad(reference)" in out
