"""Bad and unusual inputs to the ``jaxbp`` command line: exit code and first line of each.

Every case runs ``jaxbp.cli.main([...])`` in this process (one import of JAX for all of
them; an exception escaping ``main`` counts as the traceback a user would see) inside a sandbox directory
holding a user's own files (a notes file, a directory, a ``history.json`` the CLI did not
write), a finished tiny run, and a run whose newest checkpoint is truncated. For each case
the table records the exit code, the first line of output, and three verdicts:

* traceback -- "Traceback" anywhere in the output;
* overwrite -- a user's file changed, vanished or changed mode;
* no-op -- a case that must be refused (the run would do nothing or is wrong) exited 0.

    PYTHONPATH=$PWD python experiments/cli_bad_inputs.py --out results/cli_bad_inputs

writes ``cli_bad_inputs.md`` (the table) and ``cli_bad_inputs.json`` there.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = "--data xor --samples 160 --batch-size 32 --depth 1 --width 8 --lr 0.05 --no-progress"
USER_FILES = ("notes.txt", "adir/keep.txt", "d_with_history/history.json")

# (command after `jaxbp`, expected: "refuse" (must exit non-zero) or "ok")
CASES: list[tuple[str, str]] = [
    ("", "refuse"),
    ("--version", "ok"),
    ("--help", "ok"),
    ("frobnicate", "refuse"),
    ("train --unknown-flag", "refuse"),
    ("train --lr -1", "refuse"),
    ("train --lr fast", "refuse"),
    ("train --lr inf", "refuse"),
    ("train --lr nan", "refuse"),
    ("train --epochs 0", "refuse"),
    ("train --epochs 1.5", "refuse"),
    ("train --batch-size 0", "refuse"),
    ("train --batch-size 100000", "refuse"),
    (f"train {TINY} --epochs 2 --accumulate 1000", "refuse"),
    ("train --accumulate 0", "refuse"),
    ("train --data xor --samples 99999999999999999999", "refuse"),
    ("train --data xor --samples 0", "refuse"),
    ("train --data xor --samples 2", "refuse"),
    ("train --data digits --samples 10", "refuse"),
    ("train --model vgg", "refuse"),
    ("train --model lstm --data digits", "refuse"),
    ("train --model cnn --data xor", "refuse"),
    ("train --model transformer --data spirals", "refuse"),
    ("train --data mnist", "refuse"),
    ("train --precision f64", "refuse"),
    ("train --optimizer lbfgs", "refuse"),
    ("train --clip 0", "refuse"),
    ("train --clip -1", "refuse"),
    ("train --dropout 1.5", "refuse"),
    ("train --dropout 1", "refuse"),
    ("train --seed -1", "refuse"),
    ("train --keep 0", "refuse"),
    ("train --devices 0", "refuse"),
    ("train --devices 99", "refuse"),
    ("train --model-option width", "refuse"),
    ("train --model-option kernel=3", "refuse"),
    ("train --model-option depth=two", "refuse"),
    ("train --width 8 --model-option width=9", "refuse"),
    ("train --model cnn --data digits --depth 3", "refuse"),
    ("train --model transformer --data chars --model-option heads=3", "refuse"),
    ("train --checkpoint-dir ''", "refuse"),
    ("train --checkpoint-dir notes.txt", "refuse"),
    ("train --checkpoint-dir notes.txt/sub", "refuse"),
    ("train --checkpoint-dir d_with_history", "refuse"),
    ("train --history ''", "refuse"),
    ("train --history notes.txt", "refuse"),
    ("train --history adir", "refuse"),
    ("train --history /dev/null", "refuse"),
    ("train --history notes.txt/h.json", "refuse"),
    ("train --resume", "refuse"),
    ("train --checkpoint-dir run", "refuse"),
    ("train --checkpoint-dir run --resume", "refuse"),
    ("train --checkpoint-dir run --resume --epochs 1", "refuse"),
    ("train --checkpoint-dir run --resume --epochs 3 --lr 0.01", "refuse"),
    ("train --checkpoint-dir run --resume --epochs 3 --width 9", "refuse"),
    ("train --checkpoint-dir run --resume --epochs 3 --data spirals", "refuse"),
    ("train --checkpoint-dir run --resume --epochs 3 --model-option activation=tanh", "refuse"),
    ("train --checkpoint-dir only_corrupt --resume --epochs 3", "refuse"),
    (f"train {TINY} --epochs 1 --checkpoint-dir fresh --resume", "ok"),
    ("train --checkpoint-dir trunc --resume --epochs 3 --no-progress", "ok"),
    (f"train {TINY} --epochs 1 --history new/deeper/h.json", "ok"),
    (f"train {TINY} --epochs 1 --history notes.txt --overwrite", "ok"),
    ("evaluate", "refuse"),
    ("evaluate notes.txt", "refuse"),
    ("evaluate missing.npz", "refuse"),
    ("evaluate adir", "refuse"),
    ("evaluate only_corrupt", "refuse"),
    ("evaluate run", "ok"),
    ("evaluate run --data digits", "refuse"),
    ("evaluate run --data spirals", "refuse"),
    ("evaluate run --split validation", "refuse"),
    ("evaluate run --batch-size 0", "refuse"),
    ("gradcheck-ops --shapes -3", "refuse"),
    ("gradcheck-ops --ops nosuchop", "refuse"),
    ("demo --xor-epochs -5", "refuse"),
    ("vanishing --depths -1", "refuse"),
    ("gradcheck-ops --shapes 0", "refuse"),
    ("bench", "refuse"),  # the benchmarks moved out of the package: python -m benchmarks from a clone
]


def _digest(path: Path) -> tuple[str, int] | None:
    if not path.exists():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mode


def _jaxbp(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "jaxbp.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def make_sandbox(root: Path) -> None:
    """A user's files, a finished tiny run, and runs with truncated checkpoints."""
    (root / "notes.txt").write_text("my notes\n")
    (root / "adir").mkdir()
    (root / "adir/keep.txt").write_text("keep me\n")
    (root / "d_with_history").mkdir()
    (root / "d_with_history/history.json").write_text('{"mine": true}\n')
    done = _jaxbp(["train", *shlex.split(TINY), "--epochs", "2", "--checkpoint-dir", "run"], root)
    assert done.returncode == 0, done.stderr
    shutil.copytree(root / "run", root / "trunc")
    newest = sorted((root / "trunc").glob("ckpt_*.npz"))[-1]
    newest.write_bytes(newest.read_bytes()[:3000])
    (root / "only_corrupt").mkdir()
    (root / "only_corrupt/ckpt_00000004.npz").write_bytes(b"PK\x03\x04 not really")


