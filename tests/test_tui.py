"""The Textual app, driven with Pilot against a real project file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual.widgets import DataTable, Static

from llmaaa_local.project import Project
from llmaaa_local.tui.app import LlmaaaApp


async def test_status_screen_shows_counts(make_project: Callable[..., Project],
                                          write_file: Callable[..., Path]) -> None:
    project = make_project("classify", labels=["pos", "neg"])
    project.import_corpus(write_file("c.jsonl", [{"id": "a", "text": "one"}, {"id": "b", "text": "two"}]))
    app = LlmaaaApp(project.root)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one("#counts", DataTable)
        assert table.get_row_at(0) == ["pool", "2"]
        project.import_gold(write_file("g.jsonl", [{"id": "g", "text": "gold", "label": "pos"}]), "demo")
        await pilot.press("r")
        assert table.get_row_at(1) == ["demo", "1"]
        assert "task: classify" in str(app.query_one("#summary", Static).render())


async def test_missing_project_is_shown_not_raised(tmp_path: Path) -> None:
    app = LlmaaaApp(tmp_path / "nothing")
    async with app.run_test(size=(80, 24)):
        assert "no project database here" in str(app.query_one("#summary", Static).render())
