"""Write docs/performance.md from one benchmark-suite JSON file (results/bench/suite-NNN.json).

    python tools/performance_page.py results/bench/suite-008.json

Every number on the page comes from that file, with the run's date and machine, so the
page is regenerated, never edited by hand (tests/test_docs.py checks that the committed
page is what this script writes). One run per page: one configuration, one number.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
from collections.abc import Iterable, Sequence
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "performance.md"
FIGURE = ROOT / "docs" / "figures" / "performance.png"
STEP_SECTIONS = ("mlp", "conv", "recurrent", "transformer")
KIB = 1024


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def num(value: float | None, digits: int = 3) -> str:
    """``digits`` significant digits, no exponent below 1e5."""
    if value is None:
        return "–"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"
    return f"{value:.{digits - 1}e}"


def interval(stats: dict | None) -> str:
    if not stats:
        return "–"
    return f"{stats['median']:.3f} [{stats['low']:.3f}, {stats['high']:.3f}]"


def machine_lines(source: str, run: dict) -> list[str]:
    machine, suite = run["machine"], run.get("suite", {})
    versions = ", ".join(
        f"{name} {machine[name]}" for name in ("python", "jax", "jaxlib", "numpy", "torch") if machine.get(name)
    )
    heap = machine.get("malloc_heap_threshold_bytes")
    return [
        f"- **Run**: `{source}`, started {machine['time_utc']} (UTC), `--repeats {suite.get('repeats', '?')}`"
        + (" `--tiny`" if suite.get("tiny") else "")
        + ".",
        f"- **Machine**: {machine['cpu']}, {machine['cpu_count']} CPU cores, {machine['threads']} threads, "
        f"backend `{machine['backend']}` ({machine['device_count']} × {machine['device']}), `{machine['platform']}`.",
        f"- **Versions**: {versions}; XLA_FLAGS `{machine.get('xla_flags') or '(none)'}`"
        + (f"; malloc keeps up to {heap // 2**20} MiB in its heap (`mallopt`)" if heap else "")
        + ".",
        "",
    ]


def step_rows(run: dict) -> list[list[str]]:
    rows = []
    for name in STEP_SECTIONS:
        for row in run["sections"].get(name, {}).get("rows", []):
            step, residual, temp = row["step_ms"], row["residual_bytes"], row["temp_bytes"]
            torch = step.get("torch")
            rows.append(
                [
                    f"`{row['model']}`",
                    num(step["manual"]["median_ms"]),
                    num(step["autodiff"]["median_ms"]),
                    interval(row.get("manual_over_autodiff_paired")),
                    num(row["fwd_bwd_over_fwd"]),
                    f"{residual['manual']['total'] / KIB:.0f} / {residual['autodiff']['total'] / KIB:.0f}",
                    f"{temp['manual'] / KIB:.0f} / {temp['autodiff'] / KIB:.0f}",
                    num(torch["median_ms"]) if torch else "–",
                    interval(row.get("manual_over_torch_blocks")),
                ]
            )
    return rows


def attention_lines(section: dict) -> list[str]:
    rows = [
        [
            r["T"],
            num(r["manual ms"]),
            num(r["reference ms"]),
            num(r.get("torch ms")),
            num(r["reference/manual time"]),
            f"{num(r['residual MiB manual'])} / {num(r['residual MiB reference'])}",
            f"{num(r['temp MiB manual'])} / {num(r['temp MiB reference'])}",
        ]
        for r in section["rows"]
    ]
    header = ["T", "manual ms", "jax.grad(reference) ms", "torch SDPA ms", "reference/manual time"]
    header += ["residual MiB manual / reference", "temp MiB manual / reference"]
    return [
        "## Attention",
        "",
        f"causal={section['causal']}, {section['dtype']}, batch {section['batch']}, {section['heads']} heads, "
        f"head_dim {section['head_dim']}, block {section['block_size']}; gradient with respect to q, k and v; medians.",
        "",
        *table(header, rows),
    ]


def gradients_lines(section: dict) -> list[str]:
    rows = [
        [
            r["params"],
            num(r["backprop_ms"]),
            num(r["numerical_ms"]),
            num(r["numerical_over_backprop"]),
            r["coordinates_timed"],
        ]
        for r in section["rows"]
    ]
    return [
        "## Backpropagation vs central differences",
        "",
        f"Time to the full gradient of an MLP (central differences: 2n forward passes, step {section['epsilon']}, "
        "timed on the coordinates shown and scaled to all of them). Log-log slope: backprop "
        f"{section['slope_backprop']:.2f}, central differences {section['slope_numerical']:.2f}.",
        "",
        *table(["parameters", "backprop ms", "central differences ms", "ratio", "coordinates timed"], rows),
    ]


def scaling_lines(section: dict) -> list[str]:
    rows = [
        [
            r["sweep"],
            r["batch"],
            r["depth"],
            num(r["manual_ms"]),
            num(r["autodiff_ms"]),
            num(r["manual_ms"] / r["autodiff_ms"]),
        ]
        for r in section["rows"]
    ]
    return [
        "## MLP scaling",
        "",
        f"SGD step of an MLP of width {section['width']}, medians.",
        "",
        *table(["sweep", "batch", "depth", "manual ms", "autodiff ms", "manual/autodiff"], rows),
    ]


def remat_lines(section: dict) -> list[str]:
    config = section["config"]
    rows = [
        [
            r["variant"],
            f"{r['residual_bytes'] / 2**20:.1f}",
            f"{r['temp_bytes'] / 2**20:.1f}",
            num(r["grad_ms"]),
            num(r["residual_ratio"]),
            num(r["time_ratio"]),
        ]
        for r in section["rows"]
    ]
    header = ["variant", "residual MiB", "XLA temp MiB", "gradient ms", "residuals vs no remat", "time vs no remat"]
    return [
        "## Rematerialisation (`nn.checkpoint`)",
        "",
        f"A {config['depth']}-layer {config['activation']} MLP, width {config['width']}, batch {config['batch']}, "
        "in segments of s layers.",
        "",
        *table(header, rows),
    ]


def targets_lines(run: dict) -> list[str]:
    rows = [[t["target"], num(t["value"]), "met" if t["met"] else "**not met**"] for t in run.get("targets", [])]
    if not rows:
        return []
    return [
        "## Targets",
        "",
        "The suite checks these itself (an interval must lie wholly on the target's side).",
        "",
    ] + table(["target", "value", "verdict"], rows)


def render(source: str, run: dict, figure: str | None) -> str:
    sections = run["sections"]
    header = ["model", "manual ms", "autodiff ms", "manual/autodiff, paired [~95%]", "fwd+bwd / fwd"]
    header += [
        "residuals KiB manual / autodiff",
        "XLA temp KiB manual / autodiff",
        "torch ms",
        "jaxbp/torch, blocks [range]",
    ]
    lines = [
        "# Performance",
        "",
        "<!-- Generated by tools/performance_page.py: do not edit; rerun the command below. -->",
        "",
        f"Generated by `python tools/performance_page.py {source}` from the suite's JSON; nothing on this page is "
        "typed by hand. The suite (`python -m benchmarks`) times, in one process and round-robin, a jit-compiled "
        "SGD step with the hand-written rules (manual) against the same step with `jax.grad` through "
        "`jaxbp.reference` (autodiff), the gradient against the forward pass, the bytes saved for the backward "
        "pass, XLA's compiled temporary memory, and PyTorch eager with the same weights and thread count.",
        "",
        *machine_lines(source, run),
        "## Training steps",
        "",
        "Medians over the rounds. *Paired*: the median of the per-round manual/autodiff ratios with a "
        "distribution-free ~95% interval. *Blocks*: PyTorch runs in blocks that alternate with the JAX blocks; "
        "the median over the pairs of blocks and their range.",
        "",
        *table(header, step_rows(run)),
    ]
    if figure:
        lines += [f"![the suite's figure]({figure})", ""]
    lines += targets_lines(run)
    for name, render_section in (
        ("attention", attention_lines),
        ("gradients", gradients_lines),
        ("scaling", scaling_lines),
        ("remat", remat_lines),
    ):
        if name in sections:
            lines += render_section(sections[name])
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=pathlib.Path, help="a results/bench/suite-NNN.json written by the suite")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the page differs from the JSON's"
    )
    args = parser.parse_args(argv)
    if not args.json.is_file():
        parser.error(f"{args.json} is not a file")
    path = args.json.resolve()
    source = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(args.json)
    png = path.with_suffix(".png")
    page = render(source, json.loads(path.read_text()), "figures/performance.png" if png.is_file() else None)
    if args.check:
        if not PAGE.is_file() or PAGE.read_text() != page:
            print(
                f"{PAGE.relative_to(ROOT)} is not what {source} gives: rerun `python tools/performance_page.py {source}`"
            )
            return 1
        return 0
    if png.is_file():
        shutil.copyfile(png, FIGURE)
    PAGE.write_text(page)
    print(f"wrote {PAGE.relative_to(ROOT)}" + (f" and {FIGURE.relative_to(ROOT)}" if png.is_file() else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
