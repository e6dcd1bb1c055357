"""Plain records passed between stages: examples, spans, mentions and labels; no I/O here."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class Span:
    """An entity as token offsets into its example, end exclusive."""

    start: int
    end: int
    type: str

    def to_json(self) -> list[Any]:
        return [self.start, self.end, self.type]


@dataclass(frozen=True)
class Mention:
    """A relation argument (head or tail): its surface name and token offsets, end exclusive."""

    name: str
    start: int
    end: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "pos": [self.start, self.end]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Mention:
        return cls(data["name"], data["pos"][0], data["pos"][1])


# A classification or relation label is a label name; an NER label is the sentence's entity spans.
Label = str | tuple[Span, ...]


def label_to_json(label: Label | None) -> str | None:
    if label is None:
        return None
    if isinstance(label, str):
        return json.dumps(label)
    return json.dumps([span.to_json() for span in sorted(label)])


def label_from_json(text: str | None) -> Label | None:
    if text is None:
        return None
    value = json.loads(text)
    if isinstance(value, str):
        return value
    return tuple(Span(start, end, kind) for start, end, kind in value)


@dataclass(frozen=True)
class Example:
    """One text to label, as read from a file or the store."""

    id: str
    text: str
    tokens: tuple[str, ...] | None = None
    offsets: tuple[tuple[int, int], ...] | None = None  # character offsets of each token in text
    head: Mention | None = None
    tail: Mention | None = None
    label: Label | None = None  # as read from a file; gold or hidden reference depending on the import
    split: str = "pool"
    source_file: str = ""
    source_line: int = 0
    source_record: str = ""  # where in a file without lines: "task 3" (Label Studio), "row 17" (a dataset)

    @property
    def where(self) -> int | str:
        """The line, or the record of a file without lines, for error messages."""
        return self.source_record or self.source_line

    def content_hash(self) -> str:
        """Hash of what the example is (not its label or origin): a re-import must match it."""
        payload = {
            "text": self.text,
            "tokens": self.tokens,
            "head": self.head.to_json() if self.head else None,
            "tail": self.tail.to_json() if self.tail else None,
        }
        return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class Annotation:
    """One LLM (or imported) label for an example, with its scores, cost and provenance."""

    example_id: str
    source: str  # "llm:<model file>" or "import:<name>"
    label: Label | None
    confidence: float | None
    status: str = "ok"  # ok | parse_error
    cache_key: str | None = None
    model_sha256: str | None = None
    prompt_key: str | None = None
    prompt_hash: str | None = None
    decoding: dict[str, Any] | None = None
    demo_ids: tuple[str, ...] = ()
    raw_output: str | None = None
    scores: dict[str, float] | None = None  # raw per-label log-probabilities
    baseline: dict[str, float] | None = None  # the same after a content-free input (contextual calibration)
    calibrated: dict[str, float] | None = None  # calibrated per-label probabilities
    tokens_in: int = 0
    tokens_evaluated: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    error: str = ""
    flags: dict[str, Any] | None = None
    round_id: int | None = None

    def to_row(self) -> dict[str, Any]:
        def encoded(value: Any) -> str | None:
            return None if value is None else json.dumps(value, ensure_ascii=False)

        return {
            "example_id": self.example_id, "source": self.source, "label": label_to_json(self.label),
            "confidence": self.confidence, "status": self.status, "cache_key": self.cache_key,
            "model_sha256": self.model_sha256, "prompt_key": self.prompt_key, "prompt_hash": self.prompt_hash,
            "decoding": encoded(self.decoding), "demo_ids": encoded(list(self.demo_ids)),
            "raw_output": self.raw_output, "scores": encoded(self.scores), "baseline": encoded(self.baseline),
            "calibrated": encoded(self.calibrated),
            "tokens_in": self.tokens_in, "tokens_evaluated": self.tokens_evaluated, "tokens_out": self.tokens_out,
            "seconds": round(self.seconds, 4), "error": self.error or None, "flags": encoded(self.flags),
            "round_id": self.round_id,
        }
