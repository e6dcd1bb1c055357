"""Relation classification between a head and a tail mention: every relation label scored, direction kept."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from ..llm import Prompt, ScoreRequest
from ..metrics import micro_f1_without
from ..records import Example, Label
from .base import CONTENT_FREE, clip, label_lines
from .scoring import LabelScoring

_ROLES = re.compile(r"^([A-Za-z]+)-([A-Za-z]+)\((e[12]),(e[12])\)$")


def role_words(labels: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """Directed relation labels named "Role1-Role2(e1,e2)" (SemEval's style) said as their roles in head-tail order:
    "Cause-Effect(e1,e2)" -> "cause-effect", "Cause-Effect(e2,e1)" -> "effect-cause"; other labels in lower case.
    Empty unless some label has that shape."""
    if not any(_ROLES.match(label) for label in labels):
        return ()
    words = []
    for label in labels:
        match = _ROLES.match(label)
        if match is None:
            words.append((label, label.lower()))
            continue
        first, second, head, _ = match.groups()
        roles = (first, second) if head == "e1" else (second, first)
        words.append((label, f"{roles[0]}-{roles[1]}".lower()))
    return tuple(words) if len({w for _, w in words}) == len(words) else ()


class RelationClassification(LabelScoring):
    probe_view = "mentions"

    def probe_text(self, example: Example) -> str:
        """The mentions and the words between them, which say most about how they relate; a whole sentence's
        vector mostly says what the sentence is about (on SemEval-2010, a probe on 100 gold sentences' vectors
        scored micro-F1 0.17 against 0.24-0.31 on their mentions')."""
        assert example.head is not None and example.tail is not None
        if example.tokens is None:
            return example.text
        first, last = sorted((example.head, example.tail), key=lambda mention: mention.start)
        return " ".join(example.tokens[first.start : max(first.end, last.end)])

    def instruction(self) -> str:
        if self.settings.prompt.instruction:
            return self.settings.prompt.instruction
        negative = self.settings.no_relation
        defaults = {negative: "none of the other relations holds between them"} if negative else {}
        directed = any("e1" in word and "e2" in word for word in self.words)
        note = "In the labels, e1 is the head and e2 the tail.\n" if directed else ""
        roles = next(((label, word) for label, word in zip(self.labels, self.words, strict=True)
                      if _ROLES.match(label) and word != label), None)
        if roles is not None:
            first, second = roles[1].split("-", 1)
            note = (f"A relation names the head's role first, then the tail's: {roles[1]} means the head is the "
                    f"{first} and the tail the {second}.\n")
        return (
            "Decide which relation holds between the head entity and the tail entity of a sentence. Relations:\n"
            f"{label_lines(self.settings, defaults)}\n{note}"
            "Answer with the relation label only."
        )

    def _describe(self, example: Example, max_chars: int) -> str:
        assert example.head is not None and example.tail is not None
        return _described(clip(example.text, max_chars, self.settings.prompt.clip), example.head.name,
                          example.tail.name)

    def request(self, example: Example, demos: Sequence[Example], max_chars: int) -> ScoreRequest:
        limit = self.settings.prompt.demo_max_chars
        shots = "".join(f"{self._describe(demo, limit)}\nAnswer: {self.word(str(demo.label))}\n\n" for demo in demos)

        def prompt(described: str) -> Prompt:
            return Prompt(self.instruction(), f"{shots}{described}\nAnswer with one of the relation labels.",
                          "Answer:")

        baseline = None
        if self.settings.prompt.content_free:
            baseline = prompt(_described(CONTENT_FREE, CONTENT_FREE, CONTENT_FREE))
        return ScoreRequest(prompt(self._describe(example, max_chars)), self.words, baseline)

    def metrics(self, gold: Mapping[str, Label], predicted: Mapping[str, Label],
                examples: Mapping[str, Example]) -> dict[str, float]:
        scores = super().metrics(gold, predicted, examples)
        ids = list(gold)
        micro = micro_f1_without([str(gold[i]) for i in ids], [str(predicted[i]) for i in ids],
                                 self.settings.no_relation)
        return {"f1": micro["f1"], "precision": micro["precision"], "recall": micro["recall"], **scores}


def _described(sentence: str, head: str, tail: str) -> str:
    return f"Sentence: {sentence}\nHead: {head}\nTail: {tail}"
