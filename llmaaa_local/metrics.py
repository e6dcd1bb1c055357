"""Scores of predicted labels against gold: accuracy, macro-F1, relation micro-F1, entity micro-F1."""

from __future__ import annotations

from collections.abc import Sequence


def accuracy(gold: Sequence[str], predicted: Sequence[str]) -> float:
    return sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold) if gold else 0.0


def _f1(true_positive: int, predicted: int, actual: int) -> tuple[float, float, float]:
    precision = true_positive / predicted if predicted else 0.0
    recall = true_positive / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def macro_f1(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> float:
    """Mean F1 over `labels` (those absent from both gold and predictions count as 0)."""
    if not labels:
        return 0.0
    scores = []
    for label in labels:
        tp = sum(g == p == label for g, p in zip(gold, predicted, strict=True))
        scores.append(_f1(tp, sum(p == label for p in predicted), sum(g == label for g in gold))[2])
    return sum(scores) / len(scores)


def micro_f1_without(gold: Sequence[str], predicted: Sequence[str], negative: str | None) -> dict[str, float]:
    """Relation micro-F1 (TACRED style): the no-relation label counts as no prediction."""
    tp = sum(g == p != negative for g, p in zip(gold, predicted, strict=True))
    precision, recall, f1 = _f1(tp, sum(p != negative for p in predicted), sum(g != negative for g in gold))
    return {"precision": precision, "recall": recall, "f1": f1}


def entity_f1(gold_tags: Sequence[Sequence[str]], predicted_tags: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level micro precision, recall and F1 over IOB2 tag sequences (seqeval)."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    gold, predicted = [list(t) for t in gold_tags], [list(t) for t in predicted_tags]
    if not gold:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    return {
        "precision": float(precision_score(gold, predicted, zero_division=0)),
        "recall": float(recall_score(gold, predicted, zero_division=0)),
        "f1": float(f1_score(gold, predicted, zero_division=0)),
    }
