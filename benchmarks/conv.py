"""Conv section: a ResNet training step on digits-shaped NHWC batches, manual vs autodiff vs PyTorch.

The model is ``models.build_model("resnet", num_outputs=10)`` (stem conv, two stages of one
residual block of two 3x3 convs, a stride-2 block with a 1x1 projection, global average
pool, dense; 16 and 32 channels), batch 64 of 8x8x1 images, softmax cross-entropy, float32.
One row (:func:`benchmarks._step.compare_training_step`): the manual SGD step against
``jax.grad`` through :mod:`jaxbp.reference`, fwd+bwd over fwd, residual and compiled temporary
bytes, and a PyTorch eager step on the same weights when torch is installed.

Run: ``python -m benchmarks.conv [--tiny] [--repeats N]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from benchmarks._section import section_main
from benchmarks._step import compare_training_step, row_seconds
from benchmarks._torch import optional_torch, torch_sgd_step
from jaxbp import data, models, ops
from jaxbp.reference.conv import padding_pairs

SHAPES = {"batch": 64, "width": 16}
TINY_SHAPES = {"batch": 4, "width": 2}


def resnet_problem(batch: int, width: int, seed: int = 0) -> tuple[Callable, Any, Any, Any]:
    """``(loss, params, x, labels)``: the registry's ResNet on the first ``batch`` digits (NHWC)."""
    net = models.build_model("resnet", num_outputs=data.DIGITS_NUM_CLASSES, width=width)
    digits = data.digits(layout="nhwc")
    x, labels = digits.x_train[:batch], digits.y_train[:batch]
    params, _ = net.init(jax.random.key(seed), x.shape)

    def loss(params: Any, x: jax.Array, labels: jax.Array) -> jax.Array:
        return ops.softmax_cross_entropy(net.apply(params, x), labels)

    return loss, params, jax.numpy.asarray(x), jax.numpy.asarray(labels)


def torch_resnet_step(torch: Any, params: Any, x: Any, labels: Any, learning_rate: float = 1e-3) -> Callable[[], Any]:
    """A PyTorch eager SGD step on the same ResNet and weights (kernels HWIO -> OIHW, "SAME"
    padding as explicit, possibly asymmetric ``F.pad``), following the params' layout:
    top-level conv -> relu; residual block ``(body, projection?)`` -> relu; dense after the pool."""
    functional = torch.nn.functional
    leaves: list[Any] = []

    def tensor(a: Any, transpose: tuple[int, ...] | None = None) -> Any:
        t = torch.tensor(np.asarray(a).transpose(transpose) if transpose else np.asarray(a), requires_grad=True)
        leaves.append(t)
        return t

    def conv_fn(p: dict) -> Callable[[Any, int], Any]:
        w, b = tensor(p["w"], (3, 2, 0, 1)), tensor(p["b"])
        kh, kw = p["w"].shape[:2]

        def apply(h: Any, stride: int) -> Any:
            (top, bottom), (left, right) = padding_pairs("SAME", h.shape[2:], (kh, kw), (stride, stride))
            return functional.conv2d(functional.pad(h, (left, right, top, bottom)), w, b, stride=stride)

        return apply

    program: list[Callable[[Any], Any]] = []
    for layer in params:
        if isinstance(layer, dict) and layer["w"].ndim == 4:
            stem = conv_fn(layer)

            def stem_layer(h: Any, stem: Callable[[Any, int], Any] = stem) -> Any:
                return torch.relu(stem(h, 1))

            program.append(stem_layer)
        elif isinstance(layer, dict):
            w, b = tensor(layer["w"]), tensor(layer["b"])

            def head(h: Any, w: Any = w, b: Any = b) -> Any:
                return torch.addmm(b, h.mean((2, 3)), w)

            program.append(head)
        elif isinstance(layer, tuple) and layer and isinstance(layer[0], tuple):
            first, second = (conv_fn(p) for p in layer[0] if isinstance(p, dict))
            projection = conv_fn(layer[1]) if len(layer) == 2 else None

            def block(h: Any, first=first, second=second, projection=projection) -> Any:
                stride = 2 if projection is not None else 1
                fx = second(torch.relu(first(h, stride)), 1)
                return torch.relu(fx + (projection(h, 2) if projection is not None else h))

            program.append(block)
    x_t = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2))
    labels_t = torch.tensor(np.asarray(labels), dtype=torch.long)

    def loss() -> Any:
        h = x_t
        for apply in program:
            h = apply(h)
        return functional.cross_entropy(h, labels_t)

    return torch_sgd_step(torch, leaves, loss, learning_rate)


def run(tiny: bool = False, repeats: int = 10) -> dict[str, Any]:
    """The ResNet row: manual vs autodiff (vs torch) training step, residual and temporary bytes."""
    shapes = TINY_SHAPES if tiny else SHAPES
    loss, params, x, labels = resnet_problem(**shapes)
    torch = optional_torch()
    torch_step = torch_resnet_step(torch, params, x, labels) if torch is not None else None
    row = compare_training_step(
        loss, params, x, labels, repeats=repeats, torch_step=torch_step, min_seconds=row_seconds(tiny)
    )
    return {
        "section": "conv",
        "shapes": shapes,
        "rows": [{"model": f"resnet-digits-b{shapes['batch']}-w{shapes['width']}", **row}],
    }


def main(argv: Sequence[str] | None = None) -> int:
    return section_main("conv", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
