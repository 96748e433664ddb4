"""jaxbp.train: manual gradients, clipping, accumulation, remat, checkpoints/resume, the
non-finite guard, evaluation and progress output."""

import dataclasses
import io
import json
import os
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbp import checkpoint as ckpt
from jaxbp import data, models, nn, ops, train
from jaxbp.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints
from jaxbp.gradcheck import assert_fully_manual, strip_custom_vjps
from jaxbp.progress import Progress

REPO = Path(__file__).resolve().parents[1]
TIMING = ("seconds", "examples_per_second")


def _leaves_equal(a, b) -> bool:
    """Bitwise equality of two pytrees (PRNG keys compared by their key data)."""
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    if ta != tb:
        return False
    unwrap = lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(jnp.asarray(x).dtype, jax.dtypes.prng_key) else x  # noqa: E731
    return all(np.asarray(unwrap(x)).tobytes() == np.asarray(unwrap(y)).tobytes() for x, y in zip(la, lb))


def _without_timing(history):
    return [{k: v for k, v in record.items() if k not in TIMING} for record in history]


@pytest.fixture(scope="module")
def small_digits():
    """256 training and 128 test digits: 8 steps per epoch at batch size 32."""
    ds = data.digits()
    return (ds.x_train[:256], ds.y_train[:256]), (ds.x_test[:128], ds.y_test[:128])


def _batch(n: int, features: int = 6, classes: int = 3, seed: int = 0):
    kx, ky = jax.random.split(jax.random.key(seed))
    return jax.random.normal(kx, (n, features)), jax.random.randint(ky, (n,), 0, classes)


# ------------------------------------------------------------------------- gradients


def test_loss_and_grads_come_from_the_manual_vjps_and_match_the_reference():
    model = models.build_model("mlp", num_outputs=3, depth=2, width=5, activation="tanh")
    params, _ = model.init(jax.random.key(0), (8, 6))
    batch = _batch(8)
    result = jax.jit(lambda p: train.loss_and_grads(model, p, batch))(params)

    loss = lambda p: ops.softmax_cross_entropy(model.apply(p, batch[0]), batch[1])  # noqa: E731
    assert_fully_manual(loss, params)  # every differentiable primitive is inside a custom VJP
    reference = jax.jit(jax.grad(strip_custom_vjps(loss)))(params)
    chex.assert_trees_all_close(result.grads, reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.loss, jax.jit(loss)(params), rtol=1e-6)


def _sgd_step(model, params, batch, *, lr, clip_norm=None):
    tx = train.make_optimizer(lr, name="sgd", clip_norm=clip_norm)
    state = train.init_train_state(model, tx, batch[0].shape)._replace(params=params, opt_state=tx.init(params))
    return train.make_train_step(model, tx)(state, batch)


