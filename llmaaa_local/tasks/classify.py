"""Text classification (binary or multi-class): LlamBERT's task, with every label's name scored by the LLM."""

from __future__ import annotations

from collections.abc import Sequence

from ..llm import Prompt, ScoreRequest
from ..records import Example
from . import CONTENT_FREE, clip, label_lines
from .scoring import LabelScoring


class Classification(LabelScoring):
    def instruction(self) -> str:
        if self.settings.prompt.instruction:
            return self.settings.prompt.instruction
        return (
            "Classify each text into exactly one of these labels:\n"
            f"{label_lines(self.settings)}\n"
            "Answer with the label only."
        )

    def request(self, example: Example, demos: Sequence[Example], max_chars: int) -> ScoreRequest:
        limit = self.settings.prompt.demo_max_chars
        shots = "".join(f"Text: {clip(demo.text, limit)}\nAnswer: {demo.label}\n\n" for demo in demos)
        reminder = f"Answer with one of: {', '.join(self.labels)}."

        def prompt(text: str) -> Prompt:
            return Prompt(self.instruction(), f"{shots}Text: {text}\n{reminder}", "Answer:")

        baseline = prompt(CONTENT_FREE) if self.settings.prompt.content_free else None
        return ScoreRequest(prompt(clip(example.text, max_chars)), self.labels, baseline)
