"""Training progress: a tqdm bar on a terminal, plain lines elsewhere.

On a TTY each epoch is drawn by :mod:`tqdm` (steps, running loss, examples per second)
and closed by its summary line. When the stream is not a TTY (a log file, CI, a pipe)
only the per-epoch summary lines are written, so logs stay readable.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import IO, Any

from tqdm import tqdm

__all__ = ["Progress", "format_metrics"]


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
        self._bar: tqdm | None = None

    def start_epoch(self, epoch: int) -> None:
        """Begin epoch ``epoch`` (0-based): on a terminal, open its bar."""
        self._epoch = epoch
        if self.interactive:
            self._bar = tqdm(
                total=self.steps_per_epoch, desc=self._prefix(), file=self.stream, mininterval=self.refresh_seconds,
                leave=False, unit="step", dynamic_ncols=True,
            )  # fmt: skip

    def update(self, step_in_epoch: int, examples: int, loss: float | None) -> None:
        """After ``step_in_epoch`` steps (and ``examples`` examples) of this epoch."""
        if self._bar is None:
            return
        self._bar.update(step_in_epoch - self._bar.n)
        rate = examples / max(self._bar.format_dict["elapsed"], 1e-9)
        self._bar.set_postfix_str(("" if loss is None else f"loss {loss:.4g}  ") + f"{rate:,.0f} ex/s", refresh=False)

    def end_epoch(self, metrics: Mapping[str, Any]) -> None:
        """Close the epoch's bar and write its summary line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.enabled:
            self._write(f"{self._prefix()}  {format_metrics(metrics)}\n")

    def message(self, text: str) -> None:
        """A free-standing line (resume notices, checkpoint paths)."""
        if self.enabled:
            self._write(text + "\n")

    def _prefix(self) -> str:
        width = len(str(self.num_epochs))
        return f"epoch {self._epoch + 1:>{width}}/{self.num_epochs}"

    def _write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text.rstrip("\n"), file=self.stream)
        else:
            self.stream.write(text)
            self.stream.flush()
