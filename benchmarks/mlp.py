"""MLP section: the hand-written rules' training step against autodiff, PyTorch and the matmul roofline.

The model is the issue's MLP, 784-1024-1024-1024-10 with ReLU, batch 256, softmax
cross-entropy, float32. One row compares (in one process, round-robin):

* the manual SGD step with ``jax.grad`` through :mod:`jaxbp.reference`, fwd+bwd over fwd,
  residual and compiled temporary bytes (:func:`benchmarks._step.compare_training_step`);
* the same step in PyTorch eager on the CPU with the same weights, dtype and thread count;
* the step's achieved FLOP/s against a large square matmul's, timed round-robin with it.
  The step's matmul FLOPs: forward ``2 B sum(n_in n_out)``, backward ``2 B sum(n_in n_out)``
  for the weight gradients plus ``2 B n_in n_out`` for every input gradient but the first
  layer's (the data needs none); the elementwise work is not counted.

Run: ``python -m benchmarks.mlp [--tiny] [--repeats N]``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._section import section_main
from benchmarks._step import compare_training_step, row_seconds, sgd_step
from benchmarks._timing import time_variants
from benchmarks._torch import optional_torch, torch_sgd_step
from jaxbp import nn, ops

WIDTHS = (784, 1024, 1024, 1024, 10)
BATCH = 256
MATMUL_SIZE = 2048
TINY_WIDTHS = (16, 32, 32, 10)
TINY_BATCH = 8
TINY_MATMUL_SIZE = 64


def mlp(widths: Sequence[int], activation: str = "relu") -> nn.Layer:
    """``dense -> activation`` for every hidden width of ``widths[1:-1]``, then ``dense(widths[-1])``
    (``widths[0]`` is the input size, given to ``init``)."""
    layers: list[nn.Layer] = []
    for width in widths[1:-1]:
        layers += [nn.dense(width, "he_normal"), nn.activation(activation)]
    return nn.serial(*layers, nn.dense(widths[-1], "he_normal"))


def mlp_problem(
    widths: Sequence[int], batch: int, activation: str = "relu", seed: int = 0
) -> tuple[Callable, Any, Any, Any]:
    """``(loss, params, x, labels)`` for an MLP with random data; ``loss(params, x, labels)``."""
    model = mlp(widths, activation)
    key_params, key_x, key_y = jax.random.split(jax.random.key(seed), 3)
    params, _ = model.init(key_params, (batch, widths[0]))
    x = jax.random.normal(key_x, (batch, widths[0]))
    labels = jax.random.randint(key_y, (batch,), 0, widths[-1])

    def loss(params: Any, x: jax.Array, labels: jax.Array) -> jax.Array:
        return ops.softmax_cross_entropy(model.apply(params, x), labels)

    return loss, params, x, labels


def dense_layers(params: Any) -> list[dict[str, jax.Array]]:
    """The ``{"w", "b"}`` dicts of a network's dense layers, in order."""
    is_dense = lambda node: isinstance(node, dict) and "w" in node
    return [leaf for leaf in jax.tree_util.tree_leaves(params, is_leaf=is_dense) if is_dense(leaf)]


def step_flops(widths: Sequence[int], batch: int) -> int:
    """Matmul FLOPs of one training step (see the module docstring)."""
    products = [n_in * n_out for n_in, n_out in itertools.pairwise(widths)]
    return 2 * batch * (2 * sum(products) + sum(products[1:]))


def torch_mlp_step(
    torch: Any,
    params: Any,
    x: Any,
    labels: Any,
    activation: str = "relu",
    learning_rate: float = 1e-3,
) -> Callable[[], Any]:
    """A PyTorch eager SGD step on the same MLP (same weights, float32): ``addmm`` layers,
    ``cross_entropy``, ``autograd.grad`` and an in-place update."""
    tensors = [
        (
            torch.tensor(np.asarray(p["w"]), requires_grad=True),
            torch.tensor(np.asarray(p["b"]), requires_grad=True),
        )
        for p in dense_layers(params)
    ]
    leaves = [t for pair in tensors for t in pair]
    act = {
        "relu": torch.relu,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "gelu": torch.nn.functional.gelu,
    }[activation]
    x_t, labels_t = (
        torch.tensor(np.asarray(x)),
        torch.tensor(np.asarray(labels), dtype=torch.long),
    )

    def loss() -> Any:
        h = x_t
        for index, (w, b) in enumerate(tensors):
            h = torch.addmm(b, h, w)
            if index < len(tensors) - 1:
                h = act(h)
        return torch.nn.functional.cross_entropy(h, labels_t)

    return torch_sgd_step(torch, leaves, loss, learning_rate)


def run(tiny: bool = False, repeats: int = 10) -> dict[str, Any]:
    """The MLP row (manual vs autodiff vs torch) and the FLOP/s comparison with a matmul."""
    widths, batch, size = (TINY_WIDTHS, TINY_BATCH, TINY_MATMUL_SIZE) if tiny else (WIDTHS, BATCH, MATMUL_SIZE)
    loss, params, x, labels = mlp_problem(widths, batch)
    torch = optional_torch()
    torch_step = torch_mlp_step(torch, params, x, labels) if torch is not None else None
    row = compare_training_step(
        loss, params, x, labels, repeats=repeats, torch_step=torch_step, min_seconds=row_seconds(tiny)
    )
    name = "mlp-" + "-".join(map(str, widths)) + f"-b{batch}"

    # Achieved FLOP/s: the manual step against a large matmul, round-robin in this process.

    step = sgd_step(loss)
    a = jax.random.normal(jax.random.key(1), (size, size))
    b = jax.random.normal(jax.random.key(2), (size, size))
    matmul = jax.jit(jnp.matmul)
    timings = time_variants(
        {"step": lambda: step(params, x, labels), "matmul": lambda: matmul(a, b)},
        repeats,
    )
    flops = step_flops(widths, batch)
    step_flop_s = flops / (timings["step"].median_ms * 1e-3)
    matmul_flop_s = 2 * size**3 / (timings["matmul"].median_ms * 1e-3)
    row.update(
        model=name,
        step_flops=flops,
        step_gflop_s=step_flop_s / 1e9,
        matmul_size=size,
        matmul_gflop_s=matmul_flop_s / 1e9,
        step_over_matmul_flop_s=step_flop_s / matmul_flop_s,
        flops_timing_ms={name: t.to_dict() for name, t in timings.items()},
    )
    return {"section": "mlp", "rows": [row]}


def main(argv: Sequence[str] | None = None) -> int:
    return section_main("mlp", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
