"""Examples to encoder inputs, and logits back to labels: shared by student training and ONNX labeling (no torch).

Classification: the text; a long one keeps its start and its end (Sun et al. 2019, head + tail), and the classifier
reads the mean of the encoder states, as sentence-transformers checkpoints were trained. NER: the tokens as pre-split
words; the first sub-word of each word carries its BIO tag. Relations (LLMaAA's markers): [E1] … [/E1] around the head
and [E2] … [/E2] around the tail; the classifier reads the encoder states at the [E1] and [E2] markers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from .config import TaskName
from .records import Example, Label, Span
from .spans import spans_to_tags, tags_to_spans

MARKERS = ("[E1]", "[/E1]", "[E2]", "[/E2]")
SPEC_FILE = "student.json"
RELATION_HEAD = "relation_head.safetensors"  # the marker classifier's weights, beside the encoder
MEAN_HEAD = "classifier_head.safetensors"  # the mean-pooled classifier's weights, beside the encoder


@dataclass(frozen=True)
class StudentSpec:
    """What a saved student predicts and how its inputs are built (student.json beside the weights)."""

    task: TaskName
    labels: tuple[str, ...]  # class or relation labels, or BIO tags for NER
    max_length: int
    base: str
    pooling: str = "cls"  # classification only (see POOLINGS); students saved before pooling existed used "cls"
    head_tokens: int = 0  # classification: a text longer than max_length keeps this many first sub-words and
    # fills the rest from its end; 0 keeps only the start

    def save(self, folder: Path) -> None:
        (folder / SPEC_FILE).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, folder: Path) -> StudentSpec:
        data = json.loads((folder / SPEC_FILE).read_text())
        return cls(**data | {"labels": tuple(data["labels"])})  # fields an older file lacks take their defaults

    @property
    def head_file(self) -> str | None:
        """The file of the head this project trains itself (run beside the exported encoder), if it has one."""
        if self.task == "re":
            return RELATION_HEAD
        return MEAN_HEAD if self.task == "classify" and self.pooling == "mean" else None


def bio_labels(types: Sequence[str]) -> tuple[str, ...]:
    return ("O", *(f"{prefix}-{kind}" for kind in types for prefix in ("B", "I")))


@dataclass
class Encoded:
    """One example as encoder input."""

    ids: list[int]
    word_index: list[int]  # NER: for each position, the word whose first sub-word it is, else -1
    markers: tuple[int, int]  # RE: positions of [E1] and [E2], else (0, 0)


class InputEncoder:
    """Tokenizes examples for one student with the fast `tokenizers` library."""

    def __init__(self, tokenizer: Tokenizer, spec: StudentSpec) -> None:
        self.tokenizer = tokenizer
        self.spec = spec
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.marker_ids = tuple(tokenizer.token_to_id(marker) for marker in MARKERS)
        self.pad_id = _pad_id(tokenizer)

    @classmethod
    def from_folder(cls, folder: Path) -> InputEncoder:
        return cls(Tokenizer.from_file(str(folder / "tokenizer.json")), StudentSpec.load(folder))

    def encode(self, examples: Sequence[Example]) -> list[Encoded]:
        task = self.spec.task
        if task == "classify":
            encodings = self.tokenizer.encode_batch([example.text for example in examples])
            return [Encoded(self._head_and_tail(e.ids), [], (0, 0)) for e in encodings]
        words = [_marked(example) if task == "re" else list(example.tokens or ()) for example in examples]
        encodings = self.tokenizer.encode_batch(words, is_pretokenized=True)
        result = []
        for encoding in encodings:
            ids = list(encoding.ids)
            if task == "re":
                ids = self._window(ids)
                head, tail = (ids.index(m) if m in ids else 0 for m in (self.marker_ids[0], self.marker_ids[2]))
                result.append(Encoded(ids, [], (head, tail)))  # 0 ([CLS]) when mentions lie too far apart
                continue
            first, seen = [], set()
            for word in encoding.word_ids:
                first.append(word if word is not None and word not in seen else -1)
                if word is not None:
                    seen.add(word)
            result.append(Encoded(self._clip(ids), self._clip(first, -1), (0, 0)))
        return result

    def _clip(self, values: list[int], filler: int | None = None) -> list[int]:
        """Cut to max_length, keeping the final special token (e.g. [SEP]) of the encoder's input format."""
        if len(values) <= self.spec.max_length:
            return values
        return values[: self.spec.max_length - 1] + [values[-1] if filler is None else filler]

    def _head_and_tail(self, ids: list[int]) -> list[int]:
        """The first `head_tokens` and the last max_length - head_tokens sub-words (ending with the final special
        token); plain clipping when head_tokens is 0."""
        head = self.spec.head_tokens
        if not head or len(ids) <= self.spec.max_length:
            return self._clip(ids)
        return ids[:head] + ids[len(ids) - (self.spec.max_length - head):]

    def _window(self, ids: list[int]) -> list[int]:
        """Relations: cut a long input around the two mentions so both markers stay inside."""
        if len(ids) <= self.spec.max_length:
            return ids
        inner, room = ids[1:-1], self.spec.max_length - 2  # keep the first and last special tokens
        positions = [inner.index(marker) for marker in self.marker_ids if marker in inner]
        start = max(0, min(min(positions), max(positions) + 1 - (room - 1), len(inner) - room))
        return [ids[0], *inner[start : start + room], ids[-1]]

    def batch(self, encoded: Sequence[Encoded]) -> dict[str, np.ndarray]:
        """Pad to the longest in the batch: input_ids, attention_mask (+ marker positions for relations)."""
        width = max(len(item.ids) for item in encoded)
        ids = np.full((len(encoded), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encoded), width), dtype=np.int64)
        for row, item in enumerate(encoded):
            ids[row, : len(item.ids)] = item.ids
            mask[row, : len(item.ids)] = 1
        arrays = {"input_ids": ids, "attention_mask": mask}
        if self.spec.task == "re":
            arrays["markers"] = np.array([item.markers for item in encoded], dtype=np.int64)
        return arrays

    def targets(self, examples: Sequence[Example], encoded: Sequence[Encoded]) -> np.ndarray:
        """Training targets: a label index per example, or (NER) a tag index per position, -100 where unused."""
        index = {label: i for i, label in enumerate(self.spec.labels)}
        if self.spec.task != "ner":
            return np.array([index[str(example.label)] for example in examples], dtype=np.int64)
        width = max(len(item.ids) for item in encoded)
        targets = np.full((len(examples), width), -100, dtype=np.int64)
        for row, (example, item) in enumerate(zip(examples, encoded, strict=True)):
            spans = example.label if isinstance(example.label, tuple) else ()
            tags = spans_to_tags(spans, len(example.tokens or ()))
            for position, word in enumerate(item.word_index):
                if word >= 0:
                    targets[row, position] = index[tags[word]]
        return targets


