"""The jaxbp command line: end-to-end training, resume, bad values, extension points."""

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from jaxbp import cli, models, nn
from jaxbp.models import _registry

REPO = Path(__file__).resolve().parents[1]
TINY = ["--data", "xor", "--samples", "160", "--batch-size", "32", "--depth", "1", "--width", "8", "--lr", "0.05"]


def _history(path: Path) -> dict:
    return json.loads(path.read_text())


def _without_timing(history):
    return [{k: v for k, v in record.items() if k not in ("seconds", "examples_per_second")} for record in history]


def test_train_end_to_end(tmp_path, capsys):
    out = tmp_path / "history.json"
    argv = [
        "train",
        *TINY,
        "--epochs",
        "2",
        "--clip",
        "1.0",
        "--accumulate",
        "2",
        "--precision",
        "bf16",
        "--history",
        str(out),
    ]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "final  step 8  train_loss" in captured.out and "test_accuracy" in captured.out
    assert f"history written to {out}" in captured.out
    assert "epoch 1/2  train_loss" in captured.err and "\r" not in captured.err  # plain progress lines off a TTY
    payload = _history(out)
    assert payload["model"] == "mlp" and payload["data"] == "xor"
    assert payload["model_options"] == {"depth": 1, "width": 8}
    config = payload["config"]
    assert (config["clip_norm"], config["accumulate"], config["precision"], config["loss"]) == (
        1.0,
        2,
        "bf16",
        "binary_cross_entropy",
    )
    assert [record["epoch"] for record in payload["history"]] == [1, 2]
    assert payload["final"]["train_loss"] == payload["history"][-1]["train_loss"]


def test_resume_continues_the_same_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", *TINY, "--epochs", "1", "--checkpoint-dir", str(run), "--no-progress"]) == 0
    assert cli.main(["train", *TINY, "--epochs", "2", "--checkpoint-dir", str(run)]) == 1
    assert (
        "already holds ckpt_00000004.npz; pass resume=True (--resume)" in capsys.readouterr().err
    )  # no silent restart
    assert cli.main(["train", *TINY, "--epochs", "2", "--checkpoint-dir", str(run), "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().err
    assert (
        cli.main(["train", *TINY, "--epochs", "2", "--checkpoint-dir", str(tmp_path / "fresh"), "--no-progress"]) == 0
    )
    resumed, fresh = _history(run / "history.json"), _history(tmp_path / "fresh" / "history.json")
    assert _without_timing(resumed["history"]) == _without_timing(fresh["history"])
    assert cli.main(["train", *TINY, "--epochs", "3", "--lr", "0.01", "--checkpoint-dir", str(run), "--resume"]) == 1
    assert "learning_rate=0.05 but this run has learning_rate=0.01" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lr", "-1"], "argument --lr: must be > 0, got -1"),
        (["--lr", "fast"], "argument --lr: expected a number, got 'fast'"),
        (["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
        (["--accumulate", "2.5"], "argument --accumulate: expected an integer"),
        (["--model", "vgg"], "argument --model: invalid choice: 'vgg' (choose from"),
        (["--precision", "f64"], "argument --precision: invalid choice: 'f64'"),
        (["--dropout", "1.5"], "argument --dropout: must lie in [0, 1), got 1.5"),
        (["--model-option", "width"], "argument --model-option: expected KEY=VALUE, got 'width'"),
    ],
)
def test_bad_values_are_rejected_by_the_parser(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model-option", "kernel=3"], "model 'mlp' has no option 'kernel'; its options are ['activation'"),
        (["--model-option", "depth=two"], "option depth='two' is not a valid int"),
        (["--width", "8", "--model-option", "width=9"], "model option 'width' is given twice"),
        (["--resume"], "--resume needs --checkpoint-dir"),
    ],
)
def test_bad_model_options_are_clear_errors(argv, message, capsys):
    assert cli.main(["train", *argv]) == 2
    assert message in capsys.readouterr().err


def test_divergence_is_reported_with_exit_code_1(tmp_path, capsys):
    argv = [
        "train",
        *TINY,
        "--lr",
        "1e30",
        "--optimizer",
        "sgd",
        "--epochs",
        "2",
        "--no-progress",
        "--history",
        str(tmp_path / "h.json"),
    ]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "jaxbp train: error: training stopped: non-finite values at step" in err
    assert not (tmp_path / "h.json").exists()


def test_a_newly_registered_builder_is_usable_without_touching_the_cli(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))

    @models.register_model("wide_linear")
    def wide_linear(*, num_outputs: int, hidden: int = 4, squash: bool = False) -> nn.Layer:
        """dense -> tanh? -> dense."""
        return nn.serial(nn.dense(hidden), *([nn.activation("tanh")] if squash else []), nn.dense(num_outputs))

    out = tmp_path / "h.json"
    argv = ["train", "--model", "wide_linear", "--data", "spirals", "--samples", "100", "--batch-size", "16", "--epochs", "1",
            "--model-option", "hidden=6", "--model-option", "squash=true", "--no-progress", "--history", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    assert _history(out)["model_options"] == {"hidden": 6, "squash": True}
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "wide_linear" in help_text

    models.register_model("image_model", layout="nhwc")(
        lambda *, num_outputs: nn.serial(nn.flatten(), nn.dense(num_outputs))
    )
    assert cli.main(["train", "--model", "image_model", "--data", "xor"]) == 2
    assert "data set 'xor' has layouts ['flat'], but the model needs 'nhwc'" in capsys.readouterr().err


def test_subcommands_come_from_modules(monkeypatch, capsys):
    module = types.ModuleType("jaxbp_fake_command")
    module.__doc__ = "Say hello.\n\nMore text."
    module.add_arguments = lambda parser: parser.add_argument("--name", default="world")
    module.run = lambda args: print(f"hello {args.name}") or 3
    monkeypatch.setitem(sys.modules, "jaxbp_fake_command", module)
    monkeypatch.setitem(cli.COMMANDS, "hello", "jaxbp_fake_command")
    assert cli.main(["hello", "--name", "jax"]) == 3
    assert capsys.readouterr().out == "hello jax\n"
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "Say hello." in capsys.readouterr().out


def test_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "jaxbp.cli", "train", "--help"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "--checkpoint-dir" in result.stdout and "--model-option KEY=VALUE" in result.stdout