@pytest.mark.parametrize("clip_norm", [0.05, 1e6])
def test_clipping_by_global_norm_equals_a_hand_computation(clip_norm):
    model = models.build_model("mlp", num_outputs=3, depth=1, width=5)
    params, _ = model.init(jax.random.key(0), (8, 6))
    batch, lr = _batch(8), 0.5
    grads = train.loss_and_grads(model, params, batch).grads
    leaves = [np.asarray(g, np.float64) for g in jax.tree_util.tree_leaves(grads)]
    norm = np.sqrt(sum(float(np.sum(g**2)) for g in leaves))  # global norm by hand
    factor = min(1.0, clip_norm / norm)
    assert (factor < 0.5) == (clip_norm == 0.05)  # the small threshold really clips
    expected = [np.asarray(p, np.float64) - lr * factor * g for p, g in zip(jax.tree_util.tree_leaves(params), leaves)]

    new_state, metrics = _sgd_step(model, params, batch, lr=lr, clip_norm=clip_norm)
    np.testing.assert_allclose(float(metrics.grad_norm), norm, rtol=1e-5)  # reported before clipping
    for got, want in zip(jax.tree_util.tree_leaves(new_state.params), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, clip_norm", [("sgd", None), ("adam", 0.1)])
def test_accumulating_k_micro_batches_equals_one_step_on_their_concatenation(name, clip_norm):
    k, micro = 4, 8
    model = models.build_model("mlp", num_outputs=3, depth=2, width=8, activation="tanh")
    x, y = _batch(k * micro, seed=3)
    init = lambda tx: train.init_train_state(model, tx, (micro, 6), key=1)  # noqa: E731

    big_tx = train.make_optimizer(0.1, name=name, clip_norm=clip_norm)
    big, _ = train.make_train_step(model, big_tx)(init(big_tx), (x, y))

    acc_tx = train.make_optimizer(0.1, name=name, clip_norm=clip_norm, accumulate=k)
    step = train.make_train_step(model, acc_tx)
    state = start = init(acc_tx)
    for i in range(k):
        state, _ = step(state, (x[i * micro : (i + 1) * micro], y[i * micro : (i + 1) * micro]))
        if i < k - 1:  # no update before the k-th micro-batch
            assert _leaves_equal(state.params, start.params)
    for got, want in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(big.params)):
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    assert not _leaves_equal(state.params, start.params)

    # control: k plain steps on the micro-batches give a different result
    plain_tx = train.make_optimizer(0.1, name=name, clip_norm=clip_norm)
    plain_step, plain = train.make_train_step(model, plain_tx), init(plain_tx)
    for i in range(k):
        plain, _ = plain_step(plain, (x[i * micro : (i + 1) * micro], y[i * micro : (i + 1) * micro]))
    gap = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree_util.tree_leaves(plain.params), jax.tree_util.tree_leaves(big.params))
    )
    assert gap > 1e-4


# ---------------------------------------------------------------------------- remat


def test_remat_benchmark_same_gradients_fewer_residuals(tmp_path):
    from benchmarks import remat

    out = tmp_path / "remat.json"
    argv = ["--repeats", "3", "--depth", "8", "--width", "16", "--batch", "256", "--segments", "4", "--out", str(out)]
    assert remat.main(argv) == 0
    report = json.loads(out.read_text())
    base, seg4 = report["rows"]
    assert not base["remat"] and seg4["segment"] == 4
    activation_bytes = 256 * 16 * 4  # one hidden activation, float32
    # 8 layers in segments of 4: only the 2 segment inputs are kept, 6 activations fewer
    assert base["residual_bytes"] - seg4["residual_bytes"] > 5.5 * activation_bytes
    assert all(row["max_rel_grad_diff"] < 1e-6 for row in report["rows"])
    assert all(row["temp_bytes"] > 0 for row in report["rows"])
    if report["machine"]["backend"] != "cpu":  # XLA:CPU does not realise the saving (see the benchmark's note)
        assert seg4["temp_bytes"] < base["temp_bytes"]


def test_fit_trains_a_network_with_checkpointed_blocks(small_digits):
    train_data, test_data = small_digits
    model = nn.serial(nn.checkpoint(models.mlp([16, 16], "relu", output_activation="relu")), nn.dense(10))
    result = train.fit(
        model,
        train_data,
        train.TrainConfig(epochs=2, batch_size=32, learning_rate=1e-2),
        test_data=test_data,
        progress=False,
    )
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


# ------------------------------------------------------------------ fit, state, resume

SMALL_MODEL = models.build_model("mlp", num_outputs=10, depth=1, width=8)
RESUME_CONFIG = dict(
    batch_size=32, learning_rate=3e-3, clip_norm=1.0, accumulate=3, seed=7
)  # 8 steps/epoch: accumulation spans epochs


RESUME_MODEL = models.build_model("mlp", num_outputs=10, depth=2, width=16, batch_norm=True, dropout=0.1)


@pytest.fixture(scope="module")
def uninterrupted(small_digits, tmp_path_factory):
    """Four epochs in one go (batch norm + dropout + accumulation + clipping)."""
    train_data, test_data = small_digits
    directory = tmp_path_factory.mktemp("uninterrupted")
    config = train.TrainConfig(epochs=4, **RESUME_CONFIG)
    return train.fit(
        RESUME_MODEL,
        train_data,
        config,
        test_data=test_data,
        checkpoints=train.CheckpointConfig(directory),
        progress=False,
    )


