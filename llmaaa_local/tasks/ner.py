"""Named entity recognition (LLMaAA's task): grammar-constrained JSON output, spans anchored to the source tokens.

Anchoring rule: output items are taken in order; an item's span string is matched against every token range of the
sentence whose text equals it, and every matching range that overlaps no range already taken gets the item's type.
So a string that occurs twice is labeled at both places; earlier items win overlaps; a span that matches no token
range is dropped and counted. The grammar only offers token ranges of the sentence, so drops mean a bug or a
model that ignored the grammar.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..config import ProjectSettings
from ..llm import GenerateRequest, GenerateResponse, Prompt, ScoreResponse
from ..metrics import entity_f1, entity_f1_by_type
from ..records import Example, Label, Span
from ..spans import SpanError, char_to_token_span, check_spans, label_spans, span_text, spans_to_tags, tags_to_spans
from .base import Parsed, label_lines

MAX_ENTITIES = 12
MAX_SPAN_TOKENS = 8
DEFAULT_TYPES = {
    "PER": "names of people (real or fictional)",
    "ORG": "organisations: companies, institutions, teams, agencies",
    "LOC": "locations: countries, cities, regions, rivers, buildings",
    "MISC": "other named things: nationalities, events, products, works of art, languages",
    "GPE": "countries, cities, states",
    "DATE": "dates and periods",
}


# Plain words for the usual type abbreviations: a verbalizer `tune` tries (the model writes "person", not "PER").
TYPE_WORDS = {"PER": "person", "ORG": "organization", "LOC": "location", "MISC": "other", "GPE": "place",
              "DATE": "date", "NORP": "group", "FAC": "facility", "PRODUCT": "product", "EVENT": "event"}


def type_words(types: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The TYPE_WORDS verbalizer for these types; empty unless one of them has a plain word."""
    if not any(name in TYPE_WORDS for name in types):
        return ()
    words = tuple((name, TYPE_WORDS.get(name, name.lower())) for name in types)
    return words if len({word for _, word in words}) == len(words) else ()


class EntityRecognition:
    scored = False
    probe_view = ""

    def __init__(self, settings: ProjectSettings) -> None:
        self.settings = settings
        self.types = settings.label_names
        self.words = {name: settings.prompt.word(name) for name in self.types}  # what the model writes per type
        self.by_word = {word: name for name, word in self.words.items()}

    def probe_text(self, example: Example) -> str:
        return example.text

    entity_spans = True

    def instruction(self) -> str:
        if self.settings.prompt.instruction:
            return self.settings.prompt.instruction
        return (
            "Find the named entities in the text. Entity types:\n"
            f"{label_lines(self.settings, DEFAULT_TYPES)}\n"
            'Answer with a JSON list like [{"span": "...", "type": "..."}]. Copy every span exactly as it is '
            "written in the text. Answer [] if there is no entity."
        )

    def request(self, example: Example, demos: Sequence[Example], max_chars: int) -> GenerateRequest:
        shown = _clipped(example, max_chars)
        shots = "".join(f"Text: {demo.text}\nEntities: {self.render(demo)}\n\n" for demo in demos)
        user = f"{shots}Text: {shown.text}"
        return GenerateRequest(Prompt(self.instruction(), user, "Entities:"), self.grammar(shown),
                               max_tokens=MAX_ENTITIES * 24 + 8)

    def render(self, example: Example) -> str:
        """An example's gold entities as the JSON the model is asked to write."""
        spans = example.label if isinstance(example.label, tuple) else ()
        return json.dumps([{"span": _surface(example, s.start, s.end), "type": self.words.get(s.type, s.type)}
                           for s in spans],
                          ensure_ascii=False)

    def grammar(self, example: Example) -> str:
        """GBNF: a JSON list of at most MAX_ENTITIES items whose spans are token ranges of this text."""
        assert example.tokens is not None
        surfaces = sorted({
            _surface(example, start, end)
            for start in range(len(example.tokens))
            for end in range(start + 1, min(start + MAX_SPAN_TOKENS, len(example.tokens)) + 1)
        })
        spans = " | ".join(_literal(json.dumps(text, ensure_ascii=False)[1:-1]) for text in surfaces)
        types = " | ".join(_literal(self.words[name]) for name in self.types)
        return "\n".join([
            f'root ::= " "? "[" ( item ( ", " item ){{0,{MAX_ENTITIES - 1}}} )? "]"',
            r'item ::= "{\"span\": \"" span "\", \"type\": \"" type "\"}"',
            f"span ::= {spans}",
            f"type ::= {types}",
        ])

    def parse(self, example: Example, response: ScoreResponse | GenerateResponse) -> Parsed:
        if not isinstance(response, GenerateResponse):
            return Parsed(None, None, "parse_error", error="expected generated text")
        note = ""
        try:
            items = json.loads(response.text.strip())
        except (ValueError, RecursionError) as error:  # also nesting too deep, or a number too long to read
            items = _complete_items(response.text)
            if items is None:
                detail = error.msg if isinstance(error, json.JSONDecodeError) else "nested too deep or too long"
                return Parsed(None, None, "parse_error", error=f"not JSON ({detail})")
            note = f"output stopped at the token limit; kept its {len(items)} complete entities"
        if not isinstance(items, list) or not all(
            isinstance(item, dict) and isinstance(item.get("span"), str) and isinstance(item.get("type"), str)
            for item in items
        ):
            return Parsed(None, None, "parse_error", error='expected a list of {"span", "type"} objects')
        spans, dropped = anchor(example, [(item["span"], self.by_word.get(item["type"], item["type"]))
                                          for item in items], self.types)
        logprobs = response.token_logprobs
        confidence = math.exp(sum(logprobs) / len(logprobs)) if logprobs else None
        return Parsed(spans, confidence, dropped=dropped, error=note)

    def label_from_value(self, example: Example, value: Any) -> Label:
        """Imported NER labels: a list of IOB2 tags, or character spans [{"start", "end", "type"}]."""
        assert example.tokens is not None and example.offsets is not None
        if value == []:  # no entities, whether meant as spans or as (impossible) empty tags
            return ()
        if isinstance(value, list) and all(isinstance(tag, str) for tag in value):
            if len(value) != len(example.tokens):
                raise ValueError(f"{len(value)} tags for {len(example.tokens)} tokens")
            return _known(tags_to_spans(value), self.types)
        if isinstance(value, list) and all(isinstance(item, dict) for item in value):
            spans = []
            for item in value:
                start, end, kind = item.get("start"), item.get("end"), item.get("type")
                if not (isinstance(start, int) and isinstance(end, int) and isinstance(kind, str)):
                    raise ValueError(f"span {item!r} needs integer start and end and a string type")
                token_range = char_to_token_span(example.offsets, start, end)
                if token_range is None:
                    raise ValueError(f"span [{start}, {end}) does not fall on token boundaries of the text")
                spans.append(Span(token_range[0], token_range[1], kind))
            check_spans(spans, len(example.tokens))
            return _known(tuple(sorted(spans)), self.types)
        raise ValueError("give NER labels as a list of tags or a list of {start, end, type} spans")

    def metrics(self, gold: Mapping[str, Label], predicted: Mapping[str, Label],
                examples: Mapping[str, Example]) -> dict[str, float]:
        return entity_f1(*_tag_lists(gold, predicted, examples))

    def f1_by_label(self, gold: Mapping[str, Label], predicted: Mapping[str, Label],
                    examples: Mapping[str, Example]) -> dict[str, float]:
        return entity_f1_by_type(*_tag_lists(gold, predicted, examples))


