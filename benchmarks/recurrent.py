"""Recurrent section: LSTM and GRU training steps, whole-sequence hand-written BPTT vs autodiff.

The issue's shapes: batch 32, T = 100, input 64, hidden 256, float32, loss
``mse(hs, targets)`` over every step's output. Each row (one process, round-robin, see
:func:`benchmarks._step.compare_training_step`): the manual SGD step against
``jax.grad`` through the reference scan (the same forward, custom rules stripped),
fwd+bwd over fwd, saved residual bytes and compiled temporary bytes, and PyTorch's fused
CPU ``torch.nn.LSTM`` / ``torch.nn.GRU`` step with the same weights when torch is installed.

Run: ``python -m benchmarks.recurrent [--tiny] [--repeats N]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from benchmarks._section import section_main
from benchmarks._step import compare_training_step, row_seconds
from benchmarks._torch import optional_torch
from jaxbp import nn, ops

SHAPES = {"batch": 32, "time": 100, "features": 64, "hidden": 256}
TINY_SHAPES = {"batch": 2, "time": 5, "features": 3, "hidden": 4}
CELLS = ("lstm", "gru")


def recurrent_problem(cell: str, batch: int, time: int, features: int, hidden: int, seed: int = 0):
    """``(loss, params, x, targets)`` with ``loss(params, x, targets) = mse(cell(x).hs, targets)``."""
    layer = getattr(nn, cell)(hidden)
    key_params, key_x, key_t = jax.random.split(jax.random.key(seed), 3)
    params, _ = layer.init(key_params, (batch, time, features))
    x = jax.random.normal(key_x, (batch, time, features))
    targets = 0.5 * jax.random.normal(key_t, (batch, time, hidden))

    def loss(params: Any, x: jax.Array, targets: jax.Array) -> jax.Array:
        return ops.mse(getattr(ops, cell)(params, x)[0], targets)

    return loss, params, x, targets


def torch_recurrent_step(torch: Any, cell: str, params: dict, x: Any, targets: Any, lr: float = 1e-3) -> Callable:
    """One SGD step of PyTorch's fused ``nn.LSTM``/``nn.GRU`` (batch_first) with the same weights.

    jaxbp's ``(in, out)`` weights are PyTorch's transposed; the LSTM's single bias goes to
    ``bias_ih`` (``bias_hh`` = 0); the GRU's ``b_ih``/``b_hh`` map one to one. Same gate orders.
    """
    features = params["w_ih"].shape[0]
    hidden = params["w_hh"].shape[0]
    module = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(features, hidden, batch_first=True)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.tensor(np.asarray(params["w_ih"]).T))
        module.weight_hh_l0.copy_(torch.tensor(np.asarray(params["w_hh"]).T))
        if cell == "lstm":
            module.bias_ih_l0.copy_(torch.tensor(np.asarray(params["b"])))
            module.bias_hh_l0.zero_()
        else:
            module.bias_ih_l0.copy_(torch.tensor(np.asarray(params["b_ih"])))
            module.bias_hh_l0.copy_(torch.tensor(np.asarray(params["b_hh"])))
    x_t, targets_t = torch.tensor(np.asarray(x)), torch.tensor(np.asarray(targets))
    optimizer = torch.optim.SGD(module.parameters(), lr=lr)

    def step() -> Any:
        optimizer.zero_grad()
        hs, _ = module(x_t)
        loss = 0.5 * torch.mean((hs - targets_t) ** 2)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def run(tiny: bool = False, repeats: int = 10) -> dict[str, Any]:
    """One row per cell: manual vs autodiff (vs torch) training step at the issue's shapes."""
    shapes = TINY_SHAPES if tiny else SHAPES
    torch = optional_torch()
    rows = []
    for cell in CELLS:
        loss, params, x, targets = recurrent_problem(cell, **shapes)
        torch_step = torch_recurrent_step(torch, cell, params, x, targets) if torch is not None else None
        row = compare_training_step(
            loss, params, x, targets, repeats=repeats, torch_step=torch_step, min_seconds=row_seconds(tiny)
        )
        name = f"{cell}-b{shapes['batch']}-t{shapes['time']}-f{shapes['features']}-h{shapes['hidden']}"
        rows.append({"model": name, **row})
    return {"section": "recurrent", "shapes": shapes, "rows": rows}


def main(argv: Sequence[str] | None = None) -> int:
    return section_main("recurrent", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
