"""argparse types that reject a bad value with a message naming the flag (argparse adds it)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def number(kind: type, minimum: float, *, inclusive: bool = True, maximum: float | None = None) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` that is >= (or >) ``minimum`` and at most ``maximum``."""
    relation = ">=" if inclusive else ">"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if value != value or not (value >= minimum if inclusive else value > minimum):
            raise argparse.ArgumentTypeError(f"must be {relation} {minimum:g}, got {text}")
        if maximum is not None and not value <= maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum:g}, got {text}")
        return value

    return parse


positive_int = number(int, 1)
non_negative_int = number(int, 0)
positive_float = number(float, 0.0, inclusive=False, maximum=1e30)  # finite: inf passes > 0


def rate(text: str) -> float:
    """A probability in [0, 1)."""
    value = number(float, 0.0)(text)
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return value


def key_value(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` with dashes in KEY read as underscores."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip().replace("-", "_"), value.strip()


def path(text: str) -> Path:
    """A file or directory path; an empty one is refused (``Path("")`` would mean the current directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; name a path")
    return Path(text)
