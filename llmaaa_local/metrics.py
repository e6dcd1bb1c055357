"""Scores of predicted labels against gold: accuracy, macro-F1, relation micro-F1 (scikit-learn), entity micro-F1
(seqeval), and whether one set of answers is clearly better than another (a sign test, scipy)."""

from __future__ import annotations

from collections.abc import Sequence


def accuracy(gold: Sequence[str], predicted: Sequence[str]) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(gold, predicted)) if gold else 0.0


def macro_f1(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> float:
    """Mean F1 over `labels` (those absent from both gold and predictions count as 0)."""
    from sklearn.metrics import f1_score

    if not labels or not gold:
        return 0.0
    return float(f1_score(gold, predicted, labels=list(labels), average="macro", zero_division=0))


def micro_f1_without(gold: Sequence[str], predicted: Sequence[str], negative: str | None) -> dict[str, float]:
    """Relation micro-F1 (TACRED style): the no-relation label counts as no prediction."""
    from sklearn.metrics import precision_recall_fscore_support

    labels = sorted((set(gold) | set(predicted)) - {negative})
    if not labels or not gold:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    precision, recall, f1, _ = precision_recall_fscore_support(gold, predicted, labels=labels, average="micro",
                                                               zero_division=0)
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


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


def f1_by_label(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """F1 of each of `labels` that occurs in the gold or predicted labels."""
    from sklearn.metrics import f1_score

    seen = set(gold) | set(predicted)
    present = [label for label in labels if label in seen]
    if not present:
        return {}
    scores = f1_score(gold, predicted, labels=present, average=None, zero_division=0)
    return {label: float(score) for label, score in zip(present, scores, strict=True)}


def entity_f1_by_type(gold_tags: Sequence[Sequence[str]], predicted_tags: Sequence[Sequence[str]],
                      ) -> dict[str, float]:
    """Entity-level F1 of each entity type that occurs in the gold or predicted tags (seqeval)."""
    from seqeval.metrics import classification_report

    if not any(tag != "O" for tags in (*gold_tags, *predicted_tags) for tag in tags):
        return {}
    report = classification_report([list(t) for t in gold_tags], [list(t) for t in predicted_tags],
                                   output_dict=True, zero_division=0)
    return {name: float(row["f1-score"]) for name, row in sorted(report.items()) if not name.endswith(" avg")}


def significantly_better(score: float, right: Sequence[bool], other_score: float, other_right: Sequence[bool],
                         level: float = 0.05) -> bool:
    """Evidence that answers scoring `score` beat answers scoring `other_score` on the same gold examples, not luck:
    a higher score, and on the examples where exactly one of the two is right, the first right significantly more
    often (one-sided sign test at `level`). On a hundred gold examples a few points either way is noise."""
    from scipy.stats import binomtest

    if score <= other_score or len(right) != len(other_right):
        return False
    wins = sum(a and not b for a, b in zip(right, other_right, strict=True))
    losses = sum(b and not a for a, b in zip(right, other_right, strict=True))
    return wins > losses and binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue < level
