"""The shared evaluation data the benchmarks read (../shared/data), and small file helpers."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def records(path: Path) -> list[dict[str, Any]]:
    """Every record of a JSONL or .jsonl.gz file."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:  # type: ignore[operator]
        return [json.loads(line) for line in handle]


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def rotated(items: Sequence[T], turn: int) -> list[T]:
    """`items` started at position `turn` (wrapping): side-by-side passes take turns going first, so a slow spell of
    the machine hits all of them alike."""
    start = turn % len(items)
    return [*items[start:], *items[:start]]
