"""Shared fixtures: real project folders in tmp_path, file writers, database snapshots, pulled models."""

from __future__ import annotations

import gzip
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmaaa_local.config import LabelInfo, ProjectSettings
from llmaaa_local.models import default_models_dir, pull
from llmaaa_local.project import DB_NAME, Project


@pytest.fixture
def make_project(tmp_path: Path) -> Iterator[Callable[..., Project]]:
    """Create a project: make_project("ner", labels=["PER", "LOC"])."""
    opened: list[Project] = []

    def make(task: str, labels: list[str] | None = None, name: str = "proj", **settings: Any) -> Project:
        info = tuple(LabelInfo(label) for label in labels or [])
        project = Project.init(tmp_path / name, ProjectSettings(task=task, labels=info, **settings))  # type: ignore[arg-type]
        opened.append(project)
        return project

    yield make
    for project in opened:
        project.close()


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[..., Path]:
    """Write a file under tmp_path: records (dicts, JSON-encoded per line), str lines, or raw bytes."""

    def write(name: str, content: list[Any] | str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(content, list):
            text = "".join((json.dumps(item) if not isinstance(item, str) else item) + "\n" for item in content)
            data = text.encode("utf-8")
        elif isinstance(content, str):
            data = content.encode("utf-8")
        else:
            data = content
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        return path

    return write


def snapshot(project: Project) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, read through a separate connection: to prove a failed import changed nothing."""
    conn = sqlite3.connect(project.root / DB_NAME)
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {table: sorted(conn.execute(f"SELECT * FROM [{table}]").fetchall(), key=repr) for table in tables}
    finally:
        conn.close()


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The project's models folder with the small test models pulled (pip caches the downloads)."""
    folder = default_models_dir()
    for name in ("smollm2-135m", "minilm-l6"):
        pull(name, folder, log=lambda line: None)
    return folder
