"""The Textual app, driven with Pilot key presses against real project files at 80x24.

The teacher is a real `ScriptedLLM` handed in through `teacher_factory`; long jobs run in the app's worker
thread, so the tests poll the app's state (never sleep a fixed time and hope).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import snapshot, student_project
from textual.pilot import Pilot
from textual.widgets import (
    Button,
    Checkbox,
    DataTable,
    DirectoryTree,
    Input,
    Log,
    ProgressBar,
    Select,
    Static,
    TabbedContent,
)
from textual_plotext import PlotextPlot

from llmaaa_local.config import EngineSettings, PromptSettings, TeacherSettings
from llmaaa_local.llm import Prompt, ScriptedLLM
from llmaaa_local.project import Project
from llmaaa_local.records import Span
from llmaaa_local.tui.app import LlmaaaApp
from llmaaa_local.tui.panes import ReviewPane
from llmaaa_local.tui.screens import HelpScreen, ImportScreen, SpanEditor

SIZE = (80, 24)
NO_DEMOS = PromptSettings(demos="none", content_free=False)  # one scripted call per example, no calibration
POOL = [
    ("r01", "good coffee and kind staff", "pos"), ("r02", "bad service and cold food", "neg"),
    ("r03", "a good long walk by the sea", "pos"), ("r04", "the bus was late and bad", "neg"),
    ("r05", "good value for the money", "pos"), ("r06", "bad smell in the hallway", "neg"),
    ("r07", "really good fresh bread", "pos"), ("r08", "the screen broke, bad luck", "neg"),
    ("r09", "good music all night", "pos"), ("r10", "a bad and noisy room", "neg"),
]


# --- helpers ------------------------------------------------------------------------------------------------------


class Teacher:
    """A teacher factory handing out one ScriptedLLM: texts with 'good' score pos, others neg; optionally slow."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.llm = ScriptedLLM(scorer=self.score)
        self.loaded: list[TeacherSettings] = []

    def score(self, prompt: Prompt, candidates: Sequence[str]) -> list[float]:
        if self.delay:
            time.sleep(self.delay)
        best = "pos" if "good" in prompt.user.rsplit("Text: ", 1)[-1] else "neg"
        return [-0.1 if candidate == best else -3.0 for candidate in candidates]

    def __call__(self, settings: TeacherSettings, models_dir: Path) -> ScriptedLLM:
        self.loaded.append(settings)
        return self.llm

    @property
    def calls(self) -> int:
        return len(self.llm.history)


def pool_records(count: int = len(POOL)) -> list[dict[str, Any]]:
    return [{"id": eid, "text": text, "label": label} for eid, text, label in POOL[:count]]


def classify_project(make_project: Callable[..., Project], write_file: Callable[..., Path],
                     pool: int = len(POOL)) -> Project:
    project = make_project("classify", labels=["pos", "neg"], prompt=NO_DEMOS)
    project.import_corpus(write_file("pool.jsonl", pool_records(pool)))
    return project


# LLM labels (label, confidence) and student predictions (label, confidence) for the review queue:
# r04 and r01 disagree (r04 first: its student is less sure), r03 agrees but the LLM is unsure, r02 is settled.
LLM_LABELS = {"r01": ("pos", 0.9), "r02": ("neg", 0.9), "r03": ("pos", 0.6), "r04": ("neg", 0.95)}
STUDENT_LABELS = {"r01": ("neg", 0.8), "r02": ("neg", 0.9), "r03": ("pos", 0.9), "r04": ("pos", 0.55)}


def add_student_predictions(project: Project, predictions: dict[str, tuple[Any, float]]) -> int:
    """Register an exported student artifact and store its predictions, as `label` would."""
    store = project.store
    run_id = store.start_student_run("tiny", "llm", {}, None)
    store.finish_student_run(run_id, "done", {})
    artifact = store.add_artifact(run_id, "onnx", str(project.artifacts / "onnx" / "run-0001"), "0" * 64,
                                  {"file": "model.onnx"})
    store.add_predictions(artifact, [(eid, label, None, conf) for eid, (label, conf) in predictions.items()])
    return artifact


def review_project(make_project: Callable[..., Project], write_file: Callable[..., Path]) -> Project:
    project = classify_project(make_project, write_file, pool=4)
    project.import_annotations(write_file("llm.jsonl", [
        {"id": eid, "label": label, "confidence": conf} for eid, (label, conf) in LLM_LABELS.items()]), "teacher")
    add_student_predictions(project, STUDENT_LABELS)
    return project


def notes(app: LlmaaaApp) -> list[tuple[str, str]]:
    return [(str(note.severity), note.message) for note in app._notifications]


