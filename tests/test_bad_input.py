"""Bad input files: each raises LlmaaaError naming file:line and the problem, and leaves the database unchanged."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import snapshot

from llmaaa_local.errors import LlmaaaError
from llmaaa_local.project import Project

LABELS = {"classify": ["pos", "neg"], "ner": ["PER", "LOC"], "re": ["Other", "Cause-Effect(e1,e2)"]}
GOOD: dict[str, list[dict[str, Any]]] = {
    "classify": [{"id": "g1", "text": "first good text", "label": "pos"},
                 {"id": "g2", "text": "second good text", "label": "neg"}],
    "ner": [{"id": "g1", "tokens": ["Ann", "ran"], "tags": ["B-PER", "O"]},
            {"id": "g2", "tokens": ["to", "Rome"], "tags": ["O", "B-LOC"]}],
    "re": [{"id": "g1", "tokens": ["rain", "caused", "floods"], "h": {"name": "rain", "pos": [0, 1]},
            "t": {"name": "floods", "pos": [2, 3]}, "label": "Cause-Effect(e1,e2)"}],
}
OK: dict[str, list[dict[str, Any]]] = {
    "classify": [{"id": "b1", "text": "fine one", "label": "pos"}, {"id": "b2", "text": "fine two", "label": "neg"}],
    "ner": [{"id": "b1", "tokens": ["Bo", "sat"], "tags": ["B-PER", "O"]},
            {"id": "b2", "tokens": ["Rome"], "tags": ["B-LOC"]}],
    "re": [{"id": "b1", "tokens": ["a", "b", "c"], "h": {"name": "a", "pos": [0, 1]},
            "t": {"name": "c", "pos": [2, 3]}, "label": "Other"},
           {"id": "b2", "tokens": ["x", "y"], "h": {"name": "y", "pos": [1, 2]},
            "t": {"name": "x", "pos": [0, 1]}, "label": "Other"}],
}
RE_BASE = {"id": "b3", "tokens": ["Bo", "ate", "figs"], "label": "Other"}


def third(task: str, bad: dict[str, Any] | str) -> list[Any]:
    """Two good records, then the bad one on line 3."""
    return [*OK[task], bad]


def re_record(h: Any, t: Any, **extra: Any) -> dict[str, Any]:
    return {**RE_BASE, "h": h, "t": t, **extra}


def jsonl_bytes(records: list[Any]) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


def truncated_gzip() -> bytes:
    data = gzip.compress(jsonl_bytes(OK["classify"] + [{"id": "b3", "text": "three", "label": "pos"}]), mtime=0)
    return data[:-4]  # the size field of the trailer is cut off: all three lines decompress, the end is missing


def corrupt_gzip() -> bytes:
    data = bytearray(gzip.compress(jsonl_bytes(OK["classify"]), mtime=0))
    data[10] ^= 0xFF  # the first byte of the deflate stream
    return bytes(data)


@dataclass(frozen=True)
class Bad:
    task: str
    name: str
    content: list[Any] | str | bytes
    line: int | None  # None: the error is about the whole file
    phrase: str
    kind: str = "corpus"
    also: tuple[str, ...] = field(default=())  # more places the message must name; {bad} and {good} are filled in
    raw: bool = False  # write the bytes as they are (write_file would gzip a .gz name's content)


CASES: list[Any] = [
    # JSON syntax and shape
    pytest.param(Bad("classify", "bad.jsonl", third("classify", '{"id": "b3", "text": "oops",}'), 3, "invalid JSON"),
                 id="invalid-json"),
    pytest.param(Bad("classify", "bad.jsonl", third("classify", '["b3", "text"]'), 3,
                     "expected a JSON object, found list"), id="json-array"),
    pytest.param(Bad("classify", "bad.jsonl", jsonl_bytes(OK["classify"]) + b'{"id": "b3", "text": "caf\xe9"}\n', 3,
                     "invalid UTF-8"), id="invalid-utf8"),
    pytest.param(Bad("classify", "bad.jsonl", third("classify", {"text": "no id", "label": "pos"}), 3,
                     "missing field 'id'"), id="missing-id"),
    pytest.param(Bad("classify", "bad.jsonl", third("classify", {"id": "b3", "label": "pos"}), 3,
                     "missing field 'text'"), id="missing-text"),
    pytest.param(Bad("classify", "bad.jsonl", third("classify", {"id": "b3", "text": ""}), 3, "the text is empty"),
                 id="empty-text"),
    pytest.param(Bad("classify", "bad.jsonl", third("classify", {"id": "b3", "text": " \t\u3000 "}), 3,
                     "the text is empty"), id="whitespace-text"),
    pytest.param(Bad("classify", "bad.jsonl", third("classify", {"id": "b3", "text": 42}), 3,
                     "field 'text' must be str, found int"), id="text-is-a-number"),
    pytest.param(Bad("ner", "bad.jsonl", third("ner", {"id": "b3", "text": "   "}), 3, "the text is empty"),
                 id="ner-whitespace-text"),
    pytest.param(Bad("ner", "bad.jsonl", third("ner", {"id": "b3", "tokens": "Ann ran", "tags": ["B-PER", "O"]}), 3,
                     "field 'tokens' must be list, found str"), id="tokens-not-a-list"),
    # BIO tags and tokens
    pytest.param(Bad("ner", "bad.jsonl", third("ner", {"id": "b3", "tokens": ["a", "Bo"], "tags": ["O", "I-PER"]}),
                     3, "tag 1 'I-PER' follows 'O'"), id="bio-I-after-O"),
    pytest.param(Bad("ner", "bad.jsonl", third("ner", {"id": "b3", "tokens": ["Bo", "Rome"],
                                                       "tags": ["B-PER", "I-LOC"]}),
                     3, "tag 1 'I-LOC' follows 'B-PER'"), id="bio-I-LOC-after-B-PER"),
    pytest.param(Bad("ner", "bad.jsonl", third("ner", {"id": "b3", "tokens": ["Bo"], "tags": ["X-FOO"]}), 3,
                     "'X-FOO' is not a BIO tag"), id="bio-unknown-prefix"),
    pytest.param(Bad("ner", "bad.jsonl", third("ner", {"id": "b3", "tokens": ["a", "b", "c"], "tags": ["O", "O"]}),
                     3, "2 tags for 3 tokens"), id="tags-tokens-length"),
    pytest.param(Bad("ner", "bad.jsonl", third("ner", {"id": "b3", "tokens": ["New York", "is"], "tags": ["O", "O"]}),
                     3, "must be a non-empty string without spaces"), id="token-with-space"),
    pytest.param(Bad("ner", "bad.jsonl", third("ner", {"id": "b3", "tokens": ["Ann", "ran"], "text": "Ann walked",
                                                       "tags": ["B-PER", "O"]}),
                     3, "does not match the text"), id="tokens-do-not-match-text"),
    pytest.param(Bad("ner", "bad.jsonl", third("ner", {"id": "b3", "tokens": ["ACME"], "tags": ["B-ORG"]}), 3,
                     "label 'ORG' is not in the project's label set"), id="ner-type-outside-label-set"),
    # character spans
    pytest.param(Bad("ner", "bad.jsonl", third("ner", {"id": "b3", "text": "Ann ran",
                                                       "spans": [{"start": 4, "end": 20, "type": "PER"}]}),
                     3, "span [4, 20) lies outside the text of 7 characters"), id="char-span-outside"),
    pytest.param(Bad("ner", "bad.jsonl", third("ner", {"id": "b3", "text": "Ann   ran",
                                                       "spans": [{"start": 3, "end": 6, "type": "PER"}]}),
                     3, "covers only whitespace"), id="char-span-whitespace"),
    pytest.param(Bad("ner", "bad.jsonl", third("ner", {"id": "b3", "text": "Ann Lee ran", "spans": [
                     {"start": 0, "end": 7, "type": "PER"}, {"start": 4, "end": 11, "type": "PER"}]}),
                     3, "overlaps"), id="char-spans-overlap"),
    # relation arguments
    pytest.param(Bad("re", "bad.jsonl", third("re", re_record({"pos": [1, 9]}, {"pos": [0, 1]})), 3,
                     "h.pos [1, 9] lies outside the 3 tokens"), id="re-pos-out-of-range"),
    pytest.param(Bad("re", "bad.jsonl", third("re", re_record({"name": "Ann", "pos": [0, 1]}, {"pos": [2, 3]})), 3,
                     "h.name 'Ann' does not match tokens [0, 1]: 'Bo'"), id="re-name-mismatch"),
    pytest.param(Bad("re", "bad.jsonl", third("re", re_record({"pos": [0, 2]}, {"pos": [1, 3]})), 3,
                     "head [0, 2] and tail [1, 3] overlap"), id="re-head-tail-overlap"),
    pytest.param(Bad("re", "bad.jsonl", third("re", re_record({"pos": [0, 1]}, {"pos": ["2", 3]})), 3,
                     "t.pos must be [start, end] token offsets"), id="re-pos-not-ints"),
    pytest.param(Bad("re", "bad.jsonl", third("re", re_record({"pos": [0, 1]}, {"pos": [2, 3]}, label="Made-Of")), 3,
                     "label 'Made-Of' is not in the project's label set"), id="re-label-outside-label-set"),
    # labels and gold
    pytest.param(Bad("classify", "bad.jsonl", third("classify", {"id": "b3", "text": "meh", "label": "meh"}), 3,
                     "label 'meh' is not in the project's label set"), id="classify-label-outside-label-set"),
    pytest.param(Bad("classify", "bad.jsonl", third("classify", {"id": "b3", "text": "unlabeled"}), 3,
                     "gold record 'b3' has no label", kind="gold"), id="gold-without-label"),
    pytest.param(Bad("ner", "bad.jsonl", third("ner", {"id": "b3", "tokens": ["Bo"]}), 3,
                     "gold record 'b3' has no label", kind="gold"), id="ner-gold-without-tags"),
    # repeated ids
    pytest.param(Bad("classify", "bad.jsonl", third("classify", {"id": "b1", "text": "other text", "label": "pos"}), 3,
                     "id 'b1' is already stored from", also=("{bad}:1",)), id="repeated-id-in-one-file"),
    pytest.param(Bad("classify", "bad.jsonl", third("classify", {"id": "g1", "text": "changed text"}), 3,
                     "with different content", also=("{good}:1",)), id="repeated-id-against-earlier-import"),
    pytest.param(Bad("classify", "bad.jsonl", third("classify", {"id": "g2", "text": "second good text",
                                                                 "label": "pos"}),
                     3, "with a different label", also=("{good}:2",)), id="repeated-id-other-hidden-label"),
    pytest.param(Bad("classify", "bad.jsonl", [{"id": "g1", "text": "first good text", "label": "pos"},
                                               OK["classify"][0],
                                               {"id": "g1", "text": "first good text", "label": "neg"}],
                     3, "another label", kind="gold", also=("{bad}:1",)),
                 id="gold-repeats-pool-id-with-two-labels"),
    # compressed files
    pytest.param(Bad("classify", "bad.jsonl.gz", truncated_gzip(), 4, "cannot read the file", raw=True),
                 id="truncated-gzip"),
    pytest.param(Bad("classify", "bad.jsonl.gz", b'{"id": "b1", "text": "plain"}\n', 1, "Not a gzipped file",
                     raw=True), id="not-gzip"),
    pytest.param(Bad("classify", "bad.jsonl.gz", corrupt_gzip(), 1, "cannot read the file", raw=True),
                 id="corrupt-gzip"),
    # CSV
    pytest.param(Bad("classify", "bad.csv", "id,label\nb1,pos\n", 1, "lacks an 'id' or 'text' column"),
                 id="csv-without-text-column"),
    pytest.param(Bad("classify", "bad.csv", 'id,text,label\nb1,"two\nlines",pos\nb2,x,pos,extra\n', 4,
                     "row has 4 cells for 3 columns"), id="csv-too-many-cells"),
    pytest.param(Bad("classify", "bad.csv", 'id,text,label\nb1,"two\nlines",pos\nb2,,pos\n', 4,
                     "missing field 'text'"), id="csv-empty-text-cell"),
    pytest.param(Bad("classify", "bad.csv", 'id,text,label\nb1,"two\nlines",pos\nb2,"a\nb",meh\n', 4,
                     "label 'meh' is not in"), id="csv-bad-label-after-multiline-cells"),
    # CoNLL
    pytest.param(Bad("ner", "bad.conll", "Ann\tB-PER\nran\tO\n\nBo\tB-PER\nsat\n", 4,
                     "mixes lines with and without tags"), id="conll-mixed-tagged-untagged"),
    pytest.param(Bad("ner", "bad.conll", "-DOCSTART-\tO\n\nAnn\tO\n\nBo\tI-PER\nsat\tO\n", 5,
                     "tag 0 'I-PER' follows 'the sentence start'"), id="conll-invalid-bio"),
    pytest.param(Bad("ner", "bad.conll", "Ann\tB-PER\n\nNew York\tB-LOC\n", 3,
                     "must be a non-empty string without spaces"), id="conll-token-with-space"),
    # whole-file problems
    pytest.param(Bad("classify", "bad.xml", "<doc/>\n", None, "cannot tell the file format from its name"),
                 id="unknown-extension"),
    pytest.param(Bad("ner", "bad.csv", "id,text\nb1,Ann ran\n", None, "format 'csv' does not suit the ner task"),
                 id="csv-for-ner"),
    pytest.param(Bad("re", "bad.conll", "Ann\tO\n", None, "format 'conll' does not suit the re task"),
                 id="conll-for-re"),
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_reported_and_changes_nothing(make_project: Callable[..., Project],
                                                   write_file: Callable[..., Path], tmp_path: Path, case: Bad) -> None:
    settings = {"no_relation": "Other"} if case.task == "re" else {}
    project = make_project(case.task, labels=LABELS[case.task], **settings)
    good = write_file("good.jsonl", GOOD[case.task])
    assert project.import_corpus(good).added == len(GOOD[case.task])
    before = snapshot(project)
    if case.raw:
        bad = tmp_path / case.name
        bad.write_bytes(case.content)  # type: ignore[arg-type]
    else:
        bad = write_file(case.name, case.content)

    with pytest.raises(LlmaaaError) as caught:
        if case.kind == "gold":
            project.import_gold(bad, "demo")
        else:
            project.import_corpus(bad)

    message = str(caught.value)
    where = f"{bad}:{case.line}: " if case.line is not None else f"{bad}: "
    assert message.startswith(where), message
    assert case.phrase in message
    for place in case.also:
        assert place.format(bad=bad, good=good) in message
    assert snapshot(project) == before


def test_a_bad_record_after_the_first_batch_rolls_back_the_whole_import(make_project: Callable[..., Project],
                                                                        write_file: Callable[..., Path]) -> None:
    project = make_project("classify", labels=["pos", "neg"])
    project.import_corpus(write_file("good.jsonl", GOOD["classify"]))
    before = snapshot(project)
    records: list[Any] = [{"id": f"r{i}", "text": f"text {i}", "label": "pos"} for i in range(1500)]
    bad = write_file("big.jsonl", [*records, {"id": "r1500", "text": "x", "label": "meh"}])
    with pytest.raises(LlmaaaError) as caught:
        project.import_corpus(bad)
    assert str(caught.value).startswith(f"{bad}:1501: ")
    assert snapshot(project) == before


def test_a_missing_file_is_named(make_project: Callable[..., Project], tmp_path: Path) -> None:
    project = make_project("classify", labels=["pos"])
    before = snapshot(project)
    missing = tmp_path / "nowhere.jsonl"
    with pytest.raises(LlmaaaError, match="cannot read the file") as caught:
        project.import_corpus(missing)
    assert str(caught.value).startswith(f"{missing}: ")
    assert snapshot(project) == before


def test_a_label_with_a_space_in_a_project_without_labels_names_the_line(make_project: Callable[..., Project],
                                                                         write_file: Callable[..., Path]) -> None:
    project = make_project("classify")
    before = snapshot(project)
    bad = write_file("bad.jsonl", [{"id": "a", "text": "ok", "label": "pos"}, {"id": "b", "text": "ok", "label":
                                                                                 "very good"}])
    with pytest.raises(LlmaaaError) as caught:
        project.import_gold(bad, "demo")
    assert snapshot(project) == before
    assert str(caught.value).startswith(f"{bad}:2: ")
