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

    def content_hash(self) -> str:
        """Hash of what the example is (not its label or origin): a re-import must match it."""
        payload = {
            "text": self.text,
            "tokens": self.tokens,
            "head": self.head.to_json() if self.head else None,
            "tail": self.tail.to_json() if self.tail else None,
        }
        return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()
