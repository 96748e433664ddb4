"""Print the tutorial documents' worked examples, reproduced with manual gradients."""

from __future__ import annotations

import argparse

import jax.numpy as jnp

from jaxbp.tutorial import worked_examples


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--xor-epochs", type=int, default=1000, help="epochs for tutorial 003's XOR run (default 1000)")


def print_single_neuron() -> None:
    """Tutorial 000 §3-4: every factor of the chain rule for one sigmoid neuron and one SGD step."""
    step = worked_examples.single_neuron()
    print("Tutorial 000 -- one sigmoid neuron: x=0.5, y_true=1.0, w=0.2, b=0.1, lr=0.01, L = 1/2 (y_hat - y)^2")
    print(f"  forward   z = w x + b = {step.z:.6f}   y_hat = sigma(z) = {step.y_hat:.6f}   L = {step.loss:.6f}")
    print(
        f"  chain     dL/dy_hat = {step.dL_dy_hat:.6f}   dy_hat/dz = {step.dy_hat_dz:.6f}   dz/dw = {step.dz_dw}   dz/db = {step.dz_db}"
    )
    print(f"  gradient  dL/dw = {step.dL_dw:.6f}   dL/db = {step.dL_db:.6f}")
    print(f"  update    w = {step.w_updated:.6f}   b = {step.b_updated:.6f}")


def print_graph_example() -> None:
    """Tutorial 000 §10.4: the computational-graph example."""
    g = worked_examples.graph_example()
    print("Tutorial 000 §10.4 -- y = w x + b, L = (y - 5)^2 at x=2, w=3, b=1")
    print(f"  y = {g.y:g}   L = {g.loss:g}   dL/dy = {g.dL_dy:g}   dL/dw = {g.dL_dw:g}   dL/db = {g.dL_db:g}")


def print_two_layer() -> None:
    """Tutorial 002: the 2-layer walkthrough, every intermediate gradient."""
    x, y = jnp.array([[1.0, -2.0]]), jnp.array([[1.0]])
    params = (
        {"w": jnp.array([[0.5, -0.3, 0.8], [0.2, 0.4, -0.1]]), "b": jnp.array([0.1, 0.0, -0.2])},
        {"w": jnp.array([[0.7], [-0.5], [0.3]]), "b": jnp.array([0.05])},
    )
    print(
        "Tutorial 002 -- 2-layer walkthrough: z1 = x W1 + b1, h = relu(z1), z2 = h W2 + b2, y_hat = sigma(z2), L = (y_hat - y)^2"
    )
    for name, value in worked_examples.two_layer_walkthrough(x, y, params).items():
        print(f"  {name:<9} {jnp.round(value, 6).tolist()}")


def print_xor(epochs: int = 1000) -> None:
    """Tutorial 003: the XOR-like task trained with manual gradients, checked at step 0."""
    result = worked_examples.train_xor(epochs=epochs)
    print(
        "Tutorial 003 -- XOR-like task, 2-8-1 ReLU/sigmoid net, BCE, full-batch GD lr=0.5, jit-compiled, manual gradients"
    )
    print("  gradient check at step 0:")
    print("\n".join("    " + line for line in str(result.gradient_report).splitlines()))
    for epoch, loss, accuracy in zip(result.epochs, result.losses, result.accuracies):
        print(f"  Epoch {epoch}: Loss = {loss:.4f}, Accuracy = {100 * accuracy:.1f}%")


def print_three_layer() -> None:
    """Tutorial 001 exercise 5.3: a 3-layer network passes the gradient check."""
    print("Tutorial 001 exercise 5.3 -- a 3-layer network passes the gradient check")
    report = worked_examples.three_layer_network()
    print("\n".join("  " + line for line in str(report).splitlines()))
    report.assert_ok()
    print("  OK: manual == jax.grad(reference) and finite differences")


def run(args: argparse.Namespace) -> int:
    if args.xor_epochs < 1:  # checked before the first example prints (and before any compile)
        raise ValueError(f"--xor-epochs must be >= 1, got {args.xor_epochs}")
    print_single_neuron()
    print()
    print_graph_example()
    print()
    print_two_layer()
    print()
    print_three_layer()
    print()
    print_xor(args.xor_epochs)
    return 0
