"""One project, several users at once: readers during a write and two writers together, as real CLI processes and as
threads that open the project the way the TUI's workers do. WAL lets readers through while a write runs, and every
write transaction starts with BEGIN IMMEDIATE under a 30 s busy timeout, so writers queue: no "database is locked"
may reach the user, nothing may be lost, and a reader sees an import whole or not at all. Each scenario runs three
times."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import pytest
from conftest import DEMO_DATA
from crash_harness import write_synthetic_corpus
from textual.widgets import DataTable

from llmaaa_local.annotate import AnnotateConfig, Annotator
from llmaaa_local.config import LabelInfo, ProjectSettings, PromptSettings
from llmaaa_local.llm import Prompt, ScriptedLLM
from llmaaa_local.project import DB_NAME, Project
from llmaaa_local.tui.app import LlmaaaApp

ATTEMPTS = range(3)
SYNTHETIC = 20_000
# What a user would see if a lock leaked: sqlite's message, our explanation of it, or a crash.
LOCKED = ("database is locked", "busy for too long", "Traceback")
LABELS = ("positive", "negative")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The crash harness's 20k-record corpus: an import long enough to overlap with other work."""
    return write_synthetic_corpus(tmp_path_factory.mktemp("corpus") / "synthetic.jsonl", SYNTHETIC)


def new_project(root: Path, demos: str = "none") -> Path:
    settings = ProjectSettings("classify", tuple(LabelInfo(name) for name in LABELS),
                               prompt=PromptSettings(demos=demos, content_free=False))  # type: ignore[arg-type]
    Project.init(root, settings).close()
    return root


class Cli:
    """A CLI process on the project, its output going to a file (pipes could fill up while we wait)."""

    def __init__(self, project: Path, log: Path, *args: str, models_dir: Path | None = None) -> None:
        self.log = log
        self.args = args
        command = [sys.executable, "-m", "llmaaa_local", "--project", str(project)]
        if models_dir is not None:
            command += ["--models-dir", str(models_dir)]
        self.handle: IO[str] = open(log, "w")  # noqa: SIM115 - closed in wait()
        self.process = subprocess.Popen([*command, *args], stdout=self.handle, stderr=subprocess.STDOUT, text=True)

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float = 600) -> str:
        self.process.wait(timeout)
        self.handle.close()
        output = self.log.read_text()
        assert self.process.returncode == 0, f"{' '.join(self.args)} failed:\n{output}"
        assert not any(phrase in output for phrase in LOCKED), output
        return output


