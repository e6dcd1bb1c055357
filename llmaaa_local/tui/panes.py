"""The six tabs: Home (projects, import), Models, Run (live jobs), Review, Metrics, Export."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.coordinate import Coordinate
from textual.widget import Widget
from textual.widgets import Button, Checkbox, DataTable, Input, Label, Log, ProgressBar, Select, Static
from textual_plotext import PlotextPlot

from llmaaa_local.charts import curve_metric, curve_rows, curve_series, draw_curves
from llmaaa_local.config import (
    ENGINES,
    TASKS,
    EngineSettings,
    ProjectSettings,
    TeacherSettings,
    TrainConfig,
    parse_labels,
)
from llmaaa_local.errors import LlmaaaError
from llmaaa_local.evaluate import metric_line
from llmaaa_local.interchange import EXPORT_FORMATS
from llmaaa_local.jobs import JobControl, eta_text
from llmaaa_local.models import DEFAULT_MODELS, REGISTRY, list_models, pull
from llmaaa_local.project import Project
from llmaaa_local.records import Span
from llmaaa_local.strategies import STRATEGIES

from .fields import field
from .messages import (
    Host,
    JobLog,
    JobProgress,
    JobStarted,
    ModelsChosen,
    ProjectChosen,
    ProjectJob,
    StartFreeJob,
    StartJob,
)
from .screens import ImportScreen, SpanEditor

if TYPE_CHECKING:
    from llmaaa_local.annotate import AnnotateProgress
    from llmaaa_local.review import ReviewItem

FEED_ROWS = 50


class Pane(Widget, can_focus=True):
    """A tab's content; `refresh_from_project` re-reads what it shows. It takes the focus when its tab opens, so
    its key bindings work at once."""

    @property
    def main(self) -> Host:
        return cast(Host, self.app)

    def refresh_from_project(self) -> None:
        """Re-read the project; panes without project data do nothing."""

    def log_line(self, line: str) -> None:
        """A line for the job logs (Run and Models tabs); safe from the worker thread."""
        self.post_message(JobLog(line))

    def project_or_none(self) -> Project | None:
        try:
            return self.main.session.open()
        except LlmaaaError:
            return None


# --- Home ------------------------------------------------------------------------------------------------------------


class HomePane(Pane):
    BINDINGS = [Binding("i", "import", "Import file")]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            with Horizontal(classes="row"):
                yield Static("no project open", id="project-info")
                yield Button("Import a file (i)", id="import")
            yield Static("", id="import-result")
            yield DataTable(id="counts", cursor_type="none")
            with Horizontal(classes="row"):
                yield field(Input(placeholder="path/to/project", id="open-path"), "open a project folder",
                            "A folder holding project.sqlite (made by `init` or Create below)")
                yield Button("Open", id="open")
            with Horizontal(classes="row"):
                yield field(Input(placeholder="path/to/new-project", id="new-path"), "or create one in",
                            "A new or empty folder for the new project")
                yield field(Select([(task, task) for task in TASKS], value="classify", allow_blank=False,
                                   id="new-task"), "task",
                            "classify: one label per text; ner: entity spans; re: the relation of two marked entities")
            with Horizontal(classes="row"):
                yield field(Input(placeholder="a,b,c (empty: from the first labeled import)", id="new-labels"),
                            "labels", "Comma-separated labels, entity types or relation labels")
                yield Button("Create", id="create")

    def on_mount(self) -> None:
        self.query_one("#counts", DataTable).add_columns("examples", "count")

    def refresh_from_project(self) -> None:
        project = self.project_or_none()
        info = self.query_one("#project-info", Static)
        table = self.query_one("#counts", DataTable)
        table.clear()
        if project is None:
            info.update("no project open: open or create one below")
            return
        with project:
            status = project.status()
        info.update(Text(f"{status.project}  task {status.task}  labels {', '.join(status.labels) or '-'}"))
        for name, value in asdict(status.counts).items():
            table.add_row(name, str(value))

    @on(Button.Pressed, "#open")
    def _open(self) -> None:
        folder = Path(self.query_one("#open-path", Input).value.strip() or ".").expanduser()
        try:
            Project.open(folder).close()
        except LlmaaaError as error:
            self.notify(str(error), severity="error")
            return
        self.post_message(ProjectChosen(folder))

    @on(Button.Pressed, "#create")
    def _create(self) -> None:
        folder = Path(self.query_one("#new-path", Input).value.strip()).expanduser()
        task = str(self.query_one("#new-task", Select).value)
        try:
            if not str(folder).strip() or str(folder) == ".":
                raise LlmaaaError("give the new project's folder")
            labels = parse_labels(self.query_one("#new-labels", Input).value)
            Project.init(folder, ProjectSettings(task, labels)).close()  # type: ignore[arg-type]
        except LlmaaaError as error:
            self.notify(str(error), severity="error")
            return
        self.post_message(ProjectChosen(folder))
        self.notify(f"created {folder}")

    @on(Button.Pressed, "#import")
    def action_import(self) -> None:
        project_dir = self.main.session.project_dir
        if project_dir is None:
            self.notify("open or create a project first", severity="error")
            return
        start = project_dir.parent if project_dir.parent.exists() else Path.cwd()
        self.app.push_screen(ImportScreen(start), self._imported)

    def _imported(self, choice: tuple[Path, str, str, str | None] | None) -> None:
        if choice is None:
            return
        path, kind, source, fmt = choice
        result = self.query_one("#import-result", Static)

        session = self.main.session

        def job(project: Project, control: JobControl) -> str:
            report = session.import_file(project, path, kind, source, fmt)
            return f"{path.name}: {report.added} added, {report.unchanged} already present"

        result.update(f"importing {path.name} ...")
        self.post_message(StartJob("import", job))

    def show_result(self, text: str, failed: bool) -> None:
        self.query_one("#import-result", Static).update(Text(text, style="red" if failed else "green"))


# --- Models ----------------------------------------------------------------------------------------------------------


class ModelsPane(Pane):
    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield DataTable(id="model-files", cursor_type="row")
            with Horizontal(classes="row"):
                for name in REGISTRY:
                    yield Button(f"Pull {name}", id=f"pull-{name}")
                yield Button("Check this machine", id="doctor",
                         tooltip="llmaaa-local doctor: CPU flags, the llama.cpp build, and a test decode of each GGUF")
            with Horizontal(classes="row"):
                yield field(Input(value=self.main.session.teacher.model, id="teacher-model"), "teacher",
                            "The LLM: a name from the table above or a path to a GGUF file")
                yield field(Input(placeholder="all", id="teacher-threads", type="integer", classes="narrow"),
                            "threads", "CPU threads for the teacher (empty: every core)")
                yield field(Input(value=str(self.main.session.teacher.n_ctx), id="teacher-ctx", type="integer",
                                  classes="narrow"), "context", "The teacher's context window in tokens")
                yield field(Input(value="0", id="teacher-gpu", type="integer", classes="narrow"), "GPU layers",
                            "Layers offloaded to a GPU (needs a llama.cpp built with CUDA or Metal); 0: CPU only")
            with Horizontal(classes="row"):
                yield field(Input(value=self.main.session.student, id="student-model"), "student",
                            "The encoder the student is fine-tuned from, also the kNN embedder: a name or a folder")
                yield field(Select([(name, name) for name in ENGINES], value=self.main.session.engine.kind,
                                   allow_blank=False, id="engine"), "engine",
                            "local: this process; ray: teacher actors and labeling on a Ray cluster")
                yield field(Input(placeholder="here", id="engine-address"), "ray address",
                            "A Ray cluster's address (empty: $RAY_ADDRESS, else a Ray started on this machine)")
                yield field(Input(value=str(self.main.session.engine.workers), id="engine-workers", type="integer",
                                  classes="narrow"), "workers", "Ray actors: teacher copies or labeling workers")
                yield Button("Apply", id="apply-models", variant="primary")
            yield Log(id="pull-log", max_lines=200)

    def on_mount(self) -> None:
        self.query_one("#model-files", DataTable).add_columns("name", "kind", "MB", "sha256", "pulled as")

    def refresh_from_project(self) -> None:
        table = self.query_one("#model-files", DataTable)
        table.clear()
        for model in list_models(self.main.session.models_dir):
            table.add_row(model.name, model.kind, f"{model.size / 1e6:.1f}", model.sha256[:12], model.registry)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        name = (event.button.id or "").removeprefix("pull-")
        if name in REGISTRY:
            self.pull(name)
        elif event.button.id == "apply-models":
            self.apply()
        elif event.button.id == "doctor":
            self.check_machine()

    def check_machine(self) -> None:
        """The doctor's report in the log below: each GGUF decodes in a child, so a crash cannot take the UI."""
        from llmaaa_local.doctor import diagnose

        models_dir, threads = self.main.session.models_dir, self.main.session.teacher.threads

        def job(control: JobControl) -> str:
            ggufs = [(model.name, model.path) for model in list_models(models_dir) if model.kind == "gguf"]
            diagnosis = diagnose(ggufs, threads)
            for line in diagnosis.lines():
                self.log_line(line)
            if not diagnosis.ok:
                raise LlmaaaError("problems found: see the log on the Models tab")
            return "this machine runs every GGUF"

        self.post_message(StartFreeJob("doctor", job))

    def pull(self, *names: str) -> None:
        models_dir = self.main.session.models_dir

        def job(control: JobControl) -> str:
            for name in names:
                control.checkpoint()
                pull(name, models_dir, log=self.log_line)
            return f"pulled {', '.join(names)}"

        self.post_message(StartFreeJob("pull", job))

    def pull_defaults(self) -> None:
        self.pull(*DEFAULT_MODELS)

    def apply(self) -> None:
        def number(widget_id: str) -> int | None:
            text = self.query_one(widget_id, Input).value.strip()
            return int(text) if text else None

        try:
            teacher = TeacherSettings(model=self.query_one("#teacher-model", Input).value.strip(),
                                      threads=number("#teacher-threads"), n_ctx=number("#teacher-ctx") or 2048,
                                      n_gpu_layers=number("#teacher-gpu") or 0)
            workers = number("#engine-workers")
            engine = EngineSettings(str(self.query_one("#engine", Select).value),  # type: ignore[arg-type]
                                    self.query_one("#engine-address", Input).value.strip() or None,
                                    2 if workers is None else workers)
        except (LlmaaaError, ValueError) as error:
            self.notify(str(error), severity="error")
            return
        student = self.query_one("#student-model", Input).value.strip() or self.main.session.student
        self.post_message(ModelsChosen(teacher, student, engine))

    def add_log(self, line: str) -> None:
        self.query_one("#pull-log", Log).write_line(line)


