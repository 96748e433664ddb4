"""Tests for jaxbp.checkpoint: atomic save, validated bit-exact restore, retention."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxbp import checkpoint as ckpt
from jaxbp.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    restore_checkpoint,
    save_checkpoint,
)


def _params(seed: int = 0):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    return {
        "dense": {"w": jax.random.normal(k1, (4, 3)), "b": jax.random.normal(k2, (3,))},
        "emb": jax.random.normal(k3, (5, 2)).astype(jnp.bfloat16),
        "layers": (jnp.arange(6, dtype=jnp.int32).reshape(2, 3), jnp.array([True, False])),
    }


def _state(seed: int = 0):
    params = _params(seed)
    opt_state = optax.adam(1e-3).init(params)
    # Make the optimizer state non-trivial so a zero-filled restore could not pass.
    grads = jax.tree_util.tree_map(lambda p: jnp.ones_like(p), params)
    _, opt_state = optax.adam(1e-3).update(grads, opt_state, params)
    return {
        "params": params,
        "opt_state": opt_state,
        "step": jnp.array(7 + seed),
        "rng": jax.random.PRNGKey(42 + seed),
        "typed_rng": jax.random.key(123 + seed),
        "np_leaf": np.arange(3, dtype=np.float32) + seed,
    }


def _assert_bit_exact(a, b):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        assert type(x) is type(y) or (isinstance(x, jax.Array) and isinstance(y, jax.Array))
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert y.dtype == x.dtype
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def test_round_trip_bit_exact(tmp_path):
    state = _state()
    path = save_checkpoint(tmp_path, 7, state, metadata={"lr": 1e-3, "name": "run", "dims": [4, 3]})
    assert path == tmp_path / "ckpt_00000007.npz" and path.is_file()

    template = _state(seed=5)  # same structure, different values
    step, restored, meta = restore_checkpoint(path, template)
    assert step == 7
    assert meta == {"lr": 1e-3, "name": "run", "dims": [4, 3]}
    _assert_bit_exact(state, restored)

    p = restored["params"]
    assert isinstance(p["emb"], jax.Array) and p["emb"].dtype == jnp.bfloat16
    assert isinstance(restored["opt_state"][0], optax.ScaleByAdamState)
    assert restored["opt_state"][0].count.dtype == jnp.int32
    assert int(restored["opt_state"][0].count) == 1
    assert isinstance(restored["step"], jax.Array) and int(restored["step"]) == 7
    assert isinstance(restored["np_leaf"], np.ndarray)
    assert restored["rng"].dtype == jnp.uint32
    # Typed keys stay typed keys and produce the same random stream.
    assert jax.dtypes.issubdtype(restored["typed_rng"].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(
        jax.random.normal(restored["typed_rng"], (4,)), jax.random.normal(state["typed_rng"], (4,))
    )


def test_restore_into_eval_shape_template(tmp_path):
    state = {"w": jnp.ones((2, 2), jnp.bfloat16), "key": jax.random.key(1, impl="rbg")}
    save_checkpoint(tmp_path, 1, state)
    template = jax.eval_shape(lambda: state)
    _, restored, meta = restore_checkpoint(tmp_path, template)
    assert meta == {}
    _assert_bit_exact(state, restored)
    assert jax.random.key_impl(restored["key"]) == jax.random.key_impl(state["key"])


def test_latest_checkpoint_picks_highest_step(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    assert latest_checkpoint(tmp_path / "missing") is None
    for step in (5, 100, 20, 123456789):  # last one overflows the 8-digit padding
        save_checkpoint(tmp_path, step, {"x": jnp.array(step)})
    (tmp_path / "ckpt_notes.txt").write_text("not a checkpoint")
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt_123456789.npz"
    assert [s for s, _ in list_checkpoints(tmp_path)] == [5, 20, 100, 123456789]
    step, tree, _ = restore_checkpoint(tmp_path, {"x": jnp.array(0)})
    assert step == 123456789 and int(tree["x"]) == 123456789


def test_crash_between_write_and_rename(tmp_path, monkeypatch):
    good = {"w": jnp.arange(4.0)}
    first = save_checkpoint(tmp_path, 1, good)
    before = first.read_bytes()

    def crash(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(ckpt.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(tmp_path, 2, {"w": jnp.zeros(4)})
    monkeypatch.undo()

    assert not (tmp_path / "ckpt_00000002.npz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt_00000001.npz"]  # temp cleaned
    assert first.read_bytes() == before
    assert latest_checkpoint(tmp_path) == first
    step, tree, _ = restore_checkpoint(tmp_path, {"w": jnp.zeros(4)})
    assert step == 1
    np.testing.assert_array_equal(tree["w"], good["w"])


def test_crash_with_overwrite_keeps_old_file(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path, 3, {"w": jnp.ones(2)})
    monkeypatch.setattr(ckpt.os, "replace", lambda s, d: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        save_checkpoint(tmp_path, 4, {"w": jnp.zeros(2)})
    monkeypatch.undo()
    assert list_checkpoints(tmp_path) == [(3, path)]
    _, tree, _ = restore_checkpoint(tmp_path, {"w": jnp.zeros(2)})
    np.testing.assert_array_equal(tree["w"], np.ones(2, np.float32))


def test_stale_temp_file_is_ignored(tmp_path):
    # A hard crash (no Python cleanup) can leave a partial temp file behind.
    first = save_checkpoint(tmp_path, 1, {"w": jnp.ones(2)})
    stale = tmp_path / ".ckpt_tmp_abc123.npz.tmp"
    stale.write_bytes(first.read_bytes()[:50])
    assert latest_checkpoint(tmp_path) == first
    assert [p for _, p in list_checkpoints(tmp_path)] == [first]
    save_checkpoint(tmp_path, 2, {"w": jnp.ones(2)})
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt_00000002.npz"


def test_refuses_to_overwrite_existing_step(tmp_path):
    path = save_checkpoint(tmp_path, 10, {"w": jnp.ones(3)})
    with pytest.raises(CheckpointError, match="save_checkpoint: a checkpoint for step 10 already exists"):
        save_checkpoint(tmp_path, 10, {"w": jnp.zeros(3)})
    _, tree, _ = restore_checkpoint(path, {"w": jnp.zeros(3)})
    np.testing.assert_array_equal(tree["w"], np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left


@pytest.mark.parametrize("cut", [0, 10, 0.5, -1])
def test_truncated_file_raises_checkpoint_error(tmp_path, cut):
    path = save_checkpoint(tmp_path, 1, _state())
    data = path.read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else (len(data) + cut if cut < 0 else cut)
    path.write_bytes(data[:n])
    with pytest.raises(CheckpointError, match="ckpt_00000001.npz") as ei:
        restore_checkpoint(path, _state())
    assert isinstance(ei.value, ValueError)
    with (
        pytest.warns(UserWarning, match="ckpt_00000001.npz"),
        pytest.raises(CheckpointError, match="no valid checkpoint"),
    ):
        restore_checkpoint(tmp_path, _state())  # via the directory, too


def test_flipped_byte_in_leaf_data_raises(tmp_path):
    w = np.arange(64, dtype=np.float32) * 3.0
    path = save_checkpoint(tmp_path, 1, {"w": jnp.asarray(w)})
    data = bytearray(path.read_bytes())
    off = data.find(w.tobytes())
    assert off > 0
    data[off + 17] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="ckpt_00000001.npz"):
        restore_checkpoint(path, {"w": jnp.zeros(64)})


def test_checksum_catches_consistent_zip_with_tampered_leaf(tmp_path):
    # Rewrite the archive with valid zip CRCs but altered leaf bytes: only the
    # checkpoint's own sha256 can notice.
    path = save_checkpoint(tmp_path, 1, {"w": jnp.arange(8.0)})
    with np.load(path) as npz:
        members = {k: npz[k] for k in npz.files}
    leaf = next(k for k in members if k.startswith("leaf_"))
    members[leaf] = members[leaf].copy()
    members[leaf][3] = -1.0
    tampered = tmp_path / "ckpt_00000002.npz"
    np.savez(tampered, **members)
    with pytest.raises(CheckpointError, match=r"ckpt_00000002\.npz.*checksum"):
        restore_checkpoint(tampered, {"w": jnp.zeros(8)})


def test_tampered_header_detected(tmp_path):
    path = save_checkpoint(tmp_path, 1, {"w": jnp.arange(8.0)}, metadata={"epoch": 1})
    with np.load(path) as npz:
        members = {k: npz[k] for k in npz.files}
    header = json.loads(members["__header__"].tobytes())
    header["metadata"]["epoch"] = 2
    members["__header__"] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8)
    np.savez(path, **members)
    with pytest.raises(CheckpointError, match="checksum"):
        restore_checkpoint(path, {"w": jnp.zeros(8)})


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "ckpt_00000001.npz"
    np.savez(path, a=np.zeros(2))
    with pytest.raises(CheckpointError, match="not a jaxbp checkpoint"):
        restore_checkpoint(path, {"a": jnp.zeros(2)})
    path.write_bytes(b"garbage" * 20)
    with pytest.raises(CheckpointError, match="ckpt_00000001.npz"):
        restore_checkpoint(path, {"a": jnp.zeros(2)})


def test_structure_mismatch_names_leaf(tmp_path):
    path = save_checkpoint(tmp_path, 1, _state())

    extra = _state()
    extra["params"]["dense"]["extra"] = jnp.zeros(2)
    with pytest.raises(CheckpointError, match=r"\['params'\]\['dense'\]\['extra'\].*target") as ei:
        restore_checkpoint(path, extra)
    assert "ckpt_00000001.npz" in str(ei.value)

    missing = _state()
    del missing["params"]["dense"]["b"]
    with pytest.raises(CheckpointError, match=r"\['params'\]\['dense'\]\['b'\] is in the checkpoint"):
        restore_checkpoint(path, missing)


def test_shape_mismatch_names_leaf(tmp_path):
    path = save_checkpoint(tmp_path, 1, _state())
    bad = _state()
    bad["params"]["dense"]["w"] = jnp.zeros((4, 4))
    # Both params and the adam moments differ; the first in flatten order is named.
    with pytest.raises(CheckpointError, match=r"leaf \['opt_state'\]\[0\]\.mu\['dense'\]\['w'\] has shape \(4, 3\)"):
        restore_checkpoint(path, {**bad, "opt_state": optax.adam(1e-3).init(bad["params"])})
    with pytest.raises(CheckpointError, match=r"leaf \['params'\]\['dense'\]\['w'\] has shape"):
        restore_checkpoint(path, {**bad, "opt_state": _state()["opt_state"]})


def test_dtype_mismatch_names_leaf(tmp_path):
    path = save_checkpoint(tmp_path, 1, _state())
    bad = _state()
    bad["params"]["emb"] = bad["params"]["emb"].astype(jnp.float32)
    bad["opt_state"] = _state()["opt_state"]
    with pytest.raises(CheckpointError, match=r"\['params'\]\['emb'\] has dtype bfloat16.*float32"):
        restore_checkpoint(path, bad)

    legacy = _state()
    legacy["typed_rng"] = jax.random.PRNGKey(0)  # uint32[2] instead of a typed key[]
    with pytest.raises(CheckpointError, match=r"\['typed_rng'\]"):
        restore_checkpoint(path, legacy)

    py = _state()
    py["step"] = 7
    with pytest.raises(CheckpointError, match=r"\['step'\] must be a jax/numpy array or a PRNG key \(type int\)"):
        restore_checkpoint(path, py)


def test_treedef_mismatch_same_paths(tmp_path):
    path = save_checkpoint(tmp_path, 1, (jnp.ones(2), jnp.zeros(2)))
    with pytest.raises(CheckpointError, match="tree structure"):
        restore_checkpoint(path, [jnp.ones(2), jnp.zeros(2)])


def test_keep_retention(tmp_path):
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, {"x": jnp.array(step)}, keep=2)
        assert len(list_checkpoints(tmp_path)) == min(step, 2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [4, 5]
    # Saving an older step never deletes the file just written.
    p = save_checkpoint(tmp_path, 2, {"x": jnp.array(2)}, keep=2)
    assert p.exists()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 5]
    save_checkpoint(tmp_path, 9, {"x": jnp.array(9)}, keep=1)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [9]
    with pytest.raises(CheckpointError, match=r"save_checkpoint: keep must be None or a positive integer \(0\)"):
        save_checkpoint(tmp_path, 10, {"x": jnp.array(9)}, keep=0)
    assert not (tmp_path / "ckpt_00000010.npz").exists()


def test_missing_paths_raise_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        restore_checkpoint(tmp_path / "nope", {})
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        restore_checkpoint(tmp_path, {})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"metadata": {"f": object()}}, r"save_checkpoint: metadata must be JSON-serialisable"),
        ({"step": 1.5}, r"save_checkpoint: step must be a non-negative integer \(1.5\)"),
        ({"step": -1}, r"save_checkpoint: step must be a non-negative integer \(-1\)"),
        ({"tree": {"s": "a string"}}, r"save_checkpoint: leaf \['s'\] must be a jax/numpy array .* \(type str\)"),
        ({"tree": {"n": 3}}, r"save_checkpoint: leaf \['n'\] must be a jax/numpy array .* \(type int\)"),
        (
            {"tree": {"c": jnp.ones(2, jnp.complex64)}},
            r"leaf \['c'\] must have a real numeric dtype \(dtype complex64\)",
        ),
    ],
)
def test_bad_inputs(tmp_path, kwargs, message):
    arguments = {"step": 1, "tree": {"x": jnp.ones(1)}, **kwargs}
    with pytest.raises(CheckpointError, match=message):
        save_checkpoint(tmp_path, arguments.pop("step"), arguments.pop("tree"), **arguments)
    assert list(tmp_path.iterdir()) == []


def test_empty_tree(tmp_path):
    save_checkpoint(tmp_path, 2, {}, metadata={"only": "meta"})
    assert restore_checkpoint(tmp_path, {}) == (2, {}, {"only": "meta"})


def test_x64_leaves(tmp_path, x64):
    state = {"d": jnp.arange(3, dtype=jnp.float64) / 3, "i": jnp.array(2**40, jnp.int64)}
    save_checkpoint(tmp_path, 1, state)
    _, restored, _ = restore_checkpoint(tmp_path, state)
    _assert_bit_exact(state, restored)


# ------------------------------------------------------------- a second process, bad files


def test_newest_corrupt_checkpoint_falls_back_to_an_older_valid_one_with_a_warning(tmp_path):
    save_checkpoint(tmp_path, 1, {"w": jnp.full(3, 1.0)})
    save_checkpoint(tmp_path, 2, {"w": jnp.full(3, 2.0)})
    newest = save_checkpoint(tmp_path, 3, {"w": jnp.full(3, 3.0)})
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.warns(UserWarning, match=r"ckpt_00000003\.npz' is corrupt or truncated .*; skipping it"):
        step, tree, _ = restore_checkpoint(tmp_path, {"w": jnp.zeros(3)})
    assert step == 2
    np.testing.assert_array_equal(tree["w"], np.full(3, 2.0))


def test_a_text_file_with_a_checkpoint_name_is_named_as_not_a_checkpoint(tmp_path):
    path = tmp_path / "ckpt_00000001.npz"
    path.write_text("these are my notes\n")
    with pytest.raises(
        CheckpointError,
        match=r"ckpt_00000001\.npz' is not a jaxbp checkpoint \(not an npz archive; it starts with b'thes'\)",
    ):
        restore_checkpoint(path, {"w": jnp.zeros(3)})


def test_unwritable_directory_is_a_checkpoint_error(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(ckpt.tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(CheckpointError, match=r"save_checkpoint: cannot write to .* \(Permission denied\)"):
        save_checkpoint(tmp_path, 1, {"w": jnp.ones(2)})
    monkeypatch.setattr(ckpt.os, "open", refuse)
    locked = pytest.raises(CheckpointError, match=r"cannot write to the checkpoint directory .* \(Permission")
    with locked, ckpt.lock_directory(tmp_path):
        pass


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory_is_a_checkpoint_error(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(CheckpointError, match="Permission denied"):
            save_checkpoint(tmp_path, 1, {"w": jnp.ones(2)})
    finally:
        tmp_path.chmod(0o700)


def test_lock_refuses_a_second_run_and_names_the_holder(tmp_path):
    with ckpt.lock_directory(tmp_path):
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
        second = pytest.raises(CheckpointError, match=rf"in use by another run \(pid {os.getpid()}\)")
        with second, ckpt.lock_directory(tmp_path):
            pass
    with ckpt.lock_directory(tmp_path):  # released on exit
        pass


def test_lock_held_by_another_process(tmp_path):
    script = (
        "import sys, time\nfrom jaxbp import checkpoint\n"
        "with checkpoint.lock_directory(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = pytest.raises(CheckpointError, match=rf"in use by another run \(pid {holder.pid}\)")
        with second, ckpt.lock_directory(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()
    with ckpt.lock_directory(tmp_path):  # a killed holder's lock is gone with it
        pass


def test_stale_temp_files_of_dead_writers_are_removed_when_the_directory_is_locked(tmp_path):
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead_pid = int(finished.stdout)
    stale = tmp_path / f".ckpt_tmp_{dead_pid}_abc.npz.tmp"
    live = tmp_path / f".ckpt_tmp_{os.getppid()}_abc.npz.tmp"
    unknown = tmp_path / ".ckpt_tmp_abc123.npz.tmp"
    for path in (stale, live, unknown):
        path.write_bytes(b"partial")
    with ckpt.lock_directory(tmp_path):
        assert not stale.exists() and live.exists() and unknown.exists()


def test_set_aside_renames_bad_newer_checkpoints_and_read_metadata_needs_no_target(tmp_path):
    tree = {"w": np.arange(3.0)}
    for step in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, step, tree, metadata={"epoch": step})
    newest = ckpt.checkpoint_path(tmp_path, 3)
    newest.write_bytes(newest.read_bytes()[:40])
    (tmp_path / "ckpt_00000003.npz.corrupt").write_text("an earlier one")  # a name already taken
    with pytest.warns(UserWarning, match=r"corrupt or truncated.*set aside as ckpt_00000003.npz.corrupt.1"):
        found = ckpt.latest_valid_checkpoint(tmp_path, set_aside=True)
    assert found == ckpt.checkpoint_path(tmp_path, 2)
    assert (tmp_path / "ckpt_00000003.npz.corrupt.1").stat().st_size == 40  # kept, not deleted
    assert (tmp_path / "ckpt_00000003.npz.corrupt").read_text() == "an earlier one"
    assert ckpt.read_metadata(found) == (2, {"epoch": 2})
    ckpt.save_checkpoint(tmp_path, 3, tree)  # the step is free again for the resumed run
