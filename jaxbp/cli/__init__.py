"""The ``jaxbp`` command line.

    jaxbp train --model cnn --data digits
    jaxbp train --checkpoint-dir runs/cnn_digits --resume --epochs 30
    jaxbp evaluate runs/cnn_digits

Each subcommand is a module defining ``add_arguments(parser)`` and ``run(args) -> exit
code``, listed in :data:`COMMANDS` with its help line. Only the module of the subcommand
being run is imported, so ``jaxbp --help`` answers at once. Adding a subcommand is one
entry there; nothing else changes.

Errors a user can fix (a bad option, an output path that exists, a checkpoint that does
not match) are one line on stderr and a non-zero exit code, never a traceback; Ctrl-C
exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import warnings
from collections.abc import Collection, Sequence
from typing import NamedTuple

__all__ = ["COMMANDS", "Subcommand", "build_parser", "main"]


class Subcommand(NamedTuple):
    """A subcommand: its help line and the module that defines ``add_arguments`` and ``run``."""

    help: str
    module: str


COMMANDS: dict[str, Subcommand] = {
    "train": Subcommand("train a registered model on a bundled data set", "jaxbp.cli._train"),
    "evaluate": Subcommand("loss and accuracy of a saved checkpoint on a data set", "jaxbp.cli._evaluate"),
    "demo": Subcommand("the tutorial documents' worked examples, printed step by step", "jaxbp.tutorial.demo"),
    "gradcheck-ops": Subcommand(
        "gradient-check every op against jax.grad and finite differences", "jaxbp.gradcheck.catalog"
    ),
    "vanishing": Subcommand("the vanishing/exploding-gradient study", "jaxbp.studies.vanishing"),
}

# Exceptions that carry a message meant for the user (the CLI's own checks raise ValueError).
_USER_ERRORS = (ValueError, OSError, FloatingPointError, SystemExit)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jaxbp")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser(load: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The ``jaxbp`` parser. The subcommands named in ``load`` (default: all) get their
    arguments, which imports their modules; the others are listed by their help line alone."""
    parser = argparse.ArgumentParser(prog="jaxbp", description="Backpropagation by hand in JAX.")
    parser.add_argument("--version", action="version", version=f"jaxbp {_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, entry in COMMANDS.items():
        sub = subparsers.add_parser(name, help=entry.help, description=entry.help)
        if load is None or name in load:
            module = importlib.import_module(entry.module)
            module.add_arguments(sub)
            sub.set_defaults(run=module.run)
    return parser


def _one_line(error: BaseException) -> str:
    """The message on one line, without the library function's name it starts with
    (``"fit: ..."``, ``"latest_valid_checkpoint: ..."``): the user typed a command, not a call."""
    text = " ".join(str(error).split()) or type(error).__name__
    return re.sub(r"^[a-z][a-z_-]*: ", "", text)


def _interrupted(code: int, as_program: bool) -> int:
    """Exit at once after Ctrl-C when run as a program: XLA may still be compiling in a
    thread that crashes the interpreter's teardown. Every file is already whole (writes are
    atomic) and the message is flushed first."""
    if as_program:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``jaxbp`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    as_program = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((word for word in argv if not word.startswith("-")), None)
    args = build_parser([command] if command in COMMANDS else []).parse_args(argv)
    prefix = f"jaxbp {args.command}"

    def one_line_warning(message: Warning | str, *_: object, **__: object) -> None:
        print(f"{prefix}: warning: {_one_line(Exception(message))}", file=sys.stderr)

    warnings.showwarning = one_line_warning  # a warning is one line, not the source line that raised it
    try:
        code = int(args.run(args))
        return _interrupted(code, as_program) if code == 130 else code
    except KeyboardInterrupt:
        print(f"\n{prefix}: interrupted", file=sys.stderr)
        return _interrupted(130, as_program)
    except _USER_ERRORS as error:
        if isinstance(error, SystemExit):  # a command's own exit: a code, or a message to show
            if error.code is None or isinstance(error.code, int):
                return error.code or 0
        print(f"{prefix}: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 -- the last line of defence against a raw traceback
        if os.environ.get("JAXBP_TRACEBACK"):
            raise
        print(
            f"{prefix}: unexpected {type(error).__name__}: {_one_line(error)} "
            "(a bug in jaxbp; rerun with JAXBP_TRACEBACK=1 to see where)",
            file=sys.stderr,
        )
        return 1
