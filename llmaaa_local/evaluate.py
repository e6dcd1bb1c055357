"""How good the labels are: LLM and student labels against gold or hidden reference labels, and their agreement."""

from __future__ import annotations

from typing import Any

from .config import Split, check_split
from .errors import LlmaaaError
from .project import Project
from .records import Label
from .store import source_matches
from .tasks import task_for


def evaluate(project: Project, split: str | None = None, source: str = "") -> dict[str, Any]:
    """`{"llm": {...}, "student": {...}, "agreement": {...}}` for whatever labels the project has.

    Without `split`, LLM labels are scored on the pool (against hidden reference labels) and the student on the
    gold test split when there is one, else on the pool.
    """
    store = project.store
    result: dict[str, Any] = {}
    if store.annotation_sources():
        result.update(evaluate_llm(project, split or "pool", source))
    artifact_id = store.labeled_artifact()
    if artifact_id is not None:
        counts = store.split_counts()
        student_split = check_split(split or ("test" if counts["test"] else "pool"))
        predicted = {eid: label for eid, (label, _, _) in store.predictions(artifact_id, student_split).items()}
        references = store.reference_labels(student_split)
        if references:
            result["student"] = _scores(project, student_split, references, predicted, "student")
            result["student"]["artifact"] = artifact_id
        result["agreement"] = agreement(project, artifact_id, source)
    if not result:
        raise LlmaaaError("nothing to evaluate yet: run `annotate` (LLM labels) or `train`, `export`, `label`")
    return result


def evaluate_llm(project: Project, split: str = "pool", source: str = "") -> dict[str, Any]:
    """`{"llm": {...}, "by_source": {source: {...}}}`: metrics over examples that have both labels."""
    chosen = check_split(split)
    references = project.store.reference_labels(chosen)
    if not references:
        raise LlmaaaError(f"split {split!r} has no gold or reference labels to evaluate against: import a labeled "
                          "corpus or gold data, or choose another --split")
    result: dict[str, Any] = {"llm": _llm_quality(project, chosen, references, source)}
    sources = [name for name in project.store.annotation_sources() if source_matches(source, name)]
    if len(sources) > 1:
        result["by_source"] = {name: _llm_quality(project, chosen, references, name) for name in sources}
    return result


def agreement(project: Project, artifact_id: int, source: str = "") -> dict[str, Any]:
    """How often the student's label equals the LLM's on pool examples that have both."""
    llm = {eid: label for eid, label, _, _ in project.store.latest_labels(source, "pool")}
    student = project.store.predictions(artifact_id, "pool")
    shared = [eid for eid in llm if eid in student]
    same = sum(llm[eid] == student[eid][0] for eid in shared)
    return {"n": len(shared), "rate": same / len(shared) if shared else 0.0}


def _llm_quality(project: Project, split: Split, references: dict[str, Label], source: str) -> dict[str, Any]:
    store = project.store
    predicted = {eid: label for eid, label, _, _ in store.latest_labels(source, split) if eid in references}
    attempts = store.annotation_status(split, source)
    failed = sum(1 for ok, errors in attempts.values() if errors and not ok)
    summary = _scores(project, split, references, predicted, source or "latest of all sources")
    summary["parse_error_rate"] = failed / len(attempts) if attempts else 0.0
    return summary


def _scores(project: Project, split: Split, references: dict[str, Label], predicted: dict[str, Label],
            source: str) -> dict[str, Any]:
    ids = [eid for eid in references if eid in predicted]
    summary: dict[str, Any] = {"split": split, "source": source, "n": len(ids),
                               "coverage": len(ids) / len(references)}
    if ids:
        task = task_for(project.settings)
        examples = {example.id: example for example in project.store.examples(ids=ids)}
        summary.update(task.metrics({i: references[i] for i in ids}, {i: predicted[i] for i in ids}, examples))
    return summary
