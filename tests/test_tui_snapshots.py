"""Snapshot tests of the TUI at 80x24 (baselines in tests/__snapshots__/; refresh with `pytest --snapshot-update`).

The project is built from literal records under a relative folder name, and the event log's clock is frozen, so
the screens are the same on every machine.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from llmaaa_local.config import LabelInfo, ProjectSettings, PromptSettings, TeacherSettings
from llmaaa_local.llm import Prompt, ScriptedLLM
from llmaaa_local.project import Project
from llmaaa_local.tui import panes
from llmaaa_local.tui.app import LlmaaaApp

SIZE = (80, 24)
Snap = Callable[..., bool]
POOL = [
    {"id": "r01", "text": "good coffee and kind staff", "label": "pos"},
    {"id": "r02", "text": "bad service and cold food", "label": "neg"},
    {"id": "r03", "text": "a good long walk by the sea", "label": "pos"},
    {"id": "r04", "text": "the bus was late and bad", "label": "neg"},
    {"id": "r05", "text": "good value for the money", "label": "pos"},
    {"id": "r06", "text": "bad smell in the hallway", "label": "neg"},
]
LLM = [("r01", "pos", 0.9), ("r02", "neg", 0.9), ("r03", "pos", 0.6), ("r04", "neg", 0.95)]
STUDENT = [("r01", "neg", 0.8), ("r02", "neg", 0.9), ("r03", "pos", 0.9), ("r04", "pos", 0.55)]


def scripted_teacher(settings: TeacherSettings, models_dir: Path) -> ScriptedLLM:
    def score(prompt: Prompt, candidates: Sequence[str]) -> list[float]:
        best = "pos" if "good" in prompt.user.rsplit("Text: ", 1)[-1] else "neg"
        return [-0.1 if candidate == best else -3.0 for candidate in candidates]

    return ScriptedLLM(scorer=score)


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def laid_out(table: DataTable[Any]) -> bool:
    """True once the table has measured its new rows, which it does when it is next idle."""
    widths = [max([len(str(column.label)), *(len(str(cell)) for cell in table.get_column(key))])
              for key, column in table.columns.items()]
    return table.virtual_size.width >= sum(widths) + 2 * table.cell_padding * len(widths)


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LlmaaaApp:
    """The app on ./proj: six pool records, LLM labels for four, and a student that disagrees on two."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(panes, "time", SimpleNamespace(strftime=lambda fmt: "12:00:00"))
    settings = ProjectSettings("classify", (LabelInfo("pos"), LabelInfo("neg")),
                               prompt=PromptSettings(demos="none", content_free=False))
    with Project.init(Path("proj"), settings) as project:
        project.import_corpus(write_jsonl(tmp_path / "pool.jsonl", POOL))
        project.import_annotations(write_jsonl(tmp_path / "llm.jsonl", [
            {"id": eid, "label": label, "confidence": conf} for eid, label, conf in LLM]), "teacher")
        store = project.store
        run_id = store.start_student_run("tiny", "llm", {}, None)
        artifact = store.add_artifact(run_id, "onnx", "proj/artifacts/onnx/run-0001", "0" * 64, {})
        store.add_predictions(artifact, [(eid, label, None, conf) for eid, label, conf in STUDENT])
    return LlmaaaApp(Path("proj"), models_dir=Path("models"), teacher_factory=scripted_teacher)


async def until(pilot: Pilot[None], condition: Callable[[], bool], what: str) -> None:
    for _ in range(400):  # 20 s at most
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def press_and_settle(*keys: str) -> Callable[[Pilot[None]], Awaitable[None]]:
    """A run_before: press `keys`, then wait until every table on screen has laid out its rows."""

    async def run(pilot: Pilot[None]) -> None:
        await pilot.pause()  # run_before starts before the first refresh; keys sent earlier are lost
        await pilot.press(*keys)
        app = pilot.app
        assert isinstance(app, LlmaaaApp)
        if app.job_name:
            await until(pilot, lambda: app.control is None, "the job to end")
        tables = [table for table in app.screen.query(DataTable) if table.region.area]
        await until(pilot, lambda: all(laid_out(table) for table in tables), "the tables' layout")
        # Textual's DataTable keeps rows it drew before measuring them in a cache that measuring does not clear, so
        # they would stay cut at the column labels' width (the live feed can show this): drop that cache.
        for table in tables:
            table.notify_style_update()
        app.clear_notifications()

    return run


def test_home(snap_compare: Snap, app: LlmaaaApp) -> None:
    assert snap_compare(app, terminal_size=SIZE, run_before=press_and_settle())


def test_run_after_annotate(snap_compare: Snap, app: LlmaaaApp) -> None:
    async def annotate(pilot: Pilot[None]) -> None:
        await pilot.pause()
        await pilot.press("3")
        app.query_one("#annotate-n", Input).value = "4"
        await press_and_settle("a")(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=annotate)


def test_review_queue(snap_compare: Snap, app: LlmaaaApp) -> None:
    assert snap_compare(app, terminal_size=SIZE, run_before=press_and_settle("4"))


def test_help(snap_compare: Snap, app: LlmaaaApp) -> None:
    assert snap_compare(app, terminal_size=SIZE, run_before=press_and_settle("question_mark"))


def test_models_form(snap_compare: Snap, app: LlmaaaApp) -> None:
    """Every input of the Models tab carries its name on its border."""
    assert snap_compare(app, terminal_size=SIZE, run_before=press_and_settle("2"))


def test_export_form(snap_compare: Snap, app: LlmaaaApp) -> None:
    assert snap_compare(app, terminal_size=SIZE, run_before=press_and_settle("6"))


def test_import_dialog(snap_compare: Snap, app: LlmaaaApp) -> None:
    assert snap_compare(app, terminal_size=SIZE, run_before=press_and_settle("i"))


def test_metrics_with_learning_curves(snap_compare: Snap, app: LlmaaaApp) -> None:
    """Two loops' rounds drawn by the plot widget, and their table."""
    with Project.open(Path("proj")) as project:
        store = project.store
        for loop, scores in (("entropy", [(0.75, 0.5), (0.8, 0.75)]), ("random", [(0.7, 0.5), (0.75, 0.6)])):
            store.start_round(loop, 0, loop, {}, ["r01", "r02"])
            for index, (llm, student) in enumerate(scores):
                current = store.rounds(loop)[-1]
                store.update_round(current.id, "trained", 10.0, llm={"accuracy": llm}, student={"accuracy": student})
                store.finish_round(current.id, 10.0, loop, index + 1, loop, {}, ["r03", "r04"] if index == 0 else [])
    assert snap_compare(app, terminal_size=SIZE, run_before=press_and_settle("5"))
