"""Convolutional networks on NHWC images: a plain CNN (``"cnn"``) and a ResNet (``"resnet"``).

Both share one skeleton, so a plain network and a ResNet of the same depth differ only in
the skip connections (tutorial 001, week 7: skips against vanishing gradients)::

    stem:   conv3x3(width) -> act
    stage s = 1..stages, channels width * 2^(s-1), `blocks` blocks each:
            block = conv3x3 -> act -> conv3x3           (+ skip in the ResNet) -> act
            the first block of stages after the first halves H and W:
              plain: max_pool2d(2) before the block;
              ResNet: stride-2 first conv, the skip projected by a stride-2 1x1 conv
    head:   global_avg_pool -> dense(num_outputs)

``1 + 2 * blocks * stages`` convolutions and one dense layer. Every pre-activation (each conv
output, the logits) passes an :func:`jaxbp.nn.tap` named ``"z{l}"`` (``l = 1..L``) for
:mod:`jaxbp.diagnostics`; a ResNet's projection convs are not tapped (they are skips).
``batch_norm=True`` adds :func:`jaxbp.nn.batch_norm` after each tapped conv.
"""

from __future__ import annotations

import itertools

from jaxbp import nn
from jaxbp.models._registry import register_model
from jaxbp.validation import positive_int


def conv_net(
    num_outputs: int,
    *,
    blocks: int = 1,
    stages: int = 2,
    width: int = 16,
    skip: bool = True,
    activation: str = "relu",
    batch_norm: bool = False,
) -> nn.Layer:
    """The skeleton of the module docstring: a ResNet when ``skip``, else a plain CNN of the same depth."""
    blocks, stages, width, num_outputs = (
        positive_int("conv_net", name, value)
        for name, value in (("blocks", blocks), ("stages", stages), ("width", width), ("num_outputs", num_outputs))
    )
    taps = (f"z{l}" for l in itertools.count(1))

    def conv(channels: int, stride: int = 1) -> list[nn.Layer]:
        norm = [nn.batch_norm()] if batch_norm else []
        return [nn.conv2d(channels, 3, stride=stride), nn.tap(next(taps)), *norm]

    layers: list[nn.Layer] = [*conv(width), nn.activation(activation)]
    for stage in range(stages):
        channels = width * 2**stage
        for block in range(blocks):
            downsample = stage > 0 and block == 0
            stride = 2 if downsample and skip else 1
            body = [*conv(channels, stride), nn.activation(activation), *conv(channels)]
            if skip:
                projection = nn.conv2d(channels, 1, stride=2) if downsample else None
                layers.append(nn.residual(*body, projection=projection))
            else:
                layers += [nn.max_pool2d(2)] if downsample else []
                layers += body
            layers.append(nn.activation(activation))
    layers += [nn.global_avg_pool(), nn.dense(num_outputs), nn.tap(next(taps))]
    return nn.serial(*layers)


@register_model("cnn", layout="nhwc")
def build_cnn(
    *, num_outputs: int, blocks: int = 1, stages: int = 2, width: int = 16, batch_norm: bool = False
) -> nn.Layer:
    """A plain CNN: 3x3 convs with ReLU, max-pool between stages, global average pool, dense."""
    return conv_net(num_outputs, blocks=blocks, stages=stages, width=width, skip=False, batch_norm=batch_norm)


@register_model("resnet", layout="nhwc")
def build_resnet(
    *, num_outputs: int, blocks: int = 1, stages: int = 2, width: int = 16, batch_norm: bool = False
) -> nn.Layer:
    """A ResNet: residual blocks of two 3x3 convs, stride-2 blocks with 1x1 projections, global average pool."""
    return conv_net(num_outputs, blocks=blocks, stages=stages, width=width, skip=True, batch_norm=batch_norm)
