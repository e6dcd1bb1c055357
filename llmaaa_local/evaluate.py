"""How good the labels are: LLM and student labels against gold or hidden reference labels, and their agreement."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import Split, check_split
from .errors import LlmaaaError
from .project import Project
from .records import Label
from .store import source_matches
from .tasks import task_for


@dataclass(frozen=True)
class Scores:
    """One set of labels against the references: the task's metrics over the examples that have both."""

    split: str
    source: str
    n: int
    coverage: float  # the share of reference-labeled examples that have a label here
    metrics: Mapping[str, float] = field(default_factory=dict)  # accuracy, macro_f1 / f1, precision, recall ...
    parse_error_rate: float | None = None  # LLM labels: examples whose every answer failed to parse
    artifact: int | None = None  # student labels: the export that made them

    def line(self) -> str:
        """The metrics as `name 0.123` pairs: how the CLI and the TUI show them."""
        return metric_line(self.metrics)

    def to_dict(self) -> dict[str, Any]:
        extra = {key: value for key, value in (("parse_error_rate", self.parse_error_rate),
                                               ("artifact", self.artifact)) if value is not None}
        return {"split": self.split, "source": self.source, "n": self.n, "coverage": self.coverage,
                **self.metrics, **extra}


@dataclass(frozen=True)
class Agreement:
    """How often the student's label equals the LLM's, over pool examples that have both."""

    n: int
    rate: float


@dataclass(frozen=True)
class Evaluation:
    """Whatever labels the project has, scored; `by_source` only when several LLM sources are in play."""

    llm: Scores | None = None
    student: Scores | None = None
    agreement: Agreement | None = None
    by_source: Mapping[str, Scores] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """`evaluate --json`."""
        result: dict[str, Any] = {}
        if self.llm is not None:
            result["llm"] = self.llm.to_dict()
        if self.by_source:
            result["by_source"] = {name: scores.to_dict() for name, scores in self.by_source.items()}
        if self.student is not None:
            result["student"] = self.student.to_dict()
        if self.agreement is not None:
            result["agreement"] = {"n": self.agreement.n, "rate": self.agreement.rate}
        return result


def metric_line(metrics: Mapping[str, object]) -> str:
    """Float metrics as `name 0.123` pairs, in their order; other values as they are."""
    return "  ".join(f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}"
                     for key, value in metrics.items())


def evaluate(project: Project, split: str | None = None, source: str = "") -> Evaluation:
    """Every kind of label the project has, scored.

    Without `split`, LLM labels are scored on the pool (against hidden reference labels) and the student on the
    gold test split when there is one, else on the pool.
    """
    store = project.store
    result = evaluate_llm(project, split or "pool", source) if store.annotation_sources() else Evaluation()
    artifact_id = store.labeled_artifact()
    if artifact_id is not None:
        chosen = student_split(project, split)
        predicted = {eid: label for eid, (label, _, _) in store.predictions(artifact_id, chosen).items()}
        references = store.reference_labels(chosen)
        student = _scores(project, chosen, references, predicted, "student", artifact=artifact_id) \
            if references else None
        result = Evaluation(result.llm, student, agreement(project, artifact_id, source), result.by_source)
    if result == Evaluation():
        raise LlmaaaError("nothing to evaluate yet: run `annotate` (LLM labels) or `train`, `export`, `label`")
    return result


def student_split(project: Project, split: str | None = None) -> Split:
    """Where the student is scored: `split` if given, else the gold test split when there is one, else the pool."""
    return check_split(split or ("test" if project.store.split_counts()["test"] else "pool"))


def evaluate_llm(project: Project, split: str = "pool", source: str = "") -> Evaluation:
    """LLM labels (the newest per example from `source`) over examples that have both labels; per source too."""
    chosen = check_split(split)
    references = project.store.reference_labels(chosen)
    if not references:
        raise LlmaaaError(f"split {split!r} has no gold or reference labels to evaluate against: import a labeled "
                          "corpus or gold data, or choose another --split")
    sources = [name for name in project.store.annotation_sources() if source_matches(source, name)]
    by_source = {name: _llm_quality(project, chosen, references, name) for name in sources} if len(sources) > 1 \
        else {}
    return Evaluation(llm=_llm_quality(project, chosen, references, source), by_source=by_source)


def agreement(project: Project, artifact_id: int, source: str = "") -> Agreement:
    """How often the student's label equals the LLM's on pool examples that have both."""
    llm = {eid: label for eid, label, _, _ in project.store.latest_labels(source, "pool")}
    student = project.store.predictions(artifact_id, "pool")
    shared = [eid for eid in llm if eid in student]
    same = sum(llm[eid] == student[eid][0] for eid in shared)
    return Agreement(len(shared), same / len(shared) if shared else 0.0)


def _llm_quality(project: Project, split: Split, references: dict[str, Label], source: str) -> Scores:
    store = project.store
    predicted = {eid: label for eid, label, _, _ in store.latest_labels(source, split) if eid in references}
    attempts = store.annotation_status(split, source)
    failed = sum(1 for ok, errors in attempts.values() if errors and not ok)
    return _scores(project, split, references, predicted, source or "latest of all sources",
                   parse_error_rate=failed / len(attempts) if attempts else 0.0)


def _scores(project: Project, split: Split, references: dict[str, Label], predicted: dict[str, Label],
            source: str, parse_error_rate: float | None = None, artifact: int | None = None) -> Scores:
    ids = [eid for eid in references if eid in predicted]
    metrics: dict[str, float] = {}
    if ids:
        task = task_for(project.settings)
        examples = {example.id: example for example in project.store.examples(ids=ids)}
        metrics = task.metrics({i: references[i] for i in ids}, {i: predicted[i] for i in ids}, examples)
    return Scores(split, source, len(ids), len(ids) / len(references), metrics, parse_error_rate, artifact)
