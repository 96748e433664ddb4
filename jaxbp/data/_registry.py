"""Data sets by name, each ready for :func:`jaxbp.train.fit`, in the layouts it offers.

The CLI (``jaxbp train --data NAME``) and scripts look data sets up here; a new data
set registers itself with one entry in :data:`DATA_SETS`. A loader takes
``(layout, num_samples)`` (``num_samples`` only matters for generated sets) and returns
a :class:`Task`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from jaxbp.core import choose
from jaxbp.data._bundled import DIGITS_NUM_CLASSES, digits, two_spirals, xor
from jaxbp.data._text import chars


class Task(NamedTuple):
    """A data set ready for :func:`jaxbp.train.fit`."""

    train: tuple[Any, Any]
    test: tuple[Any, Any]
    num_outputs: int  # the size of the model's last layer
    loss: str  # the objective's name (see jaxbp.train.objective_names)


def _split(x: Any, y: Any, test_fraction: float = 0.2) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    n_test = int(round(len(x) * test_fraction))
    return (x[n_test:], y[n_test:]), (x[:n_test], y[:n_test])  # rows are already in random order


def _digits(layout: str, num_samples: int) -> Task:
    ds = digits(layout=layout)  # type: ignore[call-overload]
    return Task(ds.train, ds.test, DIGITS_NUM_CLASSES, "softmax_cross_entropy")


def _xor(layout: str, num_samples: int) -> Task:
    return Task(*_split(*xor(num_samples)), 1, "binary_cross_entropy")


def _spirals(layout: str, num_samples: int) -> Task:
    return Task(*_split(*two_spirals(num_samples)), 2, "softmax_cross_entropy")


def _chars(layout: str, num_samples: int) -> Task:
    text = chars(num_samples)
    return Task(text.train, text.test, len(text.vocabulary.characters), "softmax_cross_entropy")


class DataSet(NamedTuple):
    """A registered data set: its loader and the input layouts it can give."""

    load: Callable[[str, int], Task]  # (layout, num_samples) -> Task
    layouts: tuple[str, ...]


DATA_SETS: dict[str, DataSet] = {
    "digits": DataSet(_digits, ("flat", "nhwc")),
    "xor": DataSet(_xor, ("flat",)),
    "spirals": DataSet(_spirals, ("flat",)),
    "chars": DataSet(_chars, ("sequence",)),
}


def load_task(name: str, layout: str, num_samples: int = 1000) -> Task:
    """The data set ``name`` in ``layout``, or a clear error naming the choices."""
    dataset = choose("load_task", "data set", name, DATA_SETS)
    if layout not in dataset.layouts:
        fitting = [other for other, candidate in DATA_SETS.items() if layout in candidate.layouts]
        raise ValueError(
            f"load_task: data set {name!r} gives {' or '.join(map(repr, dataset.layouts))} inputs, but the model "
            f"reads {layout!r}; data sets in that layout: {', '.join(fitting) or 'none'}"
        )
    return dataset.load(layout, num_samples)
