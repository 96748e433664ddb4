"""Where a result was measured: CPU, device, versions, thread counts."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import Any

import jax
import numpy as np

from benchmarks._heap import heap_threshold


def thread_count() -> int:
    """CPU cores this process may use (the thread count XLA:CPU and torch are given)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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
        "malloc_heap_threshold_bytes": heap_threshold(),
    }
