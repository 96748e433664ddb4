"""Atomic, validated checkpoints of training state stored as JAX pytrees.

A checkpoint is a single ``ckpt_<step>.npz`` file (step zero-padded to 8 digits)
holding the flattened leaves of a pytree (params, optax optimizer states, PRNG keys,
...) together with a JSON header describing the tree structure, every leaf's path,
shape and dtype, the step, user metadata, a format version and a sha256 checksum
over the header and every leaf's bytes.

* Writes are atomic: the file is written to a temp file in the same directory
  (``.ckpt_tmp_<pid>_*``), flushed and fsync'ed, then ``os.replace``-d onto its final
  name (and the directory is fsync'ed). A crash before the rename leaves no file under
  the final name and never touches existing checkpoints. A temp file left by a
  killed writer is removed the next time the directory is locked for a run (its
  writer's pid is gone).
* One run per directory: :func:`lock_directory` takes an exclusive ``fcntl`` lock on
  ``<dir>/.lock`` (holding the pid) for the whole run; a second run gets a
  :class:`CheckpointError` naming the holder's pid. The lock dies with its process.
* Restoring needs a ``target`` template pytree (e.g. freshly initialised params and
  optimizer state, or ``jax.eval_shape`` output) that fixes the structure; the stored
  structure, leaf paths, shapes and dtypes must match it exactly. Restoring from a
  directory falls back to the newest *valid* checkpoint, warning about each newer
  corrupt one (which file and why). ``set_aside=True`` renames each such file to
  ``<name>.corrupt`` (never deletes it), so a resumed run can write that step again.
* Leaves are jax or numpy arrays of a numeric dtype, or typed PRNG keys. bfloat16 (and
  the other ``ml_dtypes`` types) are stored as unsigned-int views with the dtype name
  recorded; typed keys (``jax.random.key``) as their key data with the implementation
  name recorded; legacy ``uint32`` keys are ordinary arrays. Values round-trip
  bit-exactly. Restored leaves follow the target's leaf types: ``jax.Array`` /
  ``ShapeDtypeStruct`` leaves come back as ``jax.Array`` (on the target leaf's sharding
  when it has one), numpy leaves as numpy arrays.

Single-process only: arrays must be fully addressable (they are gathered with
``np.asarray``). POSIX only (``fcntl``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxbp.checkpoint._leaves import (
    CheckpointError,
    check_step,
    check_structure,
    decode_leaf,
    digest,
    encode_leaf,
)
from jaxbp.checkpoint._lock import TMP_PREFIX, lock_directory, remove_stale_temp_files

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "checkpoint_path",
    "latest_checkpoint",
    "latest_valid_checkpoint",
    "list_checkpoints",
    "lock_directory",
    "read_metadata",
    "remove_stale_temp_files",
    "restore_checkpoint",
    "save_checkpoint",
]

FORMAT_NAME = "jaxbp.checkpoint"
FORMAT_VERSION = 1

_PREFIX = "ckpt_"
_SUFFIX = ".npz"
_TMP_SUFFIX = ".npz.tmp"
_NAME_RE = re.compile(r"^ckpt_(\d+)\.npz$")
_HEADER_KEY = "__header__"
_CHECKSUM_KEY = "__checksum__"
_ZIP_MAGIC = b"PK\x03\x04"


# --------------------------------------------------------------------------- paths


def checkpoint_path(directory: str | os.PathLike[str], step: int) -> Path:
    """The final file name used for ``step`` in ``directory``."""
    return Path(directory) / f"{_PREFIX}{check_step('checkpoint_path', step):08d}{_SUFFIX}"


def list_checkpoints(directory: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """All checkpoint files in ``directory`` as ``(step, path)``, oldest step first.

    Temp files from in-progress or crashed writes are ignored. A missing directory
    yields an empty list. The files are not opened (see :func:`latest_valid_checkpoint`).
    """
    d = Path(directory)
    if not d.exists():
        return []
    if not d.is_dir():
        raise CheckpointError(f"list_checkpoints: {str(d)!r} is not a directory")
    found = [(int(m.group(1)), entry) for entry in d.iterdir() if (m := _NAME_RE.match(entry.name)) and entry.is_file()]
    return sorted(found, key=lambda step_path: step_path[0])


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """Path of the highest-step checkpoint file in ``directory``, or ``None`` (not verified)."""
    checkpoints = list_checkpoints(directory)
    return checkpoints[-1][1] if checkpoints else None


def _set_aside(path: Path) -> Path:
    """Rename a bad checkpoint to ``<name>.corrupt`` (``.corrupt.1``, ... if taken); return the new path."""
    target, n = path.with_name(path.name + ".corrupt"), 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt.{n}")
    try:
        os.replace(path, target)
    except OSError as error:
        raise CheckpointError(f"cannot set aside the corrupt checkpoint {str(path)!r} ({error.strerror})") from None
    return target


def latest_valid_checkpoint(directory: str | os.PathLike[str], *, set_aside: bool = False) -> Path | None:
    """The highest-step checkpoint in ``directory`` that reads back and passes its checksum.

    Each newer file that does not is skipped with a ``UserWarning`` naming it and why,
    so one corrupt file never blocks resuming from an older good one; with
    ``set_aside=True`` it is also renamed to ``<name>.corrupt`` (kept for inspection,
    and out of the way of the step a resumed run writes next). ``None`` when the
    directory holds no checkpoint file; :class:`CheckpointError` when it holds only
    bad ones.
    """
    checkpoints = list_checkpoints(directory)
    problems = []
    for _, path in reversed(checkpoints):
        try:
            _read("latest_valid_checkpoint", path)
        except CheckpointError as error:
            problems.append(str(error))
            moved = f"; set aside as {_set_aside(path).name}" if set_aside else "; skipping it"
            warnings.warn(f"{error}{moved}", stacklevel=2)
            continue
        return path
    if problems:
        raise CheckpointError(
            f"latest_valid_checkpoint: no valid checkpoint in {str(directory)!r} ({len(problems)} bad: "
            + "; ".join(problem.split(": ", 1)[1] for problem in problems)
            + ")"
        )
    return None


def _leaf_key(i: int) -> str:
    return f"leaf_{i:06d}"


def _fsync_dir(directory: Path) -> None:
    """fsync a directory so a rename in it is durable (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- save


def save_checkpoint(
    directory: str | os.PathLike[str],
    step: int,
    tree: Any,
    *,
    metadata: Mapping[str, Any] | None = None,
    keep: int | None = None,
) -> Path:
    """Atomically write ``tree`` as the checkpoint for ``step``; return its path.

    ``metadata`` must be a JSON-serialisable mapping (tuples come back as lists). A
    checkpoint for ``step`` must not exist yet. With ``keep=N`` only the N
    highest-step checkpoints are kept; older ones are deleted after the new file is in
    place (the file just written is never deleted). Raises :class:`CheckpointError`
    for bad arguments, an existing step, or a directory that cannot be written.
    """
    caller = "save_checkpoint"
    step = check_step(caller, step)
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise CheckpointError(f"{caller}: keep must be None or a positive integer ({keep!r})")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise CheckpointError(f"{caller}: metadata must be a mapping (type {type(metadata).__name__})")
    try:
        meta = json.loads(json.dumps(dict(metadata or {}), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{caller}: metadata must be JSON-serialisable ({error})") from error

    directory = Path(directory)
    final = checkpoint_path(directory, step)
    if final.exists():
        raise CheckpointError(f"{caller}: a checkpoint for step {step} already exists ({str(final)!r})")

    path_leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    encoded = [encode_leaf(leaf, jax.tree_util.keystr(kp)) for kp, leaf in path_leaves]
    stored = [arr for arr, _ in encoded]
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "step": step,
        "treedef": str(treedef),
        "num_leaves": len(encoded),
        "leaves": [spec for _, spec in encoded],
        "metadata": meta,
    }
    header_bytes = json.dumps(header, sort_keys=True).encode("utf-8")
    arrays = {_leaf_key(i): a for i, a in enumerate(stored)}
    arrays[_HEADER_KEY] = np.frombuffer(header_bytes, dtype=np.uint8)
    arrays[_CHECKSUM_KEY] = np.frombuffer(digest(header_bytes, stored).encode("ascii"), dtype=np.uint8)

    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed by `with tmp` below, kept on failure)
            mode="wb", delete=False, dir=directory, prefix=f"{TMP_PREFIX}{os.getpid()}_", suffix=_TMP_SUFFIX
        )
    except OSError as error:
        raise CheckpointError(f"{caller}: cannot write to {str(directory)!r} ({error.strerror})") from None
    tmp_path = Path(tmp.name)
    try:
        with tmp:
            np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
            tmp.flush()
            os.fsync(tmp.fileno())
        if final.exists():
            raise CheckpointError(f"{caller}: a checkpoint for step {step} appeared while writing ({str(final)!r})")
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise
    _fsync_dir(directory)

    if keep is not None:
        older = [p for _, p in list_checkpoints(directory) if p != final]
        for p in older[: max(len(older) - (keep - 1), 0)]:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        _fsync_dir(directory)
    return final


