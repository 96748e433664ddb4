"""Recurrent language models: builders ``"rnn"``, ``"lstm"``, ``"gru"`` for the ``"sequence"`` layout.

Input: ``(B, T)`` integer token ids. Output: ``(B, T, num_outputs)`` logits, one
next-token prediction per step (``jaxbp train --model lstm --data chars``)::

    embedding(vocabulary, embedding_dim) -> [cell(hidden) -> tap("h<l>")] * layers -> dense(num_outputs)

The taps after each recurrent layer let the training guard name the first layer whose
activations became non-finite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jaxbp import nn
from jaxbp.models._registry import register_model
from jaxbp.validation import positive_int


def language_model(
    cell: str,
    *,
    num_outputs: int,
    hidden: int = 128,
    embedding_dim: int = 32,
    layers: int = 1,
    vocabulary: int = 0,
    **cell_options: Any,
) -> nn.Layer:
    """Embedding, ``layers`` recurrent layers of ``cell`` ("rnn", "lstm", "gru"), a dense readout per
    step; ``vocabulary`` 0 means ``num_outputs`` (next-token prediction); ``cell_options`` go to the cell."""
    layers = positive_int(cell, "layers", layers)
    stack: list[nn.Layer] = [nn.embedding(vocabulary or num_outputs, embedding_dim)]
    for index in range(1, layers + 1):
        stack += [getattr(nn, cell)(hidden, **cell_options), nn.tap(f"h{index}")]
    return nn.serial(*stack, nn.dense(num_outputs))


def _register(cell: str, summary: str) -> Callable[..., nn.Layer]:
    """Register the language model of ``cell`` with the options every cell shares."""

    def build(
        *, num_outputs: int, hidden: int = 128, embedding_dim: int = 32, layers: int = 1, vocabulary: int = 0
    ) -> nn.Layer:
        return language_model(
            cell,
            num_outputs=num_outputs,
            hidden=hidden,
            embedding_dim=embedding_dim,
            layers=layers,
            vocabulary=vocabulary,
        )

    build.__doc__ = f"{summary}: embedding, {cell.upper()} layers, per-step logits (vocabulary 0 = num_outputs)."
    build.__name__ = build.__qualname__ = f"build_{cell}"
    return register_model(cell, layout="sequence")(build)


build_rnn = _register("rnn", "Elman RNN language model")
build_gru = _register("gru", "GRU language model")


@register_model("lstm", layout="sequence")
def build_lstm(
    *,
    num_outputs: int,
    hidden: int = 128,
    embedding_dim: int = 32,
    layers: int = 1,
    vocabulary: int = 0,
    forget_bias: float = 1.0,
) -> nn.Layer:
    """LSTM language model: embedding, LSTM layers, per-step logits (vocabulary 0 = num_outputs).

    The one cell with an option of its own: ``forget_bias``, the forget gate's initial bias."""
    return language_model(
        "lstm",
        num_outputs=num_outputs,
        hidden=hidden,
        embedding_dim=embedding_dim,
        layers=layers,
        vocabulary=vocabulary,
        forget_bias=forget_bias,
    )
