"""Limits and the environment: texts longer than the LLM's context or the student's max length, a read-only project
and a full disk, the offline guarantee, model checksums, safetensors-only students, and CSV formula escaping."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from conftest import DEMO_DATA, NetworkAccess, snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from llmaaa_local import formats, store
from llmaaa_local.annotate import AnnotateConfig, Annotator, load_teacher
from llmaaa_local.cli import main
from llmaaa_local.config import LabelInfo, ProjectSettings, PromptSettings, TeacherSettings, TrainConfig
from llmaaa_local.errors import LlmaaaError
from llmaaa_local.llm import ScriptedLLM
from llmaaa_local.models import MANIFEST, REGISTRY, resolve, verified_sha256
from llmaaa_local.project import DB_NAME, Project

LABELS = ["positive", "negative"]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf-8")
    return path


def demo_records(part: str, count: int) -> list[dict[str, Any]]:
    lines = (DEMO_DATA / f"classify_{part}.jsonl").read_text(encoding="utf-8").splitlines()[:count]
    return [json.loads(line) for line in lines]


# --- texts longer than the LLM's context (real backend) -----------------------------------------------------------


LONG_TEXT = " ".join(["The kettle boiled quickly but the lid rattled all morning and"] * 120)  # ~7,000 characters


@pytest.mark.slow
def test_a_text_longer_than_the_context_is_clipped_and_flagged(make_project: Callable[..., Project],
                                                               write_file: Callable[..., Path],
                                                               models_dir: Path) -> None:
    """The rule (README): cut at `max_chars` on a word boundary, then halve the text until the prompt fits; the
    annotation records the limit it was cut to in `flags.truncated_to_chars`."""
    project = make_project("classify", labels=LABELS, prompt=PromptSettings(demos="none"))
    project.import_corpus(write_file("c.jsonl", [{"id": "long", "text": LONG_TEXT},
                                                 {"id": "short", "text": "Lovely little lamp."}]))
    llm = load_teacher(TeacherSettings("smollm2-135m", n_ctx=256, threads=1), models_dir)
    report = Annotator(project, llm).run(AnnotateConfig(n=2, select="first", calibrate=False))
    assert (report.annotated, report.parse_errors) == (2, 0)
    rows = dict(project.store.db.execute("SELECT example_id, flags FROM annotations").fetchall())
    assert rows["short"] is None
    cut = json.loads(rows["long"])["truncated_to_chars"]
    assert 100 <= cut <= 1000  # 256 tokens hold about a thousand characters of this text after the instruction


@pytest.mark.slow
def test_a_long_sentence_is_clipped_for_ner_generation(make_project: Callable[..., Project],
                                                       write_file: Callable[..., Path], models_dir: Path) -> None:
    project = make_project("ner", labels=["PER", "LOC"], prompt=PromptSettings(demos="none"))
    tokens = ("Anna walked from Paris to Rome and back again".split() * 60)[:500]
    project.import_corpus(write_file("c.jsonl", [{"id": "long", "tokens": tokens}]))
    llm = load_teacher(TeacherSettings("smollm2-135m", n_ctx=512, threads=1), models_dir)
    Annotator(project, llm).run(AnnotateConfig(n=1, calibrate=False))
    status, flags, label = project.store.db.execute("SELECT status, flags, label FROM annotations").fetchone()
    assert status == "ok" and json.loads(flags)["truncated_to_chars"] < len(" ".join(tokens))
    assert all(0 <= start < end <= len(tokens) for start, end, _ in json.loads(label))


@pytest.mark.slow
def test_a_prompt_that_cannot_fit_is_a_clear_error(make_project: Callable[..., Project],
                                                   write_file: Callable[..., Path], models_dir: Path) -> None:
    instruction = "Read the review carefully and decide. " * 60  # the instruction alone overflows 256 tokens
    project = make_project("classify", labels=LABELS, prompt=PromptSettings(demos="none", instruction=instruction))
    project.import_corpus(write_file("c.jsonl", [{"id": "long", "text": LONG_TEXT}]))
    llm = load_teacher(TeacherSettings("smollm2-135m", n_ctx=256, threads=1), models_dir)
    with pytest.raises(LlmaaaError, match="does not fit the context window; raise --n-ctx"):
        Annotator(project, llm).run(AnnotateConfig(n=1, calibrate=False))
    assert project.store.annotation_counts()["annotations"] == 0


# --- texts longer than the student's max length -------------------------------------------------------------------


@pytest.mark.slow
def test_texts_longer_than_max_length_train_export_and_label(tmp_path: Path, tiny_encoder: Path) -> None:
    """Student inputs are cut to --max-length sub-words (the final [SEP] kept); nothing flags it (see the README)."""
    from llmaaa_local.export import ExportConfig, export_student
    from llmaaa_local.labeler import label_corpus
    from llmaaa_local.student import Trainer

    settings = ProjectSettings("classify", tuple(LabelInfo(name) for name in LABELS))
    with Project.init(tmp_path / "project", settings) as project:
        records = demo_records("corpus", 30)
        for i, record in enumerate(records[:6]):
            record["text"] = " ".join([record["text"]] * 40)  # far past 32 sub-words
            assert len(record["text"]) > 2000, i
        project.import_corpus(write_jsonl(tmp_path / "corpus.jsonl", records))
        project.import_gold(write_jsonl(tmp_path / "demo.jsonl", demo_records("demo", 8)), "demo")
        project.import_annotations(write_jsonl(tmp_path / "llm.jsonl", [{"id": r["id"], "label": r["label"]}
                                                                         for r in records]), "teacher")
        config = TrainConfig(student=str(tiny_encoder), epochs=1, min_steps=0, batch_size=8, max_length=32, threads=1)
        Trainer(project, config, tmp_path).run()
        export_student(project, ExportConfig(threads=1))
        report = label_corpus(project, threads=1)
        assert report.labeled == 38
        predicted = project.store.predictions(report.artifact_id)
        assert {r["id"] for r in records[:6]} <= set(predicted)


# --- a read-only project and a full disk --------------------------------------------------------------------------


@pytest.fixture
def cli_project(tmp_path: Path) -> Iterator[Path]:
    settings = ProjectSettings("classify", tuple(LabelInfo(name) for name in LABELS))
    with Project.init(tmp_path / "project", settings) as project:
        project.import_corpus(write_jsonl(tmp_path / "corpus.jsonl", demo_records("corpus", 6)))
    yield tmp_path / "project"


def opening(monkeypatch: pytest.MonkeyPatch, how: Callable[[str, Any], Any]) -> None:
    """Make the store open its database through `how` (the rest of sqlite3 stays as it is)."""
    real = sqlite3.connect
    fake = types.SimpleNamespace(**{name: getattr(sqlite3, name) for name in dir(sqlite3) if not name.startswith("_")})
    fake.connect = lambda database, **options: how(database, lambda target, **more: real(target, **options, **more))
    monkeypatch.setattr(store, "sqlite3", fake)


def read_only(database: str, connect: Any) -> sqlite3.Connection:
    """What a read-only folder does to a writer (chmod does not stop root): a connection opened with mode=ro."""
    return connect(f"file:{quote(database)}?mode=ro", uri=True)


class FullDisk:
    """A connection on a full disk: every statement that changes data fails as SQLite reports SQLITE_FULL."""

    WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def _check(self, sql: str) -> None:
        if sql.lstrip().upper().startswith(self.WRITES):
            raise sqlite3.OperationalError("database or disk is full")

    def execute(self, sql: str, *parameters: Any) -> sqlite3.Cursor:
        self._check(sql)
        return self._conn.execute(sql, *parameters)

    def executemany(self, sql: str, *parameters: Any) -> sqlite3.Cursor:
        self._check(sql)
        return self._conn.executemany(sql, *parameters)


def disk_full(database: str, connect: Any) -> Any:
    return FullDisk(connect(database))


READ_ONLY = "error: the project database is read-only (attempt to write a readonly database): make the project " \
            "folder writable; nothing stored before this was lost"
DISK_FULL = "error: the disk is full or failing (database or disk is full): free some space; nothing stored"


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def one_line_error(result: Any, start: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()  # stdout may hold a progress bar
    assert len(lines) == 1 and lines[0].startswith(start), result.output
    assert "Traceback" not in result.output


def commands(project: Path, tmp_path: Path) -> dict[str, list[str]]:
    """Every command that writes the database, with what it needs."""
    more = write_jsonl(tmp_path / "more.jsonl", demo_records("corpus", 12)[6:])
    gold = write_jsonl(tmp_path / "gold.jsonl", demo_records("demo", 4))
    labels = write_jsonl(tmp_path / "labels.jsonl", [{"id": r["id"], "label": r["label"]}
                                                      for r in demo_records("corpus", 6)])
    base = ["--project", str(project), "--models-dir", str(tmp_path / "models")]
    return {
        "import corpus": [*base, "import", "corpus", str(more)],
        "import gold": [*base, "import", "gold", str(gold), "--split", "demo"],
        "import annotations": [*base, "import", "annotations", str(labels), "--source", "other"],
        "annotate": [*base, "annotate", "--n", "3", "--demos", "none", "--no-calibrate"],
    }


WRITERS = ["import corpus", "import gold", "import annotations", "annotate"]


@pytest.mark.parametrize("command", WRITERS)
@pytest.mark.parametrize(("how", "message"), [(read_only, READ_ONLY), (disk_full, DISK_FULL)],
                         ids=["read-only", "disk-full"])
def test_a_read_only_or_full_project_is_one_clear_line(command: str, how: Any, message: str, cli_project: Path,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = commands(cli_project, tmp_path)[command]
    monkeypatch.setattr("llmaaa_local.annotate.load_teacher", lambda settings, models_dir: ScriptedLLM())
    project = Project(cli_project, store.Store(cli_project / DB_NAME))
    before = snapshot(project)
    project.close()
    opening(monkeypatch, how)
    one_line_error(run_cli(*args), message)
    assert snapshot(project) == before


def test_a_read_only_project_can_still_be_read_and_exported(cli_project: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    opening(monkeypatch, read_only)
    result = run_cli("--project", str(cli_project), "status", "--json")
    assert result.exit_code == 0 and json.loads(result.output)["counts"]["pool"] == 6
    result = run_cli("--project", str(cli_project), "export-labels", str(tmp_path / "out.jsonl"), "--sources", "gold")
    assert result.exit_code == 0, result.output


class FullDiskFile(io.StringIO):
    """A file on a full disk: opening works, the first write fails with ENOSPC."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        path.touch()

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))