class Reader(threading.Thread):
    """The TUI's refresh in a loop: a fresh `Project.open` and `status()` per read, until stopped."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.stop = threading.Event()
        self.pools: list[int] = []
        self.errors: list[BaseException] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with Project.open(self.root) as project:
                    self.pools.append(project.status().counts.pool)
            except BaseException as error:  # noqa: BLE001 - reported by the test
                self.errors.append(error)
            time.sleep(0.01)

    def finish(self) -> None:
        self.stop.set()
        self.join(60)
        assert not self.errors, self.errors


def integrity(root: Path) -> None:
    conn = sqlite3.connect(root / DB_NAME)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


def status_json(root: Path) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "llmaaa_local", "--project", str(root), "status", "--json"],
                            capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and not any(phrase in output for phrase in LOCKED), output
    return dict(json.loads(result.stdout))


# --- readers during a write ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", ATTEMPTS)
def test_readers_during_a_large_import(tmp_path: Path, synthetic: Path, attempt: int) -> None:
    """`status --json` processes and a TUI-style reader thread run while a 20k-record import writes."""
    root = new_project(tmp_path / "project")
    reader = Reader(root)
    reader.start()
    writer = Cli(root, tmp_path / "import.log", "import", "corpus", str(synthetic))
    statuses = []
    while writer.running():
        statuses.append(status_json(root)["counts"]["pool"])
    writer.wait()
    reader.finish()
    statuses.append(status_json(root)["counts"]["pool"])
    assert statuses[-1] == SYNTHETIC and reader.pools and reader.pools[-1] == SYNTHETIC
    # one transaction: a reader sees the import whole or not at all
    assert set(statuses) | set(reader.pools) <= {0, SYNTHETIC}
    integrity(root)


@pytest.mark.parametrize("attempt", ATTEMPTS)
async def test_the_tui_refreshes_during_a_large_import(tmp_path: Path, synthetic: Path, attempt: int) -> None:
    root = new_project(tmp_path / "project")
    app = LlmaaaApp(root, models_dir=tmp_path / "models")
    async with app.run_test(size=(80, 24)) as pilot:
        writer = Cli(root, tmp_path / "import.log", "import", "corpus", str(synthetic))
        seen = []
        while writer.running():
            await pilot.press("f5")
            seen.append(pool_count(app))
            await pilot.pause(0.05)
        writer.wait()
        await pilot.press("f5")
        await pilot.pause()
        seen.append(pool_count(app))
    assert seen[-1] == SYNTHETIC and set(seen) <= {0, SYNTHETIC}
    assert not [note for note in app._notifications if note.severity == "error"]


def pool_count(app: LlmaaaApp) -> int:
    table = app.query_one("#counts", DataTable)
    found = {str(table.get_row_at(i)[0]): str(table.get_row_at(i)[1]) for i in range(table.row_count)}
    return int(found["pool"])


# --- two writers ---------------------------------------------------------------------------------------------------


def write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


@pytest.mark.parametrize("attempt", ATTEMPTS)
def test_two_imports_at_once(tmp_path: Path, synthetic: Path, attempt: int) -> None:
    root = new_project(tmp_path / "project")
    lines = synthetic.read_text(encoding="utf-8").splitlines(keepends=True)
    halves = [tmp_path / "first.jsonl", tmp_path / "second.jsonl"]
    halves[0].write_text("".join(lines[: SYNTHETIC // 2]), encoding="utf-8")
    halves[1].write_text("".join(lines[SYNTHETIC // 2 :]), encoding="utf-8")
    writers = [Cli(root, tmp_path / f"import-{i}.log", "import", "corpus", str(path)) for i, path in enumerate(halves)]
    outputs = [writer.wait() for writer in writers]
    assert all(f"{SYNTHETIC // 2} added" in output for output in outputs), outputs
    with Project.open(root) as project:
        assert project.store.example_count() == SYNTHETIC
        assert sorted(row[0] for row in project.store.db.execute("SELECT kind FROM imports")) == ["corpus", "corpus"]
    integrity(root)


def slow_scorer(delay: float) -> ScriptedLLM:
    def score(prompt: Prompt, candidates: Sequence[str]) -> list[float]:
        time.sleep(delay)
        return [-0.2 if "good" in prompt.user else -1.5, -0.9]

    return ScriptedLLM(scorer=score)


class AnnotatorThread(threading.Thread):
    """The TUI's annotate job: its own connection, the scripted teacher, one short transaction per answer."""

    def __init__(self, root: Path, n: int, delay: float) -> None:
        super().__init__(daemon=True)
        self.root, self.n, self.delay = root, n, delay
        self.annotated = -1
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Project.open(self.root) as project:
                report = Annotator(project, slow_scorer(self.delay)).run(AnnotateConfig(n=self.n, calibrate=False))
                self.annotated = report.annotated
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error


