"""Where benchmark results go: machine facts, the shared table layout and JSON files that
never overwrite an earlier run."""

from __future__ import annotations

import datetime
import json
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxbp.bench._timing import Timing

RESULTS_DIR = Path("results") / "bench"

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
    touch, on every step. The same transformer step took 45-63 ms in a fresh process, 39 ms
    after the suite's earlier sections had happened to leave the heap large, and 29-35 ms with
    this setting; it applies to PyTorch's CPU allocations as well. So timings no longer depend
    on what ran before them.
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


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """Where a result was measured: CPU model, JAX device, versions, thread counts, time (UTC)."""
    import jaxlib

    from jaxbp.bench._measure import thread_count  # the measuring module imports this one

    device = jax.devices()[0]
    torch_version: str | None
    torch_threads: int | None
    try:
        import torch

        torch_version, torch_threads = torch.__version__, torch.get_num_threads()
    except ImportError:
        torch_version = torch_threads = None
    return {
        "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": thread_count(),
        "backend": jax.default_backend(),
        "device": str(device.device_kind),
        "device_count": jax.device_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
        "torch": torch_version,
        "torch_threads": torch_threads,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "malloc_heap_threshold_bytes": _heap_threshold,
    }


def format_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    title: str = "",
) -> str:
    """Rows of ``{column: value}`` as a right-aligned text table (floats to 3 significant digits,
    ``None`` as ``n/a``); ``columns`` defaults to the first row's keys with scalar values."""
    if columns is None:  # the first row's scalar entries
        columns = [
            key for key, value in (rows[0] if rows else {}).items() if not isinstance(value, (Mapping, list, tuple))
        ]

    def cell(value: Any) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"
        return str(value)

    grid = [columns] + [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(columns))]
    lines = ["  ".join(text.rjust(width) for text, width in zip(line, widths)) for line in grid]
    return "\n".join(([title] if title else []) + lines)


def new_path(stem: str, suffix: str = ".json", directory: Path | str = RESULTS_DIR) -> Path:
    """``directory/stem-NNN{suffix}`` numbered one past the highest existing ``stem-NNN*``."""
    directory = Path(directory)
    numbers = [
        int(p.name[len(stem) + 1 :].split(".")[0])
        for p in directory.glob(f"{stem}-*")
        if p.name[len(stem) + 1 :].split(".")[0].isdigit()
    ]
    return directory / f"{stem}-{max(numbers, default=0) + 1:03d}{suffix}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Timing):
        return value.to_dict()
    if isinstance(value, (np.generic, jax.Array)):
        return np.asarray(value).tolist()
    raise TypeError(f"write_json: cannot encode {type(value).__name__}")


def write_json(
    payload: Mapping[str, Any],
    stem: str,
    directory: Path | str = RESULTS_DIR,
    path: Path | str | None = None,
) -> Path:
    """Write ``{"machine": machine_info(), **payload}`` to a new file and return its path.

    The file is ``path`` if given (it must not exist) or the next ``directory/stem-NNN.json``;
    it is created exclusively, so an existing result is never overwritten.
    """
    document = {"machine": machine_info(), **payload}
    text = json.dumps(document, indent=2, default=_jsonable)
    for _ in range(100):
        target = Path(path) if path is not None else new_path(stem, ".json", directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with target.open("x") as handle:
                handle.write(text)
            return target
        except FileExistsError:
            if path is not None:
                raise FileExistsError(
                    f"write_json: {target} exists; results are never overwritten (choose another path)"
                ) from None
    raise RuntimeError(f"write_json: could not find a free name for {stem!r} in {directory}")
