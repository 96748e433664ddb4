"""Multi-layer perceptrons: the network function and its registered builder ``"mlp"``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jaxbp import nn
from jaxbp.core import static_float
from jaxbp.init import DenseInit, Initializer
from jaxbp.models._registry import register_model
from jaxbp.validation import positive_int, static_bool, static_int


def mlp(
    sizes: Sequence[int],
    activation_name: str = "relu",
    init: str | DenseInit | Initializer = "glorot_normal",
    *,
    residual_blocks: bool = False,
    output_activation: str | None = None,
    batch_norm: bool = False,
    dropout_rate: float = 0.0,
    **hyper: Any,
) -> nn.Layer:
    """A multi-layer perceptron: ``dense(sizes[i])`` followed by the activation, except
    after the last layer (``output_activation`` if given).

    Each pre-activation ``z_l`` passes a :func:`jaxbp.nn.tap` named ``"z{l}"`` (l = 1..L)
    for :mod:`jaxbp.diagnostics`. With ``residual_blocks=True`` every hidden layer
    whose width equals its input width becomes ``x + act(dense(x))``.

    ``batch_norm=True`` puts a :func:`jaxbp.nn.batch_norm` between each hidden dense layer
    (after its tap) and the activation, making the network stateful;
    ``dropout_rate > 0`` adds a :func:`jaxbp.nn.dropout` after each hidden activation.
    """
    sizes = [positive_int("mlp", f"sizes[{index}]", size) for index, size in enumerate(sizes)]
    if not sizes:
        raise ValueError("mlp: sizes must be a non-empty list of positive ints, got []")
    batch_norm = static_bool("mlp", "batch_norm", batch_norm)
    dropout_rate = static_float("mlp", "dropout_rate", dropout_rate, minimum=0.0, maximum=1.0, include_maximum=False)

    def hidden(layer: int) -> nn.Layer:
        norm = [nn.batch_norm()] if batch_norm else []
        drop = [nn.dropout(dropout_rate)] if dropout_rate > 0 else []
        activation = nn.activation(activation_name, **hyper)
        return nn.serial(nn.dense(sizes[layer - 1], init), nn.tap(f"z{layer}"), *norm, activation, *drop)

    layers: list[nn.Layer] = []
    for layer in range(1, len(sizes)):
        same_width = layer > 1 and sizes[layer - 1] == sizes[layer - 2]
        layers.append(nn.residual(hidden(layer)) if residual_blocks and same_width else hidden(layer))
    layers += [nn.dense(sizes[-1], init), nn.tap(f"z{len(sizes)}")]
    if output_activation is not None:
        layers.append(nn.activation(output_activation))
    return nn.serial(*layers)


@register_model("mlp")
def build_mlp(
    *,
    num_outputs: int,
    depth: int = 2,
    width: int = 64,
    activation: str = "relu",
    init: str = "glorot_normal",
    residual: bool = False,
    batch_norm: bool = False,
    dropout: float = 0.0,
) -> nn.Layer:
    """A multi-layer perceptron: ``depth`` hidden layers of ``width`` units, then ``num_outputs``.

    ``residual`` turns every hidden layer after the first into ``x + act(dense(x))``;
    ``batch_norm`` and ``dropout`` (a rate in [0, 1)) go to :func:`mlp`.
    """
    depth = static_int("mlp", "depth (number of hidden layers)", depth, minimum=0)
    return mlp(
        [width] * depth + [num_outputs], activation, init,
        residual_blocks=residual, batch_norm=batch_norm, dropout_rate=dropout,
    )  # fmt: skip