# --- Run -------------------------------------------------------------------------------------------------------------


class RunPane(Pane):
    BINDINGS = [Binding("a", "start('annotate')", "Annotate"), Binding("n", "start('tune')", "Tune prompt"),
                Binding("t", "start('train')", "Train"),
                Binding("e", "start('export')", "Export ONNX"), Binding("l", "start('label')", "Label"),
                Binding("o", "start('loop')", "AL loop"), Binding("p", "app.pause", "Pause"),
                Binding("u", "app.resume", "Resume"), Binding("x", "app.cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical():
            with Horizontal(classes="row"):
                for job, label in (("annotate", "Annotate a"), ("tune", "Tune n"), ("train", "Train t"),
                                   ("export", "Export e"), ("label", "Label l"), ("loop", "Loop o")):
                    yield Button(label, id=f"start-{job}")
            with Horizontal(classes="row"):
                yield field(Input(value="100", id="annotate-n", type="integer"), "annotate how many",
                            "Pool examples the teacher labels when you press Annotate (a)")
                yield field(Select([(s, s) for s in STRATEGIES], value="entropy", allow_blank=False, id="strategy"),
                            "loop strategy", "How the active-learning loop (o) picks the next examples to annotate")
                yield field(Input(value="300", id="budget", type="integer"), "loop budget",
                            "How many examples the loop (o) may send to the teacher in all its rounds")
            yield Static("idle", id="state")
            yield ProgressBar(id="progress", show_eta=False)
            yield Static("", id="rates")
            yield DataTable(id="feed", cursor_type="none")
            yield Log(id="events", max_lines=200)

    def on_mount(self) -> None:
        feed = self.query_one("#feed", DataTable)
        for title, width in (("example", 12), ("label", 14), ("conf", 5), ("text", 40)):
            feed.add_column(title, width=width)  # fixed widths: the live feed never waits on a re-measure
        self.feed: deque[tuple[str, str, str, str]] = deque(maxlen=FEED_ROWS)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if (event.button.id or "").startswith("start-"):
            self.start((event.button.id or "").removeprefix("start-"))

    def action_start(self, job: str) -> None:
        self.start(job)

    def show_state(self, state: str) -> None:
        self.query_one("#state", Static).update(f"{self.main.job_name}: {state}")

    def number(self, widget_id: str, default: int) -> int:
        text = self.query_one(widget_id, Input).value.strip()
        return int(text) if text.isdigit() else default

    def start(self, job: str) -> None:
        jobs = {"annotate": self._annotate_job, "tune": self._tune_job, "train": self._train_job,
                "export": self._export_job, "label": self._label_job, "loop": self._loop_job}
        self.post_message(StartJob(job, jobs[job](), watch=True))

    def watch_job(self) -> None:
        """A job of this tab was accepted: clear the feed and show it running."""
        self.feed.clear()
        self.query_one("#feed", DataTable).clear()
        self.show_state("running")

    def report(self, name: str, done: int, total: int | None, rates: str, latest: dict[str, Any] | None = None,
               ) -> None:
        """Progress from the worker thread (posting a message is thread-safe)."""
        self.post_message(JobProgress(name, done, total, rates, latest))

    # The job builders take the session as it is now; their closures run in the worker thread, with their own
    # project connection.

    def _annotate_job(self) -> ProjectJob:
        session, n = self.main.session, self.number("#annotate-n", 100)

        def job(project: Project, control: JobControl) -> str:
            from llmaaa_local.annotate import AnnotateConfig

            report = session.annotate(project, AnnotateConfig(n=n, seed=session.teacher.seed), lambda p: self.report(
                "annotate", p.done, p.total, _rates(p), _latest(p)), control)
            return f"{report.annotated} annotated, {report.cached} cached, {report.parse_errors} parse errors"

        return job

    def _tune_job(self) -> ProjectJob:
        session = self.main.session

        def job(project: Project, control: JobControl) -> str:
            from llmaaa_local.tune import TuneConfig

            report = session.tune(project, TuneConfig(seed=session.teacher.seed), lambda p: self.report(
                "tune", p.done, p.total, f"tune rung {p.rung}: {p.variants} variants x {p.examples} gold  ETA "
                f"{eta_text(p.eta_seconds)}  {p.latest}"), control)
            return (f"chose {report.chosen.describe()}: {report.metric} {report.chosen.score:.3f} on "
                    f"{report.chosen.n} gold (before: {report.default.score:.3f}); {report.calls} LLM calls")

        return job

    def _train_job(self) -> ProjectJob:
        session = self.main.session

        def job(project: Project, control: JobControl) -> str:
            report = session.train(project, None, lambda p: self.report(
                "train", p.step, p.steps, f"{p.phase} epoch {p.epoch}/{p.epochs}  loss {p.loss:.4f}"), control)
            test = report.metrics.get("test", report.metrics.get("validation", {}))
            return f"student run {report.run_id} trained on {report.trained_on}: " + metric_line(
                {k: v for k, v in test.items() if isinstance(v, float)})

        return job

    def _export_job(self) -> ProjectJob:
        session = self.main.session

        def job(project: Project, control: JobControl) -> str:
            report = session.export(project, control=control)
            return "exported; parity " + ", ".join(f"{kind} {p['agreement']:.0%}" for kind, p in report.parity.items())

        return job

    def _label_job(self) -> ProjectJob:
        session = self.main.session

        def job(project: Project, control: JobControl) -> str:
            report = session.label(project, on_progress=lambda p: self.report(
                "label", p.done, p.total, f"{p.docs_per_second:.1f} docs/s  ETA {eta_text(p.eta_seconds)}"),
                control=control)
            return f"{report.labeled} labeled, {report.skipped} already labeled"

        return job

    def _loop_job(self) -> ProjectJob:
        session = self.main.session
        strategy = str(self.query_one("#strategy", Select).value)
        budget = self.number("#budget", 300)

        def job(project: Project, control: JobControl) -> str:
            from llmaaa_local.loop import LoopConfig

            config = LoopConfig(name=f"tui-{strategy}", strategy=strategy, budget=budget,
                                train=TrainConfig(student=session.student))
            rounds = session.loop(
                project, config, on_event=lambda e: self.log_line(f"round {e.round}: {e.stage} {e.detail}"),
                on_annotate=lambda p: self.report("loop", p.done, p.total, _rates(p), _latest(p)),
                on_train=lambda p: self.report("loop", p.step, p.steps, f"training epoch {p.epoch}"), control=control)
            return f"loop {config.name}: {len(rounds)} rounds"

        return job

    def on_progress(self, message: JobProgress) -> None:
        bar = self.query_one("#progress", ProgressBar)
        bar.update(total=message.total, progress=message.done)
        self.query_one("#rates", Static).update(message.rates)
        latest = message.latest
        # progress also comes for cached examples, with the newest asked one still the latest: show it once
        if latest and (not self.feed or self.feed[0][0] != latest["id"]):
            self.feed.appendleft((latest["id"], str(latest["label"])[:24], latest["confidence"], latest["text"][:60]))
            feed = self.query_one("#feed", DataTable)
            feed.clear()
            feed.add_rows(self.feed)  # newest first

    def on_started(self, message: JobStarted) -> None:
        self.query_one("#events", Log).write_line(f"{time.strftime('%H:%M:%S')} {message.name} started")

    def on_log(self, message: JobLog) -> None:
        self.query_one("#events", Log).write_line(message.line)

    def on_ended(self, name: str, summary: str, failed: bool, cancelled: bool = False) -> None:
        self.query_one("#events", Log).write_line(f"{time.strftime('%H:%M:%S')} {name} {'FAILED: ' if failed else ''}"
                                                  f"{summary}")
        state = "failed" if failed else "cancelled" if cancelled else "finished"
        self.query_one("#state", Static).update(f"{name}: {state}")


def _rates(progress: AnnotateProgress) -> str:
    return (f"{progress.stage}: {progress.docs_per_second:.2f} docs/s  {progress.tokens_per_second:.0f} tok/s  "
            f"ETA {eta_text(progress.eta_seconds)}  cached {progress.cached}")


def _latest(progress: AnnotateProgress) -> dict[str, Any] | None:
    annotation = progress.latest
    if annotation is None:
        return None
    confidence = "-" if annotation.confidence is None else f"{annotation.confidence:.2f}"
    label = annotation.label if annotation.status == "ok" else "parse error"
    return {"id": annotation.example_id, "label": label, "confidence": confidence, "text": progress.latest_text}


# --- Review ----------------------------------------------------------------------------------------------------------


class ReviewPane(Pane):
    BINDINGS = [Binding("a", "decide('llm')", "Accept LLM"), Binding("s", "decide('student')", "Accept student"),
                Binding("t", "type_label", "Type label"),
                # the pane has the focus when its tab opens, so the arrows must reach the queue from here
                Binding("up", "move(-1)", "Previous", show=False), Binding("down", "move(1)", "Next", show=False)]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[str, ReviewItem] = {}
        self.task_name = "classify"
        self.types: tuple[str, ...] = ()
        self.editing: ReviewItem | None = None  # the item the span editor is open on; the queue may refresh under it

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("", id="review-counts")
            yield DataTable(id="queue", cursor_type="row")
            yield Static("", id="detail")
            yield field(Input(placeholder="the right label, then enter", id="typed"), "your label",
                        "Type the correct label (one of the project's labels) and press enter; escape cancels")

    def on_mount(self) -> None:
        self.query_one("#queue", DataTable).add_columns("example", "why", "LLM", "student", "text")
        self.query_one("#typed", Input).display = False

    def refresh_from_project(self) -> None:
        from llmaaa_local.review import review_queue

        project = self.project_or_none()
        table = self.query_one("#queue", DataTable)
        table.clear()
        self.items = {}
        if project is None:
            return
        with project:
            self.task_name = project.settings.task
            self.types = project.settings.label_names
            queue = review_queue(project)
            counts = project.store.review_counts()
        self.query_one("#review-counts", Static).update(
            f"{len(queue)} to review  |  decided: {counts['llm']} LLM, {counts['student']} student, "
            f"{counts['typed']} typed  |  a accept LLM, s accept student, t type")
        for item in queue:
            self.items[item.example.id] = item
            table.add_row(item.example.id, item.reason, _label_text(item.llm_label, item.llm_confidence),
                          _label_text(item.student_label, item.student_confidence), item.example.text[:50],
                          key=item.example.id)
        self._show_detail()

    def current(self) -> ReviewItem | None:
        table = self.query_one("#queue", DataTable)
        if not self.items or table.cursor_row is None or table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        return self.items.get(str(key))

    @on(DataTable.RowHighlighted, "#queue")
    def _show_detail(self) -> None:
        item = self.current()
        self.query_one("#detail", Static).update(Text(item.example.text) if item else "the queue is empty")

    def action_move(self, step: int) -> None:
        table = self.query_one("#queue", DataTable)
        busy = self.editing is not None or self.query_one("#typed", Input).display  # keep the example being decided
        if table.row_count and not busy:
            table.move_cursor(row=min(max(table.cursor_row + step, 0), table.row_count - 1))

    def action_decide(self, decision: str, typed: object = None, item: ReviewItem | None = None) -> None:
        from llmaaa_local.review import decide

        if item is None and self.editing is not None:
            self.notify("finish the span edit first: enter saves, escape cancels", severity="warning")
            return
        item = item or self.current()
        if item is None:
            return
        try:
            with self.main.session.open() as project:
                label = decide(project, item, decision, typed)  # type: ignore[arg-type]
        except LlmaaaError as error:
            self.notify(str(error), severity="error")
            return
        self.notify(f"{item.example.id}: gold {label}")
        self.refresh_from_project()

    def action_type_label(self) -> None:
        item = self.current()
        if item is None:
            return
        if self.editing is not None:  # one editor at a time
            self.query_one(SpanEditor).focus()
            return
        if self.task_name == "ner":
            self.editing = item
            start = item.llm_label or item.student_label or ()
            spans = () if isinstance(start, str) else tuple(start)  # NER labels are spans
            editor = SpanEditor(item.example.tokens or (), self.types, spans, id="span-editor")
            self.mount(editor)
            editor.focus()
            return
        field = self.query_one("#typed", Input)
        field.display = True
        field.placeholder = f"one of: {', '.join(self.types)}"
        field.focus()

    @on(Input.Submitted, "#typed")
    def _typed(self, event: Input.Submitted) -> None:
        event.input.display = False
        event.input.value = ""
        self.action_decide("typed", event.value.strip())

    @on(SpanEditor.Saved)
    def _spans_saved(self, event: SpanEditor.Saved) -> None:
        item, self.editing = self.editing, None
        self.query_one(SpanEditor).remove()
        if item is not None:  # the editor only opens on an item
            self.action_decide("typed", _tags(item, event.spans), item=item)

    @on(SpanEditor.Abandoned)
    def _spans_abandoned(self) -> None:
        self.editing = None
        self.query_one(SpanEditor).remove()


def _tags(item: ReviewItem, spans: tuple[Span, ...]) -> list[str]:
    from llmaaa_local.spans import spans_to_tags

    return spans_to_tags(spans, len(item.example.tokens or ()))


def _label_text(label: Any, confidence: float | None) -> str:
    if label is None:
        return "-"
    text = label if isinstance(label, str) else " ".join(f"{s.type}:{s.start}-{s.end}" for s in label) or "(none)"
    return f"{text[:18]} {confidence:.2f}" if confidence is not None else text[:24]


# --- Metrics ---------------------------------------------------------------------------------------------------------


class MetricsPane(Pane):
    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield DataTable(id="quality", cursor_type="none")
            yield Static("", id="cost")
            yield Static("no active-learning rounds yet: run the loop (Run tab, o)", id="curve")
            yield PlotextPlot(id="curve-plot")
            yield DataTable(id="rounds", cursor_type="none")

    def on_mount(self) -> None:
        self.query_one("#quality", DataTable).add_columns("labels", "split", "n", "scores")
        self.query_one("#curve-plot", PlotextPlot).display = False

    def refresh_from_project(self) -> None:
        from llmaaa_local.evaluate import Evaluation, evaluate

        project = self.project_or_none()
        table = self.query_one("#quality", DataTable)
        table.clear()
        if project is None:
            return
        with project:
            status, curves = project.status(), project.learning_curves()
            try:
                result = evaluate(project)
            except LlmaaaError:
                result = Evaluation()
        for name, scores in (("teacher (LLM)", result.llm), ("student", result.student)):
            if scores is not None:
                table.add_row(name, scores.split, str(scores.n), scores.line())
        if result.agreement is not None:
            table.add_row("LLM = student", "pool", str(result.agreement.n), f"{result.agreement.rate:.1%}")
        cost = status.cost
        self.query_one("#cost", Static).update(
            f"LLM cost: {status.counts.annotations} annotations, {cost.tokens_in} prompt tokens "
            f"({cost.tokens_evaluated} evaluated), {cost.tokens_out} generated, {cost.seconds:.0f}s")
        self.show_curves(curves)

    def show_curves(self, curves: dict[str, list[dict[str, Any]]]) -> None:
        """Every loop's learning curve as a plot, and its rounds as a table."""
        metric = curve_metric(curves)
        plot, rounds = self.query_one("#curve-plot", PlotextPlot), self.query_one("#rounds", DataTable)
        plot.display = rounds.display = metric is not None
        self.query_one("#curve", Static).display = metric is None
        rounds.clear(columns=True)
        if metric is None:
            return
        plot.plt.title(f"learning curves ({', '.join(curves)})")
        draw_curves(plot.plt, curve_series(curves, metric), metric)
        plot.refresh()
        rounds.add_columns("loop", "round", "labeled", f"LLM {metric}", f"student {metric}", "seconds")
        for name, curve in curves.items():
            for row in curve_rows(curve, metric):
                rounds.add_row(name, *row)


# --- Export ----------------------------------------------------------------------------------------------------------


class ExportPane(Pane):
    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Write the labeled corpus (the first checked source with a label wins)")
            with Horizontal(classes="row"):
                yield field(Input(value="labels.jsonl", id="export-path"), "file",
                            "Where to write, relative to the project folder (a folder for the hf format)")
                yield field(Select([(name, name) for name in EXPORT_FORMATS], value="jsonl", allow_blank=False,
                                   id="export-format"), "format",
                            "jsonl, csv, conll, or another tool's: Label Studio tasks, Prodigy, spaCy DocBin, "
                            "a Hugging Face dataset folder, Parquet")
            with Horizontal(classes="row"):
                yield Checkbox("gold", value=True, id="source-gold", tooltip="gold labels you imported or reviewed")
                yield Checkbox("llm", value=True, id="source-llm", tooltip="the teacher's labels")
                yield Checkbox("student", value=True, id="source-student", tooltip="the student's labels")
                yield field(Input(value="0.0", id="export-min", classes="narrow"), "min conf",
                            "Leave out LLM and student labels below this confidence (0 to 1)")
                yield Button("Export", id="export-go", variant="primary")
            yield Static("", id="export-result")

    @on(Button.Pressed, "#export-go")
    def export(self) -> None:
        sources = [name for name in ("gold", "llm", "student") if self.query_one(f"#source-{name}", Checkbox).value]
        path = Path(self.query_one("#export-path", Input).value.strip()).expanduser()
        result = self.query_one("#export-result", Static)
        try:
            try:
                minimum = float(self.query_one("#export-min", Input).value or 0)
            except ValueError:
                raise LlmaaaError("the minimum confidence must be a number from 0 to 1") from None
            with self.main.session.open() as project:
                if not path.is_absolute():
                    path = project.root / path
                count = project.export_labels(path, str(self.query_one("#export-format", Select).value), sources,
                                              minimum)
        except (LlmaaaError, ValueError) as error:
            result.update(Text(str(error), style="red"))
            return
        result.update(Text(f"wrote {count} labeled examples to {path}", style="green"))

