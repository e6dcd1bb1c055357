"""The application layer: a project folder and a models folder, the teacher, embedder and student chosen for them,
and every stage run with progress, pause and cancel. The CLI, the TUI and the demo run the pipeline through it.

It never parses input or prints: the front ends do. The stages load their heavy libraries (llama.cpp, torch, ONNX
Runtime) when a stage runs, so opening a session costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .config import EngineSettings, PromptSettings, TeacherSettings, TrainConfig
from .embedder import Embed
from .errors import LlmaaaError
from .jobs import JobControl
from .llm import LLM, TeacherFactory
from .models import DEFAULT_STUDENT, pulled_embedders
from .project import ImportReport, Project
from .store import Round
from .tasks import task_for

if TYPE_CHECKING:
    from .annotate import AnnotateConfig, AnnotateProgress, AnnotateReport, Annotator
    from .export import ExportConfig, ExportReport
    from .labeler import LabelProgress, LabelReport, PredictorFactory
    from .loop import LoopConfig, RoundEvent
    from .student import TrainProgress, TrainReport
    from .tune import TuneConfig, TuneProgress, TuneReport

P = TypeVar("P")
IMPORT_KINDS = ("corpus", "demo", "dev", "test", "annotations")


def load_teacher(settings: TeacherSettings, models_dir: Path) -> LLM:
    """The teacher GGUF through llama.cpp (imported only when a teacher is really needed)."""
    from .annotate import load_teacher as load

    return load(settings, models_dir)


@dataclass
class Session:
    """What a front end holds: where the project and the models are, and the models chosen to run."""

    project_dir: Path | None
    models_dir: Path
    teacher: TeacherSettings = field(default_factory=TeacherSettings)
    student: str = DEFAULT_STUDENT
    embedder: str = DEFAULT_STUDENT
    teacher_factory: TeacherFactory = load_teacher  # tests pass one that returns a ScriptedLLM
    engine: EngineSettings = field(default_factory=EngineSettings)  # where the teacher and the student run

    # --- the project and the models ------------------------------------------------------------------------------

    def open(self) -> Project:
        """A fresh connection to the project (SQLite connections stay in the thread that opened them)."""
        if self.project_dir is None:
            raise LlmaaaError("no project is open: create or open one first")
        return Project.open(self.project_dir)

    def load_teacher(self) -> LLM:
        """The teacher here, or (engine ray) as a pool of Ray actors that each load it."""
        if self.engine.kind == "ray":
            from .ray_engine import RayTeacher

            return RayTeacher(self.teacher, self.models_dir, self.engine, self.teacher_factory)
        return self.teacher_factory(self.teacher, self.models_dir)

    def load_embedder(self, project: Project, prompt: PromptSettings | None = None, *, tuning: bool = False,
                      ) -> Embed | None:
        """The sentence embedder when demonstrations are picked by similarity over a demo pool (an error when it
        is missing), or when a scored task has gold examples to fit the calibration's probe on (optional: without
        it, calibration goes without the probe), else None.

        `tuning`: the tuner tries kNN variants whatever the project's prompt, so any demo pool needs it."""
        from .annotate import load_embedder

        if (tuning or (prompt or project.settings.prompt).uses_embeddings) and project.status().counts.demo:
            return load_embedder(self.embedder, self.models_dir, project)
        if not tuning and _probed(project):
            try:
                return load_embedder(self.embedder, self.models_dir, project)
            except LlmaaaError:
                return None
        return None

    def load_probe_embedders(self, project: Project, embed: Embed | None) -> list[Embed]:
        """What the calibration's probe may read, the first winning ties on gold: `embed` (the session's embedder),
        then every other sentence embedder pulled into the models folder; none for a task with neither label
        scores nor entity types to choose."""
        from .annotate import load_embedder

        if not _probed(project):
            return []
        others = [load_embedder(name, self.models_dir, project) for name in pulled_embedders(self.models_dir)
                  if embed is None or name != self.embedder]  # the session's own is `embed`, loaded already
        first = [embed] if embed is not None else []
        return first + [other for other in others if other.name not in {getattr(e, "name", "") for e in first}]

    def annotator(self, project: Project, prompt: PromptSettings | None = None) -> Annotator:
        from .annotate import Annotator

        embed = self.load_embedder(project, prompt)
        return Annotator(project, self.load_teacher(), embed, prompt, self.load_probe_embedders(project, embed))

    def cluster_report(self) -> list[str]:
        """The Ray cluster's nodes and resources (engine ray), else nothing."""
        if self.engine.kind != "ray":
            return []
        from .ray_engine import cluster_report

        return cluster_report(self.engine)

    # --- the stages ------------------------------------------------------------------------------------------------

    def import_file(self, project: Project, path: Path, kind: str, source: str = "", fmt: str | None = None,
                    ) -> ImportReport:
        """An import by kind: corpus (pool), a gold split (demo, dev, test), or annotations from elsewhere; `fmt`
        None: the format the file's name (or a folder: a saved Hugging Face dataset) implies."""
        if kind == "corpus":
            return project.import_corpus(path, fmt)
        if kind == "annotations":
            return project.import_annotations(path, source or path.stem)
        if kind not in IMPORT_KINDS:
            raise LlmaaaError(f"unknown import kind {kind!r}: choose from {', '.join(IMPORT_KINDS)}")
        return project.import_gold(path, kind, fmt)

    def annotate(self, project: Project, config: AnnotateConfig, on_progress: Callable[[AnnotateProgress], None]
                 | None = None, control: JobControl | None = None) -> AnnotateReport:
        """Let the teacher label pool examples with `config.prompt` (the project's prompt when None)."""
        return self.annotator(project, config.prompt).run(config, _watched(control, on_progress))

    def tune(self, project: Project, config: TuneConfig, on_progress: Callable[[TuneProgress], None] | None = None,
             control: JobControl | None = None) -> TuneReport:
        """Choose the project's prompt on its gold examples."""
        from .tune import PromptTuner

        tuner = PromptTuner(project, self.load_teacher(), self.load_embedder(project, tuning=True))
        return tuner.run(config, _watched(control, on_progress))

    def train(self, project: Project, config: TrainConfig | None = None, on_progress: Callable[[TrainProgress], None]
              | None = None, control: JobControl | None = None) -> TrainReport:
        """Fine-tune a student (the session's, unless `config` names one)."""
        from .student import Trainer

        config = config or TrainConfig(student=self.student)
        return Trainer(project, config, self.models_dir, _watched(control, on_progress)).run()

    def export(self, project: Project, config: ExportConfig | None = None, run_id: int | None = None,
               control: JobControl | None = None) -> ExportReport:
        from .export import ExportConfig, export_student

        if control is not None:
            control.checkpoint()
        return export_student(project, config or ExportConfig(), run_id)

    def label(self, project: Project, int8: bool | None = None, threads: int | None = None,
              on_progress: Callable[[LabelProgress], None] | None = None, control: JobControl | None = None,
              ) -> LabelReport:
        """Label the whole corpus with the newest exported student (here, or on Ray Data workers)."""
        from .labeler import label_corpus, local_predictor

        predictor: PredictorFactory = local_predictor
        chunk_size = None  # the labeler's
        if self.engine.kind == "ray":
            from .ray_engine import RayLabeler

            predictor, chunk_size = partial(RayLabeler, engine=self.engine), RayLabeler.chunk
        return label_corpus(project, int8, threads, on_progress=_watched(control, on_progress), predictor=predictor,
                            chunk_size=chunk_size)

    def loop(self, project: Project, config: LoopConfig, on_event: Callable[[RoundEvent], None] | None = None,
             on_annotate: Callable[[AnnotateProgress], None] | None = None,
             on_train: Callable[[TrainProgress], None] | None = None, control: JobControl | None = None,
             ) -> list[Round]:
        """Run (or continue) an active-learning loop; the stored rounds, oldest first."""
        from .loop import ActiveLearningLoop

        scorer = None
        if self.engine.kind == "ray":
            from .ray_engine import RayPoolScorer

            scorer = RayPoolScorer(self.engine)
        loop = ActiveLearningLoop(project, config, self.annotator(project), self.models_dir,
                                  _watched(control, on_event), _watched(control, on_annotate),
                                  _watched(control, on_train), scorer)
        return loop.run()


def tune_hint(tuning: dict[str, Any] | None, model_sha256: str, gold: int) -> str | None:
    """A tip when the prompt was never tuned (or was tuned for another teacher) and there is gold to tune on."""
    if gold < 4:
        return None
    if tuning is None:
        return (f"tip: the prompt is the untuned default; `llmaaa-local tune` chooses one on your {gold} gold "
                "examples (often far better labels from a small teacher)")
    if tuning.get("model_sha256") != model_sha256:
        return "tip: the prompt was tuned for another teacher; rerun `llmaaa-local tune` with this one"
    return None


def _probed(project: Project) -> bool:
    """Gold examples to fit the calibration's probe on, for a task with label scores or with entity spans."""
    counts = project.status().counts
    task = task_for(project.settings)
    return (task.scored or task.entity_spans) and counts.demo + counts.dev >= 2


def _watched(control: JobControl | None, callback: Callable[[P], None] | None) -> Callable[[P], None] | None:
    """The callback, made to honour pause and cancel when there is a control."""
    return callback if control is None else control.watch(callback)
