"""The main job on embedded defaults: a fresh project on the shipped demo corpus, run end to end."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from .config import LabelInfo, ProjectSettings, TeacherSettings, TrainConfig
from .errors import LlmaaaError
from .evaluate import evaluate, evaluate_llm
from .models import DEFAULT_EMBEDDERS, DEFAULT_STUDENT, REGISTRY, pull
from .project import Project
from .session import Session

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


DEMO_ANNOTATIONS = 120
DEMO_TUNE_BUDGET = 300
DEMO_EPOCHS = 8


def run_demo(directory: Path, models_dir: Path, log: Callable[[str], None] = print,
             teacher: TeacherSettings | None = None) -> dict[str, Any]:
    """Create the demo project, import, pull missing default models, tune the prompt on the gold demos, annotate,
    evaluate, train, export, label everything."""
    from .annotate import AnnotateConfig
    from .tune import TuneConfig

    session = Session(directory, models_dir, teacher or TeacherSettings())
    teacher = session.teacher
    fresh_directory(directory)
    with Project.init(directory, ProjectSettings(task="classify", labels=SENTIMENT)) as project:
        log(f"1. project created in {directory} (task: classify, labels: positive, negative)")
        report = project.import_corpus(demo_file("classify_corpus.jsonl"))
        log(f"2. imported {report.added} unlabeled reviews into the pool (their labels stay hidden)")
        for split in ("demo", "test"):
            report = project.import_gold(demo_file(f"classify_{split}.jsonl"), split)
            log(f"   imported {report.added} gold reviews into the {split} split")
        for name in dict.fromkeys((teacher.model, DEFAULT_STUDENT, *DEFAULT_EMBEDDERS)):
            if name in REGISTRY:
                pull(name, models_dir, log=lambda line: log(f"   {line}"))
        tuned = session.tune(project, TuneConfig(budget=DEMO_TUNE_BUDGET, seed=teacher.seed))
        log(f"3. tuned the prompt on the gold demos in {tuned.seconds:.0f}s ({tuned.calls} LLM calls): "
            f"{tuned.chosen.describe()}, {tuned.metric} {tuned.chosen.score:.3f} leave-one-out")
        log(f"4. the teacher ({teacher.model}) labels {DEMO_ANNOTATIONS} reviews with that prompt")
        result = session.annotate(project, AnnotateConfig(n=DEMO_ANNOTATIONS, seed=teacher.seed))
        if result.calibration is not None:
            log(f"   {result.calibration.summary()}")
        log(f"   {result.annotated} new annotations, {result.cached} cached, {result.seconds:.0f}s, "
            f"{result.tokens_in} prompt tokens ({1 - result.tokens_evaluated / max(result.tokens_in, 1):.0%} "
            "reused from the KV cache)")
        quality = evaluate_llm(project, "pool").llm
        assert quality is not None
        log(f"5. LLM labels vs the hidden reference labels: accuracy {quality.metrics['accuracy']:.1%} on {quality.n} "
            "reviews")
        trained = session.train(project, TrainConfig(student=DEFAULT_STUDENT, epochs=DEMO_EPOCHS))
        log(f"6. the student ({DEFAULT_STUDENT}) trained on {trained.trained_on} LLM labels in "
            f"{trained.seconds:.0f}s (best epoch {trained.best_epoch})")
        exported = session.export(project)
        int8 = exported.parity["onnx-int8"]
        log(f"7. exported to ONNX and int8 in {exported.seconds:.0f}s; int8 agrees with PyTorch on "
            f"{int8['agreement']:.0%} of {int8['n']} held-out reviews")
        labeled = session.label(project)
        log(f"8. the int8 student labeled all {labeled.labeled} reviews in {labeled.seconds:.1f}s")
        scores = evaluate(project)
        student, agreement = scores.student, scores.agreement
        assert student is not None and agreement is not None
        log(f"9. on the {student.n} gold test reviews the student scores accuracy {student.metrics['accuracy']:.1%}; "
            f"it agrees with the LLM on {agreement.rate:.0%} of the annotated pool")
        status = project.status_dict()
    log("10. status: " + json.dumps(status["counts"]))
    log(f"   next: `llmaaa-local --project {directory} export-labels labels.csv` or `... tui`")
    return {"status": status, **scores.to_dict()}