def text(app: LlmaaaApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


def rows(app: LlmaaaApp, selector: str) -> list[list[str]]:
    table = app.query_one(selector, DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def counts(app: LlmaaaApp) -> dict[str, int]:
    return {name: int(value) for name, value in rows(app, "#counts")}


def set_input(app: LlmaaaApp, selector: str, value: str) -> None:
    app.query_one(selector, Input).value = value


async def type_into(pilot: Pilot[None], selector: str, value: str) -> None:
    """Focus an input, clear it, and type `value` key by key."""
    field = pilot.app.query_one(selector, Input)
    field.focus()
    field.value = ""
    await pilot.press(*value)


async def press_button(pilot: Pilot[None], selector: str) -> None:
    button = pilot.app.screen.query_one(selector, Button)
    await wait_for(pilot, lambda: not button.has_class("-active"))  # a button ignores presses for 0.2 s after one
    button.focus()
    await pilot.press("enter")
    await pilot.pause()


async def wait_for(pilot: Pilot[None], condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for the app")
        await pilot.pause(0.05)


async def wait_job(pilot: Pilot[None], timeout: float = 20.0) -> None:
    """Until the running job (if any) has ended and the panes have refreshed."""
    app = pilot.app
    assert isinstance(app, LlmaaaApp)
    await wait_for(pilot, lambda: app.control is None, timeout)
    await pilot.pause()


async def annotate_ten(pilot: Pilot[None], app: LlmaaaApp, started: int) -> None:
    """On the Run tab, start annotating 10 examples and wait until `started` of them are done."""
    await pilot.press("3")
    set_input(app, "#annotate-n", "10")
    await pilot.press("a")
    await wait_for(pilot, lambda: done(app) >= started)


async def annotate_all(pilot: Pilot[None], app: LlmaaaApp, n: int, timeout: float = 20.0) -> None:
    """On the Run tab, annotate `n` examples and wait until the job has finished (saying why when it did not)."""
    await pilot.press("3")
    set_input(app, "#annotate-n", str(n))
    await pilot.press("a")
    await wait_job(pilot, timeout)
    assert text(app, "#state") == "annotate: finished", "\n".join(app.query_one("#events", Log).lines)


def done(app: LlmaaaApp) -> int:
    return int(app.query_one("#progress", ProgressBar).progress)


def stored(project: Project) -> int:
    return int(project.status().counts.annotations)


def make_app(project: Project, tmp_path: Path, teacher: Teacher | None = None) -> LlmaaaApp:
    return LlmaaaApp(project.root, models_dir=tmp_path / "models", teacher_factory=teacher or Teacher())


# --- Home ---------------------------------------------------------------------------------------------------------


async def test_home_shows_the_projects_counts(make_project: Callable[..., Project],
                                              write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = classify_project(make_project, write_file)
    project.import_gold(write_file("demo.jsonl", [{"id": "g1", "text": "good tea", "label": "pos"}]), "demo")
    app = make_app(project, tmp_path)
    async with app.run_test(size=SIZE):
        assert counts(app) == {"pool": 10, "demo": 1, "dev": 0, "test": 0, "annotations": 0, "parse_errors": 0}
        assert text(app, "#project-info") == f"{project.root}  task classify  labels pos, neg"
        assert app.sub_title == str(project.root)


async def test_create_a_project_through_the_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # short relative folders to type
    app = LlmaaaApp(None, models_dir=tmp_path / "models")
    folder = Path("new-proj")
    async with app.run_test(size=SIZE) as pilot:
        assert "no project open" in text(app, "#project-info")
        await type_into(pilot, "#new-path", str(folder))
        await type_into(pilot, "#new-labels", "spam,ham")
        await press_button(pilot, "#create")
        assert app.project_dir == folder
        assert ("information", f"created {folder}") in notes(app)
        assert text(app, "#project-info") == f"{folder}  task classify  labels spam, ham"
        assert counts(app)["pool"] == 0
        await press_button(pilot, "#create")  # the same folder again
        assert any(severity == "error" and "a project already exists here" in message
                   for severity, message in notes(app))
        assert app.project_dir == folder
    with Project.open(tmp_path / folder) as created:
        assert created.settings.label_names == ("spam", "ham")


async def test_opening_a_folder_without_a_project_keeps_the_old_one(
        make_project: Callable[..., Project], write_file: Callable[..., Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    project = classify_project(make_project, write_file)
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    app = make_app(project, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await type_into(pilot, "#open-path", "empty")
        await press_button(pilot, "#open")
        assert app.project_dir == project.root
        assert any(severity == "error" and "no project database here" in message for severity, message in notes(app))
        assert text(app, "#project-info").startswith(str(project.root))
        assert counts(app)["pool"] == 10
        # and an existing project opens
        other = make_project("classify", labels=["x", "y"], name="other")
        await type_into(pilot, "#open-path", other.root.name)
        await press_button(pilot, "#open")
        assert app.project_dir == Path("other")
        assert counts(app)["pool"] == 0


async def choose_file(pilot: Pilot[None], name: str) -> None:
    """Pick `name` in the import screen's directory tree with the cursor and enter."""
    tree = pilot.app.screen.query_one(DirectoryTree)
    await wait_for(pilot, lambda: any(node.data.path.name == name for node in tree.root.children))
    node = next(node for node in tree.root.children if node.data.path.name == name)
    tree.focus()
    tree.move_cursor(node)
    await pilot.press("enter")
    await pilot.pause()


async def test_import_screen_previews_and_imports_a_corpus(make_project: Callable[..., Project],
                                                           write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = make_project("classify", labels=["pos", "neg"], prompt=NO_DEMOS)
    write_file("corpus.jsonl", pool_records())
    app = make_app(project, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        assert counts(app)["pool"] == 0
        await pilot.press("i")
        assert isinstance(app.screen, ImportScreen)
        tree = app.screen.query_one(DirectoryTree)
        await wait_for(pilot, lambda: len(tree.root.children) > 0)
        assert {"corpus.jsonl", "proj"} <= {node.data.path.name for node in tree.root.children}
        await choose_file(pilot, "corpus.jsonl")
        preview = str(app.screen.query_one("#import-preview", Static).render())
        assert preview.startswith("corpus.jsonl")
        assert '"id": "r01"' in preview and "good coffee and kind staff" in preview
        assert "r07" not in preview  # the first records only
        await press_button(pilot, "#import-go")
        await wait_job(pilot)
        assert not isinstance(app.screen, ImportScreen)
        assert text(app, "#import-result") == "corpus.jsonl: 10 added, 0 already present"
        assert counts(app)["pool"] == 10
    assert project.status().counts.pool == 10


async def test_import_of_a_bad_file_names_the_line_and_changes_nothing(
        make_project: Callable[..., Project], write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = classify_project(make_project, write_file, pool=3)
    write_file("bad.jsonl", ['{"id": "n1", "text": "fine"}', '{"id": "n2", "text": '])
    before = snapshot(project)
    app = make_app(project, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i")
        await press_button(pilot, "#import-go")  # nothing chosen yet
        assert ("warning", "choose a file first") in notes(app)
        await pilot.press("escape")
        assert not isinstance(app.screen, ImportScreen) and app.control is None
        await pilot.press("i")
        await choose_file(pilot, "bad.jsonl")
        assert '{"id": "n2", "text": ' in str(app.screen.query_one("#import-preview", Static).render())
        await press_button(pilot, "#import-go")
        await wait_job(pilot)
        assert "bad.jsonl:2" in text(app, "#import-result")
        assert any(severity == "error" and "bad.jsonl:2" in message for severity, message in notes(app))
        assert counts(app)["pool"] == 3
    assert snapshot(project) == before


# --- Models -------------------------------------------------------------------------------------------------------


async def test_models_tab_lists_files_and_applies_choices(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "x.gguf").write_bytes(b"GGUF" + b"\0" * 60)
    (models / "tiny-hf").mkdir()
    (models / "tiny-hf" / "config.json").write_text("{}")
    app = LlmaaaApp(None, models_dir=models)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        assert app.query_one("TabPane#models").size.height > 15  # the whole tab, not a 9-row strip (#models clash)
        listed = rows(app, "#model-files")
        assert [row[:2] for row in listed] == [["tiny-hf", "hf"], ["x.gguf", "gguf"]]
        assert listed[1][2] == "0.0"  # MB

        before = app.session.teacher
        await type_into(pilot, "#teacher-ctx", "100")
        await press_button(pilot, "#apply-models")
        assert any(severity == "error" and "out of range" in message for severity, message in notes(app))
        assert app.session.teacher == before

        await type_into(pilot, "#teacher-model", "x")
        await type_into(pilot, "#teacher-threads", "2")
        await type_into(pilot, "#teacher-ctx", "4096")
        await type_into(pilot, "#student-model", "tiny-hf")
        await press_button(pilot, "#apply-models")
        assert app.session.teacher == TeacherSettings(model="x", n_ctx=4096, threads=2, n_gpu_layers=0)
        assert app.session.student == "tiny-hf"
        assert ("information", "teacher x, student tiny-hf") in notes(app)
        assert app.session.engine == EngineSettings()

        app.query_one("#engine", Select).value = "ray"
        await type_into(pilot, "#engine-workers", "0")
        await press_button(pilot, "#apply-models")
        assert any(severity == "error" and "--workers" in message for severity, message in notes(app))
        assert app.session.engine == EngineSettings()  # a bad choice changes nothing
        await type_into(pilot, "#engine-address", "head:6379")
        await type_into(pilot, "#engine-workers", "3")
        await press_button(pilot, "#apply-models")
        assert app.session.engine == EngineSettings("ray", "head:6379", 3)
        assert ("information", "teacher x, student tiny-hf, on Ray (3 workers)") in notes(app)


async def test_models_tab_checks_the_machine_and_survives_a_gguf_that_fails(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "broken.gguf").write_bytes(b"GGUF" + b"\0" * 60)
    app = LlmaaaApp(None, models_dir=models)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await press_button(pilot, "#doctor")
        await wait_job(pilot, timeout=120)
        lines = app.query_one("#pull-log", Log).lines
        assert any(line.startswith("llama.cpp      llama-cpp-python ") for line in lines), lines
        assert any(line.startswith("decode         broken.gguf: failed") for line in lines), lines
        assert lines[-1].startswith("verdict        NOT OK")
        assert any(severity == "error" and "problems found" in message for severity, message in notes(app))


# --- Run ----------------------------------------------------------------------------------------------------------


async def test_annotate_shows_live_progress_and_stores_everything(
        make_project: Callable[..., Project], write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = classify_project(make_project, write_file)
    teacher = Teacher()
    app = make_app(project, tmp_path, teacher)
    async with app.run_test(size=SIZE) as pilot:
        await annotate_all(pilot, app, 6)
        bar = app.query_one("#progress", ProgressBar)
        assert (bar.progress, bar.total) == (6, 6)
        rates = text(app, "#rates")
        assert rates.startswith("annotate: ") and "docs/s" in rates and "tok/s" in rates and "cached 0" in rates
        feed = rows(app, "#feed")
        assert len(feed) == 6
        newest_first = [row["example_id"] for row in project.store.recent_annotations(6)]
        assert [row[0] for row in feed] == newest_first
        by_id = {eid: (text_, label) for eid, text_, label in POOL}
        for eid, label, confidence, shown in feed:
            assert label == by_id[eid][1] and shown == by_id[eid][0] and float(confidence) > 0.9
        assert "annotate started" in "\n".join(app.query_one("#events", Log).lines)
        assert "6 annotated, 0 cached, 0 parse errors" in "\n".join(app.query_one("#events", Log).lines)
        assert teacher.calls == 6
        assert teacher.loaded == [app.session.teacher]  # the Models tab's choice reaches the factory
        assert counts(app)["annotations"] == 6
        await pilot.press("1")
        assert counts(app)["annotations"] == 6
    assert stored(project) == 6


async def test_pause_holds_the_job_and_resume_finishes_it(make_project: Callable[..., Project],
                                                          write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = classify_project(make_project, write_file)
    app = make_app(project, tmp_path, Teacher(delay=0.15))
    async with app.run_test(size=SIZE) as pilot:
        await annotate_ten(pilot, app, started=1)
        await pilot.press("p")
        assert text(app, "#state") == "annotate: paused"
        assert any("annotate paused" in message for _, message in notes(app))
        await pilot.pause(0.4)  # the call in flight, if any, lands
        held, held_stored = done(app), stored(project)
        assert 1 <= held < 10 and app.query_one("#progress", ProgressBar).total == 10
        assert len(rows(app, "#feed")) == held and "ETA" in text(app, "#rates")
        await pilot.pause(0.6)
        assert (done(app), stored(project)) == (held, held_stored)
        assert app.control is not None and app.control.paused
        await pilot.press("u")
        assert text(app, "#state") == "annotate: running"
        await wait_job(pilot)
        assert text(app, "#state") == "annotate: finished"
        assert done(app) == 10
    assert stored(project) == 10


async def test_cancel_keeps_what_was_stored_and_a_rerun_does_the_rest(
        make_project: Callable[..., Project], write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = classify_project(make_project, write_file)
    teacher = Teacher(delay=0.1)
    app = make_app(project, tmp_path, teacher)
    async with app.run_test(size=SIZE) as pilot:
        await annotate_ten(pilot, app, started=2)
        await pilot.press("x")
        await wait_job(pilot)
        assert text(app, "#state") == "annotate: cancelled"
        assert any("everything stored so far is kept" in message for _, message in notes(app))
        kept = stored(project)
        assert 2 <= kept < 10
        assert teacher.calls == kept
        assert counts(app)["annotations"] == kept

        teacher.delay = 0.0
        await pilot.press("a")
        await wait_job(pilot)
        assert teacher.calls == 10  # only the rest was asked
        assert f"{10 - kept} annotated, {kept} cached" in text(app, "#state") + "\n".join(
            app.query_one("#events", Log).lines)
        assert counts(app)["annotations"] == 10
    assert stored(project) == 10


async def test_a_second_job_is_refused_while_one_runs(make_project: Callable[..., Project],
                                                      write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = classify_project(make_project, write_file)
    app = make_app(project, tmp_path, Teacher(delay=0.1))
    async with app.run_test(size=SIZE) as pilot:
        await annotate_ten(pilot, app, started=1)
        await pilot.press("t")
        assert ("warning", "annotate is still running: pause, cancel (x) or wait") in notes(app)
        assert app.job_name == "annotate"
        await pilot.press("a")
        assert notes(app).count(("warning", "annotate is still running: pause, cancel (x) or wait")) == 2
        await pilot.press("x")
        await wait_job(pilot)
    assert project.store.student_runs() == []


async def test_annotate_without_a_project_is_refused(tmp_path: Path) -> None:
    app = LlmaaaApp(None, models_dir=tmp_path / "models", teacher_factory=Teacher())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3", "a")
        assert ("error", "open or create a project first (Home tab)") in notes(app)
        assert app.control is None


async def test_a_failing_job_is_shown_not_raised(make_project: Callable[..., Project], tmp_path: Path) -> None:
    project = make_project("classify", labels=[], prompt=NO_DEMOS)  # no label set: the annotator refuses
    app = make_app(project, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3", "a")
        await wait_job(pilot)
        assert text(app, "#state") == "annotate: failed"
        assert any(severity == "error" and "no label set" in message for severity, message in notes(app))


@pytest.mark.slow
async def test_train_export_and_label_with_the_tiny_student(tmp_path: Path, tiny_encoder: Path) -> None:
    project = student_project(tmp_path, "classify", pool=16, demo=8, test=8)
    app = make_app(project, tmp_path)
    app.session.student = str(tiny_encoder)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3", "t")
        await wait_job(pilot, timeout=240)
        assert text(app, "#state") == "train: finished", "\n".join(app.query_one("#events", Log).lines)
        assert "trained on" in "\n".join(app.query_one("#events", Log).lines)
        await pilot.press("e")
        await wait_job(pilot, timeout=240)
        assert text(app, "#state") == "export: finished", "\n".join(app.query_one("#events", Log).lines)
        await pilot.press("l")
        await wait_job(pilot, timeout=120)
        assert text(app, "#state") == "label: finished", "\n".join(app.query_one("#events", Log).lines)
        assert "32 labeled, 0 already labeled" in "\n".join(app.query_one("#events", Log).lines)
        await pilot.press("5")
        assert "student" in [row[0] for row in rows(app, "#quality")]
    artifact = project.store.labeled_artifact()
    assert artifact is not None and len(project.store.predictions(artifact)) == 32


# --- Review -------------------------------------------------------------------------------------------------------


async def test_review_queue_lists_disagreements_first_and_takes_decisions(
        make_project: Callable[..., Project], write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = review_project(make_project, write_file)
    app = make_app(project, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        queue = rows(app, "#queue")
        assert [row[:2] for row in queue] == [["r04", "disagree"], ["r01", "disagree"], ["r03", "unsure"]]
        assert queue[0][2:] == ["neg 0.95", "pos 0.55", "the bus was late and bad"]
        assert text(app, "#detail") == "the bus was late and bad"
        assert text(app, "#review-counts").startswith("3 to review  |  decided: 0 LLM, 0 student, 0 typed")

        await pilot.press("a")  # r04: the LLM's neg
        assert [row[0] for row in rows(app, "#queue")] == ["r01", "r03"]
        assert text(app, "#review-counts").startswith("2 to review  |  decided: 1 LLM, 0 student, 0 typed")

        await pilot.press("t")  # r01: typed
        assert app.focused is app.query_one("#typed", Input)
        assert app.query_one("#typed", Input).placeholder == "one of: pos, neg"
        await pilot.press(*"ne", "down", "g", "enter")  # an arrow while typing does not move to another example
        assert [row[0] for row in rows(app, "#queue")] == ["r03"]
        assert text(app, "#review-counts").startswith("1 to review  |  decided: 1 LLM, 0 student, 1 typed")

        await pilot.press("s")  # r03: the student's pos
        assert rows(app, "#queue") == []
        assert text(app, "#detail") == "the queue is empty"
        assert text(app, "#review-counts").startswith("0 to review  |  decided: 1 LLM, 1 student, 1 typed")
        await pilot.press("1")
        assert counts(app)["demo"] == 3 and counts(app)["pool"] == 1
    gold = {example.id: example.label for example in project.store.examples("demo")}
    assert gold == {"r04": "neg", "r01": "neg", "r03": "pos"}
    assert project.store.review_counts() == {"llm": 1, "student": 1, "typed": 1}


async def test_review_moves_through_the_queue(make_project: Callable[..., Project],
                                             write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = review_project(make_project, write_file)
    app = make_app(project, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4", "down")  # the arrows work as soon as the tab opens
        assert text(app, "#detail") == "good coffee and kind staff"
        await pilot.press("down", "down", "up")
        assert text(app, "#detail") == "good coffee and kind staff"
        await pilot.press("a")  # r01 gets the LLM's pos
        assert [row[0] for row in rows(app, "#queue")] == ["r04", "r03"]
        app.query_one("#queue", DataTable).focus()
        await pilot.press("down", "s")  # from the table, the pane's keys still work: r03 gets the student's pos
        assert [row[0] for row in rows(app, "#queue")] == ["r04"]
    assert {e.id: e.label for e in project.store.examples("demo")} == {"r01": "pos", "r03": "pos"}


async def test_a_typed_label_outside_the_set_changes_nothing(make_project: Callable[..., Project],
                                                            write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = review_project(make_project, write_file)
    before = snapshot(project)
    app = make_app(project, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4", "t")
        await pilot.press(*"maybe", "enter")
        assert any(severity == "error" and "'r04'" in message and "maybe" in message
                   for severity, message in notes(app))
        assert [row[0] for row in rows(app, "#queue")] == ["r04", "r01", "r03"]
        assert not app.query_one("#typed", Input).display
    assert snapshot(project) == before


NER_TOKENS = ["Ada", "Lovelace", "visited", "New", "York", "."]


async def test_span_editor_sets_the_gold_spans(make_project: Callable[..., Project],
                                               write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = make_project("ner", labels=["PER", "ORG", "LOC", "MISC"], prompt=NO_DEMOS)
    project.import_corpus(write_file("ner.jsonl", [{"id": "n1", "text": " ".join(NER_TOKENS), "tokens": NER_TOKENS}]))
    # the LLM found "Ada" as ORG and "." as MISC, unsure
    project.import_annotations(write_file("ner-llm.jsonl", [
        {"id": "n1", "tags": ["B-ORG", "O", "O", "O", "O", "B-MISC"], "confidence": 0.3}]), "teacher")
    app = make_app(project, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        assert rows(app, "#queue")[0][:3] == ["n1", "unsure", "ORG:0-1 MISC:5-6 0.30"]
        await pilot.press("t")
        editor = app.query_one(SpanEditor)
        assert app.focused is editor
        assert editor.spans == [Span(0, 1, "ORG"), Span(5, 6, "MISC")]
        await pilot.press("shift+right", "1")  # Ada Lovelace -> PER (replaces the ORG)
        await pilot.press("right", "right", "shift+right", "3")  # New York -> LOC
        await pilot.press("right", "right", "delete")  # drop the MISC on "."
        assert editor.spans == [Span(0, 2, "PER"), Span(3, 5, "LOC")]
        assert "[PER]" in str(editor.render()) and "[LOC]" in str(editor.render())
        await pilot.press("enter")
        await pilot.pause()
        assert not app.query(SpanEditor)
        assert rows(app, "#queue") == []
        assert app.project_dir is not None
    (example,) = project.store.examples("demo")
    assert example.id == "n1" and example.label == (Span(0, 2, "PER"), Span(3, 5, "LOC"))
    assert project.store.review_counts()["typed"] == 1


async def test_span_editor_stays_single_and_blocks_other_decisions(
        make_project: Callable[..., Project], write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = make_project("ner", labels=["PER", "LOC"], prompt=NO_DEMOS)
    project.import_corpus(write_file("ner.jsonl", [{"id": eid, "text": " ".join(NER_TOKENS), "tokens": NER_TOKENS}
                                                   for eid in ("n1", "n2")]))
    project.import_annotations(write_file("ner-llm.jsonl", [
        {"id": "n1", "tags": ["O"] * 6, "confidence": 0.2}, {"id": "n2", "tags": ["O"] * 6, "confidence": 0.4}]),
        "teacher")
    app = make_app(project, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4", "t")
        await pilot.press("t")  # a second editor used to crash the app (DuplicateIds)
        assert len(app.query(SpanEditor)) == 1
        await pilot.press("a")  # accepting another label while editing would decide the wrong example
        assert any(severity == "warning" and "finish the span edit first" in message
                   for severity, message in notes(app))
        assert project.store.review_counts() == {"llm": 0, "student": 0, "typed": 0}
        await pilot.press("2", "enter")  # "Ada" -> LOC, saved on the example the editor was opened on
        await pilot.pause()
        assert [row[0] for row in rows(app, "#queue")] == ["n2"]
    assert [(e.id, e.label) for e in project.store.examples("demo")] == [("n1", (Span(0, 1, "LOC"),))]


async def test_span_editor_escape_changes_nothing(make_project: Callable[..., Project],
                                                 write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = make_project("ner", labels=["PER", "LOC"], prompt=NO_DEMOS)
    project.import_corpus(write_file("ner.jsonl", [{"id": "n1", "text": " ".join(NER_TOKENS), "tokens": NER_TOKENS}]))
    project.import_annotations(write_file("ner-llm.jsonl", [{"id": "n1", "tags": ["O"] * 6, "confidence": 0.2}]),
                               "teacher")
    before = snapshot(project)
    app = make_app(project, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4", "t", "2", "escape")
        await pilot.pause()
        assert not app.query(SpanEditor)
        assert app.query_one(ReviewPane).task_name == "ner"
        assert [row[0] for row in rows(app, "#queue")] == ["n1"]
    assert snapshot(project) == before


# --- Metrics and Export -------------------------------------------------------------------------------------------


async def test_metrics_show_teacher_student_cost_and_learning_curve(
        make_project: Callable[..., Project], write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = review_project(make_project, write_file)
    app = make_app(project, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        quality = {row[0]: row[1:] for row in rows(app, "#quality")}
        assert quality["teacher (LLM)"][:2] == ["pool", "4"] and "accuracy 1.000" in quality["teacher (LLM)"][2]
        assert quality["student"][:2] == ["pool", "4"] and "accuracy 0.500" in quality["student"][2]
        assert quality["LLM = student"] == ["pool", "4", "50.0%"]
        assert text(app, "#cost").startswith("LLM cost: 4 annotations, 0 prompt tokens")
        assert text(app, "#curve") == "no active-learning rounds yet: run the loop (Run tab, o)"
        assert not app.query_one("#curve-plot").display and not app.query_one("#rounds").display

        store = project.store
        store.start_round("default", 0, "entropy", {}, ["r01", "r02"])
        (first,) = store.rounds("default")
        store.update_round(first.id, "trained", 12.0, llm={"accuracy": 0.75}, student={"accuracy": 0.5})
        store.finish_round(first.id, 12.0, "default", 1, "entropy", {}, ["r03", "r04"])
        (_, second) = store.rounds("default")
        store.update_round(second.id, "trained", 8.0, llm={"accuracy": 1.0}, student={"accuracy": 0.75})
        store.finish_round(second.id, 8.0, "default", 2, "entropy", {}, [])
        await pilot.press("f5")
        assert not app.query_one("#curve").display and app.query_one("#curve-plot").display
        assert rows(app, "#rounds") == [["default", "0", "2", "0.7500", "0.5000", "12"],
                                        ["default", "1", "4", "1.0000", "0.7500", "8"]]
        plot = app.query_one("#curve-plot", PlotextPlot)
        drawn = plot.plt.build()
        assert "student accuracy" in drawn and "LLM labels accuracy" in drawn and "labeled examples" in drawn
        assert "learning curves (default)" in drawn


async def test_export_writes_the_chosen_sources(make_project: Callable[..., Project],
                                                write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = review_project(make_project, write_file)
    app = make_app(project, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        for source in ("gold", "student"):
            app.query_one(f"#source-{source}", Checkbox).focus()
            await pilot.press("space")
        assert [app.query_one(f"#source-{s}", Checkbox).value for s in ("gold", "llm", "student")] == [
            False, True, False]
        await type_into(pilot, "#export-path", "out.jsonl")
        await type_into(pilot, "#export-min", "0.85")
        await press_button(pilot, "#export-go")
        written = project.root / "out.jsonl"
        assert text(app, "#export-result") == f"wrote 3 labeled examples to {written}"
    records = [json.loads(line) for line in written.read_text().splitlines()]
    assert [(r["id"], r["label"], r["label_source"]) for r in records] == [
        ("r01", "pos", "import:teacher"), ("r02", "neg", "import:teacher"), ("r04", "neg", "import:teacher")]


async def test_export_refuses_a_bad_min_confidence(make_project: Callable[..., Project],
                                                   write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = review_project(make_project, write_file)
    app = make_app(project, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        for minimum, error in [("1.5", "--min-confidence 1.5 is outside 0..1"),
                               ("-0.1", "--min-confidence -0.1 is outside 0..1"),
                               ("abc", "the minimum confidence must be a number from 0 to 1")]:
            set_input(app, "#export-min", minimum)
            await press_button(pilot, "#export-go")
            assert text(app, "#export-result") == error
        assert not (project.root / "labels.jsonl").exists()


# --- help and the command palette ---------------------------------------------------------------------------------


async def test_help_lists_every_key(tmp_path: Path) -> None:
    app = LlmaaaApp(None, models_dir=tmp_path / "models")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        table = app.screen.query_one("#help-keys", DataTable)
        keys = {(str(table.get_row_at(i)[0]), str(table.get_row_at(i)[1])) for i in range(table.row_count)}
        for expected in [("a", "Annotate (Run)"), ("t", "Train (Run)"), ("e", "Export ONNX (Run)"),
                         ("l", "Label (Run)"), ("o", "AL loop (Run)"), ("p", "Pause (Run)"), ("u", "Resume (Run)"),
                         ("x", "Cancel (Run)"), ("a", "Accept LLM (Review)"), ("s", "Accept student (Review)"),
                         ("t", "Type label (Review)"), ("i", "Import file (Home)"),
                         ("del/⌫", "Remove entity (SpanEditor)"), ("?", "Help"), ("^q", "Quit"),
                         ("3", "Run"), ("4", "Review")]:
            assert expected in keys
        assert "Save spans (SpanEditor)" in {action for _, action in keys}
        assert "question_mark" not in {key for key, _ in keys}
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_command_palette_runs_annotate(make_project: Callable[..., Project],
                                             write_file: Callable[..., Path], tmp_path: Path) -> None:
    from textual.command import CommandList

    project = classify_project(make_project, write_file, pool=4)
    teacher = Teacher()
    app = make_app(project, tmp_path, teacher)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p", *"annotate")

        def prompts() -> list[str]:
            """The hits' first lines (the second is the action's name)."""
            return [str(options.get_option_at_index(i).prompt).splitlines()[0]
                    for options in app.screen.query(CommandList) for i in range(options.option_count)]

        await wait_for(pilot, lambda: prompts()[:1] == ["Annotate pool examples with the LLM"])
        if app.screen.query_one(CommandList).highlighted is None:
            await pilot.press("down")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.job_name == "annotate")
        await wait_job(pilot)
        assert app.query_one("#tabs", TabbedContent).active == "run"
        assert text(app, "#state") == "annotate: finished"
        assert teacher.calls == 4
    assert stored(project) == 4


async def test_tune_runs_from_the_run_tab_and_the_project_takes_the_chosen_prompt(
        make_project: Callable[..., Project], write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = classify_project(make_project, write_file)
    gold = [{"id": f"g{i}", "text": f"{'good' if i % 2 else 'poor'} tea {i}", "label": "pos" if i % 2 else "neg"}
            for i in range(8)]
    project.import_gold(write_file("dev.jsonl", gold), "dev")  # dev only: no embedder needed in this test
    teacher = Teacher()
    app = make_app(project, tmp_path, teacher)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await pilot.press("n")
        await wait_job(pilot, timeout=60)
        assert text(app, "#state") == "tune: finished", "\n".join(app.query_one("#events", Log).lines)
        chose = [message for severity, message in notes(app) if message.startswith("tune: chose ")]
        assert chose and "macro-F1 1.000 on 8 gold" in chose[0]
    assert teacher.calls > 0 and project.store.tuning() is not None
    assert project.settings.prompt == project.store.settings().prompt


# --- the CLI entry point ------------------------------------------------------------------------------------------


def test_cli_tui_uses_the_models_dir_option(make_project: Callable[..., Project], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from llmaaa_local.cli import main

    project = make_project("classify", labels=["pos", "neg"])
    opened: list[LlmaaaApp] = []
    monkeypatch.setattr(LlmaaaApp, "run", lambda self, *args, **kwargs: opened.append(self))
    monkeypatch.delenv("LLMAAA_MODELS", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    result = CliRunner().invoke(main, ["--project", str(project.root), "--models-dir", str(tmp_path / "m"), "tui"])
    assert result.exit_code == 0, result.output
    (app,) = opened
    assert app.project_dir == project.root
    assert app.models_dir == tmp_path / "m"
    assert app.crash_note == "" and not (tmp_path / "state" / "llmaaa-local" / "tui-faults.log").exists()


async def test_a_native_crash_of_the_last_tui_session_is_shown_at_the_next_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The TUI sends faulthandler's trace to a file (the screen is the UI's); a real crash leaves it there."""
    from llmaaa_local.cli import tui_fault_log

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    crashed = subprocess.run(
        [sys.executable, "-c", "import faulthandler, ctypes\nfrom llmaaa_local.cli import tui_fault_log\n"
         "path = tui_fault_log(); path.parent.mkdir(parents=True)\nfaulthandler.enable(path.open('w'))\n"
         "ctypes.string_at(0)"], env=os.environ | {"XDG_STATE_HOME": str(tmp_path / "state")}, check=False)
    assert crashed.returncode < 0 and "Segmentation fault" in tui_fault_log().read_text()
    opened: list[LlmaaaApp] = []
    monkeypatch.setattr(LlmaaaApp, "run", lambda self, *args, **kwargs: opened.append(self))
    from click.testing import CliRunner

    from llmaaa_local.cli import main

    assert CliRunner().invoke(main, ["--models-dir", str(tmp_path / "m"), "tui"]).exit_code == 0
    (app,) = opened
    kept = tui_fault_log().with_name("tui-faults.last.log")
    assert str(kept) in app.crash_note and "doctor" in app.crash_note
    assert "Segmentation fault" in kept.read_text()
    async with app.run_test(size=SIZE):
        assert any(severity == "error" and "crash in native code" in message for severity, message in notes(app))


async def test_the_feed_shows_each_new_annotation_once_when_some_are_cached(
        make_project: Callable[..., Project], write_file: Callable[..., Path], tmp_path: Path) -> None:
    """Progress comes for cached examples too, while the newest asked annotation is still the latest one."""
    project = classify_project(make_project, write_file)
    app = make_app(project, tmp_path, Teacher())
    async with app.run_test(size=SIZE) as pilot:
        await annotate_all(pilot, app, 3)
        first = {row[0] for row in rows(app, "#feed")}
        await annotate_all(pilot, app, 6)
        assert "3 annotated, 3 cached" in "\n".join(app.query_one("#events", Log).lines)
        feed = [row[0] for row in rows(app, "#feed")]
        assert len(feed) == len(set(feed)) == 3
        annotated = {row["example_id"] for row in project.store.recent_annotations(10)}
        assert len(annotated) == 6 and set(feed) == annotated - first


# --- the real teacher ---------------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_annotate_with_the_real_small_gguf(make_project: Callable[..., Project],
                                                 write_file: Callable[..., Path], models_dir: Path) -> None:
    project = make_project("classify", labels=["pos", "neg"], prompt=PromptSettings(demos="none"))
    project.import_corpus(write_file("pool.jsonl", pool_records()))
    app = LlmaaaApp(project.root, models_dir=models_dir)
    app.session.teacher = TeacherSettings(model="smollm2-135m", n_ctx=1024, threads=1)
    async with app.run_test(size=SIZE) as pilot:
        await annotate_all(pilot, app, 3, timeout=180)
        assert len(rows(app, "#feed")) == 3
        assert counts(app)["annotations"] == 3
    assert stored(project) == 3
    (source,) = project.store.annotation_sources()
    assert source.startswith("llm:") and source != "llm:scripted"
