"""The main job on embedded defaults: a fresh project on the shipped demo corpus, run end to end."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from .config import LabelInfo, ProjectSettings
from .errors import LlmaaaError
from .project import Project

MARKER = ".llmaaa-demo"
SENTIMENT = (
    LabelInfo("positive", "the writer is pleased overall and would recommend it"),
    LabelInfo("negative", "the writer is disappointed overall and would not recommend it"),
)


def demo_file(name: str) -> Path:
    """A file of the shipped demo data (written for this project; see demo_data/README.md)."""
    return Path(str(files("llmaaa_local").joinpath("demo_data", name)))


def fresh_directory(directory: Path) -> None:
    """Re-create the demo folder, refusing to delete anything that is not an earlier demo."""
    if directory.exists():
        if not (directory / MARKER).exists():
            if any(directory.iterdir()):
                raise LlmaaaError(f"{directory}: folder exists and is not a demo project; choose another --dir")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / MARKER).write_text("created by `llmaaa-local demo`; deleted and re-created by its next run\n")


def run_demo(directory: Path, models_dir: Path, log: Callable[[str], None] = print) -> dict[str, object]:
    fresh_directory(directory)
    with Project.init(directory, ProjectSettings(task="classify", labels=SENTIMENT)) as project:
        log(f"1. project created in {directory} (task: classify, labels: positive, negative)")
        report = project.import_corpus(demo_file("classify_corpus.jsonl"))
        log(f"2. imported {report.added} unlabeled reviews into the pool")
        for split in ("demo", "test"):
            report = project.import_gold(demo_file(f"classify_{split}.jsonl"), split)
            log(f"   imported {report.added} gold reviews into the {split} split")
        status = project.status()
    log("3. status: " + json.dumps(status["counts"]))
    return status