@pytest.mark.parametrize("attempt", ATTEMPTS)
def test_annotation_imports_while_the_annotator_writes(tmp_path: Path, attempt: int) -> None:
    """Three `import annotations` processes and a corpus import, one after another, while the annotator (a thread,
    as in the TUI) stores answers one by one."""
    root = new_project(tmp_path / "project")
    corpus = (DEMO_DATA / "classify_corpus.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in corpus[:80]]
    with Project.open(root) as project:
        project.import_corpus(write_jsonl(tmp_path / "corpus.jsonl", records))
    more = write_jsonl(tmp_path / "more.jsonl", [json.loads(line) for line in corpus[80:160]])
    labels = write_jsonl(tmp_path / "labels.jsonl", [{"id": r["id"], "label": r["label"], "confidence": 0.8}
                                                     for r in records])
    annotator = AnnotatorThread(root, n=80, delay=0.03)  # at least 2.4 s of answers
    annotator.start()
    overlapped = []
    for source in ("first", "second", "third"):
        assert "80 added" in Cli(root, tmp_path / f"{source}.log", "import", "annotations", str(labels),
                                 "--source", source).wait()
        overlapped.append(annotator.is_alive())
    assert "80 added" in Cli(root, tmp_path / "more.log", "import", "corpus", str(more)).wait()
    annotator.join(120)
    assert annotator.error is None and annotator.annotated == 80
    assert overlapped[0], "the first import should have run while the annotator was writing"
    with Project.open(root) as project:
        counts = dict(project.store.db.execute("SELECT source, COUNT(*) FROM annotations GROUP BY source").fetchall())
        assert counts == {"llm:scripted": 80, "import:first": 80, "import:second": 80, "import:third": 80}
        assert project.store.example_count() == 160
    integrity(root)


@pytest.mark.parametrize("attempt", ATTEMPTS)
def test_two_annotators_on_one_project(tmp_path: Path, attempt: int) -> None:
    """Two annotate jobs with the same settings: each answer is stored once (cache key), both finish."""
    root = new_project(tmp_path / "project")
    corpus = (DEMO_DATA / "classify_corpus.jsonl").read_text(encoding="utf-8").splitlines()[:60]
    with Project.open(root) as project:
        project.import_corpus(write_jsonl(tmp_path / "corpus.jsonl", [json.loads(line) for line in corpus]))
    threads = [AnnotatorThread(root, n=60, delay=0.005) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(thread.error is None for thread in threads), [thread.error for thread in threads]
    with Project.open(root) as project:
        keys = project.store.db.execute("SELECT COUNT(*), COUNT(DISTINCT cache_key) FROM annotations").fetchone()
    assert keys == (60, 60)
    integrity(root)


# --- the real teacher (slow) ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(2))
def test_cli_annotate_with_concurrent_imports_and_readers(tmp_path: Path, models_dir: Path, synthetic: Path,
                                                          attempt: int) -> None:
    """`annotate` with smollm2 writes while `import annotations`, `import corpus` (20k) and `status` run."""
    root = new_project(tmp_path / "project", demos="none")
    corpus = (DEMO_DATA / "classify_corpus.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    records = [json.loads(line) for line in corpus]
    with Project.open(root) as project:
        project.import_corpus(write_jsonl(tmp_path / "corpus.jsonl", records))
    labels = write_jsonl(tmp_path / "labels.jsonl", [{"id": r["id"], "label": r["label"]} for r in records])
    annotate = Cli(root, tmp_path / "annotate.log", "annotate", "--model", "smollm2-135m", "--n", "12",
                   "--select", "first", "--threads", "1", "--n-ctx", "512", "--no-calibrate", models_dir=models_dir)
    reader = Reader(root)
    reader.start()
    writers = [Cli(root, tmp_path / "labels.log", "import", "annotations", str(labels), "--source", "other")]
    writers.append(Cli(root, tmp_path / "corpus.log", "import", "corpus", str(synthetic)))
    while annotate.running():
        status_json(root)
    output = annotate.wait()
    for writer in writers:
        writer.wait()
    reader.finish()
    assert "12 annotated, 0 already cached" in output
    info = status_json(root)
    assert info["counts"]["pool"] == 40 + SYNTHETIC and info["counts"]["annotations"] == 12 + 40
    integrity(root)
