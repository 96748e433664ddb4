"""Where benchmark results go: JSON files under ``results/bench/`` that never overwrite an earlier run."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from benchmarks._machine import machine_info
from benchmarks._timing import Timing

RESULTS_DIR = Path("results") / "bench"


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
