"""Training progress: a one-line bar on a terminal, plain lines elsewhere.

On a TTY the current epoch is drawn as a bar that rewrites itself with ``\\r``
(at most every ``refresh_seconds``) showing the running loss and throughput in
examples per second; when the epoch ends the line is replaced by its summary.
When the stream is not a TTY (a log file, CI, a pipe) only the per-epoch summary
lines are written, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import IO, Any

__all__ = ["Progress", "format_metrics"]

_BAR_WIDTH = 24


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """``"name value"`` pairs: floats with 4 significant digits, throughput as an int."""
    parts = []
    for name, value in metrics.items():
        if value is None:
            continue
        if name == "examples_per_second":
            parts.append(f"{value:,.0f} ex/s")
        elif name == "seconds":
            parts.append(f"{value:.2f}s")
        elif isinstance(value, float):
            parts.append(f"{name} {value:.4g}")
        else:
            parts.append(f"{name} {value}")
    return "  ".join(parts)


class Progress:
    """Reports epochs and steps of a training run to ``stream`` (default ``sys.stderr``).

    Call :meth:`start_epoch`, then :meth:`update` after each step, then
    :meth:`end_epoch` with the epoch's metrics. ``enabled=False`` writes nothing.
    """

    def __init__(
        self,
        num_epochs: int,
        steps_per_epoch: int,
        *,
        stream: IO[str] | None = None,
        enabled: bool = True,
        refresh_seconds: float = 0.1,
    ) -> None:
        self.num_epochs = num_epochs
        self.steps_per_epoch = steps_per_epoch
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.refresh_seconds = refresh_seconds
        isatty = getattr(self.stream, "isatty", None)
        self.interactive = bool(enabled and isatty is not None and isatty())
        self._epoch = 0
        self._start = 0.0
        self._last_draw = 0.0

    def start_epoch(self, epoch: int) -> None:
        """Begin epoch ``epoch`` (0-based) and start its clock."""
        self._epoch = epoch
        self._start = self._last_draw = time.perf_counter()

    def update(self, step_in_epoch: int, examples: int, loss: float | None) -> None:
        """After ``step_in_epoch`` steps (and ``examples`` examples) of this epoch."""
        if not self.interactive:
            return
        now = time.perf_counter()
        if now - self._last_draw < self.refresh_seconds and step_in_epoch < self.steps_per_epoch:
            return
        self._last_draw = now
        filled = _BAR_WIDTH * step_in_epoch // max(self.steps_per_epoch, 1)
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        rate = examples / max(now - self._start, 1e-9)
        loss_text = "" if loss is None else f"  loss {loss:.4g}"
        self._write(f"\r{self._prefix()} [{bar}] {step_in_epoch}/{self.steps_per_epoch}{loss_text}  {rate:,.0f} ex/s\x1b[K")

    def end_epoch(self, metrics: Mapping[str, Any]) -> None:
        """Write the summary line of the epoch just finished."""
        if not self.enabled:
            return
        prefix = "\r" if self.interactive else ""
        suffix = "\x1b[K\n" if self.interactive else "\n"
        self._write(f"{prefix}{self._prefix()}  {format_metrics(metrics)}{suffix}")

    def message(self, text: str) -> None:
        """A free-standing line (resume notices, checkpoint paths)."""
        if self.enabled:
            self._write(text + "\n")

    def _prefix(self) -> str:
        width = len(str(self.num_epochs))
        return f"epoch {self._epoch + 1:>{width}}/{self.num_epochs}"

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
