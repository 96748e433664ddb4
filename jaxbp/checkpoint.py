"""Atomic, validated checkpoints of training state stored as JAX pytrees.

A checkpoint is a single ``ckpt_<step>.npz`` file (step zero-padded to 8 digits)
holding the flattened leaves of a pytree (params, optax optimizer states, an int
step, PRNG keys, ...) together with a JSON header describing the tree structure,
every leaf's path, shape and dtype, the step, user metadata, a format version and
a sha256 checksum over the header and every leaf's bytes.

* Writes are atomic: the file is written to a temp file in the same directory,
  flushed and fsync'ed, then ``os.replace``-d onto its final name (and the directory
  is fsync'ed where supported). A crash before the rename leaves no file under the
  final name and never touches existing checkpoints; the temp file is removed when
  the failure is a Python exception, and stray temp files (``.ckpt_tmp_*``) left by a
  hard crash are ignored by :func:`latest_checkpoint`.
* Restoring needs a ``target`` template pytree (e.g. freshly initialised params and
  optimizer state, or ``jax.eval_shape`` output) that fixes the structure; the stored
  structure, leaf paths, shapes and dtypes must match it exactly.
* bfloat16 (and the other ``ml_dtypes`` types) are stored as unsigned-int views with
  the dtype name recorded; typed PRNG keys (``jax.random.key``) are stored as their
  key data with the implementation name recorded. Legacy ``uint32`` keys are ordinary
  arrays. Values round-trip bit-exactly.

Restored leaves follow the target's leaf types: ``jax.Array`` / ``ShapeDtypeStruct``
leaves come back as ``jax.Array`` (on the target leaf's sharding when it has one),
numpy leaves as numpy arrays, Python scalars as Python scalars.

Single-process only: arrays must be fully addressable (they are gathered with
``np.asarray``). Concurrent writers of the same step are not supported.
"""
from __future__ import annotations

import hashlib
import json
import operator
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

__all__ = [
    "CheckpointError",
    "FORMAT_VERSION",
    "checkpoint_path",
    "latest_checkpoint",
    "list_checkpoints",
    "restore_checkpoint",
    "save_checkpoint",
]

FORMAT_NAME = "jaxbp.checkpoint"
FORMAT_VERSION = 1

_PREFIX = "ckpt_"
_SUFFIX = ".npz"
_TMP_PREFIX = ".ckpt_tmp_"
_TMP_SUFFIX = ".npz.tmp"
_NAME_RE = re.compile(r"^ckpt_(\d+)\.npz$")
_HEADER_KEY = "__header__"
_CHECKSUM_KEY = "__checksum__"