@pytest.mark.parametrize("name", ["out.jsonl", "out.csv", "out.jsonl.gz"])
def test_a_full_disk_during_export_labels_is_one_clear_line(name: str, cli_project: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with Project.open(cli_project) as project:
        project.import_gold(write_jsonl(tmp_path / "gold.jsonl", demo_records("demo", 3)), "demo")
    out = tmp_path / name
    out.write_text("the previous export\n")
    monkeypatch.setattr(formats, "open", lambda path, *a, **k: FullDiskFile(Path(path)), raising=False)
    monkeypatch.setattr(formats.gzip, "open", lambda path, *a, **k: FullDiskFile(Path(path)))
    one_line_error(run_cli("--project", str(cli_project), "export-labels", str(out)),
                   f"error: {out}: cannot write the export (No space left on device)")
    assert out.read_text() == "the previous export\n"  # the export goes to a side file, renamed when complete
    assert not list(tmp_path.glob("*.partial"))


# --- no network ---------------------------------------------------------------------------------------------------


def test_the_socket_guard_refuses_public_addresses() -> None:
    """The autouse guard in conftest.py can fail: connects to the internet raise, loopback still works."""
    with pytest.raises(NetworkAccess):
        socket.create_connection(("93.184.216.34", 80), timeout=1)
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock, pytest.raises(NetworkAccess):
        sock.connect(("2606:4700:4700::1111", 443, 0, 0))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(NetworkAccess):
        sock.connect_ex(("1.1.1.1", 443))
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=5):
            pass


