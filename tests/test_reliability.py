"""No silent wrong results: bad labels under jit/vmap, -inf logits, empty inputs. (NaN/Inf through
every op is the non-finite check of the sweep, tests/test_catalog.py.)"""

from __future__ import annotations

import math
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbp import ops

# ----------------------------------------------------------- out-of-range labels


@pytest.mark.parametrize("bad_label", [10, -1, 255])
def test_out_of_range_label_poisons_the_loss_under_jit_and_vmap(bad_label):
    logits = jax.random.normal(jax.random.key(0), (4, 10))
    labels = jnp.array([1, bad_label, 3, 4])
    loss, grads = jax.jit(jax.value_and_grad(ops.softmax_cross_entropy))(logits, labels)
    assert math.isnan(float(loss))
    assert bool(jnp.all(jnp.isnan(grads[1]))) and bool(jnp.all(jnp.isfinite(grads[jnp.array([0, 2, 3])])))
    per_example = jax.vmap(ops.softmax_cross_entropy)(logits, labels)
    assert np.isnan(per_example[1]) and np.all(np.isfinite(per_example[jnp.array([0, 2, 3])]))
    with pytest.raises(ValueError, match=f"softmax_cross_entropy: label {bad_label} is out of range for 10 classes"):
        ops.softmax_cross_entropy(logits, labels)


@pytest.mark.parametrize("bad_target", [-0.5, 2.0, float("nan")])
def test_binary_target_outside_unit_interval_poisons_the_loss_under_jit(bad_target):
    logits, targets = jnp.array([0.3, -1.0, 2.0]), jnp.array([0.0, bad_target, 1.0])
    loss, grads = jax.jit(jax.value_and_grad(ops.binary_cross_entropy_with_logits))(logits, targets)
    assert math.isnan(float(loss))
    assert np.isnan(grads[1]) and np.all(np.isfinite(grads[jnp.array([0, 2])]))
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: labels must lie in \[0, 1\], got"):
        ops.binary_cross_entropy_with_logits(logits, targets)


# ------------------------------------------------------------- -inf logits


@pytest.mark.parametrize("labels_kind", ["int", "one_hot"])
def test_minus_inf_logits_mean_one_thing_eagerly_and_under_jit(labels_kind):
    """A masked (-inf) class adds nothing; -inf on the target class gives +inf."""
    logits = jnp.array([[0.0, -jnp.inf, 1.0], [2.0, 0.0, -jnp.inf]])
    masked_elsewhere, masked_target = jnp.array([2, 0]), jnp.array([1, 0])
    if labels_kind == "one_hot":
        masked_elsewhere, masked_target = jax.nn.one_hot(masked_elsewhere, 3), jax.nn.one_hot(masked_target, 3)
    # row 0: log softmax(0, 1)[1] = -log(1 + e^-1); row 1: log softmax(2, 0)[0] = -log(1 + e^-2)
    expected = (math.log1p(math.exp(-1)) + math.log1p(math.exp(-2))) / 2
    for call in (ops.softmax_cross_entropy, jax.jit(ops.softmax_cross_entropy)):
        assert float(call(logits, masked_elsewhere)) == pytest.approx(expected, rel=1e-6)
        assert float(call(logits, masked_target)) == math.inf
    grads = jax.jit(jax.grad(ops.softmax_cross_entropy))(logits, masked_elsewhere)
    assert bool(jnp.all(jnp.isfinite(grads))) and float(grads[0, 1]) == 0.0 and float(grads[1, 2]) == 0.0


# ------------------------------------------------------------------ empty inputs, keys


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ops.mse(jnp.ones((0, 3)), jnp.ones((0, 3))), r"mse: predictions is empty.*\(shape \(0, 3\)\)"),
        (
            lambda: ops.binary_cross_entropy_with_logits(jnp.ones((0,)), jnp.ones((0,))),
            r"binary_cross_entropy_with_logits: logits is empty",
        ),
        (
            lambda: ops.softmax_cross_entropy(jnp.ones((0, 3)), jnp.ones((0,), jnp.int32)),
            r"softmax_cross_entropy: logits is empty",
        ),
        (
            lambda: ops.softmax_cross_entropy(jnp.ones((2, 0)), jnp.zeros((2,), jnp.int32)),
            r"softmax_cross_entropy: logits have 0 classes \(shape \(2, 0\)\)",
        ),
        (lambda: ops.softmax(jnp.ones((2, 0))), r"softmax: axis 1 has 0 classes to normalize over \(shape \(2, 0\)\)"),
        (lambda: ops.log_softmax(jnp.ones((0, 2)), axis=0), r"log_softmax: axis 0 has 0 classes"),
        (lambda: ops.reshape(jnp.ones((0, 3)), (0, -1)), r"reshape: cannot infer the -1 entry of \(0, -1\)"),
        (
            lambda: ops.batch_norm({"gamma": jnp.ones(0), "beta": jnp.ones(0)}, jnp.ones((4, 0))),
            r"batch_norm: x has 0 features to normalize \(shape \(4, 0\)\)",
        ),
        (
            lambda: ops.layer_norm({"gamma": jnp.ones(0), "beta": jnp.ones(0)}, jnp.ones((4, 0))),
            r"layer_norm: x has 0 features",
        ),
    ],
)
def test_empty_inputs_are_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_flatten_of_an_empty_batch_keeps_the_feature_size():
    assert ops.flatten(jnp.ones((0, 3, 2))).shape == (0, 6)


