"""Progress reporting without a UI dependency.

Long jobs accept ``progress(fraction, message)``; the default does nothing. The app adapts ``gr.Progress``
to this signature, the CLI adapts a log line. :func:`scaled` maps a sub-task's 0..1 onto a slice of the
parent's range so nested stages report one monotone bar.
"""

from __future__ import annotations

from typing import Protocol


class ProgressFn(Protocol):
    def __call__(self, fraction: float, message: str = "") -> None: ...


def no_progress(fraction: float, message: str = "") -> None:
    """A progress callback that ignores everything."""


def scaled(progress: ProgressFn, start: float, end: float) -> ProgressFn:
    """Return a callback that maps ``0..1`` onto ``start..end`` of ``progress``."""

    def inner(fraction: float, message: str = "") -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        progress(start + (end - start) * fraction, message)

    return inner
