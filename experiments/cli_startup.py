"""Time to first training step and XLA compile counts of ``jaxbp train``, per model family.

Each model runs in a fresh process: ``python -m jaxbp.cli train --model M --data D --epochs 1``
wrapped so that every XLA compilation (``jax.monitoring``'s backend-compile event) prints one
marker line on stderr. The parent reads stderr live, counts the markers before the CLI's
``compiled the train step`` line (the first step has run by then) and stops the run there.
``jaxbp --help`` is timed the same way (process start to exit).

    PYTHONPATH=$PWD python experiments/cli_startup.py --out results/cli_startup.json

Times depend on the machine's load; compile counts do not. To compare two commits under the
same load, run this script from each checkout in turn (``--models cnn``, alternating).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "mlp": "digits",
    "cnn": "digits",
    "resnet": "digits",
    "lstm": "chars",
    "transformer": "chars",
}
MARKER = "@@compile"
WRAPPER = f"""
import sys, jax.monitoring
def _listen(event, seconds, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
        print("{MARKER}", seconds, flush=True, file=sys.stderr)
jax.monitoring.register_event_duration_secs_listener(_listen)
from jaxbp.cli import main
sys.exit(main(sys.argv[1:]))
"""


def time_to_first_step(model: str, data: str) -> dict[str, float | int]:
    """Seconds from process start to the end of the first (compiled) step, and the compiles before it."""
    scratch = Path(tempfile.mkdtemp(prefix="jaxbp_startup_"))
    argv = ["train", "--model", model, "--data", data, "--epochs", "1", "--checkpoint-dir", str(scratch / "run")]
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", WRAPPER, *argv], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    compiles, compile_seconds, first_line = 0, 0.0, None
    assert child.stderr is not None
    for line in child.stderr:
        if line.startswith(MARKER):
            compiles += 1
            compile_seconds += float(line.split()[1])
            continue
        if first_line is None:  # the first line the CLI itself prints
            first_line = time.perf_counter() - start
        if "compiled the train step" in line:
            seconds = time.perf_counter() - start
            child.kill()
            child.wait()
            shutil.rmtree(scratch)
            return {
                "seconds_to_first_step": seconds,
                "compiles": compiles,
                "compile_seconds": compile_seconds,
                "seconds_to_first_line": first_line,
            }
    child.wait()
    raise RuntimeError(f"{model}: the run ended (exit {child.returncode}) before its first step")


def help_seconds() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jaxbp.cli", "--help"], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=Path("results/cli_startup.json"))
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    results: dict[str, object] = {"help_seconds": help_seconds()}
    print(f"jaxbp --help: {results['help_seconds']:.2f} s", flush=True)
    for model in args.models:
        results[model] = time_to_first_step(model, CASES[model])
        print(f"{model:12s} {results[model]}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