def decode(spec: StudentSpec, example: Example, item: Encoded, logits: np.ndarray,
           ) -> tuple[Label, dict[str, float] | None, float]:
    """Logits of one example (labels, or positions x tags) to (label, per-label probabilities, confidence)."""
    probabilities = _softmax(logits)
    if spec.task != "ner":
        best = int(np.argmax(probabilities))
        return spec.labels[best], dict(zip(spec.labels, map(float, probabilities), strict=True)), float(
            probabilities[best])
    n = len(example.tokens or ())
    tags = ["O"] * n
    confidences = []
    for position, word in enumerate(item.word_index):
        if 0 <= word < n:
            best = int(np.argmax(probabilities[position]))
            tags[word] = spec.labels[best]
            confidences.append(float(probabilities[position, best]))
    return repair_bio(tags), None, float(np.mean(confidences)) if confidences else 1.0


def repair_bio(tags: list[str]) -> tuple[Span, ...]:
    """Spans from predicted tags; an I-X that does not continue an X entity starts one (common decoder rule)."""
    fixed = list(tags)
    for i, tag in enumerate(fixed):
        if tag.startswith("I-") and (i == 0 or fixed[i - 1][2:] != tag[2:] or fixed[i - 1] == "O"):
            fixed[i] = "B-" + tag[2:]
    return tags_to_spans(fixed)


def _marked(example: Example) -> list[str]:
    assert example.tokens is not None and example.head is not None and example.tail is not None
    words: list[str] = []
    for i, token in enumerate(example.tokens):
        if i == example.head.start:
            words.append(MARKERS[0])
        if i == example.tail.start:
            words.append(MARKERS[2])
        words.append(token)
        if i == example.head.end - 1:
            words.append(MARKERS[1])
        if i == example.tail.end - 1:
            words.append(MARKERS[3])
    return words


def _pad_id(tokenizer: Tokenizer) -> int:
    for token in ("[PAD]", "<pad>", "<|padding|>"):
        found = tokenizer.token_to_id(token)
        if found is not None:
            return int(found)
    return 0


def _softmax(logits: np.ndarray) -> np.ndarray:
    from scipy.special import softmax

    return np.asarray(softmax(logits, axis=-1))


def mean_pool(states: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mean of each row's states over its real (unpadded) positions."""
    weights = mask[..., None].astype(states.dtype)
    return np.asarray((states * weights).sum(1) / np.maximum(weights.sum(1), 1.0))