def _in_process(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``jaxbp args`` through :func:`jaxbp.cli.main` in ``cwd``, its output captured."""
    from jaxbp import cli

    out, err = io.StringIO(), io.StringIO()
    previous, show_warning = Path.cwd(), warnings.showwarning  # main() makes warnings one line; undone below
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(args)
            except SystemExit as exit_:  # argparse's usage errors and --help
                code = exit_.code if isinstance(exit_.code, int) else 1
            except BaseException:  # what a user would see as a raw traceback
                err.write(traceback.format_exc())
                code = 1
    finally:
        os.chdir(previous)
        warnings.showwarning = show_warning
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def run_case(command: str, expected: str, root: Path) -> dict:
    before = {name: _digest(root / name) for name in USER_FILES}
    start = time.perf_counter()
    result = _in_process(shlex.split(command), root)
    seconds = time.perf_counter() - start
    output = (result.stderr + result.stdout).strip()
    errors = [line for line in result.stderr.splitlines() if "error" in line or "warning" in line]
    first = (errors or output.splitlines() or [""])[0]
    changed = [name for name in USER_FILES if _digest(root / name) != before[name]]
    if "--overwrite" in command:  # asked for: notes.txt may change
        changed = [name for name in changed if name != "notes.txt"]
    return {
        "command": f"jaxbp {command}".strip(),
        "exit": result.returncode,
        "first_line": first[:160],
        "traceback": "Traceback" in output,
        "overwrite": changed,
        "no_op": expected == "refuse" and result.returncode == 0,
        "seconds": round(seconds, 1),
    }


def ctrl_c_case(root: Path) -> dict:
    """SIGINT a second after the first epoch of a longer run (its checkpoint is written by then)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "jaxbp.cli", "train", "--data", "spirals", "--samples", "20000", "--epochs", "50"]
    argv += ["--checkpoint-dir", "interrupted"]
    child = subprocess.Popen(
        argv, cwd=root, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a shell's background job ignores it
    )  # fmt: skip
    assert child.stderr is not None
    lines = []
    for line in child.stderr:
        lines.append(line)
        if line.startswith("epoch"):
            time.sleep(1.0)
            child.send_signal(signal.SIGINT)
            break
    rest = child.stderr.read()
    child.wait()
    last = [line for line in rest.splitlines() if line.strip()]
    output = "".join(lines) + rest
    leftovers = [p.name for p in (root / "interrupted").iterdir() if "tmp" in p.name]
    return {
        "command": "jaxbp train --data spirals --samples 20000 --epochs 50 --checkpoint-dir interrupted, then Ctrl-C",
        "exit": child.returncode,
        "first_line": (last or [""])[-1][:200],
        "traceback": "Traceback" in output,
        "overwrite": leftovers,
        "no_op": False,
        "seconds": None,
    }


def table(rows: list[dict]) -> str:
    lines = ["| # | command | exit | first line | traceback | overwrite | no-op |", "|---|---|---|---|---|---|---|"]
    for i, row in enumerate(rows, 1):
        cells = [str(i), f"`{row['command']}`", str(row["exit"]), row["first_line"].replace("|", "\\|")]
        cells += ["yes" if row["traceback"] else "", ", ".join(row["overwrite"]), "yes" if row["no_op"] else ""]
        lines.append("| " + " | ".join(cells) + " |")
    totals = {key: sum(bool(row[key]) for row in rows) for key in ("traceback", "overwrite", "no_op")}
    lines.append("")
    lines.append(
        f"{len(rows)} cases: {totals['traceback']} tracebacks, {totals['overwrite']} overwrites, "
        f"{totals['no_op']} silent no-ops."
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=Path("results/cli_bad_inputs"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="jaxbp_bad_inputs_") as tmp:
        root = Path(tmp)
        make_sandbox(root)
        for command, expected in CASES:
            rows.append(run_case(command, expected, root))
            print(f"{rows[-1]['exit']:4d}  {rows[-1]['command']}\n      {rows[-1]['first_line']}", flush=True)
        rows.append(ctrl_c_case(root))
        print(f"{rows[-1]['exit']:4d}  Ctrl-C\n      {rows[-1]['first_line']}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    header = f"Generated by `python experiments/cli_bad_inputs.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n\n"
    (args.out / "cli_bad_inputs.md").write_text(header + table(rows))
    (args.out / "cli_bad_inputs.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows).splitlines()[-1])


if __name__ == "__main__":
    main()
