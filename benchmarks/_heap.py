"""glibc heap tuning for steady timings: big temporary buffers served from the heap, not fresh ``mmap``s."""

from __future__ import annotations

import platform

# glibc mallopt parameters, and the value the suite sets both to (see heap_allocations)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
HEAP_THRESHOLD_BYTES = 2**30
_heap_threshold: int | None = None


def heap_allocations() -> int | None:
    """Have glibc's malloc serve buffers up to 1 GiB from its heap and keep freed memory there
    (``mallopt`` of ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD``); returns the threshold set,
    or None where the C library is not glibc. Idempotent; the same as starting the process with
    ``MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824``.

    Why: XLA:CPU allocates a program's temporary memory as one buffer per call (43 MiB for the
    transformer step). Above glibc's mmap threshold (128 KiB, raised as big buffers are freed,
    but never past 32 MiB) each such buffer is a fresh ``mmap`` whose pages fault in on first
    touch, on every step, so a step's time depended on what had run before it in the process
    (the README's Performance section has the measurements). Serving them from the heap
    removes that dependence, for PyTorch's CPU allocations as well.
    """
    global _heap_threshold
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None or platform.libc_ver()[0] != "glibc":
        return None
    if mallopt(_M_MMAP_THRESHOLD, HEAP_THRESHOLD_BYTES) and mallopt(_M_TRIM_THRESHOLD, HEAP_THRESHOLD_BYTES):
        _heap_threshold = HEAP_THRESHOLD_BYTES
    return _heap_threshold


def heap_threshold() -> int | None:
    """The threshold :func:`heap_allocations` set in this process (None if it has not, or could not)."""
    return _heap_threshold
