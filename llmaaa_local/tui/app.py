"""The Textual app: the whole job from the keyboard, as a client of the library's public API.

Long work (annotate, train, export, label, the active-learning loop, model pulls, imports) runs in one worker
thread at a time; it reports through messages, and pause/resume/cancel reach it through a JobControl that the
library's progress callbacks consult, so the UI never blocks and a cancel loses nothing already stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, TabbedContent, TabPane

from llmaaa_local.errors import LlmaaaError, explain
from llmaaa_local.jobs import Cancelled, JobControl
from llmaaa_local.llm import TeacherFactory
from llmaaa_local.models import default_models_dir
from llmaaa_local.session import Session, load_teacher

from .messages import (
    FreeJob,
    JobEnded,
    JobLog,
    JobProgress,
    JobStarted,
    ModelsChosen,
    ProjectChosen,
    StartFreeJob,
    StartJob,
)
from .panes import ExportPane, HomePane, MetricsPane, ModelsPane, ReviewPane, RunPane
from .screens import HelpScreen, SpanEditor

TABS = ("home", "models", "run", "review", "metrics", "export")
# Every action of the app in the command palette, after Textual's own commands.
ACTIONS = (
    ("Annotate pool examples with the LLM", "start('annotate')"), ("Tune the prompt on gold examples", "start('tune')"),
    ("Train the student", "start('train')"),
    ("Export the student to ONNX", "start('export')"), ("Label the corpus with the student", "start('label')"),
    ("Run the active-learning loop", "start('loop')"), ("Pause the running job", "pause"),
    ("Resume the paused job", "resume"), ("Cancel the running job", "cancel"),
    ("Import a file", "import_file"), ("Open or create a project", "show_tab('home')"),
    ("Pull the default models", "pull_defaults"), ("Review queue", "show_tab('review')"),
    ("Metrics and learning curves", "show_tab('metrics')"), ("Export labels", "show_tab('export')"),
    ("Refresh", "refresh"), ("Help and key bindings", "help"),
)


class LlmaaaApp(App[None]):
    """llmaaa-local: projects, models, live annotation and training, review, metrics and export."""

    TITLE = "llmaaa-local"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        Binding("1", "show_tab('home')", "Home"), Binding("2", "show_tab('models')", "Models"),
        Binding("3", "show_tab('run')", "Run"), Binding("4", "show_tab('review')", "Review"),
        Binding("5", "show_tab('metrics')", "Metrics"), Binding("6", "show_tab('export')", "Export"),
        Binding("p", "pause", "Pause", show=False), Binding("u", "resume", "Resume", show=False),
        Binding("x", "cancel", "Cancel", show=False), Binding("f5", "refresh", "Refresh"),
        Binding("question_mark", "help", "Help"), Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, project_dir: Path | None = None, models_dir: Path | None = None,
                 teacher_factory: TeacherFactory | None = None, crash_note: str = "") -> None:
        super().__init__()
        self.crash_note = crash_note
        self.session = Session(project_dir, models_dir or default_models_dir(),
                               teacher_factory=teacher_factory or load_teacher)
        self.control: JobControl | None = None
        self.job_name = ""

    @property
    def project_dir(self) -> Path | None:
        return self.session.project_dir

    @property
    def models_dir(self) -> Path:
        return self.session.models_dir

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(id="tabs", initial="home"):
            with TabPane("1 Home", id="home"):
                yield HomePane()
            with TabPane("2 Models", id="models"):
                yield ModelsPane()
            with TabPane("3 Run", id="run"):
                yield RunPane()
            with TabPane("4 Review", id="review"):
                yield ReviewPane()
            with TabPane("5 Metrics", id="metrics"):
                yield MetricsPane()
            with TabPane("6 Export", id="export"):
                yield ExportPane()
        yield Footer()

    def on_mount(self) -> None:
        self.action_refresh()
        if self.crash_note:
            self.notify(self.crash_note, severity="error", timeout=30)

    # --- project access --------------------------------------------------------------------------------------

    @on(ProjectChosen)
    def set_project(self, message: ProjectChosen) -> None:
        self.session.project_dir = message.folder
        self.action_refresh()

    @on(ModelsChosen)
    def _models_chosen(self, message: ModelsChosen) -> None:
        self.session = replace(self.session, teacher=message.teacher, student=message.student, engine=message.engine)
        where = "" if message.engine.kind == "local" else f", on Ray ({message.engine.workers} workers)"
        self.notify(f"teacher {message.teacher.model}, student {message.student}{where}")

    def get_system_commands(self, screen: Screen) -> Iterator[SystemCommand]:
        yield from super().get_system_commands(screen)
        for text, action in ACTIONS:
            name = action.partition("('")[2].rstrip("')") or action  # start('train') -> train
            yield SystemCommand(text, name, lambda action=action: self.run_action(action))  # type: ignore[misc]

    # --- actions ---------------------------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    @on(TabbedContent.TabActivated)
    def _tab_opened(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.query_children().first()
        pane.refresh_from_project()  # type: ignore[attr-defined]
        pane.focus()

    def action_refresh(self) -> None:
        self.sub_title = str(self.project_dir or "no project")
        self.refresh_panes()

    def refresh_panes(self) -> None:
        """Re-read the open tab (and Home's counts); the others re-read when they open."""
        active = self.query_one(TabbedContent).active_pane
        panes = [self.query_one(HomePane)]
        if active is not None:
            panes.append(active.query_children().first())  # type: ignore[arg-type]
        for pane in dict.fromkeys(panes):
            pane.refresh_from_project()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.bindings_help()))

    def bindings_help(self) -> list[tuple[str, str]]:
        """Every key: the app's, each tab's, and the NER span editor's."""
        keys = [(self.key_display(b), b.description) for b in _bindings(self.BINDINGS)]
        for pane in (HomePane, RunPane, ReviewPane, SpanEditor):
            where = pane.__name__.removesuffix("Pane")
            keys += [(self.key_display(b), f"{b.description or b.action} ({where})") for b in _bindings(pane.BINDINGS)]
        return keys

    def key_display(self, binding: Binding) -> str:
        """What the user presses, as the footer shows it ("?" rather than "question_mark")."""
        return "/".join(self.get_key_display(replace(binding, key=key.strip())) for key in binding.key.split(","))

    def action_pause(self) -> None:
        if self.control is not None:
            self.control.pause()
            self.notify(f"{self.job_name} paused; press u to resume")
            self.query_one(RunPane).show_state("paused")

    def action_resume(self) -> None:
        if self.control is not None:
            self.control.resume()
            self.query_one(RunPane).show_state("running")

    def action_cancel(self) -> None:
        if self.control is not None:
            self.control.cancel()
            self.query_one(RunPane).show_state("cancelling")

    def action_start(self, job: str) -> None:
        """Start a Run-tab job (annotate, tune, train, export, label, loop) from anywhere."""
        self.query_one(RunPane).start(job)

    def action_import_file(self) -> None:
        self.action_show_tab("home")
        self.query_one(HomePane).action_import()

    def action_pull_defaults(self) -> None:
        self.action_show_tab("models")
        self.query_one(ModelsPane).pull_defaults()

    # --- the worker --------------------------------------------------------------------------------------------

    @on(StartJob)
    def _start_project_job(self, message: StartJob) -> None:
        job, session = message.job, self.session

        def run(control: JobControl) -> str:
            with session.open() as project:  # opened in the worker thread, which uses it
                return job(project, control)

        self._start(message.name, run, needs_project=True, watch=message.watch)

    @on(StartFreeJob)
    def _start_free_job(self, message: StartFreeJob) -> None:
        self._start(message.name, message.job, needs_project=False, watch=False)

    def _start(self, name: str, job: FreeJob, needs_project: bool, watch: bool) -> None:
        """Start the job in the worker thread unless one is running."""
        if self.control is not None:
            self.notify(f"{self.job_name} is still running: pause, cancel (x) or wait", severity="warning")
            return
        if needs_project and self.project_dir is None:
            self.notify("open or create a project first (Home tab)", severity="error")
            return
        self.control, self.job_name = JobControl(), name
        if watch:
            self.query_one(RunPane).watch_job()
            self.action_show_tab("run")
        self._work(name, job, self.control)

    @work(thread=True, exclusive=True, group="job", exit_on_error=False)
    def _work(self, name: str, job: FreeJob, control: JobControl) -> None:
        self.post_message(JobStarted(name))
        try:
            self.post_message(JobEnded(name, job(control), failed=False))
        except Cancelled as stopped:
            self.post_message(JobEnded(name, str(stopped), failed=False, cancelled=True))
        except LlmaaaError as error:
            self.post_message(JobEnded(name, str(error), failed=True))
        except Exception as error:  # noqa: BLE001 - any crash of a job is shown, never kills the UI
            explained = explain(error)
            self.post_message(JobEnded(name, str(explained) if explained else f"{type(error).__name__}: {error}",
                                       failed=True))

    @on(JobStarted)
    def _job_started(self, message: JobStarted) -> None:
        self.query_one(RunPane).on_started(message)

    @on(JobProgress)
    def _job_progress(self, message: JobProgress) -> None:
        self.query_one(RunPane).on_progress(message)

    @on(JobLog)
    def _job_log(self, message: JobLog) -> None:
        self.query_one(RunPane).on_log(message)
        self.query_one(ModelsPane).add_log(message.line)

    @on(JobEnded)
    def _job_ended(self, message: JobEnded) -> None:
        self.control = None
        self.query_one(RunPane).on_ended(message.name, message.summary, message.failed, message.cancelled)
        if message.name == "import":
            self.query_one(HomePane).show_result(message.summary, message.failed)
        self.notify(f"{message.name}: {message.summary}", severity="error" if message.failed else "information",
                    timeout=8)
        self.refresh_panes()


def _bindings(items: Iterable[Binding | tuple[str, ...]]) -> list[Binding]:
    return [item for item in items if isinstance(item, Binding)]
