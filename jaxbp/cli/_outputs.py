"""Output files the CLI writes: checked before any work, never replacing a file it did not write.

A file the CLI writes carries ``"written_by": "jaxbp"`` and the run directory it belongs
to, so a later run of the same directory may replace it (as may a run of the directory it
lies in); anything else that exists is
refused (``--overwrite`` replaces it). Writes are atomic (temp file in the same
directory, then rename) and keep the mode of the file they replace.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

WRITTEN_BY = "jaxbp"


def check_writable_directory(path: Path, flag: str) -> None:
    """``path`` is a directory that exists and can be written, or can be created."""
    if not str(path).strip():
        raise ValueError(f"{flag} is empty; name a directory")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file, not a directory; name a directory")
    existing = next(parent for parent in (path, *path.parents) if parent.exists())
    if not existing.is_dir():
        raise ValueError(f"{flag} {path}: {existing} is a file, so the directory cannot be created there")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: {existing} is not writable; choose another place")


def owned_by_run(path: Path, run_directory: Path | None) -> bool:
    """Whether ``path`` is a JSON file this CLI wrote for the run in ``run_directory``."""
    if run_directory is None:
        return False
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(payload, dict) or payload.get("written_by") != WRITTEN_BY:
        return False
    # inside the run directory, or naming it (a run directory may have been moved or copied)
    return path.parent.resolve() == run_directory.resolve() or payload.get("checkpoint_dir") == str(
        run_directory.resolve()
    )


def check_output_file(path: Path, flag: str, *, overwrite: bool, run_directory: Path | None = None) -> None:
    """Refuse, before any work, an output file that cannot be written or would replace a file
    the CLI did not write for the run in ``run_directory`` (unless ``overwrite``)."""
    if not str(path).strip():
        raise ValueError(f"{flag} is empty; name a file")
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a directory; name a file")
    if path.exists() and not path.is_file():  # a device or a pipe: a rename would replace it
        raise ValueError(f"{flag} {path} is not a regular file; name a file")
    existing = next(parent for parent in path.parents if parent.exists())
    if not existing.is_dir():
        raise ValueError(f"{flag} {path}: {existing} is a file, so the directory cannot be created there")
    if path.exists() and not overwrite and not owned_by_run(path, run_directory):
        raise ValueError(
            f"{flag} {path} exists and this run did not write it; pass --overwrite to replace it, or name another file"
        )
    check_writable_directory(path.parent, flag)
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{flag} {path} is read-only; name another file")


def write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as JSON atomically, keeping the mode of a file it replaces."""
    path.parent.mkdir(parents=True, exist_ok=True)
    umask = os.umask(0)
    os.umask(umask)
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~umask
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2)
            handle.write("\n")
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
