"""Composing networks from ops: the layer contract, layers and combinators.

The contract is stated once in :mod:`jaxbp.nn._contract` (``Layer(init, forward,
init_state, parameter_groups)``; every layer is called as
``forward(params, x, state, **kwargs) -> (y, new_state)``, with ``layer.apply`` as the
surface convenience). One family per private module, re-exported here. Every
differentiable step goes through :mod:`jaxbp.ops`, so a network built here
differentiates only through hand-written rules (``assert_fully_manual`` proves it).
"""

from jaxbp.nn._activations import ACTIVATIONS, activation, elu, gelu, leaky_relu, pointwise, relu, sigmoid, tanh
from jaxbp.nn._attention import multi_head_attention, position_embedding, transformer_block
from jaxbp.nn._combinators import checkpoint, residual, serial
from jaxbp.nn._contract import (
    Layer,
    Params,
    State,
    apply_with_state,
    init_state,
    is_stateful,
    no_state,
    same_shape,
    stateless,
    tap,
    tap_names,
    tap_shapes,
)
from jaxbp.nn._conv import conv1d, conv2d, conv_transpose2d
from jaxbp.nn._dense import dense
from jaxbp.nn._dropout import dropout
from jaxbp.nn._embedding import embedding
from jaxbp.nn._normalization import batch_norm, layer_norm
from jaxbp.nn._pooling import avg_pool2d, global_avg_pool, max_pool2d
from jaxbp.nn._recurrent import bidirectional, gru, lstm, rnn
from jaxbp.nn._structural import flatten

__all__ = [
    "avg_pool2d",
    "conv1d",
    "conv2d",
    "conv_transpose2d",
    "global_avg_pool",
    "max_pool2d",
    "rnn",
    "lstm",
    "gru",
    "embedding",
    "bidirectional",
    "ACTIVATIONS",
    "Layer",
    "Params",
    "State",
    "activation",
    "apply_with_state",
    "batch_norm",
    "checkpoint",
    "dense",
    "dropout",
    "elu",
    "flatten",
    "gelu",
    "init_state",
    "is_stateful",
    "layer_norm",
    "leaky_relu",
    "multi_head_attention",
    "no_state",
    "pointwise",
    "position_embedding",
    "relu",
    "residual",
    "same_shape",
    "serial",
    "sigmoid",
    "stateless",
    "tanh",
    "tap",
    "tap_names",
    "tap_shapes",
    "transformer_block",
]
