"""The suite's text tables: any rows, and the training-step rows every model section shares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def format_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    title: str = "",
) -> str:
    """Rows of ``{column: value}`` as a right-aligned text table (floats to 3 significant digits,
    ``None`` as ``n/a``); ``columns`` defaults to the first row's keys with scalar values."""
    if columns is None:  # the first row's scalar entries
        columns = [
            key for key, value in (rows[0] if rows else {}).items() if not isinstance(value, (Mapping, list, tuple))
        ]

    def cell(value: Any) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"
        return str(value)

    grid = [columns] + [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(columns))]
    lines = ["  ".join(text.rjust(width) for text, width in zip(line, widths)) for line in grid]
    return "\n".join(([title] if title else []) + lines)


STEP_COLUMNS = (
    "model",
    "manual ms",
    "autodiff ms",
    "manual/autodiff",
    "paired 95% CI",
    "fwd+bwd/fwd",
    "resid KiB m/a",
    "temp KiB m/a",
    "torch ms",
    "manual/torch",
)


def _kib_pair(pair: Mapping[str, Any], key: str | None = None) -> str:
    values = [pair[side] if key is None else pair[side][key] for side in ("manual", "autodiff")]
    return "/".join("n/a" if v is None else f"{v / 1024:.0f}" for v in values)


def _interval(paired: Mapping[str, float] | None) -> str | None:
    return None if paired is None else f"{paired['median']:.3f} [{paired['low']:.3f}, {paired['high']:.3f}]"


def step_table(rows: Sequence[Mapping[str, Any]], title: str = "") -> str:
    """Training-step rows (``{"model": ..., **compare_training_step(...)}``) as one table:
    median step times, ratios of medians, the paired manual/autodiff ratio with its ~95% interval,
    residual bytes (total) and compiled temporary bytes."""
    table = []
    for row in rows:
        ms = row["step_ms"]
        table.append(
            {
                "model": row.get("model", "?"),
                "manual ms": ms["manual"]["median_ms"],
                "autodiff ms": ms["autodiff"]["median_ms"],
                "manual/autodiff": row["manual_over_autodiff"],
                "paired 95% CI": _interval(row.get("manual_over_autodiff_paired")),
                "fwd+bwd/fwd": row["fwd_bwd_over_fwd"],
                "resid KiB m/a": _kib_pair(row["residual_bytes"], "total"),
                "temp KiB m/a": _kib_pair(row["temp_bytes"]),
                "torch ms": ms["torch"]["median_ms"] if "torch" in ms else None,
                "manual/torch": _interval(row.get("manual_over_torch_blocks")) or row.get("manual_over_torch"),
            }
        )
    return format_table(table, STEP_COLUMNS, title)
