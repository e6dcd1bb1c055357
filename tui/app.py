"""The Textual app: a keyboard-first face on the library's public API (project status for now)."""

from __future__ import annotations

from pathlib import Path

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from llmaaa_local.errors import LlmaaaError
from llmaaa_local.project import Project


class LlmaaaApp(App[None]):
    """Shows a project's task, labels and counts; later screens drive annotation, training and review."""

    TITLE = "llmaaa-local"
    BINDINGS = [Binding("r", "refresh", "Refresh"), Binding("q", "quit", "Quit")]

    def __init__(self, project_dir: Path) -> None:
        super().__init__()
        self.project_dir = project_dir

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="summary")
        yield DataTable(id="counts")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#counts", DataTable)
        table.add_columns("split", "examples")
        self.action_refresh()

    def action_refresh(self) -> None:
        summary = self.query_one("#summary", Static)
        table = self.query_one("#counts", DataTable)
        table.clear()
        try:
            with Project.open(self.project_dir) as project:
                status = project.status()
        except LlmaaaError as error:
            summary.update(f"[red]{error}[/red]")
            return
        summary.update(f"{status['project']}  task: {status['task']}  labels: {', '.join(status['labels'])}")
        for name, value in status["counts"].items():
            table.add_row(name, str(value))
