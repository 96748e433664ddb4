"""Ops with hand-written backward rules; each has a twin in :mod:`jaxbp.reference`."""

from jaxbp.ops.activations import elu, gelu, leaky_relu, relu, sigmoid, tanh
from jaxbp.ops.attention import attention
from jaxbp.ops.conv import conv1d, conv2d, conv_transpose2d
from jaxbp.ops.dense import dense
from jaxbp.ops.dropout import dropout
from jaxbp.ops.embedding import embedding
from jaxbp.ops.losses import binary_cross_entropy_with_logits, mse, softmax_cross_entropy
from jaxbp.ops.normalization import BatchStatistics, batch_norm, layer_norm
from jaxbp.ops.pooling import avg_pool2d, global_avg_pool, max_pool2d
from jaxbp.ops.recurrent import gru, lstm, rnn
from jaxbp.ops.sequence import concatenate, reverse_sequences
from jaxbp.ops.softmax import log_softmax, softmax
from jaxbp.ops.structural import add, flatten, reshape

__all__ = [
    "BatchStatistics",
    "add",
    "attention",
    "avg_pool2d",
    "batch_norm",
    "binary_cross_entropy_with_logits",
    "concatenate",
    "conv1d",
    "conv2d",
    "conv_transpose2d",
    "dense",
    "dropout",
    "elu",
    "embedding",
    "flatten",
    "gelu",
    "global_avg_pool",
    "gru",
    "layer_norm",
    "leaky_relu",
    "log_softmax",
    "lstm",
    "max_pool2d",
    "mse",
    "relu",
    "reshape",
    "reverse_sequences",
    "rnn",
    "sigmoid",
    "softmax",
    "softmax_cross_entropy",
    "tanh",
]
