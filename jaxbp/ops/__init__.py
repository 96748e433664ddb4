"""Ops with hand-written backward rules; each has a twin in :mod:`jaxbp.reference`."""

from jaxbp.ops.activations import elu, gelu, leaky_relu, relu, sigmoid, tanh
from jaxbp.ops.dense import dense
from jaxbp.ops.dropout import dropout
from jaxbp.ops.losses import binary_cross_entropy_with_logits, mse, softmax_cross_entropy
from jaxbp.ops.normalization import BatchStatistics, batch_norm, layer_norm
from jaxbp.ops.softmax import log_softmax, softmax
from jaxbp.ops.structural import add, flatten, reshape

__all__ = [
    "BatchStatistics",
    "add",
    "batch_norm",
    "binary_cross_entropy_with_logits",
    "dense",
    "dropout",
    "elu",
    "flatten",
    "gelu",
    "layer_norm",
    "leaky_relu",
    "log_softmax",
    "mse",
    "relu",
    "reshape",
    "sigmoid",
    "softmax",
    "softmax_cross_entropy",
    "tanh",
]
