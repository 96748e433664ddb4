"""Progress inside a section: a long ``--full`` section says every few seconds that it is alive.

:func:`reporting` (used by the runner around each section) installs a reporter; the section's
loops call :func:`tick` after each setting, which prints ``"<section>: <n> done, last <what>"``
through the runner's progress function at most once every ``every_s`` seconds.  Outside
:func:`reporting` (tests, a bare :func:`run_section` call), :func:`tick` does nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator

_REPORTER: contextvars.ContextVar[Callable[[str], None] | None] = contextvars.ContextVar("reporter", default=None)


@contextlib.contextmanager
def reporting(say: Callable[[str], None] | None, section: str, every_s: float = 10.0) -> Iterator[None]:
    """While active, :func:`tick` reports ``section``'s progress through ``say`` (``None``: silent)."""
    count, last = 0, time.perf_counter()

    def report(what: str) -> None:
        nonlocal count, last
        count += 1
        if say is not None and time.perf_counter() - last >= every_s:
            say(f"  {section}: {count} done, last {what}")
            last = time.perf_counter()

    token = _REPORTER.set(report)
    try:
        yield
    finally:
        _REPORTER.reset(token)


def tick(what: str) -> None:
    """One setting of the running section is done (``what`` names it)."""
    report = _REPORTER.get()
    if report is not None:
        report(what)