# Python scalar leaves: stored as 0-d numpy arrays of these dtypes.
_PY_SCALARS: dict[type, tuple[str, np.dtype]] = {
    bool: ("bool", np.dtype(np.bool_)),
    int: ("int", np.dtype(np.int64)),
    float: ("float", np.dtype(np.float64)),
    complex: ("complex", np.dtype(np.complex128)),
}
_PY_SCALAR_TYPES = {name: t for t, (name, _) in _PY_SCALARS.items()}


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, unreadable, or does not match the target."""


# --------------------------------------------------------------------------- paths


def checkpoint_path(directory: str | os.PathLike[str], step: int) -> Path:
    """The final file name used for ``step`` in ``directory``."""
    return Path(directory) / f"{_PREFIX}{_check_step(step):08d}{_SUFFIX}"


def list_checkpoints(directory: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """All complete checkpoints in ``directory`` as ``(step, path)``, oldest step first.

    Temp files from in-progress or crashed writes are ignored. A missing directory
    yields an empty list.
    """
    d = Path(directory)
    if not d.exists():
        return []
    if not d.is_dir():
        raise NotADirectoryError(f"checkpoint directory {str(d)!r} is not a directory")
    found = []
    for entry in d.iterdir():
        m = _NAME_RE.match(entry.name)
        if m and entry.is_file():
            found.append((int(m.group(1)), entry))
    found.sort(key=lambda sp: sp[0])
    return found


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """Path of the highest-step complete checkpoint in ``directory``, or ``None``."""
    ckpts = list_checkpoints(directory)
    return ckpts[-1][1] if ckpts else None


# ------------------------------------------------------------------------ encoding


def _check_step(step: Any) -> int:
    if isinstance(step, bool):
        raise TypeError(f"step must be a non-negative integer, got {step!r}")
    try:
        s = operator.index(step)
    except TypeError:
        raise TypeError(f"step must be a non-negative integer, got {step!r}") from None
    if s < 0:
        raise ValueError(f"step must be a non-negative integer, got {s}")
    return s


def _is_key_dtype(dtype: Any) -> bool:
    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _custom_dtype(name: str) -> np.dtype | None:
    """The ml_dtypes dtype called ``name`` (e.g. bfloat16), or None."""
    t = getattr(ml_dtypes, name, None)
    if t is None:
        return None
    try:
        return np.dtype(t)
    except TypeError:
        return None


def _dtype_from_name(name: str) -> np.dtype:
    custom = _custom_dtype(name)
    if custom is not None:
        return custom
    return np.dtype(name)


def _encode_array(arr: np.ndarray, where: str) -> tuple[np.ndarray, str]:
    """Storable (npz-native) array for ``arr`` and the name of its true dtype."""
    dt = arr.dtype
    if dt.isbuiltin == 1 and dt.kind in "biufc":
        return np.asarray(arr, order="C"), dt.name
    if _custom_dtype(dt.name) == dt:
        view = np.dtype(f"uint{dt.itemsize * 8}")
        return np.asarray(arr, order="C").view(view), dt.name
    raise TypeError(f"leaf {where} has unsupported dtype {dt!r}; only numeric dtypes can be saved")


def _leaf_spec(leaf: Any, where: str) -> dict[str, Any]:
    """Kind, shape and dtype of a (save-side or target) leaf, without its data."""
    if type(leaf) in _PY_SCALARS:
        return {"kind": "py", "shape": [], "dtype": "python:" + _PY_SCALARS[type(leaf)][0]}
    if isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct)):
        kind = "jax"
    elif isinstance(leaf, (np.ndarray, np.generic)):
        kind = "numpy"
        leaf = np.asarray(leaf)
    else:
        raise TypeError(
            f"leaf {where} has unsupported type {type(leaf).__name__}; expected a jax/numpy "
            "array, a PRNG key, or a Python bool/int/float/complex"
        )
    dtype = leaf.dtype
    if _is_key_dtype(dtype):
        return {"kind": "key", "shape": list(leaf.shape), "dtype": str(dtype)}
    return {"kind": kind, "shape": list(leaf.shape), "dtype": np.dtype(dtype).name}


def _encode_leaf(leaf: Any, where: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Storable array for one leaf and its header record."""
    spec = _leaf_spec(leaf, where)
    spec["path"] = where
    if spec["kind"] == "py":
        try:
            stored = np.asarray(leaf, dtype=_PY_SCALARS[type(leaf)][1])
        except OverflowError:
            raise TypeError(f"leaf {where}: Python int {leaf} does not fit in int64") from None
    elif spec["kind"] == "key":
        spec["key_impl"] = str(jax.random.key_impl(leaf))
        stored = np.asarray(jax.random.key_data(leaf), order="C")
    else:
        stored, _ = _encode_array(np.asarray(leaf), where)
    spec["stored_dtype"] = stored.dtype.str
    spec["stored_shape"] = list(stored.shape)
    return stored, spec


