"""Small, offline data sets, a reproducible minibatch iterator, and data sets by name.

Nothing is ever downloaded: see :mod:`jaxbp.data._bundled` for the arrays and
batching, :mod:`jaxbp.data._registry` for the named tasks the CLI trains on.
"""

from jaxbp.data._bundled import (
    DIGITS_IMAGE_SHAPE,
    DIGITS_NUM_CLASSES,
    Dataset,
    batches,
    digits,
    num_batches,
    stratified_split,
    two_spirals,
    xor,
)
from jaxbp.data._registry import DATA_SETS, DataSet, Task, load_task
from jaxbp.data._text import CharVocabulary, chars, text_corpus

__all__ = [
    "DATA_SETS",
    "DIGITS_IMAGE_SHAPE",
    "DIGITS_NUM_CLASSES",
    "CharVocabulary",
    "DataSet",
    "Dataset",
    "Task",
    "batches",
    "chars",
    "digits",
    "load_task",
    "num_batches",
    "stratified_split",
    "text_corpus",
    "two_spirals",
    "xor",
]