@pytest.mark.parametrize("shape", [(3,), (2, 2), ()])
def test_raw_key_of_the_wrong_shape_names_dropout(shape):
    with pytest.raises(TypeError, match=rf"dropout: key must be a PRNG key .* shape {re.escape(str(shape))}"):
        ops.dropout(jnp.ones(4), jnp.zeros(shape, jnp.uint32), 0.5, train=True)
    with pytest.raises(TypeError, match="dropout: key must be a PRNG key"):
        ops.dropout(jnp.ones(4), jax.random.split(jax.random.key(0), 2), 0.5, train=True)


# ------------------------------------------------------------------------ fit and the CLI


def _tiny_run(n: int = 64, scale: float = 1.0, labels=None, activation: str = "tanh"):
    from jaxbp import models, train

    kx, ky = jax.random.split(jax.random.key(0))
    x = scale * jax.random.normal(kx, (n, 6))
    y = jax.random.randint(ky, (n,), 0, 3) if labels is None else labels
    model = models.build_model("mlp", num_outputs=3, depth=1, width=8, activation=activation)
    return train, model, (np.asarray(x), np.asarray(y))


def test_fit_checks_every_label_of_the_data_set_before_the_first_step():
    labels = np.zeros(64, np.int32)
    labels[50] = 3
    train, model, data = _tiny_run(labels=labels)
    steps = []
    with pytest.raises(ValueError, match=r"fit: 1 of 64 labels are out of range for 3 classes .* at example 50"):
        train.fit(model, data, train.TrainConfig(epochs=1, batch_size=16), progress=False, on_step=steps.append)
    assert steps == []


def test_fit_names_the_input_when_inputs_overflow():
    train, model, data = _tiny_run(scale=1e38, activation="relu")
    with pytest.raises(train.NonFiniteError, match="input batch is the culprit") as caught:
        train.fit(model, data, train.TrainConfig(epochs=1, batch_size=16), progress=False)
    assert caught.value.layer == "input"


def test_fit_warns_once_when_the_loss_diverges_but_stays_finite():
    train, model, data = _tiny_run(n=128)
    config = train.TrainConfig(epochs=3, batch_size=16, learning_rate=1e6, optimizer="adam")
    with pytest.warns(
        RuntimeWarning, match=r"fit: the loss is diverging: .* at step \d+ .* lower learning rate"
    ) as record:
        try:
            train.fit(model, data, config, progress=False)
        except train.NonFiniteError:
            pass  # the guard may stop it later; the warning must come first
    assert len([w for w in record if "diverging" in str(w.message)]) == 1


def test_second_fit_on_a_locked_directory_is_refused_naming_the_holder(tmp_path):
    from jaxbp.checkpoint import CheckpointError, lock_directory

    train, model, data = _tiny_run()
    with (
        lock_directory(tmp_path),
        pytest.raises(CheckpointError, match=rf"in use by another run \(pid {os.getpid()}\)"),
    ):
        train.fit(
            model,
            data,
            train.TrainConfig(epochs=1, batch_size=16),
            checkpoints=train.CheckpointConfig(tmp_path),
            progress=False,
        )


def test_resume_on_an_empty_directory_says_so_in_one_line(tmp_path, capsys):
    train, model, data = _tiny_run()
    train.fit(
        model,
        data,
        train.TrainConfig(epochs=1, batch_size=32),
        checkpoints=train.CheckpointConfig(tmp_path, resume=True),
        progress=False,
    )
    lines = [line for line in capsys.readouterr().err.splitlines() if "resume" in line]
    assert len(lines) == 1 and "no checkpoint in" in lines[0] and "starting a new run" in lines[0]


def test_cli_turns_a_checkpoint_error_into_one_line_and_exit_1(tmp_path, capsys):
    from jaxbp import cli
    from jaxbp.checkpoint import lock_directory

    with lock_directory(tmp_path):
        code = cli.main(["train", "--model", "mlp", "--data", "digits", "--epochs", "1",
                         "--checkpoint-dir", str(tmp_path), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "in use by another run" in err[0] and "Traceback" not in err[0]
