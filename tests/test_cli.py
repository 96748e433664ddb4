"""The jaxbp command line: training, resume, refusals before any work, nothing a user saved lost.

Most cases are refused before the first compile, so they cost milliseconds; the few that
train use a tiny xor network (a few steps)."""

import json
import os
import shutil
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest

from jaxbp import cli, models, nn, train
from jaxbp.models import _registry

REPO = Path(__file__).resolve().parents[1]
TINY = ["--data", "xor", "--samples", "160", "--batch-size", "32", "--depth", "1", "--width", "8", "--lr", "0.05"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default checkpoint directory is runs/MODEL_DATA under the cwd


def _history(path: Path) -> dict:
    return json.loads(path.read_text())


def _without_timing(history):
    return [{k: v for k, v in record.items() if k not in ("seconds", "examples_per_second")} for record in history]


def _refused(argv, capsys) -> str:
    """Run ``jaxbp argv``; it must exit 1 with one error line on stderr (after at most the line that
    announces the run, for checks that need the data), which is returned."""
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 or (len(err) == 2 and err[0].startswith("jaxbp train: training:")), err
    assert "Traceback" not in err[-1]
    return err[-1]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 2-epoch tiny run (4 steps) in its own directory; tests copy it before changing it."""
    directory = tmp_path_factory.mktemp("finished") / "run"
    assert cli.main(["train", *TINY, "--epochs", "2", "--checkpoint-dir", str(directory), "--no-progress"]) == 0
    return directory


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run", ignore=shutil.ignore_patterns(".lock")))


def test_train_end_to_end_says_where_weights_and_history_went(tmp_path, capsys):
    argv = ["train", *TINY, "--epochs", "2", "--clip", "1.0", "--accumulate", "2", "--precision", "bf16"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "final  step 8  train_loss" in captured.out and "test_accuracy" in captured.out
    assert "weights written to runs/mlp_xor/ckpt_00000008.npz" in captured.out
    assert "history written to runs/mlp_xor/history.json" in captured.out
    assert captured.err.startswith("jaxbp train: training: mlp on xor, 2 epochs")  # a line before anything slow
    assert "epoch 1/2  train_loss" in captured.err and "\r" not in captured.err  # plain progress lines off a TTY
    payload = _history(tmp_path / "runs/mlp_xor/history.json")
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
    assert cli.main([*argv, "--no-progress"]) == 0  # the same command again: a new directory, nothing replaced
    assert "weights written to runs/mlp_xor-2/" in capsys.readouterr().out


def test_resume_needs_no_other_flag_and_reproduces_the_run(finished_run, tmp_path, capsys):
    run = _copy(finished_run, tmp_path)
    assert cli.main(["train", "--checkpoint-dir", str(run), "--resume", "--epochs", "3", "--no-progress"]) == 0
    fresh = tmp_path / "fresh"
    assert cli.main(["train", *TINY, "--epochs", "3", "--checkpoint-dir", str(fresh), "--no-progress"]) == 0
    resumed = _history(run / "history.json")
    assert resumed["model_options"] == {"depth": 1, "width": 8} and resumed["config"]["learning_rate"] == 0.05
    assert _without_timing(resumed["history"]) == _without_timing(_history(fresh / "history.json")["history"])
    # evaluate reads the model and data from the checkpoint; its test loss is the history's
    capsys.readouterr()
    assert cli.main(["evaluate", str(run)]) == 0
    loss = float(capsys.readouterr().out.split()[1])
    assert loss == pytest.approx(resumed["final"]["test_loss"], abs=1e-4)


def test_a_conflicting_flag_on_resume_is_refused_by_name(finished_run, tmp_path, capsys):
    run = str(_copy(finished_run, tmp_path))
    line = _refused(["train", "--checkpoint-dir", run, "--resume", "--epochs", "3", "--lr", "0.01"], capsys)
    assert "--lr 0.01 differs from the run in" in line and "(--lr 0.05)" in line
    line = _refused(["train", "--checkpoint-dir", run, "--resume", "--epochs", "3", "--width", "9"], capsys)
    assert line.startswith("jaxbp train: error: --width 9 differs")
    line = _refused(["train", "--checkpoint-dir", run, "--resume", "--epochs", "3", "--model", "cnn"], capsys)
    assert "--model cnn differs" in line


def test_runs_that_would_do_nothing_are_refused(finished_run, tmp_path, capsys):
    run = str(_copy(finished_run, tmp_path))
    line = _refused(["train", "--checkpoint-dir", run, "--resume", "--epochs", "1"], capsys)
    assert "--epochs 1 would train nothing: the run in" in line and "at epoch 2 already" in line
    line = _refused(["train", "--checkpoint-dir", run, "--resume"], capsys)
    assert "is complete (epoch 2); pass --epochs above 2" in line
    line = _refused(["train", *TINY, "--epochs", "2", "--accumulate", "1000"], capsys)
    assert "--accumulate 1000 is longer than the whole run (8 steps" in line and "never be updated" in line
    line = _refused(["train", *TINY, "--batch-size", "500"], capsys)
    assert "--batch-size 500 is larger than the training set of xor with --samples 160 (128 examples)" in line
    assert not Path("runs").exists()  # refused before anything was created


def test_an_existing_run_without_resume_says_what_to_do(finished_run, tmp_path, capsys):
    run = str(_copy(finished_run, tmp_path))
    line = _refused(["train", *TINY, "--checkpoint-dir", run], capsys)
    assert "already holds a run (ckpt_00000008.npz, epoch 2); add --resume to continue it" in line


def test_a_truncated_newest_checkpoint_is_set_aside_and_the_run_resumes(finished_run, tmp_path, capsys):
    run = _copy(finished_run, tmp_path)
    newest = run / "ckpt_00000008.npz"
    newest.write_bytes(newest.read_bytes()[:3000])
    assert cli.main(["train", "--checkpoint-dir", str(run), "--resume", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "set aside as ckpt_00000008.npz.corrupt" in err
    assert (run / "ckpt_00000008.npz.corrupt").stat().st_size == 3000  # kept, never deleted
    assert [r["epoch"] for r in _history(run / "history.json")["history"]] == [1, 2]  # epoch 2 trained again


def test_files_the_run_did_not_write_are_never_replaced(tmp_path, capsys):
    mine = tmp_path / "mine.json"
    mine.write_text("my notes")
    os.chmod(mine, 0o644)
    line = _refused(["train", *TINY, "--history", str(mine)], capsys)
    assert f"--history {mine} exists and this run did not write it; pass --overwrite" in line
    assert mine.read_text() == "my notes"
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / "history.json").write_text("someone else's")
    line = _refused(["train", *TINY, "--checkpoint-dir", str(directory)], capsys)
    assert "history.json exists and this run did not write it" in line
    assert (directory / "history.json").read_text() == "someone else's"
    # --overwrite replaces it, keeping its mode
    assert cli.main(["train", *TINY, "--epochs", "1", "--history", str(mine), "--overwrite", "--no-progress"]) == 0
    assert _history(mine)["data"] == "xor" and stat.S_IMODE(mine.stat().st_mode) == 0o644


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--checkpoint-dir", "{file}"], "is a file, not a directory"),
        (["--checkpoint-dir", "{file}/sub"], "is a file, so the directory cannot be created there"),
        (["--history", "{tmp}"], "is a directory; name a file"),
        (["--history", "{file}/h.json"], "is a file, so the directory cannot be created there"),
        (["--history", "/dev/null"], "--history /dev/null is not a regular file"),
        (["--resume"], "--resume needs --checkpoint-dir, the directory of the run to continue"),
        (["--samples", "10", "--batch-size", "4", "--data", "digits"], "--samples sizes the generated data sets"),
        (["--model", "lstm"], "--model lstm reads 'sequence' inputs but --data xor gives 'flat'; use --data chars"),
        (["--model", "cnn"], "use --data digits"),
        (
            ["--model-option", "kernel=3"],
            "--model-option kernel= does not apply to --model mlp; its options are --depth",
        ),
        (["--model-option", "residual=maybe"], "--model mlp: option residual='maybe' is not a valid bool"),
        (["--model-option", "width=9"], "the model option width is given twice"),
        (["--samples", "2"], "leaves no test examples"),
    ],
)
def test_bad_combinations_are_one_line_before_any_work(extra, message, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    extra = [word.format(tmp=tmp_path, file=tmp_path / "file") for word in extra]
    assert message in _refused(["train", *TINY, *extra], capsys)
    assert not Path("runs").exists()


def test_an_unwritable_history_is_refused_before_training(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):
        pytest.skip("running as a user who can write anywhere (root)")
    assert "is not writable" in _refused(["train", *TINY, "--history", str(locked / "h.json")], capsys)


def test_ctrl_c_prints_the_checkpoint_and_the_command_that_resumes(monkeypatch, tmp_path, capsys):
    real_fit = train.fit

    def interrupted_fit(*args, **kwargs):
        def interrupt(state):
            if int(state.step) == 6:  # mid-way through epoch 2
                raise KeyboardInterrupt

        return real_fit(*args, **kwargs, on_step=interrupt)

    monkeypatch.setattr(train, "fit", interrupted_fit)
    assert cli.main(["train", *TINY, "--epochs", "3", "--checkpoint-dir", "my run", "--no-progress"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "jaxbp train: interrupted; the last checkpoint is my run/ckpt_00000004.npz (epoch 1); "
        "resume with: jaxbp train --checkpoint-dir 'my run' --resume"
    ]
    assert sorted(p.name for p in Path("my run").iterdir()) == [".lock", "ckpt_00000004.npz"]  # nothing half-written


def test_any_value_error_of_a_command_is_one_line_and_exit_1(monkeypatch, capsys):
    module = types.ModuleType("jaxbp_fake_command")
    module.add_arguments = lambda parser: parser.add_argument("--shapes", type=int)
    module.run = lambda args: (_ for _ in ()).throw(ValueError(f"--shapes must be >= 1,\n got {args.shapes}"))
    monkeypatch.setitem(sys.modules, "jaxbp_fake_command", module)
    monkeypatch.setitem(cli.COMMANDS, "fake", cli.Subcommand("a fake", "jaxbp_fake_command"))
    assert _refused(["fake", "--shapes", "-3"], capsys) == "jaxbp fake: error: --shapes must be >= 1, got -3"
    module.run = lambda args: 1 / 0
    line = _refused(["fake"], capsys)
    assert line.startswith("jaxbp fake: unexpected ZeroDivisionError: division by zero (a bug in jaxbp")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lr", "-1"], "argument --lr: must be > 0, got -1"),
        (["--checkpoint-dir", ""], "argument --checkpoint-dir: is empty; name a path"),
        (["--lr", "inf"], "argument --lr: must be <= 1e+30, got inf"),
        (["--lr", "fast"], "argument --lr: expected a number, got 'fast'"),
        (["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
        (["--accumulate", "2.5"], "argument --accumulate: expected an integer"),
        (["--samples", "99999999999999999999"], "argument --samples: must be <= 1e+07"),
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


def test_help_lists_every_model_with_its_options_and_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    for name in models.model_names():
        assert f"\n  {name} " in out
    assert "blocks=1 stages=2 width=16" in out and "defaults: --epochs 20 --lr 0.003 --batch-size 64" in out


def test_version_and_top_level_help_import_no_subcommand():
    code = (
        "import sys; from jaxbp import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit: pass\n"
        "assert 'jax' not in sys.modules and 'jaxbp.models' not in sys.modules, sorted(sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "evaluate" in result.stdout and "train" in result.stdout
    version = subprocess.run([sys.executable, "-m", "jaxbp.cli", "--version"], capture_output=True, text=True, cwd=REPO)
    assert version.returncode == 0 and version.stdout.startswith("jaxbp ")


def test_a_newly_registered_builder_is_usable_without_touching_the_cli(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))

    @models.register_model("wide_linear")
    def wide_linear(*, num_outputs: int, hidden: int = 4, squash: bool = False) -> nn.Layer:
        """dense -> tanh? -> dense."""
        return nn.serial(nn.dense(hidden), *([nn.activation("tanh")] if squash else []), nn.dense(num_outputs))

    argv = ["train", "--model", "wide_linear", "--data", "spirals", "--samples", "100", "--batch-size", "16",
            "--epochs", "1", "--model-option", "hidden=6", "--model-option", "squash=true", "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    assert _history(tmp_path / "runs/wide_linear_spirals/history.json")["model_options"] == {
        "hidden": 6,
        "squash": True,
    }


def test_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "jaxbp.cli", "train", "--help"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "--checkpoint-dir" in result.stdout and "--model-option KEY=VALUE" in result.stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--xor-epochs", "-5"], "jaxbp demo: error: --xor-epochs must be >= 1, got -5"),
        (
            ["train", "--model", "transformer", "--data", "chars", "--model-option", "heads=3"],
            "jaxbp train: error: dim=64 does not split into heads=3; choose heads from [1, 2, 4, 8, 16]",
        ),
    ],
)
def test_refusals_name_the_users_options(argv, message, capsys, monkeypatch, tmp_path):
    """Refused before any work, in the words of the user's flags (not an MLIR error, not head_dim)."""
    monkeypatch.chdir(tmp_path)
    assert _refused(argv, capsys) == message
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.npz"))
