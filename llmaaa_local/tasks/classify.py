"""Text classification (binary or multi-class): LlamBERT's task, with every label's word scored by the LLM."""

from __future__ import annotations

from collections.abc import Sequence

from ..llm import Prompt, ScoreRequest
from ..records import Example
from .base import CONTENT_FREE, clip, label_lines
from .scoring import LabelScoring

# Built-in instruction wordings `tune` chooses among: "list" lists the labels with their descriptions and ends every
# input with a reminder of the allowed answers (LlamBERT's prompt); "short" lists them without the reminder, so the
# last words before the answer are the text's; "plain" names the labels in one sentence, without descriptions.
# (On IMDb with gemma-3-270m and 4 label-balanced demonstrations the reminder cost most of the signal: ranking AUC
# 0.75 with it, 0.95 without.)
INSTRUCTIONS = ("list", "short", "plain")


class Classification(LabelScoring):
    def instruction(self) -> str:
        if self.settings.prompt.instruction:
            return self.settings.prompt.instruction
        style = self.settings.prompt.instruction_style
        if style == "short":
            return f"Label each text with one of these labels:\n{label_lines(self.settings)}"
        if style == "plain":
            return f"Classify each text as {_either(self.words)}."
        return (
            "Classify each text into exactly one of these labels:\n"
            f"{label_lines(self.settings)}\n"
            "Answer with the label only."
        )

    def request(self, example: Example, demos: Sequence[Example], max_chars: int) -> ScoreRequest:
        prompt_settings = self.settings.prompt
        limit, mode = prompt_settings.demo_max_chars, prompt_settings.clip
        shots = "".join(f"Text: {clip(demo.text, limit, mode)}\nAnswer: {self.word(str(demo.label))}\n\n"
                        for demo in demos)
        reminder = "" if prompt_settings.instruction_style != "list" else \
            f"\nAnswer with one of: {', '.join(self.words)}."

        def prompt(text: str) -> Prompt:
            return Prompt(self.instruction(), f"{shots}Text: {text}{reminder}", "Answer:")

        baseline = prompt(CONTENT_FREE) if prompt_settings.content_free else None
        return ScoreRequest(prompt(clip(example.text, max_chars, mode)), self.words, baseline)


def _either(words: Sequence[str]) -> str:
    """ "a or b", "a, b or c"."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
