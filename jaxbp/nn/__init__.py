"""Composing networks from ops: the layer contract, layers and combinators.

The contract is stated once in :mod:`jaxbp.nn._contract` (``Layer(init, forward,
parameter_groups, init_state)``): ``y = layer.apply(params, x, **kwargs)`` for every
network, ``(y, new_state) = layer.forward(params, x, state, **kwargs)`` to thread state
while training. One family per private module, re-exported here. Every
differentiable step goes through :mod:`jaxbp.ops`, so a network built here
differentiates only through hand-written rules (``assert_fully_manual`` proves it).
"""

from jaxbp.nn._activations import ACTIVATIONS, activation, elu, gelu, leaky_relu, pointwise, relu, sigmoid, tanh
from jaxbp.nn._attention import multi_head_attention, position_embedding, transformer_block
from jaxbp.nn._combinators import bidirectional, checkpoint, combinator, residual, serial, shape_dependent
from jaxbp.nn._contract import (
    Layer,
    Params,
    State,
    checked_parameter_groups,
    no_parameters,
    no_state,
    of_kind,
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
from jaxbp.nn._recurrent import gru, lstm, rnn
from jaxbp.nn._structural import flatten

__all__ = [
    "ACTIVATIONS",
    "Layer",
    "Params",
    "State",
    "activation",
    "avg_pool2d",
    "batch_norm",
    "bidirectional",
    "checked_parameter_groups",
    "checkpoint",
    "combinator",
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
    "lstm",
    "max_pool2d",
    "multi_head_attention",
    "no_parameters",
    "no_state",
    "of_kind",
    "pointwise",
    "position_embedding",
    "relu",
    "residual",
    "rnn",
    "same_shape",
    "serial",
    "shape_dependent",
    "sigmoid",
    "stateless",
    "tanh",
    "tap",
    "tap_names",
    "tap_shapes",
    "transformer_block",
]