def test_fit_threads_model_state_and_dropout_keys(uninterrupted, small_digits):
    state, history = uninterrupted
    assert [r["epoch"] for r in history] == [1, 2, 3, 4] and history[-1]["step"] == 32 == int(state.step)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    running = jax.tree_util.tree_leaves(state.model_state)
    assert running and not any(np.allclose(leaf, 0.0) or np.allclose(leaf, 1.0) for leaf in running)  # stats moved
    x, y = small_digits[0][0][:32], small_digits[0][1][:32]
    loss = jax.jit(
        lambda key: (
            train.loss_and_grads(RESUME_MODEL, state.params, (x, y), model_state=state.model_state, key=key).loss
        )
    )
    assert float(loss(jax.random.key(0))) != float(loss(jax.random.key(1)))  # the key reaches dropout


def test_resume_reproduces_the_uninterrupted_run_bit_exactly(uninterrupted, small_digits, tmp_path):
    train_data, test_data = small_digits
    first = train.fit(
        RESUME_MODEL,
        train_data,
        train.TrainConfig(epochs=2, **RESUME_CONFIG),
        test_data=test_data,
        checkpoints=train.CheckpointConfig(tmp_path),
        progress=False,
    )
    assert [step for step, _ in list_checkpoints(tmp_path)] == [8, 16]
    assert not _leaves_equal(first.state.params, uninterrupted.state.params)
    resumed = train.fit(
        RESUME_MODEL,
        train_data,
        train.TrainConfig(epochs=4, **RESUME_CONFIG),
        test_data=test_data,
        checkpoints=train.CheckpointConfig(tmp_path, resume=True),
        progress=False,
    )
    assert _leaves_equal(resumed.state, uninterrupted.state)  # params, optimizer, batch-norm state, key, step
    assert _without_timing(resumed.history) == _without_timing(uninterrupted.history)


def test_resuming_an_interrupted_run_reproduces_the_uninterrupted_run(uninterrupted, small_digits, tmp_path):
    train_data, test_data = small_digits
    config = train.TrainConfig(epochs=4, **RESUME_CONFIG)

    def interrupt(state):
        if int(state.step) == 13:  # mid-way through epoch 2, as a kill would
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.fit(
            RESUME_MODEL,
            train_data,
            config,
            test_data=test_data,
            checkpoints=train.CheckpointConfig(tmp_path),
            progress=False,
            on_step=interrupt,
        )
    assert [step for step, _ in list_checkpoints(tmp_path)] == [8]  # epoch 1 only
    resumed = train.fit(
        RESUME_MODEL,
        train_data,
        config,
        test_data=test_data,
        checkpoints=train.CheckpointConfig(tmp_path, resume=True),
        progress=False,
    )
    assert _leaves_equal(resumed.state, uninterrupted.state)
    assert _without_timing(resumed.history) == _without_timing(uninterrupted.history)


def test_crash_between_write_and_rename_leaves_the_last_checkpoint_intact(small_digits, tmp_path, monkeypatch):
    train_data, _ = small_digits
    config = train.TrainConfig(epochs=3, batch_size=32, learning_rate=1e-2, seed=3)
    model = SMALL_MODEL
    real_replace, calls = os.replace, []

    def crash_on_second_save(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("simulated crash between write and rename")
        real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", crash_on_second_save)
    with pytest.raises(OSError, match="simulated crash"):
        train.fit(model, train_data, config, checkpoints=train.CheckpointConfig(tmp_path), progress=False)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "ckpt_00000008.npz"]  # no half-written file
    resumed = train.fit(
        model, train_data, config, checkpoints=train.CheckpointConfig(tmp_path, resume=True), progress=False
    )
    fresh = train.fit(model, train_data, config, progress=False)
    assert _leaves_equal(resumed.state, fresh.state)


