"""Leaves of a checkpoint: what may be stored, how it is encoded, and how a target is matched."""

from __future__ import annotations

import hashlib
import operator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np


class CheckpointError(ValueError):
    """A checkpoint is corrupt, unreadable, unwritable, locked, or does not match the target."""


def check_step(caller: str, step: Any) -> int:
    try:
        value = operator.index(step) if not isinstance(step, bool) else None
    except TypeError:
        value = None
    if value is None or value < 0:
        raise CheckpointError(f"{caller}: step must be a non-negative integer ({step!r})")
    return value


def _is_key_dtype(dtype: Any) -> bool:
    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _custom_dtype(name: str) -> np.dtype | None:
    """The ml_dtypes dtype called ``name`` (e.g. bfloat16), or None."""
    found = getattr(ml_dtypes, name, None)
    try:
        return None if found is None else np.dtype(found)
    except TypeError:
        return None


def _dtype_from_name(name: str) -> np.dtype:
    custom = _custom_dtype(name)
    return custom if custom is not None else np.dtype(name)


def _leaf_spec(caller: str, leaf: Any, where: str) -> dict[str, Any]:
    """Kind, shape and dtype of a (save-side or target) leaf, without its data."""
    if isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct)):
        kind = "jax"
    elif isinstance(leaf, (np.ndarray, np.generic)):
        kind, leaf = "numpy", np.asarray(leaf)
    else:
        raise CheckpointError(
            f"{caller}: leaf {where} must be a jax/numpy array or a PRNG key (type {type(leaf).__name__})"
        )
    if _is_key_dtype(leaf.dtype):
        return {"kind": "key", "shape": list(leaf.shape), "dtype": str(leaf.dtype)}
    dtype = np.dtype(leaf.dtype)
    if not ((dtype.isbuiltin == 1 and dtype.kind in "biuf") or _custom_dtype(dtype.name) == dtype):
        raise CheckpointError(f"{caller}: leaf {where} must have a real numeric dtype (dtype {dtype})")
    return {"kind": kind, "shape": list(leaf.shape), "dtype": dtype.name}


def encode_leaf(leaf: Any, where: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Storable (npz-native) array for one leaf and its header record."""
    spec = _leaf_spec("save_checkpoint", leaf, where)
    spec["path"] = where
    if spec["kind"] == "key":
        spec["key_impl"] = str(jax.random.key_impl(leaf))
        stored = np.asarray(jax.random.key_data(leaf), order="C")
    else:
        stored = np.asarray(leaf, order="C")
        if stored.dtype.isbuiltin != 1:  # an ml_dtypes type: store its bits
            stored = stored.view(np.dtype(f"uint{stored.dtype.itemsize * 8}"))
    spec["stored_dtype"] = stored.dtype.str
    spec["stored_shape"] = list(stored.shape)
    return stored, spec


def digest(header_bytes: bytes, stored: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    h.update(len(header_bytes).to_bytes(8, "little"))
    h.update(header_bytes)
    for a in stored:
        b = np.asarray(a).tobytes(order="C")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def check_structure(path: Path, header: dict[str, Any], target: Any) -> list[tuple[Any, Any]]:
    """Validate the stored structure against ``target``; return its (path, leaf) pairs."""
    where = f"restore_checkpoint: {str(path)!r}"
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
            f"{where} does not match the target structure (checkpoint has {len(s_paths)} leaves, target has "
            f"{len(t_paths)}; " + "; ".join(detail) + ")"
        )
    if header["treedef"] != str(t_treedef):
        raise CheckpointError(
            f"{where} does not match the target tree structure:\n  checkpoint: {header['treedef']}\n"
            f"  target:     {t_treedef}"
        )
    for spec, (kp, t_leaf) in zip(specs, t_leaves):
        name = jax.tree_util.keystr(kp)
        t_spec = _leaf_spec("restore_checkpoint", t_leaf, name)
        if t_spec["shape"] != spec["shape"]:
            raise CheckpointError(
                f"{where}: leaf {name} has shape {tuple(spec['shape'])} in the checkpoint "
                f"but {tuple(t_spec['shape'])} in the target"
            )
        if t_spec["dtype"] != spec["dtype"]:
            raise CheckpointError(
                f"{where}: leaf {name} has dtype {spec['dtype']} in the checkpoint but {t_spec['dtype']} in the target"
            )
    return t_leaves


def decode_leaf(path: Path, spec: dict[str, Any], arr: np.ndarray, t_leaf: Any) -> Any:
    sharding = getattr(t_leaf, "sharding", None) if isinstance(t_leaf, jax.Array) else None
    if spec["kind"] == "key":
        keys = jax.random.wrap_key_data(jnp.asarray(arr), impl=spec["key_impl"])
        return jax.device_put(keys, sharding) if sharding is not None else keys
    dtype = _dtype_from_name(spec["dtype"])
    value = arr.view(dtype) if arr.dtype != dtype else arr
    if isinstance(t_leaf, (np.ndarray, np.generic)):
        return np.array(value, copy=True)
    if jax.dtypes.canonicalize_dtype(dtype) != dtype:  # 64-bit leaf with x64 off
        raise CheckpointError(
            f"restore_checkpoint: {str(path)!r}: leaf {spec['path']} has dtype {dtype}, which JAX cannot "
            "represent with jax_enable_x64 off; enable it to restore 64-bit leaves as jax arrays"
        )
    return jax.device_put(value, sharding) if sharding is not None else jnp.asarray(value, dtype=dtype)
