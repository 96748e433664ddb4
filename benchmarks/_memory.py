"""Compiled memory: XLA's ``memory_analysis()`` of a jitted function (temporary, argument, output bytes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax


def compiled_memory(f: Callable[..., Any], *args: Any) -> dict[str, int | None]:
    """XLA's memory analysis of ``jax.jit(f)`` compiled for ``args``: temporary, argument and
    output bytes (``None`` where the backend reports no analysis)."""
    return memory_of(jax.jit(f).lower(*args).compile())


def memory_of(compiled: Any) -> dict[str, int | None]:
    """:func:`compiled_memory` of an already compiled executable (``jax.jit(f).lower(...).compile()``)."""
    analysis = compiled.memory_analysis()
    fields = {
        "temp": "temp_size_in_bytes",
        "argument": "argument_size_in_bytes",
        "output": "output_size_in_bytes",
    }
    return {key: (None if analysis is None else int(getattr(analysis, attr))) for key, attr in fields.items()}