def test_corrupt_or_mismatched_checkpoints_are_clear_errors(uninterrupted, small_digits, tmp_path):
    train_data, _ = small_digits
    config = train.TrainConfig(epochs=1, batch_size=32, seed=1)
    model = SMALL_MODEL
    train.fit(model, train_data, config, checkpoints=train.CheckpointConfig(tmp_path), progress=False)
    more = dataclasses.replace(config, epochs=2)
    with pytest.raises(ValueError, match="ckpt_00000008.npz is at epoch 1 already, so epochs=1 would train nothing"):
        train.fit(model, train_data, config, checkpoints=train.CheckpointConfig(tmp_path, resume=True), progress=False)
    with pytest.raises(CheckpointError, match=r"already holds a run \(ckpt_00000008.npz\); resume it"):
        train.fit(model, train_data, config, checkpoints=train.CheckpointConfig(tmp_path), progress=False)
    with pytest.raises(CheckpointError, match="batch_size=32 but this run has batch_size=16"):
        train.fit(
            model,
            train_data,
            train.TrainConfig(epochs=2, batch_size=16, seed=1),
            checkpoints=train.CheckpointConfig(tmp_path, resume=True),
            progress=False,
        )
    with pytest.raises(CheckpointError, match="shape"):  # another width
        train.fit(
            models.build_model("mlp", num_outputs=10, depth=1, width=9),
            train_data,
            more,
            checkpoints=train.CheckpointConfig(tmp_path, resume=True),
            progress=False,
        )
    with pytest.raises(CheckpointError, match="different run"):
        train.fit(
            model,
            train_data,
            config,
            checkpoints=train.CheckpointConfig(tmp_path, resume=True, run_info={"model": "other"}),
            progress=False,
        )
    path = latest_checkpoint(tmp_path)
    path.write_bytes(path.read_bytes()[:-100])
    with (
        pytest.warns(UserWarning, match="set aside as ckpt_00000008.npz.corrupt"),
        pytest.raises(CheckpointError, match="ckpt_00000008.npz.*(corrupt|truncated)"),
    ):
        train.fit(model, train_data, more, checkpoints=train.CheckpointConfig(tmp_path, resume=True), progress=False)
    assert (tmp_path / "ckpt_00000008.npz.corrupt").exists()  # set aside, never deleted
    with pytest.raises(ValueError, match="directory is empty"):
        train.CheckpointConfig("")


# ------------------------------------------------------------------- non-finite guard


def _scale_layer(params, layer: int, factor: float):
    """params of an models.mlp with hidden layer ``layer`` (1-based) weights multiplied."""
    params = list(params)
    hidden = params[layer - 1]
    params[layer - 1] = ({**hidden[0], "w": hidden[0]["w"] * factor}, *hidden[1:])
    return tuple(params)


def _overflow_setup(scaled_layers: dict[int, float]):
    """An models.mlp 64-16-16-16-10 whose hidden layer ``l`` weights start multiplied by
    ``scaled_layers[l]``, 128 digits (4 steps per epoch, no shuffling) and a config."""
    model = models.mlp([16, 16, 16, 10], "relu")
    original_init = model.init

    def init(key, shape):
        params, out = original_init(key, shape)
        for layer, factor in scaled_layers.items():
            params = _scale_layer(params, layer, factor)
        return params, out

    ds = data.digits()
    # Adam: every update is <= ~lr per weight, so the scaled weights stay put
    config = train.TrainConfig(epochs=3, batch_size=32, learning_rate=1e-3, shuffle=False)
    return model._replace(init=init), (ds.x_train[:128].copy(), ds.y_train[:128]), config


def test_guard_names_the_step_and_the_first_overflowing_layer(tmp_path):
    # layer 3's weights are 1e19: finite for digits (z3 ~ 1e19), but an input 1e22 times
    # larger overflows float32 first at z3 (~1e41), then everything downstream.
    model, (x, y), config = _overflow_setup({3: 1e19})
    train.fit(
        model,
        (x, y),
        dataclasses.replace(config, epochs=1),
        checkpoints=train.CheckpointConfig(tmp_path),
        progress=False,
    )
    x[32:64] *= 1e22  # batch 1 of each epoch: step 5 = epoch 2, batch 1
    with pytest.raises(
        train.NonFiniteError, match=r"step 5 \(epoch 2\): first non-finite activation at tap 'z3'"
    ) as info:
        train.fit(model, (x, y), config, checkpoints=train.CheckpointConfig(tmp_path, resume=True), progress=False)
    assert info.value.step == 5 and info.value.layer == "z3"
    assert "no checkpoint was written from it (last good checkpoint:" in str(info.value)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [4]  # epoch 2 never saved


