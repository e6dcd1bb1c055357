"""The human review queue: pool examples where the LLM and the student disagree or are unsure, most informative
first; a decision makes the example gold and adds it to the demo pool."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .errors import LlmaaaError
from .project import Project
from .records import Example, Label
from .tasks import task_for

Decision = Literal["llm", "student", "typed"]


@dataclass(frozen=True)
class ReviewItem:
    example: Example
    llm_label: Label | None
    llm_confidence: float | None
    student_label: Label | None
    student_confidence: float | None
    reason: str  # "disagree" or "unsure"
    priority: float


def review_queue(project: Project, limit: int = 50, min_confidence: float = 0.7) -> list[ReviewItem]:
    """Pool examples whose LLM and student labels differ, or whose label confidence is below `min_confidence`.

    Priority: a disagreement counts 1, plus how unsure the less confident of the two is (1 - confidence).
    """
    store = project.store
    llm = {eid: (label, conf) for eid, label, conf, _ in store.latest_labels("", "pool")}
    artifact = store.labeled_artifact()
    student = {eid: (label, conf) for eid, (label, conf, _) in store.predictions(artifact, "pool").items()} \
        if artifact is not None else {}
    scored = []
    for eid in set(llm) | set(student):
        llm_label, llm_conf = llm.get(eid, (None, None))
        student_label, student_conf = student.get(eid, (None, None))
        disagree = llm_label is not None and student_label is not None and llm_label != student_label
        confidences = [c for c in (llm_conf, student_conf) if c is not None]
        lowest = min(confidences) if confidences else 0.0
        if not disagree and lowest >= min_confidence:
            continue
        scored.append((float(disagree) + 1.0 - lowest, eid, disagree))
    scored.sort(key=lambda item: (-item[0], item[1]))
    chosen = scored[:limit]
    examples = {e.id: e for e in store.examples(ids=[eid for _, eid, _ in chosen])}
    items = []
    for priority, eid, disagree in chosen:
        llm_label, llm_conf = llm.get(eid, (None, None))
        student_label, student_conf = student.get(eid, (None, None))
        items.append(ReviewItem(examples[eid], llm_label, llm_conf, student_label, student_conf,
                                "disagree" if disagree else "unsure", priority))
    return items


def decide(project: Project, item: ReviewItem, decision: Decision, typed: object = None) -> Label:
    """Accept the LLM's label, the student's, or a typed one (a label name, or NER tags/spans)."""
    if decision == "llm":
        label = item.llm_label
    elif decision == "student":
        label = item.student_label
    else:
        try:
            label = task_for(project.settings).label_from_value(item.example, typed)
        except ValueError as error:
            raise LlmaaaError(f"example {item.example.id!r}: {error}") from None
    if label is None:
        raise LlmaaaError(f"example {item.example.id!r} has no {decision} label to accept")
    project.store.record_review(item.example.id, decision, label, item.llm_label, item.student_label)
    return label
