"""Reference forward math in plain ``jax.numpy``: the ground truth for ``jax.grad``.

Each function here is the primal of the op with the same name in :mod:`jaxbp.ops`,
and each module is named like its twin there (``reference/dense.py`` ↔
``ops/dense.py``). The ops attach hand-written backward rules to these exact
functions, so ``jax.grad`` through a reference function and the hand-written VJP of
its op must agree to rounding error. Nothing here validates input; the public ops do.

Where a backward needs intermediates of the forward, ``<op>_parts(...)`` returns a
NamedTuple of the output ``y`` and those intermediates, and ``<op>(...)`` returns its
``.y``: the forward math lives once, and the op's forward rule saves the parts.

Conventions at non-differentiable points are chosen so that autodiff through these
files gives the mathematical convention the ops state:
  relu'(0) = 0, leaky_relu'(0) = negative_slope, elu'(0) = alpha
(``jnp.where(x > 0, ...)`` differentiates the branch that is selected).
Low-precision inputs (bf16/f16) accumulate sums in float32 and are cast back.
"""

from jaxbp.reference.activations import GELU_TANH_COEFFICIENT, elu, gelu, leaky_relu, relu, sigmoid, tanh
from jaxbp.reference.attention import AttentionParts, attention, attention_parts
from jaxbp.reference.conv import conv1d, conv2d, conv_transpose2d, convolve, convolve_transpose
from jaxbp.reference.dense import dense
from jaxbp.reference.dropout import dropout, dropout_keep_mask
from jaxbp.reference.embedding import embedding
from jaxbp.reference.losses import (
    MseParts,
    SoftmaxCrossEntropyParts,
    binary_cross_entropy_with_logits,
    mse,
    mse_parts,
    softmax_cross_entropy,
    softmax_cross_entropy_parts,
)
from jaxbp.reference.normalization import (
    BatchNormParts,
    NormalizationParts,
    batch_norm,
    batch_norm_inference,
    batch_norm_inference_parts,
    batch_norm_parts,
    layer_norm,
    layer_norm_parts,
    moments,
)
from jaxbp.reference.pooling import avg_pool2d, global_avg_pool, max_pool2d
from jaxbp.reference.recurrent import (
    GruParts,
    LstmParts,
    RnnParts,
    concatenate,
    gru,
    gru_parts,
    lstm,
    lstm_parts,
    reverse_sequences,
    rnn,
    rnn_parts,
)
from jaxbp.reference.softmax import log_softmax, log_softmax_wide, softmax
from jaxbp.reference.structural import add, reshape

__all__ = [
    "AttentionParts",
    "GELU_TANH_COEFFICIENT",
    "BatchNormParts",
    "GruParts",
    "LstmParts",
    "MseParts",
    "NormalizationParts",
    "RnnParts",
    "SoftmaxCrossEntropyParts",
    "add",
    "attention",
    "attention_parts",
    "avg_pool2d",
    "batch_norm",
    "batch_norm_inference",
    "batch_norm_inference_parts",
    "batch_norm_parts",
    "binary_cross_entropy_with_logits",
    "concatenate",
    "conv1d",
    "conv2d",
    "conv_transpose2d",
    "convolve",
    "convolve_transpose",
    "dense",
    "dropout",
    "dropout_keep_mask",
    "elu",
    "embedding",
    "gelu",
    "global_avg_pool",
    "gru",
    "gru_parts",
    "layer_norm",
    "layer_norm_parts",
    "leaky_relu",
    "log_softmax",
    "log_softmax_wide",
    "lstm",
    "lstm_parts",
    "max_pool2d",
    "moments",
    "mse",
    "mse_parts",
    "relu",
    "reshape",
    "reverse_sequences",
    "rnn",
    "rnn_parts",
    "sigmoid",
    "softmax",
    "softmax_cross_entropy",
    "softmax_cross_entropy_parts",
    "tanh",
]