SITECUSTOMIZE = '''
"""Test guard: log and refuse every connection (and name lookup) that leaves this machine."""
import os
import socket

_LOG = os.environ["LLMAAA_NETWORK_LOG"]
_LOCAL = {"127.0.0.1", "::1", "localhost", None, ""}
_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo


def _refuse(what):
    with open(_LOG, "a") as log:
        log.write(what + "\\n")
    raise OSError(101, "network access refused by the test guard: " + what)


def _check(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOCAL:
        _refuse(f"connect {address!r}")


def connect(sock, address):
    _check(sock, address)
    return _connect(sock, address)


def connect_ex(sock, address):
    _check(sock, address)
    return _connect_ex(sock, address)


def getaddrinfo(host, *args, **kwargs):
    if isinstance(host, bytes):
        host = host.decode()
    if host not in _LOCAL:
        _refuse(f"getaddrinfo {host!r}")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
'''


@pytest.mark.slow
def test_the_whole_pipeline_runs_offline(tmp_path: Path, models_dir: Path, tiny_encoder: Path) -> None:
    """init, imports, annotate (smollm2), train (tiny), export, label, evaluate and export-labels in processes whose
    every non-local connection and name lookup is logged and refused: the log stays empty."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "network.log"
    env = {key: value for key, value in os.environ.items()
           if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(PYTHONPATH=os.pathsep.join([str(guard), *filter(None, [env.get("PYTHONPATH")])]),
               LLMAAA_NETWORK_LOG=str(log), OMP_NUM_THREADS="1")

    def python(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=600)
        if check:
            assert result.returncode == 0, result.stderr[-2000:]
        return result

    # the guard is live in the child processes: a connection out is logged and refused
    for code in ("import socket; socket.socket().connect(('93.184.216.34', 80))",
                 "import socket; socket.create_connection(('example.org', 80), timeout=2)"):
        probe = python("-c", code, check=False)
        assert probe.returncode != 0 and "refused by the test guard" in probe.stderr
    assert log.read_text().splitlines() == ["connect ('93.184.216.34', 80)", "getaddrinfo 'example.org'"]
    log.unlink()

    project = tmp_path / "project"
    cli = ["-m", "llmaaa_local", "--project", str(project), "--models-dir", str(models_dir)]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", demo_records("corpus", 30))
    python(*cli, "init", str(project), "--task", "classify", "--labels", ",".join(LABELS), "--demos", "random",
           "--k", "2")
    python(*cli, "import", "corpus", str(corpus))
    python(*cli, "import", "gold", str(write_jsonl(tmp_path / "demo.jsonl", demo_records("demo", 6))),
           "--split", "demo")
    python(*cli, "import", "gold", str(write_jsonl(tmp_path / "test.jsonl", demo_records("test", 10))),
           "--split", "test")
    python(*cli, "annotate", "--model", "smollm2-135m", "--n", "10", "--threads", "1", "--n-ctx", "1024")
    python(*cli, "train", "--student", str(tiny_encoder), "--epochs", "1", "--max-length", "64", "--batch-size", "8",
           "--train-threads", "1")
    python(*cli, "export")
    python(*cli, "label", "--threads", "1")
    assert "student" in python(*cli, "evaluate", "--json").stdout
    python(*cli, "export-labels", str(tmp_path / "labels.csv"))
    python(*cli, "status")
    python(*cli, "models", "list")
    assert not log.exists(), log.read_text()


# --- model files are checked before loading -----------------------------------------------------------------------


def tampered_copy(models_dir: Path, name: str, tmp_path: Path) -> Path:
    """A models folder holding a copy of a pulled model (with the pull's manifest entry) with one byte flipped."""
    target = tmp_path / "models"
    target.mkdir(exist_ok=True)
    model = REGISTRY[name]
    source = models_dir / model.target
    copy = target / model.target
    shutil.copytree(source, copy) if source.is_dir() else shutil.copy(source, copy)
    manifest = json.loads((models_dir / MANIFEST).read_text())
    (target / MANIFEST).write_text(json.dumps({name: manifest[name]}))
    weights = copy / model.weights if model.weights else copy
    with open(weights, "r+b") as handle:
        handle.seek(-1000, os.SEEK_END)
        byte = handle.read(1)
        handle.seek(-1000, os.SEEK_END)
        handle.write(bytes([byte[0] ^ 0xFF]))
    return target


@pytest.mark.slow
def test_a_teacher_changed_after_pull_is_refused_before_loading(models_dir: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    models = tampered_copy(models_dir, "smollm2-135m", tmp_path)
    loaded: list[Path] = []
    monkeypatch.setattr("llmaaa_local.llama_backend.LlamaBackend.__init__",
                        lambda self, path, **options: loaded.append(path))
    with pytest.raises(LlmaaaError, match=r"the file changed since it was pulled .* run `llmaaa-local models pull "
                                          r"smollm2-135m` again"):
        load_teacher(TeacherSettings("smollm2-135m"), models)
    assert loaded == []
    project = tmp_path / "project"
    Project.init(project, ProjectSettings("classify", tuple(LabelInfo(name) for name in LABELS))).close()
    result = run_cli("--project", str(project), "--models-dir", str(models), "annotate", "--model", "smollm2-135m")
    one_line_error(result, f"error: {models / REGISTRY['smollm2-135m'].target}: the file changed since it was pulled")
    assert loaded == []


@pytest.mark.slow
def test_a_student_changed_after_pull_is_refused_before_loading(models_dir: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from llmaaa_local.student import Trainer

    models = tampered_copy(models_dir, "minilm-l6", tmp_path)
    monkeypatch.setattr("transformers.AutoModel.from_pretrained", lambda *a, **k: pytest.fail("loaded"))
    with Project.init(tmp_path / "project", ProjectSettings("classify", (LabelInfo("a"), LabelInfo("b")))) as project:
        with pytest.raises(LlmaaaError, match="run `llmaaa-local models pull minilm-l6` again"):
            Trainer(project, TrainConfig(student="minilm-l6"), models)
    with pytest.raises(LlmaaaError, match="changed since it was pulled"):
        verified_sha256(resolve("minilm-l6", models, "hf"), models)


# --- students are safetensors only --------------------------------------------------------------------------------


def pickled_copy(tiny_encoder: Path, folder: Path) -> Path:
    """The tiny encoder with its weights saved the old way (pytorch_model.bin, a pickle) and no safetensors."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(tiny_encoder, folder)
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


@pytest.fixture
def no_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a pickle was loaded"))


def test_a_student_with_only_pickled_weights_is_refused(tiny_encoder: Path, tmp_path: Path, no_pickle: None) -> None:
    from llmaaa_local.student import Trainer

    folder = pickled_copy(tiny_encoder, tmp_path / "pickled")
    with Project.init(tmp_path / "project", ProjectSettings("classify", (LabelInfo("a"), LabelInfo("b")))) as project:
        with pytest.raises(LlmaaaError, match="it has pytorch_model.bin: pickled weights are not loaded"):
            Trainer(project, TrainConfig(student=str(folder)), tmp_path)


def test_a_checkpoint_with_only_pickled_weights_is_refused(tiny_encoder: Path, tmp_path: Path,
                                                           no_pickle: None) -> None:
    """A checkpoint (export, labeling, the loop's selection) whose safetensors were swapped for a pickle."""
    from llmaaa_local.encoding import StudentSpec
    from llmaaa_local.student import load_student

    folder = pickled_copy(tiny_encoder, tmp_path / "run-0001")
    StudentSpec("classify", ("a", "b"), 64, str(tiny_encoder)).save(folder)
    with pytest.raises(LlmaaaError, match="run-0001: no model.safetensors .* pickled weights are not loaded"):
        load_student(folder)


# --- CSV export cannot inject formulas ----------------------------------------------------------------------------

FORMULA_LABELS = ["=SUM(A1)", "+1", "-1", "@here", "'=x", "''+y", "plain"]
_EMPTY = tempfile.TemporaryDirectory(prefix="formula-project-")  # removed when the interpreter exits
FORMULA_PROJECT = Path(_EMPTY.name) / "project"
Project.init(FORMULA_PROJECT, ProjectSettings("classify", tuple(LabelInfo(name) for name in FORMULA_LABELS))).close()
starts = st.sampled_from(["=", "+", "-", "@", "\t", "\r", "'", "'=", "''-", " ", "", "\n", "\r\n"])
bodies = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
cells = st.tuples(starts, bodies, st.sampled_from(["", "\r", "\n", "\r\n", "x"])).map("".join)


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.tuples(cells, cells, st.sampled_from(FORMULA_LABELS)), min_size=1, max_size=6,
                     unique_by=lambda row: row[0]).filter(
    lambda rows: all(eid.strip() and text.strip() for eid, text, _ in rows)))
def test_csv_export_escapes_formulas_and_reimports_exactly(rows: list[tuple[str, str, str]]) -> None:
    with tempfile.TemporaryDirectory() as name:
        check_csv_round_trip(Path(name), rows)


def check_csv_round_trip(folder: Path, rows: list[tuple[str, str, str]]) -> None:
    for copy in ("a", "b"):  # copies of one empty project: much faster than Project.init per example
        shutil.copytree(FORMULA_PROJECT, folder / copy)
    with Project.open(folder / "a") as project:
        project.import_gold(write_jsonl(folder / "gold.jsonl", [{"id": eid, "text": text, "label": label}
                                                                 for eid, text, label in rows]), "test")
        out = folder / "out.csv"
        project.export_labels(out)
    with open(out, newline="", encoding="utf-8") as handle:
        exported = list(csv.reader(handle))[1:]
    for cells_out in exported:
        for cell in cells_out[:3]:
            assert not cell.startswith(formats._FORMULA_PREFIXES), cell  # a spreadsheet would run it
    with Project.open(folder / "b") as fresh:
        fresh.import_gold(out, "test")
        back = {e.id: (e.text, e.label) for e in fresh.store.examples()}
    assert back == {eid: (text, label) for eid, text, label in rows}
