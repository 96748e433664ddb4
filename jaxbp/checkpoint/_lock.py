"""One run per checkpoint directory: an exclusive ``fcntl`` lock, and cleanup of killed writers' temp files."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path

from jaxbp.checkpoint._leaves import CheckpointError

TMP_PREFIX = ".ckpt_tmp_"  # + "<writer pid>_"
_TMP_RE = re.compile(r"^\.ckpt_tmp_(\d+)_.*\.npz\.tmp$")
_LOCK_NAME = ".lock"


def _pid_is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temp_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete temp files whose writer's pid no longer runs (left by a killed write); return them.

    Temp files of running processes, and names without a pid, are left alone.
    """
    removed = []
    for entry in Path(directory).iterdir():
        match = _TMP_RE.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _pid_is_running(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
    return removed


@contextlib.contextmanager
def lock_directory(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive lock on ``directory`` (created if missing) for one run.

    Writes this process's pid into ``<directory>/.lock`` under an ``fcntl.flock``; the
    lock is released on exit and by the OS if the process dies. Stale temp files of
    killed writers are removed once the lock is held. Raises :class:`CheckpointError`
    naming the holder's pid when another run holds it, or when the directory cannot
    be written.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"the checkpoint directory {str(directory)!r} is a file, not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise CheckpointError(
            f"cannot write to the checkpoint directory {str(directory)!r} ({error.strerror})"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise CheckpointError(
                f"the checkpoint directory {str(directory)!r} is in use by another run "
                f"(pid {holder}); wait for it to finish or use another directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        remove_stale_temp_files(directory)
        yield directory
    finally:
        os.close(fd)  # closing the descriptor releases the flock
