"""Rematerialisation memory at chosen sizes: the ``remat`` section of the benchmark suite.

The measurement lives in :mod:`jaxbp.bench.remat` (``jaxbp bench`` runs it at its default
sizes); this script keeps the old command line for other sizes:
``python benchmarks/remat_memory.py [--depth 32 --width 128 --batch 2048] [--segments 1 2 4 8]
[--repeats 3] [--out PATH]`` (default out: a new ``results/bench/remat-NNN.json``; an existing
file is never overwritten). Returns the JSON document it wrote.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

from jaxbp.bench._measure import format_table, write_json
from jaxbp.bench.remat import BATCH, DEPTH, SEGMENTS, WIDTH, measure


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=DEPTH)
    parser.add_argument("--width", type=int, default=WIDTH)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--segments", type=int, nargs="+", default=list(SEGMENTS))
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds of each gradient (default: 3)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if min(args.depth, args.width, args.batch, args.repeats) < 1 or min(args.segments) < 1:
        parser.error("--depth, --width, --batch, --repeats and every --segments value must be >= 1")
    report = {
        "backend": jax.default_backend(),
        **measure(args.depth, args.width, args.batch, args.segments, args.repeats),
    }
    print(format_table(report["rows"], title=f"remat: {report['config']}"))
    path = write_json(report, "remat", path=args.out)
    print(f"wrote {path}")
    return json.loads(path.read_text())


if __name__ == "__main__":
    main()
