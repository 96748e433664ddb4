"""Recurrent language models: builders ``"rnn"``, ``"lstm"``, ``"gru"`` for the ``"sequence"`` layout.

Input: ``(B, T)`` integer token ids. Output: ``(B, T, num_outputs)`` logits, one
next-token prediction per step (``jaxbp train --model lstm --data chars``)::

    embedding(vocabulary, embedding_dim) -> [cell(hidden) -> tap("h<l>")] * layers -> dense(num_outputs)

The taps after each recurrent layer let the training guard name the first layer whose
activations became non-finite.
"""

from __future__ import annotations

from jaxbp import nn
from jaxbp.models._registry import register_model
from jaxbp.validation import positive_int


def language_model(
    cell: str, *, vocabulary: int, num_outputs: int, hidden: int = 128, embedding_dim: int = 32, layers: int = 1,
    forget_bias: float = 1.0,
) -> nn.Layer:  # fmt: skip
    """Embedding, ``layers`` recurrent layers of ``cell`` ("rnn", "lstm", "gru"), a dense readout per step."""
    layers = positive_int(cell, "layers", layers)
    stack: list[nn.Layer] = [nn.embedding(vocabulary, embedding_dim)]
    for index in range(1, layers + 1):
        recurrent = nn.lstm(hidden, forget_bias=forget_bias) if cell == "lstm" else getattr(nn, cell)(hidden)
        stack += [recurrent, nn.tap(f"h{index}")]
    return nn.serial(*stack, nn.dense(num_outputs))


@register_model("lstm", layout="sequence")
def build_lstm(
    *, num_outputs: int, hidden: int = 128, embedding_dim: int = 32, layers: int = 1, vocabulary: int = 0,
    forget_bias: float = 1.0,
) -> nn.Layer:  # fmt: skip
    """LSTM language model: embedding, LSTM layers, per-step logits (vocabulary 0 = num_outputs)."""
    return language_model(
        "lstm", vocabulary=vocabulary or num_outputs, num_outputs=num_outputs, hidden=hidden,
        embedding_dim=embedding_dim, layers=layers, forget_bias=forget_bias,
    )  # fmt: skip


@register_model("gru", layout="sequence")
def build_gru(
    *, num_outputs: int, hidden: int = 128, embedding_dim: int = 32, layers: int = 1, vocabulary: int = 0
) -> nn.Layer:
    """GRU language model: embedding, GRU layers, per-step logits (vocabulary 0 = num_outputs)."""
    return language_model(
        "gru", vocabulary=vocabulary or num_outputs, num_outputs=num_outputs, hidden=hidden,
        embedding_dim=embedding_dim, layers=layers,
    )  # fmt: skip


@register_model("rnn", layout="sequence")
def build_rnn(
    *, num_outputs: int, hidden: int = 128, embedding_dim: int = 32, layers: int = 1, vocabulary: int = 0
) -> nn.Layer:
    """Elman RNN language model: embedding, tanh RNN layers, per-step logits (vocabulary 0 = num_outputs)."""
    return language_model(
        "rnn", vocabulary=vocabulary or num_outputs, num_outputs=num_outputs, hidden=hidden,
        embedding_dim=embedding_dim, layers=layers,
    )  # fmt: skip
