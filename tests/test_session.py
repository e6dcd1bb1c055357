"""The application layer: which models a stage needs, stages run with pause and cancel, imports by kind, and the
import contracts that keep the layers apart."""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from llmaaa_local.annotate import AnnotateConfig
from llmaaa_local.config import PromptSettings, TeacherSettings
from llmaaa_local.errors import LlmaaaError
from llmaaa_local.jobs import Cancelled, JobControl
from llmaaa_local.llm import ScriptedLLM
from llmaaa_local.models import REGISTRY
from llmaaa_local.project import Project
from llmaaa_local.session import Session

ROOT = Path(__file__).resolve().parents[1]


def pool(count: int) -> list[dict[str, str]]:
    return [{"id": f"p{i}", "text": f"review number {i} of a kettle"} for i in range(count)]


def gold(count: int) -> list[dict[str, str]]:
    return [{"id": f"g{i}", "text": f"gold review {i}", "label": "pos" if i % 2 else "neg"} for i in range(count)]


def scripted_session(project: Project, tmp_path: Path, llm: ScriptedLLM | None = None) -> Session:
    teacher = llm or ScriptedLLM()
    return Session(project.root, tmp_path / "models", TeacherSettings(model="scripted"),
                   teacher_factory=lambda settings, models_dir: teacher)


def test_without_a_project_the_session_says_so(tmp_path: Path) -> None:
    with pytest.raises(LlmaaaError, match="no project is open"):
        Session(None, tmp_path).open()