def anchor(example: Example, items: Sequence[tuple[str, str]], types: Sequence[str]) -> tuple[tuple[Span, ...], int]:
    """Map (span text, type) items to token spans by the module's anchoring rule; returns (spans, dropped)."""
    assert example.tokens is not None
    taken: list[Span] = []
    dropped = 0
    n = len(example.tokens)
    for text, kind in items:
        ranges = [(s, e) for s in range(n) for e in range(s + 1, n + 1) if _surface(example, s, e) == text.strip()]
        if not ranges or kind not in types:
            dropped += 1
            continue
        for start, end in ranges:
            if all(end <= span.start or start >= span.end for span in taken):
                taken.append(Span(start, end, kind))
    return tuple(sorted(taken)), dropped


def _complete_items(text: str) -> list[Any] | None:
    """The complete items of a JSON list cut short by the token limit (grammar output is always a valid prefix)."""
    body = text.strip()
    if not body.startswith("[") or "}" not in body:
        return [] if body == "[" else None
    try:
        items = json.loads(body[: body.rindex("}") + 1] + "]")
    except (ValueError, RecursionError):
        return None
    return items if isinstance(items, list) else None


def _surface(example: Example, start: int, end: int) -> str:
    return span_text(example, Span(start, end, ""))


def _literal(text: str) -> str:
    """A GBNF string literal."""
    for raw, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        text = text.replace(raw, escaped)
    return f'"{text}"'


def _clipped(example: Example, max_chars: int) -> Example:
    """The example cut to the tokens that fit in `max_chars` characters (flagged by the annotator)."""
    assert example.tokens is not None and example.offsets is not None
    if len(example.text) <= max_chars:
        return example
    keep = max(1, sum(1 for _, end in example.offsets if end <= max_chars))
    text = example.text[: example.offsets[keep - 1][1]]
    return Example(example.id, text, example.tokens[:keep], example.offsets[:keep])


def _tag_lists(gold: Mapping[str, Label], predicted: Mapping[str, Label], examples: Mapping[str, Example],
               ) -> tuple[list[list[str]], list[list[str]]]:
    """The gold and predicted spans of the same examples as IOB2 tag sequences, for seqeval."""
    ids = list(gold)
    lengths = [len(examples[i].tokens or ()) for i in ids]
    return ([spans_to_tags(label_spans(gold[i]), n) for i, n in zip(ids, lengths, strict=True)],
            [spans_to_tags(label_spans(predicted[i]), n) for i, n in zip(ids, lengths, strict=True)])


def _known(spans: tuple[Span, ...], types: Sequence[str]) -> tuple[Span, ...]:
    for span in spans:
        if span.type not in types:
            raise SpanError(f"entity type {span.type!r} is not in the project's types {list(types)}")
    return spans
