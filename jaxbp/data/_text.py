"""``chars``: a character-level language-modelling set from a text that ships with Python.

The text is CPython's own help on the language, :mod:`pydoc_data.topics` (about 465k
characters of English prose and code, part of every standard CPython installation, so
nothing is downloaded). Each example is a window of ``sequence_length`` character ids
``x`` and the next character at every position ``y = x shifted by one``. The first 90%
of the text gives the training windows, the last 10% the test windows, so no test
character is ever seen in training.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

CHARS_SEQUENCE_LENGTH = 64
TRAIN_FRACTION = 0.9


def text_corpus() -> str:
    """The help topics of :mod:`pydoc_data.topics`, joined in sorted topic order."""
    from pydoc_data.topics import topics

    return "\n".join(topics[name] for name in sorted(topics))


class CharVocabulary(NamedTuple):
    """The characters of the corpus in sorted order; a character's id is its index."""

    characters: str

    def encode(self, text: str) -> np.ndarray:
        lookup = {c: i for i, c in enumerate(self.characters)}
        unknown = sorted(set(text) - set(lookup))
        if unknown:
            raise ValueError(f"CharVocabulary.encode: characters {unknown[:5]} are not in the vocabulary")
        return np.array([lookup[c] for c in text], np.int32)

    def decode(self, ids: np.ndarray) -> str:
        return "".join(self.characters[int(i)] for i in np.asarray(ids).reshape(-1))


class CharData(NamedTuple):
    train: tuple[np.ndarray, np.ndarray]  # x (N, T) int32 ids, y (N, T) next ids
    test: tuple[np.ndarray, np.ndarray]
    vocabulary: CharVocabulary


def _windows(ids: np.ndarray, count: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    starts = rng.integers(0, len(ids) - length - 1, size=count)
    x = np.stack([ids[s : s + length] for s in starts])
    return x, np.stack([ids[s + 1 : s + length + 1] for s in starts])


def chars(num_sequences: int = 2000, sequence_length: int = CHARS_SEQUENCE_LENGTH, *, seed: int = 0) -> CharData:
    """``num_sequences`` random training windows (and a tenth as many test windows, at least one)."""
    if not isinstance(num_sequences, int) or num_sequences <= 0:
        raise ValueError(f"chars: num_sequences must be a positive int, got {num_sequences!r}")
    if not isinstance(sequence_length, int) or sequence_length <= 0:
        raise ValueError(f"chars: sequence_length must be a positive int, got {sequence_length!r}")
    text = text_corpus()
    vocabulary = CharVocabulary("".join(sorted(set(text))))
    ids = vocabulary.encode(text)
    split = int(len(ids) * TRAIN_FRACTION)
    rng = np.random.default_rng(seed)
    train = _windows(ids[:split], num_sequences, sequence_length, rng)
    test = _windows(ids[split:], max(1, num_sequences // 10), sequence_length, rng)
    return CharData(train, test, vocabulary)
