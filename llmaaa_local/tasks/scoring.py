"""Shared by the tasks whose answer is one label: score every label's name, keep all scores, pick the best."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..config import ProjectSettings
from ..llm import GenerateResponse, ScoreResponse
from ..metrics import accuracy, f1_by_label, macro_f1
from ..records import Example, Label
from .base import Parsed


def softmax(scores: Mapping[str, float]) -> dict[str, float]:
    from scipy.special import softmax as normalise

    probabilities = normalise(list(scores.values()))
    return {label: float(p) for label, p in zip(scores, probabilities, strict=True)}


class LabelScoring:
    """Base for classification and relation tasks: no free-text parsing, every label is scored."""

    scored = True
    entity_spans = False
    probe_view = ""

    def __init__(self, settings: ProjectSettings) -> None:
        self.settings = settings
        self.labels = settings.label_names
        self.words = tuple(self.word(label) for label in self.labels)  # what is scored, in label order

    def word(self, label: str) -> str:
        return self.settings.prompt.word(label)

    def probe_text(self, example: Example) -> str:
        return example.text

    def parse(self, example: Example, response: ScoreResponse | GenerateResponse) -> Parsed:
        if not isinstance(response, ScoreResponse) or any(
                values is not None and len(values) != len(self.labels) for values in (response.logprobs,
                                                                                     response.baseline)):
            return Parsed(None, None, "parse_error", error="expected one score per label")
        if not all(math.isfinite(value) for value in (*response.logprobs, *(response.baseline or ()))):
            # NaN or infinity would make every probability NaN and the chosen label arbitrary
            return Parsed(None, None, "parse_error", error="the model gave a label score that is not a finite number")
        scores = dict(zip(self.labels, response.logprobs, strict=True))
        baseline = dict(zip(self.labels, response.baseline, strict=True)) if response.baseline is not None else None
        probabilities = softmax(scores)
        label = max(probabilities, key=probabilities.__getitem__)
        return Parsed(label, probabilities[label], scores=scores, baseline=baseline)

    def label_from_value(self, example: Example, value: Any) -> Label:
        if not isinstance(value, str):
            raise ValueError(f"the label must be a string, found {type(value).__name__}")
        if value not in self.labels:
            raise ValueError(f"label {value!r} is not in the project's label set {list(self.labels)}")
        return value

    def metrics(self, gold: Mapping[str, Label], predicted: Mapping[str, Label],
                examples: Mapping[str, Example]) -> dict[str, float]:
        ids = list(gold)
        g, p = [str(gold[i]) for i in ids], [str(predicted[i]) for i in ids]
        return {"accuracy": accuracy(g, p), "macro_f1": macro_f1(g, p, self.labels)}

    def f1_by_label(self, gold: Mapping[str, Label], predicted: Mapping[str, Label],
                    examples: Mapping[str, Example]) -> dict[str, float]:
        ids = list(gold)
        labels = [label for label in self.labels if label != self.settings.no_relation]
        return f1_by_label([str(gold[i]) for i in ids], [str(predicted[i]) for i in ids], labels)
