"""The command line of one section: ``python -m benchmarks.<name> [--tiny] [--repeats N] [--out PATH]``."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks._heap import heap_allocations
from benchmarks._results import RESULTS_DIR, write_json
from benchmarks._tables import format_table, step_table


def section_main(
    name: str,
    run: Callable[..., Mapping[str, Any]],
    argv: Sequence[str] | None = None,
    add_options: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """Command line of one section: ``[--tiny] [--repeats N] [--out PATH]`` plus the section's own
    options (``add_options``; each is passed to ``run`` as a keyword); prints the table of its
    training-step rows (or of all its rows) and writes JSON to a new file."""
    parser = argparse.ArgumentParser(
        prog=f"python -m benchmarks.{name}",
        description=f"jaxbp benchmark section {name!r}",
    )
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (seconds; for tests)")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds per variant (default: 10)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"JSON path (default: a new {RESULTS_DIR}/{name}-NNN.json)",
    )
    if add_options is not None:
        add_options(parser)
    options = vars(parser.parse_args(argv))
    out = options.pop("out")
    if options["repeats"] < 1:
        parser.error(f"--repeats must be >= 1, got {options['repeats']}")
    heap_allocations()
    result = dict(run(**options))
    rows = result.get("rows", [])
    step_rows = [row for row in rows if "step_ms" in row]
    print(step_table(step_rows, title=name) if step_rows else format_table(rows, title=name))
    print(f"wrote {write_json({'section': name, **result}, name, path=out)}")
    return 0
