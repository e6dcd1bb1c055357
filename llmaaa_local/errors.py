"""The one error type users see: what was wrong, where, and what to do."""

from __future__ import annotations

from pathlib import Path


class LlmaaaError(Exception):
    """An error the user can fix; the CLI prints it without a traceback."""


def at(path: str | Path, line: int | None, problem: str, fix: str = "") -> LlmaaaError:
    """Build an error that names the file and line of bad input."""
    where = f"{path}:{line}" if line is not None else str(path)
    message = f"{where}: {problem}"
    if fix:
        message += f" ({fix})"
    return LlmaaaError(message)