def test_guard_names_the_first_layer_whose_gradient_overflows(tmp_path):
    # inputs of 1e-30 keep the forward finite (z3 ~ 1e10), but layers 2 and 3 (x1e20 each)
    # overflow the backward pass at dz1, so the first non-finite gradient is layer 1's.
    model, (x, y), config = _overflow_setup({2: 1e20, 3: 1e20})
    with pytest.raises(
        train.NonFiniteError, match=r"step 0 .*non-finite gradient first in params\[0\]\[0\]\['b'\]"
    ) as info:
        train.fit(model, (x * 1e-30, y), config, checkpoints=train.CheckpointConfig(tmp_path), progress=False)
    assert info.value.layer == "params[0][0]['b']" and "activation" not in str(info.value)
    assert list_checkpoints(tmp_path) == []


# ---------------------------------------------------------------- evaluate, config, progress


def test_evaluate_matches_a_numpy_computation():
    model = models.build_model("mlp", num_outputs=4, depth=1, width=8)
    params, _ = model.init(jax.random.key(0), (1, 6))
    x, y = _batch(50, classes=4, seed=5)
    scores = train.evaluate(model, params, (np.asarray(x), np.asarray(y)), batch_size=16)  # 16+16+16+2
    logits = np.asarray(jax.jit(model.apply)(params, x), np.float64)
    log_p = logits - logits.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    np.testing.assert_allclose(scores["loss"], -log_p[np.arange(50), np.asarray(y)].mean(), rtol=1e-5)
    assert scores["accuracy"] == pytest.approx(float(np.mean(logits.argmax(1) == np.asarray(y))))
    assert train.evaluate(model, params, (x, jax.nn.one_hot(y, 4)), loss="mse")["accuracy"] is None


def test_config_and_optimizer_validation():
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        train.TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        train.TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="clip_norm must be > 0"):
        train.TrainConfig(clip_norm=-1.0)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        train.TrainConfig(loss="hinge")
    with pytest.raises(ValueError, match="unknown precision"):
        train.TrainConfig(precision="f64")
    with pytest.raises(ValueError, match="batch_size 64 is larger than the training set"):
        train.fit(
            models.build_model("mlp", num_outputs=2),
            (np.zeros((10, 3), np.float32), np.zeros(10, np.int32)),
            train.TrainConfig(batch_size=64),
            progress=False,
        )


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_draws_a_bar_on_a_terminal_and_plain_lines_elsewhere():
    for stream in (io.StringIO(), _Terminal()):
        progress = Progress(2, 4, stream=stream, refresh_seconds=0.0)
        for epoch in range(2):
            progress.start_epoch(epoch)
            for step in range(1, 5):
                progress.update(step, step * 32, 0.5)
            progress.end_epoch({"train_loss": 0.25, "examples_per_second": 1234.0})
        text = stream.getvalue()
        if isinstance(stream, _Terminal):
            assert "\r" in text and "4/4" in text and "loss 0.5" in text and "ex/s" in text  # the tqdm bar
            assert "epoch 2/2  train_loss 0.25  1,234 ex/s" in text
        else:
            assert "\r" not in text and "[" not in text
            assert text.splitlines() == [
                "epoch 1/2  train_loss 0.25  1,234 ex/s",
                "epoch 2/2  train_loss 0.25  1,234 ex/s",
            ]
    quiet = io.StringIO()
    Progress(1, 1, stream=quiet, enabled=False).end_epoch({"train_loss": 1.0})
    assert quiet.getvalue() == ""


def test_a_run_that_would_never_update_is_refused_before_any_work(small_digits):
    train_data, _ = small_digits  # 256 examples: 8 steps of 32 per epoch
    config = train.TrainConfig(epochs=2, batch_size=32, accumulate=17)
    with pytest.raises(ValueError, match=r"accumulate=17 micro-batches per update, but the whole run has only 16"):
        train.fit(SMALL_MODEL, train_data, config, progress=False)
    train.check_run_length(256, dataclasses.replace(config, accumulate=16))  # one update: allowed
