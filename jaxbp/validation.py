"""Checks of static hyper-parameters (sizes, counts, flags), shared by every layer, op and trainer.

A hyper-parameter is a Python value fixed before tracing. Integers are accepted as plain
JAX accepts them: anything with ``__index__`` (a Python ``int``, ``np.int64(2)``, a concrete
integer array of rank 0), never a ``bool`` (``True`` is an int to Python but almost always a
mistake for a size) and never a float. Each check raises :class:`HyperparameterError`
naming the op, the argument and the value at fault, and returns the value as a Python object.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np


class HyperparameterError(TypeError, ValueError):
    """A hyper-parameter of the wrong type or out of range (catch it as either ``TypeError`` or ``ValueError``)."""


def integer_or_none(value: Any) -> int | None:
    """``value`` as a Python ``int`` if it is an integer scalar as JAX reads one (``__index__``), else
    ``None``: bools, floats, strings, ``None`` and tracers are not."""
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def static_int(op: str, name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a Python ``int``, checked to lie in ``[minimum, maximum]`` (either bound optional)."""
    if isinstance(value, (bool, np.bool_)):
        raise HyperparameterError(f"{op}: {name} must be an int, got the bool {bool(value)}")
    number = integer_or_none(value)
    if number is None:  # floats, strings, None, tracers
        raise HyperparameterError(f"{op}: {name} must be a static int, got {type(value).__name__} {value!r}")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        if maximum is None:
            bound = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        elif minimum is None:
            bound = f"an int <= {maximum}"
        else:
            bound = f"an int in [{minimum}, {maximum}]"
        raise HyperparameterError(f"{op}: {name} must be {bound}, got {number}")
    return number


def positive_int(op: str, name: str, value: Any) -> int:
    """``value`` as a Python ``int`` >= 1 (a size, a count of heads, layers or steps)."""
    return static_int(op, name, value, minimum=1)


def optional_positive_int(op: str, name: str, value: Any) -> int | None:
    """``None``, or ``value`` as a Python ``int`` >= 1."""
    return None if value is None else positive_int(op, name, value)


def static_bool(op: str, name: str, value: Any) -> bool:
    """``value`` if it is a ``bool`` (``np.bool_`` included); a flag given as 0/1 or a string is refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise HyperparameterError(f"{op}: {name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)