def test_the_embedder_is_needed_for_similarity_demos_over_a_demo_pool_and_optional_for_the_probe(
        make_project: Callable[..., Project], write_file: Callable[..., Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_project("classify", labels=["pos", "neg"])
    session = Session(project.root, tmp_path / "no-models", embedder="missing-embedder")
    assert session.load_embedder(project) is None  # kNN demos, but no demo pool yet
    assert session.load_embedder(project, tuning=True) is None
    project.import_gold(write_file("demo.jsonl", gold(4)), "demo")
    # random or no demos need none; the calibration's probe would take one, but goes without when it is missing
    assert session.load_embedder(project, PromptSettings(demos="random")) is None
    assert session.load_embedder(project, PromptSettings(demos="none")) is None
    for needed in ({"prompt": PromptSettings(demos="knn")}, {"prompt": PromptSettings(demos="balanced")},
                   {"prompt": PromptSettings(demos="none"), "tuning": True}):
        with pytest.raises(LlmaaaError, match="missing-embedder"):  # it is looked for, and not found
            session.load_embedder(project, **needed)  # type: ignore[arg-type]
    # when it is there, a scored task or NER with gold gets it for the probe whatever its demos; without gold, none
    loaded = object()
    monkeypatch.setattr("llmaaa_local.annotate.load_embedder", lambda name, models_dir, project: loaded)
    assert session.load_embedder(project, PromptSettings(demos="none")) is loaded
    sentence = {"tokens": ["Ann", "met", "Bo"], "tags": ["B-PER", "O", "B-PER"]}
    ner = make_project("ner", labels=["PER"], name="ner", prompt=PromptSettings(demos="none"))
    ner.import_gold(write_file("ner.jsonl", [{"id": "n0", **sentence}]), "demo")
    assert session.load_embedder(ner) is None  # one gold sentence: nothing to choose on
    ner.import_gold(write_file("ner2.jsonl", [{"id": f"n{i}", **sentence} for i in range(1, 4)]), "demo")
    assert session.load_embedder(ner) is loaded  # even one entity type: the probe may drop and mark spans


def fake_encoder(models_dir: Path, name: str) -> None:
    """A registry embedder's folder as `models pull` leaves it, with placeholder weights (an `Embedder` loads its
    weights at its first embedding only)."""
    folder = models_dir / REGISTRY[name].target
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(name.encode())


def test_the_probe_may_read_every_pulled_sentence_embedder_the_sessions_first(
        make_project: Callable[..., Project], write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = make_project("classify", labels=["pos", "neg"], prompt=PromptSettings(demos="none"))
    project.import_gold(write_file("demo.jsonl", gold(4)), "demo")
    models = tmp_path / "models"
    fake_encoder(models, "mpnet-base")

    def names(session: Session) -> list[str]:
        return [str(getattr(embed, "name", "")).partition(":")[0]
                for embed in session.load_probe_embedders(project, session.load_embedder(project))]

    # the session's embedder (MiniLM) is not pulled: the probe may still read the one that is
    assert names(Session(project.root, models)) == ["all-mpnet-base-v2"]
    fake_encoder(models, "minilm-l6")
    assert names(Session(project.root, models)) == ["all-MiniLM-L6-v2", "all-mpnet-base-v2"]
    assert names(Session(project.root, models, embedder="mpnet-base")) == ["all-mpnet-base-v2", "all-MiniLM-L6-v2"]
    text = make_project("classify", labels=["pos", "neg"], name="text", prompt=PromptSettings(demos="none"))
    assert Session(text.root, models).load_probe_embedders(text, None) == []  # no gold: nothing to choose on


def test_annotate_through_the_session_uses_its_teacher(make_project: Callable[..., Project],
                                                        write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = make_project("classify", labels=["pos", "neg"], prompt=PromptSettings(demos="none"))
    project.import_corpus(write_file("pool.jsonl", pool(5)))
    llm = ScriptedLLM(scorer=lambda prompt, candidates: [-0.1, -2.0])
    seen: list[int] = []
    report = scripted_session(project, tmp_path, llm).annotate(project, AnnotateConfig(n=5),
                                                               lambda progress: seen.append(progress.done))
    assert report.annotated == 5 and report.teacher_sha256 == llm.model_sha256
    assert project.status().counts.annotations == 5 and seen[-1] == 5
    assert {label for _, label, _, _ in project.store.latest_labels()} == {"pos"}


def test_a_cancel_stops_the_stage_and_keeps_what_was_stored(make_project: Callable[..., Project],
                                                             write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = make_project("classify", labels=["pos", "neg"], prompt=PromptSettings(demos="none"))
    project.import_corpus(write_file("pool.jsonl", pool(8)))
    control = JobControl()

    def cancel_after_three(progress: object) -> None:
        if getattr(progress, "done", 0) >= 3:
            control.cancel()

    with pytest.raises(Cancelled):
        scripted_session(project, tmp_path).annotate(project, AnnotateConfig(n=8), cancel_after_three, control)
    kept = project.status().counts.annotations
    assert 3 <= kept < 8
    report = scripted_session(project, tmp_path).annotate(project, AnnotateConfig(n=8))
    assert (report.annotated, report.cached) == (8 - kept, kept)  # the rerun continues where the cancel stopped


def test_a_paused_stage_waits_until_resumed(make_project: Callable[..., Project],
                                             write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = make_project("classify", labels=["pos", "neg"], prompt=PromptSettings(demos="none"))
    project.import_corpus(write_file("pool.jsonl", pool(4)))
    control = JobControl()
    control.pause()
    done: list[int] = []
    session = scripted_session(project, tmp_path)

    def run() -> None:
        with Project.open(project.root) as own:  # a connection of the worker's own, as the TUI's worker has
            done.append(session.annotate(own, AnnotateConfig(n=4), control=control).annotated)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(0.5)
    assert worker.is_alive() and not done  # held at its first progress report
    control.resume()
    worker.join(10)
    assert done == [4]


def test_import_by_kind(make_project: Callable[..., Project], write_file: Callable[..., Path],
                        tmp_path: Path) -> None:
    project = make_project("classify", labels=["pos", "neg"])
    session = Session(project.root, tmp_path)
    assert session.import_file(project, write_file("pool.jsonl", pool(3)), "corpus").added == 3
    assert session.import_file(project, write_file("dev.jsonl", gold(2)), "dev").split == "dev"
    answers = write_file("answers.jsonl", [{"id": "p0", "label": "pos"}])
    assert session.import_file(project, answers, "annotations").split == "annotations from answers"
    with pytest.raises(LlmaaaError, match="unknown import kind 'gold'"):
        session.import_file(project, answers, "gold")
    counts = project.status().counts
    assert (counts.pool, counts.dev, counts.annotations) == (3, 2, 1)


def test_the_import_contracts_name_every_module() -> None:
    """A new module must be placed: below the front ends (in the Textual-free list) or as a front end."""
    import pkgutil

    import llmaaa_local

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (ui_free,) = [contract for contract in contracts if contract["type"] == "forbidden"]
    front_ends = {"llmaaa_local.__main__", "llmaaa_local.cli", "llmaaa_local.tui"}
    modules = {f"llmaaa_local.{info.name}" for info in pkgutil.iter_modules(llmaaa_local.__path__)}
    assert set(ui_free["forbidden_modules"]) >= front_ends | {"textual"}
    assert set(ui_free["source_modules"]) == modules - front_ends
