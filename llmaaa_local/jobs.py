"""Pause, resume and cancel for long library calls, through the progress callbacks they already take; ETA text."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from .errors import LlmaaaError

P = TypeVar("P")


class Cancelled(LlmaaaError):
    """The user cancelled; everything stored before the cancel is kept and a rerun continues from there."""


class JobControl:
    """Shared between the UI and a worker thread; the worker checks it at every progress report."""

    def __init__(self) -> None:
        self._running = threading.Event()
        self._running.set()
        self._cancelled = threading.Event()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def cancel(self) -> None:
        self._cancelled.set()
        self._running.set()

    def checkpoint(self) -> None:
        """Block while paused; raise Cancelled once cancelled."""
        while not self._running.wait(0.1):
            pass
        if self._cancelled.is_set():
            raise Cancelled("cancelled: everything stored so far is kept; run it again to continue")

    def watch(self, callback: Callable[[P], None] | None = None) -> Callable[[P], None]:
        """A progress callback that honours pause and cancel, then passes the report on."""

        def report(progress: P) -> None:
            self.checkpoint()
            if callback is not None:
                callback(progress)

        return report


def eta_text(seconds: float | None) -> str:
    """A progress report's ETA as the CLI and the TUI show it."""
    return "-" if seconds is None else f"{seconds:.0f}s"