def _digest(header_bytes: bytes, stored: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    h.update(len(header_bytes).to_bytes(8, "little"))
    h.update(header_bytes)
    for a in stored:
        b = np.asarray(a).tobytes(order="C")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


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
    overwrite: bool = False,
    compress: bool = False,
) -> Path:
    """Atomically write ``tree`` as the checkpoint for ``step``; return its path.

    ``metadata`` must be a JSON-serialisable mapping (tuples come back as lists).
    Raises ``FileExistsError`` if a checkpoint for ``step`` exists, unless
    ``overwrite=True``. With ``keep=N`` only the N highest-step checkpoints are kept;
    older ones are deleted after the new file is in place (the file just written is
    never deleted, even if its step is not among the N highest).
    """
    step = _check_step(step)
    if keep is not None and (isinstance(keep, bool) or operator.index(keep) < 1):
        raise ValueError(f"keep must be None or a positive integer, got {keep!r}")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
    try:
        meta = json.loads(json.dumps(dict(metadata), allow_nan=False))
    except (TypeError, ValueError) as e:
        raise TypeError(f"metadata is not JSON-serialisable: {e}") from e

    directory = Path(directory)
    final = checkpoint_path(directory, step)
    if final.exists() and not overwrite:
        raise FileExistsError(
            f"checkpoint for step {step} already exists at {str(final)!r}; "
            "pass overwrite=True to replace it"
        )

    path_leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    stored: list[np.ndarray] = []
    specs: list[dict[str, Any]] = []
    for kp, leaf in path_leaves:
        arr, spec = _encode_leaf(leaf, jax.tree_util.keystr(kp))
        stored.append(arr)
        specs.append(spec)

    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "step": step,
        "treedef": str(treedef),
        "num_leaves": len(specs),
        "leaves": specs,
        "metadata": meta,
    }
    header_bytes = json.dumps(header, sort_keys=True).encode("utf-8")
    arrays = {_leaf_key(i): a for i, a in enumerate(stored)}
    arrays[_HEADER_KEY] = np.frombuffer(header_bytes, dtype=np.uint8)
    checksum = _digest(header_bytes, stored).encode("ascii")
    arrays[_CHECKSUM_KEY] = np.frombuffer(checksum, dtype=np.uint8)

    directory.mkdir(parents=True, exist_ok=True)
    writer = np.savez_compressed if compress else np.savez
    tmp = tempfile.NamedTemporaryFile(
        mode="wb", delete=False, dir=directory, prefix=_TMP_PREFIX, suffix=_TMP_SUFFIX
    )
    tmp_path = Path(tmp.name)
    try:
        with tmp:
            writer(tmp, **arrays)
            tmp.flush()
            os.fsync(tmp.fileno())
        if final.exists() and not overwrite:
            raise FileExistsError(
                f"checkpoint for step {step} appeared at {str(final)!r} while writing; "
                "pass overwrite=True to replace it"
            )
        os.replace(tmp_path, final)
    except BaseException:
        try:
            tmp_path.unlink()
        except OSError:
            pass
        raise
    _fsync_dir(directory)

    if keep is not None:
        ckpts = [p for _, p in list_checkpoints(directory) if p != final]
        n_old = keep - 1  # slots left for other checkpoints besides the new one
        for p in ckpts[: max(len(ckpts) - n_old, 0)]:
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        _fsync_dir(directory)
    return final


# ------------------------------------------------------------------------- restore


