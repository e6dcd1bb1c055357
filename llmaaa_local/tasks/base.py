"""What every task shares: the Task interface, the parsed answer, and prompt text helpers (clipping, label lines).

The task modules import this one; it imports no task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ..config import ClipMode, ProjectSettings
from ..llm import GenerateResponse, Request, ScoreResponse
from ..records import Example, Label


@dataclass(frozen=True)
class Parsed:
    """A parsed LLM answer. Scored tasks fill `scores` (raw log-probs per label) for calibration."""

    label: Label | None
    confidence: float | None
    status: Literal["ok", "parse_error"] = "ok"
    scores: dict[str, float] | None = None
    baseline: dict[str, float] | None = None  # the same labels after a content-free input
    error: str = ""
    dropped: int = 0  # NER: output spans that are not in the text


class Task(Protocol):
    settings: ProjectSettings

    @property
    def scored(self) -> bool:
        """True when answers are per-label scores (classification, relations) that can be calibrated."""
        ...

    @property
    def entity_spans(self) -> bool:
        """True when answers are entity spans, which a probe on the gold mentions' embeddings may re-type, filter
        and extend (NER)."""
        ...

    # What the calibration's probe embeds of an example: probe_text; probe_view names it when it is not the whole
    # text, so its vectors are cached apart from those of whole texts.
    probe_view: str

    def probe_text(self, example: Example) -> str: ...

    def request(self, example: Example, demos: Sequence[Example], max_chars: int) -> Request: ...

    def parse(self, example: Example, response: ScoreResponse | GenerateResponse) -> Parsed: ...

    def label_from_value(self, example: Example, value: Any) -> Label:
        """A label given in an imported annotations file; raises ValueError with a user-facing message."""
        ...

    def metrics(self, gold: Mapping[str, Label], predicted: Mapping[str, Label],
                examples: Mapping[str, Example]) -> dict[str, float]: ...

    def f1_by_label(self, gold: Mapping[str, Label], predicted: Mapping[str, Label],
                    examples: Mapping[str, Example]) -> dict[str, float]:
        """F1 of each label (NER: entity type; relations: every label but the no-relation one) that occurs."""
        ...


CONTENT_FREE = "N/A"  # the input of the baseline prompt in contextual calibration


def clip(text: str, max_chars: int, mode: ClipMode = "head") -> str:
    """Keep at most `max_chars` characters at word boundaries, marking the cut with " … ": the start of the text, or
    (head+tail) its first quarter and last three quarters, where reviews and reports tend to state their verdict
    (Sun et al. 2019 found head+tail the best cut of long IMDb reviews)."""
    if len(text) <= max_chars:
        return text
    if mode == "head+tail":
        head_chars = max_chars // 4
        head = _cut(text, head_chars)
        tail = text[len(text) - (max_chars - len(head)):]
        if not text[len(text) - len(tail) - 1].isspace() and " " in tail:
            tail = tail.split(" ", 1)[1]
        return f"{head} … {tail.lstrip()}"
    return _cut(text, max_chars) + " …"


def _cut(text: str, max_chars: int) -> str:
    head = text[:max_chars]
    if not text[max_chars].isspace() and " " in head:
        head = head.rsplit(" ", 1)[0]
    return head.rstrip()


def label_lines(settings: ProjectSettings, defaults: Mapping[str, str] | None = None) -> str:
    """One line per label as the model sees it (its verbalizer word, else its name), with its description."""
    defaults = defaults or {}
    lines = []
    for label in settings.labels:
        description = label.description or defaults.get(label.name, "")
        word = settings.prompt.word(label.name)
        lines.append(f"- {word}: {description}" if description else f"- {word}")
    return "\n".join(lines)
