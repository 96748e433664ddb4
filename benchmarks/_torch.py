"""PyTorch eager, the optional comparison: imported only where installed and on the same (CPU) device."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax

from benchmarks._machine import thread_count

TORCH_SKIP_MESSAGE = "PyTorch is not installed: torch columns skipped (pip install 'jaxbp[bench]' to measure them)"


def optional_torch(announce: bool = True) -> Any | None:
    """``torch`` set to :func:`thread_count` threads, or ``None`` (printing :data:`TORCH_SKIP_MESSAGE`).

    The torch columns compare against PyTorch eager on the CPU; on a GPU run (JAX on another
    backend) they are skipped as well, since the devices would differ.
    """
    try:
        import torch
    except ImportError:
        if announce:
            print(TORCH_SKIP_MESSAGE, file=sys.stderr)
        return None
    if jax.default_backend() != "cpu":
        if announce:
            print(
                f"JAX runs on {jax.default_backend()}: the CPU-only PyTorch columns are skipped",
                file=sys.stderr,
            )
        return None
    torch.set_num_threads(thread_count())
    return torch


def torch_sgd_step(
    torch: Any, leaves: Sequence[Any], loss_of: Callable[[], Any], learning_rate: float
) -> Callable[[], Any]:
    """A PyTorch eager SGD step: ``loss_of()`` builds the loss from the ``leaves`` (tensors with
    ``requires_grad``), whose gradients then update them in place. Returns the loss before the update."""

    def step() -> Any:
        loss = loss_of()
        grads = torch.autograd.grad(loss, leaves)
        with torch.no_grad():
            for leaf, grad in zip(leaves, grads):
                leaf.sub_(learning_rate * grad)
        return loss

    return step