def _read(path: Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Read and verify a checkpoint file; return its header and stored leaf arrays."""
    where = f"checkpoint file {str(path)!r}"
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
            names = set(npz.files)
            if _HEADER_KEY not in names or _CHECKSUM_KEY not in names:
                raise CheckpointError(f"{where} is not a jaxbp checkpoint (header missing)")
            header_bytes = npz[_HEADER_KEY].tobytes()
            checksum = npz[_CHECKSUM_KEY].tobytes().decode("ascii")
            header = json.loads(header_bytes.decode("utf-8"))
            if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
                raise CheckpointError(f"{where} is not a jaxbp checkpoint (bad header)")
            version = header.get("version")
            if version != FORMAT_VERSION:
                raise CheckpointError(
                    f"{where} has format version {version!r}; this jaxbp reads version "
                    f"{FORMAT_VERSION}"
                )
            n = header["num_leaves"]
            expected = {_leaf_key(i) for i in range(n)} | {_HEADER_KEY, _CHECKSUM_KEY}
            if names != expected:
                raise CheckpointError(
                    f"{where} is corrupt: expected {n} leaf entries, found members "
                    f"{sorted(names - {_HEADER_KEY, _CHECKSUM_KEY})[:5]}..."
                )
            stored = [npz[_leaf_key(i)] for i in range(n)]
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise
    except Exception as e:  # BadZipFile, bad CRC, truncated npy, bad JSON, KeyError, ...
        raise CheckpointError(
            f"{where} is corrupt or truncated ({type(e).__name__}: {e})"
        ) from e

    if _digest(header_bytes, stored) != checksum:
        raise CheckpointError(f"{where} is corrupt: sha256 checksum mismatch")
    specs = header["leaves"]
    for spec, arr in zip(specs, stored):
        if np.dtype(spec["stored_dtype"]) != arr.dtype or list(arr.shape) != spec["stored_shape"]:
            raise CheckpointError(
                f"{where} is corrupt: leaf {spec['path']} stored as {arr.dtype}{list(arr.shape)}, "
                f"header says {spec['stored_dtype']}{spec['stored_shape']}"
            )
    return header, stored


def _check_structure(path: Path, header: dict[str, Any], target: Any) -> list[tuple[Any, Any]]:
    """Validate the stored structure against ``target``; return its (path, leaf) pairs."""
    where = f"checkpoint {str(path)!r}"
    t_leaves, t_treedef = jax.tree_util.tree_flatten_with_path(target)
    t_paths = [jax.tree_util.keystr(kp) for kp, _ in t_leaves]
    specs = header["leaves"]
    s_paths = [s["path"] for s in specs]
    if s_paths != t_paths:
        only_s = [p for p in s_paths if p not in set(t_paths)]
        only_t = [p for p in t_paths if p not in set(s_paths)]
        detail = []
        if only_s:
            detail.append(f"leaf {only_s[0]} is in the checkpoint but not in the target")
        if only_t:
            detail.append(f"leaf {only_t[0]} is in the target but not in the checkpoint")
        if not detail:
            i = next(i for i, (a, b) in enumerate(zip(s_paths, t_paths)) if a != b)
            detail.append(f"leaf order differs at {s_paths[i]} vs {t_paths[i]}")
        raise CheckpointError(
            f"{where} does not match the target structure: checkpoint has {len(s_paths)} "
            f"leaves, target has {len(t_paths)}; " + "; ".join(detail)
        )
    if header["treedef"] != str(t_treedef):
        raise CheckpointError(
            f"{where} does not match the target tree structure:\n  checkpoint: "
            f"{header['treedef']}\n  target:     {t_treedef}"
        )
    for spec, (kp, t_leaf) in zip(specs, t_leaves):
        name = jax.tree_util.keystr(kp)
        try:
            t_spec = _leaf_spec(t_leaf, name)
        except TypeError as e:
            raise CheckpointError(f"target for {where}: {e}") from None
        if t_spec["shape"] != spec["shape"]:
            raise CheckpointError(
                f"{where}: leaf {name} has shape {tuple(spec['shape'])} in the checkpoint "
                f"but {tuple(t_spec['shape'])} in the target"
            )
        if t_spec["dtype"] != spec["dtype"]:
            raise CheckpointError(
                f"{where}: leaf {name} has dtype {spec['dtype']} in the checkpoint "
                f"but {t_spec['dtype']} in the target"
            )
    return t_leaves


def _decode_leaf(spec: dict[str, Any], arr: np.ndarray, t_leaf: Any) -> Any:
    kind = spec["kind"]
    if kind == "py":
        return _PY_SCALAR_TYPES[spec["dtype"].split(":", 1)[1]](arr.item())
    sharding = getattr(t_leaf, "sharding", None) if isinstance(t_leaf, jax.Array) else None
    if kind == "key":
        keys = jax.random.wrap_key_data(jnp.asarray(arr), impl=spec["key_impl"])
        return jax.device_put(keys, sharding) if sharding is not None else keys
    dtype = _dtype_from_name(spec["dtype"])
    value = arr.view(dtype) if arr.dtype != dtype else arr
    if isinstance(t_leaf, (np.ndarray, np.generic)):
        return np.array(value, copy=True)
    if jax.dtypes.canonicalize_dtype(dtype) != dtype:  # 64-bit leaf with x64 off
        raise CheckpointError(
            f"leaf {spec['path']} has dtype {dtype}, which JAX cannot represent with "
            "jax_enable_x64 off; enable it to restore 64-bit leaves as jax arrays"
        )
    if sharding is not None:
        return jax.device_put(value, sharding)
    return jnp.asarray(value, dtype=dtype)


def restore_checkpoint(
    path_or_directory: str | os.PathLike[str], target: Any
) -> tuple[int, Any, dict[str, Any]]:
    """Load a checkpoint into the structure of ``target``; return ``(step, tree, metadata)``.

    ``path_or_directory`` is a checkpoint file, or a directory whose latest complete
    checkpoint is loaded. ``target`` is a template pytree with the expected structure,
    shapes and dtypes (its values are not used). Raises ``FileNotFoundError`` when
    the file/directory is missing or the directory has no checkpoint, and
    ``CheckpointError`` when the file is corrupt or does not match ``target``.
    """
    p = Path(path_or_directory)
    if p.is_dir():
        found = latest_checkpoint(p)
        if found is None:
            raise FileNotFoundError(f"no checkpoint found in directory {str(p)!r}")
        p = found
    elif not p.exists():
        raise FileNotFoundError(f"checkpoint path {str(p)!r} does not exist")
    header, stored = _read(p)
    t_leaves = _check_structure(p, header, target)
    try:
        leaves = [
            _decode_leaf(spec, arr, t_leaf)
            for spec, arr, (_, t_leaf) in zip(header["leaves"], stored, t_leaves)
        ]
    except CheckpointError as e:
        raise CheckpointError(f"checkpoint {str(p)!r}: {e}") from None
    tree = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(target), leaves)
    return int(header["step"]), tree, dict(header["metadata"])
