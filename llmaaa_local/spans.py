"""Tokens, character offsets, BIO tags and token spans, and the conversions between them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from .records import Example, Label, Span

# Abbreviations, numbers, words with inner hyphens or apostrophes, else one punctuation character.
_TOKEN = re.compile(r"(?:[A-Za-z]\.){2,}|\d+(?:[.,:/]\d+)*%?|\w+(?:[-'\u2019]\w+)*|[^\w\s]")


class SpanError(ValueError):
    """Raised with a user-facing message; callers add file and line."""


def tokenize(text: str, cuts: Sequence[int] = ()) -> list[tuple[int, int]]:
    """Character offsets of the tokens of `text`, never crossing a position in `cuts`."""
    bounds = sorted(set(cuts))
    offsets: list[tuple[int, int]] = []
    for match in _TOKEN.finditer(text):
        start, end = match.span()
        for cut in bounds:
            if start < cut < end:
                offsets.append((start, cut))
                start = cut
        offsets.append((start, end))
    return offsets


def align(tokens: Sequence[str], text: str) -> list[tuple[int, int]]:
    """Find each token in `text` in order, allowing only whitespace between them."""
    offsets: list[tuple[int, int]] = []
    cursor = 0
    for index, token in enumerate(tokens):
        while cursor < len(text) and text[cursor].isspace():
            cursor += 1
        if not token or text[cursor : cursor + len(token)] != token:
            raise SpanError(f"token {index} {token!r} does not match the text at character {cursor}")
        offsets.append((cursor, cursor + len(token)))
        cursor += len(token)
    if text[cursor:].strip():
        raise SpanError(f"the text has characters after the last token, at character {cursor}")
    return offsets


def tags_to_spans(tags: Sequence[str], types: set[str] | None = None) -> tuple[Span, ...]:
    """Strict IOB2: an I-X tag must continue a B-X or I-X; raises SpanError otherwise."""
    spans: list[Span] = []
    start: int | None = None
    kind = ""
    for index, tag in enumerate(list(tags) + ["O"]):
        if not isinstance(tag, str):
            raise SpanError(f"tag {index} is {tag!r}, not a string")
        if tag == "O" or tag.startswith("B-"):
            if start is not None:
                spans.append(Span(start, index, kind))
                start = None
            if tag.startswith("B-"):
                start, kind = index, tag[2:]
        elif tag.startswith("I-"):
            if start is None or tag[2:] != kind:
                previous = tags[index - 1] if index else "the sentence start"
                raise SpanError(
                    f"tag {index} {tag!r} follows {previous!r}: an I- tag must continue an entity of its type "
                    "(IOB2); convert IOB1 files so every entity starts with B-"
                )
        else:
            raise SpanError(f"tag {index} {tag!r} is not a BIO tag (O, B-TYPE or I-TYPE)")
        if not kind and start is not None:
            raise SpanError(f"tag {index} {tag!r} has no entity type after the prefix")
    if types is not None:
        for span in spans:
            if span.type not in types:
                raise SpanError(f"entity type {span.type!r} is not in the label set {sorted(types)}")
    return tuple(spans)


def spans_to_tags(spans: Sequence[Span], length: int) -> list[str]:
    tags = ["O"] * length
    for span in sorted(spans):
        tags[span.start] = f"B-{span.type}"
        for index in range(span.start + 1, span.end):
            tags[index] = f"I-{span.type}"
    return tags


def char_to_token_span(offsets: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """Token range covering exactly characters [start, end), or None when the bounds fall inside tokens."""
    first = next((i for i, (s, _) in enumerate(offsets) if s == start), None)
    last = next((i for i, (_, e) in enumerate(offsets) if e == end), None)
    if first is None or last is None or last < first:
        return None
    return first, last + 1


def check_spans(spans: Sequence[Span], length: int) -> None:
    """Spans must lie inside the sentence, be non-empty and not overlap."""
    previous_end = 0
    for span in sorted(spans):
        if not 0 <= span.start < span.end <= length:
            raise SpanError(f"span {span.to_json()} lies outside the {length} tokens")
        if span.start < previous_end:
            raise SpanError(f"span {span.to_json()} overlaps the span before it")
        previous_end = span.end


def span_text(example: Example, span: Span) -> str:
    """The words of `span` as its example's text writes them."""
    assert example.offsets is not None
    return example.text[example.offsets[span.start][0] : example.offsets[span.end - 1][1]]


def span_words(example: Example, span: Span) -> tuple[str, ...]:
    """The tokens of `span`: what a gazetteer knows a mention by."""
    return tuple((example.tokens or ())[span.start : span.end])


def label_spans(label: Label | None) -> tuple[Span, ...]:
    """An NER label's spans (none for a missing or non-NER label)."""
    return label if isinstance(label, tuple) else ()


class Gazetteer:
    """Known mentions as word sequences, found again wherever they recur: left to right, the longest known mention
    at each position, never over a span already taken."""

    def __init__(self, mentions: Iterable[Sequence[str]] = ()) -> None:
        self._by_first: dict[str, set[tuple[str, ...]]] = {}
        self.add(mentions)

    def add(self, mentions: Iterable[Sequence[str]]) -> None:
        for words in mentions:
            if words:
                self._by_first.setdefault(words[0], set()).add(tuple(words))

    def __len__(self) -> int:
        return sum(len(known) for known in self._by_first.values())

    def find(self, tokens: Sequence[str], taken: Sequence[Span] = ()) -> tuple[Span, ...]:
        """The known mentions in `tokens` outside the `taken` spans, as untyped spans ("")."""
        free = [True] * len(tokens)
        for span in taken:
            free[span.start : span.end] = [False] * (span.end - span.start)
        found, start = [], 0
        while start < len(tokens):
            ends = [start + len(words) for words in self._by_first.get(tokens[start], ())
                    if tuple(tokens[start : start + len(words)]) == words and all(free[start : start + len(words)])]
            if ends:
                found.append(Span(start, max(ends), ""))
                start = max(ends)
            else:
                start += 1
        return tuple(found)
