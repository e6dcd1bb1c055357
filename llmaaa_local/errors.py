"""The one error type users see: what was wrong, where, and what to do."""

from __future__ import annotations

from pathlib import Path


class LlmaaaError(Exception):
    """An error the user can fix; the CLI prints it without a traceback."""


def at(path: str | Path, line: int | str | None, problem: str, fix: str = "") -> LlmaaaError:
    """Build an error that names the file and line (or record: "task 3", "row 17") of bad input."""
    where = f"{path}:{line}" if isinstance(line, int) else f"{path}: {line}" if line else str(path)
    message = f"{where}: {problem}"
    if fix:
        message += f" ({fix})"
    return LlmaaaError(message)


def explain(error: BaseException) -> LlmaaaError | None:
    """A user-facing error for the environment failures users can fix: a full disk, a read-only folder, a lock
    held too long. None for anything else (a bug, which should keep its traceback)."""
    import errno
    import sqlite3

    text = str(error)
    kept = "nothing stored before this was lost; fix it and run the command again to continue"
    if isinstance(error, sqlite3.OperationalError):
        if "readonly" in text or "read-only" in text:
            return LlmaaaError(f"the project database is read-only ({text}): make the project folder writable; {kept}")
        if "disk is full" in text or "disk I/O" in text:
            return LlmaaaError(f"the disk is full or failing ({text}): free some space; {kept}")
        if "locked" in text or "busy" in text:
            return LlmaaaError(f"another process kept the project busy for too long ({text}): wait for it to "
                               f"finish; {kept}")
        return None
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return LlmaaaError(f"no space left on the device writing {error.filename or 'a file'}: free some space; "
                           f"{kept}")
    if isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return LlmaaaError(f"cannot write {error.filename or 'a file'}: {error.strerror}; make the folder "
                           f"writable; {kept}")
    return None