# ------------------------------------------------------------------------- restore


def _read(caller: str, path: Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Read and verify a checkpoint file; return its header and stored leaf arrays."""
    where = f"{caller}: {str(path)!r}"
    try:
        with open(path, "rb") as fh:
            magic = fh.read(len(_ZIP_MAGIC))
            if magic != _ZIP_MAGIC:
                raise CheckpointError(
                    f"{where} is not a jaxbp checkpoint (not an npz archive; it starts with {magic!r})"
                )
            fh.seek(0)
            with np.load(fh, allow_pickle=False) as npz:
                names = set(npz.files)
                if _HEADER_KEY not in names or _CHECKSUM_KEY not in names:
                    raise CheckpointError(f"{where} is not a jaxbp checkpoint (no header)")
                header_bytes = npz[_HEADER_KEY].tobytes()
                checksum = npz[_CHECKSUM_KEY].tobytes().decode("ascii")
                header = json.loads(header_bytes.decode("utf-8"))
                if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
                    raise CheckpointError(f"{where} is not a jaxbp checkpoint (bad header)")
                if header.get("version") != FORMAT_VERSION:
                    raise CheckpointError(
                        f"{where} has format version {header.get('version')!r}; this jaxbp reads {FORMAT_VERSION}"
                    )
                n = header["num_leaves"]
                if names != {_leaf_key(i) for i in range(n)} | {_HEADER_KEY, _CHECKSUM_KEY}:
                    raise CheckpointError(f"{where} is corrupt (expected {n} leaves, found {len(names) - 2})")
                stored = [npz[_leaf_key(i)] for i in range(n)]
    except (CheckpointError, FileNotFoundError):
        raise
    except PermissionError as error:
        raise CheckpointError(f"{where} cannot be read ({error.strerror})") from None
    except Exception as error:  # BadZipFile, bad CRC, truncated npy, bad JSON, KeyError, ...
        raise CheckpointError(f"{where} is corrupt or truncated ({type(error).__name__}: {error})") from error

    if digest(header_bytes, stored) != checksum:
        raise CheckpointError(f"{where} is corrupt (sha256 checksum mismatch)")
    for spec, arr in zip(header["leaves"], stored):
        if np.dtype(spec["stored_dtype"]) != arr.dtype or list(arr.shape) != spec["stored_shape"]:
            raise CheckpointError(
                f"{where} is corrupt (leaf {spec['path']} stored as {arr.dtype}{list(arr.shape)}, "
                f"header says {spec['stored_dtype']}{spec['stored_shape']})"
            )
    return header, stored


def read_metadata(path: str | os.PathLike[str]) -> tuple[int, dict[str, Any]]:
    """``(step, metadata)`` of the checkpoint file ``path``, verified, without a target tree."""
    header, _ = _read("read_metadata", Path(path))
    return int(header["step"]), dict(header["metadata"])


def restore_checkpoint(path_or_directory: str | os.PathLike[str], target: Any) -> tuple[int, Any, dict[str, Any]]:
    """Load a checkpoint into the structure of ``target``; return ``(step, tree, metadata)``.

    ``path_or_directory`` is a checkpoint file, or a directory whose newest valid
    checkpoint is loaded (see :func:`latest_valid_checkpoint`). ``target`` is a template
    pytree with the expected structure, shapes and dtypes (its values are not used).
    Raises ``FileNotFoundError`` when the file/directory is missing or the directory has
    no checkpoint, and :class:`CheckpointError` when the file is corrupt or does not
    match ``target``.
    """
    p = Path(path_or_directory)
    if p.is_dir():
        found = latest_valid_checkpoint(p)
        if found is None:
            raise FileNotFoundError(f"restore_checkpoint: no checkpoint in directory {str(p)!r}")
        p = found
    elif not p.exists():
        raise FileNotFoundError(f"restore_checkpoint: {str(p)!r} does not exist")
    header, stored = _read("restore_checkpoint", p)
    t_leaves = check_structure(p, header, target)
    leaves = [decode_leaf(p, spec, arr, t_leaf) for spec, arr, (_, t_leaf) in zip(header["leaves"], stored, t_leaves)]
    tree = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(target), leaves)
    return int(header["step"]), tree, dict(header["metadata"])
