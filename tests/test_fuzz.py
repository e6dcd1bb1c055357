"""Property tests (hypothesis) over every importer and every LLM-output parser.

Importers: a fuzzed file either imports, and then every stored text equals the file's text exactly, or raises
LlmaaaError naming `<path>:<line>` (or the path, for whole-file problems) and leaves the database as it was; never
another exception. Files mix valid records with Unicode edge cases (combining marks, right-to-left text, emoji,
zero-width characters, NUL), boundary spans, extra fields, CRLF, BOM and blank lines, and one planted defect whose line
the error must name: invalid UTF-8, deeply nested JSON, a huge integer, an escaped lone surrogate, a missing or
mistyped field, a conflicting duplicate. Random bytes must never crash an importer either.

Parsers: `EntityRecognition.parse` never raises and keeps spans inside the sentence and apart; `LabelScoring.parse`
gives a proper distribution or a parse error (non-finite scores are parse errors).

`pytest tests/test_fuzz.py --hypothesis-show-statistics` prints how many cases ran.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmaaa_local.config import LabelInfo, ProjectSettings
from llmaaa_local.errors import LlmaaaError
from llmaaa_local.llm import Cost, GenerateResponse, ScoreResponse
from llmaaa_local.project import Project
from llmaaa_local.records import Example, Span
from llmaaa_local.tasks import task_for

IMPORTS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.data_too_large])
PARSERS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LABELS = {"classify": ("pos", "neg"), "ner": ("PER", "LOC"), "re": ("Other", "Cause-Effect(e1,e2)")}
FORMULA = ("=", "+", "-", "@", "\t", "\r")

# Characters that break naive text handling: combining marks, right-to-left letters and controls, emoji (with
# skin tone and zero-width joiner sequences), zero-width characters, NUL, Unicode line and paragraph separators.
EDGE = ["e\u0301", "\u0308", "\u05e9\u05dc\u05d5\u05dd", "\u0645\u0631\u062d\u0628\u0627", "\u202e", "\u202b",
        "\u200f", "\U0001f600", "\U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\u200b",
        "\u200c", "\u200d", "\ufeff", "\x00", "\u2028", "\u0085", "\u3000", "'", '"', ",", "=", "+", "-", "@",
        "\\", "\n", "\r\n", "\t", " ", "Ünïcödé", "日本語", "x"]


def _piece() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(EDGE), st.text(st.characters(exclude_categories=["Cs"]), max_size=4))


texts = st.lists(_piece(), min_size=1, max_size=12).map("".join).filter(lambda text: bool(text.strip()))
words = st.lists(st.one_of(st.sampled_from([e for e in EDGE if not any(c.isspace() for c in e) and e]),
                           st.text(st.characters(exclude_categories=["Cs", "Zs", "Zl", "Zp", "Cc"]), min_size=1,
                                   max_size=5)),
                 min_size=1, max_size=3).map("".join).filter(lambda w: bool(w) and not any(c.isspace() for c in w))
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
extra_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=3), inner, max_size=3), max_leaves=8)
extras = st.dictionaries(st.sampled_from(["note", "meta", "source", "score", "x"]), extra_values, max_size=2)


_TEMPLATES = tempfile.TemporaryDirectory(prefix="fuzz-templates-")  # removed when the interpreter exits


def _template(task: str, labels: bool) -> Path:
    """An empty project made once per task; copying it is 30 times faster than `Project.init`."""
    folder = Path(_TEMPLATES.name) / f"{task}-{labels}"
    if not folder.exists():
        info = tuple(LabelInfo(name) for name in LABELS[task]) if labels else ()
        no_relation = "Other" if task == "re" and labels else None
        Project.init(folder, ProjectSettings(task, info, no_relation)).close()  # type: ignore[arg-type]
    return folder


@contextmanager
def fresh_project(task: str, labels: bool = True) -> Iterator[tuple[Project, Path]]:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        shutil.copytree(_template(task, labels), Path(folder) / "p")
        project = Project.open(Path(folder) / "p")
        try:
            yield project, Path(folder)
        finally:
            project.close()


@dataclass
class FuzzFile:
    """Lines of a fuzzed file, the texts a clean import must store, and the line of the planted defect."""

    lines: list[bytes] = field(default_factory=list)
    expected: dict[str, str] = field(default_factory=dict)
    bad_line: int | None = None
    defect: str = ""
    unlabeled: bool = False  # some clean record has no label (a gold import would refuse it)
    content: bytes = b""

    def __repr__(self) -> str:  # short: a line may hold a megabyte
        lines = [line if len(line) < 200 else line[:80] + b"...(%d bytes)" % len(line) for line in self.lines]
        return f"FuzzFile(defect={self.defect!r}, bad_line={self.bad_line}, lines={lines!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # what hypothesis prints for a failing case
        printer.text(repr(self))

    def add(self, line: bytes | str) -> int:
        self.lines.append(line.encode("utf-8") if isinstance(line, str) else line)
        return len(self.lines)

    def finish(self, ending: bytes, bom: bool) -> FuzzFile:
        """Join the lines into the file's bytes."""
        self.content = (b"\xef\xbb\xbf" if bom else b"") + b"".join(line + ending for line in self.lines)
        return self


def expect_import(project: Project, path: Path, fuzz: FuzzFile, run: Callable[[Path], Any]) -> None:
    """The import either stores exactly the expected texts, or fails naming the planted defect's line."""
    before = snapshot(project)
    try:
        run(path)
    except LlmaaaError as error:
        message = str(error)
        assert snapshot(project) == before, "a failed import changed the database"
        assert fuzz.bad_line is not None, f"a clean file was refused: {message}"
        assert message.startswith(f"{path}:{fuzz.bad_line}:"), (fuzz.defect, message)
        return
    assert fuzz.bad_line is None, f"the planted defect {fuzz.defect!r} on line {fuzz.bad_line} was accepted"
    stored = {example.id: example.text for example in project.store.examples()}
    assert stored == fuzz.expected

def import_fuzzed(task: str, name: str, fuzz: FuzzFile, gold: bool = False) -> None:
    """Write the fuzzed file into a fresh project and import it (as corpus, or as demo gold); `expect_import`
    checks the outcome."""
    with fresh_project(task) as (project, folder):
        path = folder / name
        path.write_bytes(fuzz.content)
        expect_import(project, path, fuzz, lambda p: project.import_gold(p, "demo") if gold else
                      project.import_corpus(p))
        if task == "ner" and fuzz.bad_line is None and name.endswith(".jsonl"):
            check_stored_spans(project, fuzz)



def expect_no_crash(project: Project, path: Path, run: Callable[[Path], Any]) -> None:
    """Arbitrary bytes: import, or LlmaaaError naming the file with the database unchanged."""
    before = snapshot(project)
    try:
        report = run(path)
    except LlmaaaError as error:
        assert str(error).startswith(str(path)), str(error)
        assert snapshot(project) == before
        return
    assert project.store.example_count() >= report.added


# --- JSONL defects shared by every task ----------------------------------------------------------------------------

DEEP = 100_000  # past any recursion limit: json.loads raises RecursionError


def json_defects(task: str, valid: dict[str, Any]) -> dict[str, bytes]:
    """Lines that must be refused, built around one valid record of the task."""
    body = json.dumps(valid)
    nan_key = "tokens" if task == "ner" else "label"  # a key the task reads (the last duplicate key wins)
    return {
        "invalid utf-8": body.encode()[:-1] + b"\xff\xfe}",
        "deep nesting": ("[" * DEEP + "]" * DEEP).encode(),
        "deep nesting in a field": (body[:-1] + ', "x": ' + "[" * DEEP + "]" * DEEP + "}").encode(),
        "huge integer": (body[:-1] + ', "n": 1' + "0" * 5000 + "}").encode(),
        "lone surrogate": json.dumps({**valid, "id": "surrogate\ud800"}).encode(),
        "not an object": b'["an", "array"]',
        "truncated": body[: len(body) // 2].encode(),
        "missing id": json.dumps({k: v for k, v in valid.items() if k != "id"}).encode(),
        "boolean id": json.dumps({**valid, "id": True}).encode(),
        "NaN value": (body[:-1] + f', "{nan_key}": NaN}}').encode(),
    }


JSON_DEFECTS = tuple(json_defects("classify", {"id": "x"}))


def plant(fuzz: FuzzFile, defect: str, line: bytes) -> None:
    fuzz.bad_line = fuzz.add(line)
    fuzz.defect = defect


@st.composite
def jsonl_file(draw: st.DrawFn, task: str, record: Callable[[st.DrawFn, str], tuple[dict[str, Any], str]],
               defects: dict[str, Callable[[dict[str, Any]], bytes]]) -> FuzzFile:
    """Valid records of `task` (with blank lines, extra fields, ASCII or raw UTF-8), maybe one planted defect."""
    fuzz = FuzzFile()
    count = draw(st.integers(1, 6))
    defect = draw(st.none() | st.sampled_from(sorted({*JSON_DEFECTS, *defects})))
    at = draw(st.integers(1 if defect == "conflicting duplicate" else 0, max(count - 1, 1)))
    for index in range(max(count, at + 1)):
        if draw(st.booleans()):
            fuzz.add(draw(st.sampled_from(["", "   ", "\t"])))
        item, text = record(draw, f"r{index}")
        if index == at and defect is not None:
            line = defects[defect](item) if defect in defects else json_defects(task, item)[defect]
            plant(fuzz, defect, line)
            break
        fuzz.unlabeled |= "label" not in item
        item.update(draw(extras))
        fuzz.add(json.dumps(item, ensure_ascii=draw(st.booleans())))
        fuzz.expected[item["id"]] = text
    return fuzz.finish(draw(st.sampled_from([b"\n", b"\r\n"])), draw(st.booleans()))


def classify_record(draw: st.DrawFn, rid: str) -> tuple[dict[str, Any], str]:
    text = draw(texts)
    item: dict[str, Any] = {"id": rid, "text": text}
    label = draw(st.none() | st.sampled_from(LABELS["classify"]))
    if label is not None:
        item["label"] = label
    if len(text) < 40 and draw(st.integers(0, 40)) == 0:  # now and then a line of about 1 MB
        text = item["text"] = text + "é" * 1_000_000
    return item, text


CLASSIFY_DEFECTS: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "missing text": lambda v: json.dumps({"id": v["id"]}).encode(),
    "text not a string": lambda v: json.dumps({"id": v["id"], "text": ["a"]}).encode(),
    "blank text": lambda v: json.dumps({"id": v["id"], "text": " \t\u3000"}).encode(),
    "unknown label": lambda v: json.dumps({"id": v["id"], "text": "t", "label": "maybe"}).encode(),
    "conflicting duplicate": lambda v: json.dumps({"id": "r0", "text": "another text"}).encode(),
}


@IMPORTS
@given(fuzz=jsonl_file("classify", classify_record, CLASSIFY_DEFECTS), gold=st.booleans())
def test_classify_jsonl(fuzz: FuzzFile, gold: bool) -> None:
    # a gold file needs every label (test_bad_input covers that rule)
    import_fuzzed("classify", "in.jsonl", fuzz, gold=gold and not fuzz.unlabeled)


def tokens_text(draw: st.DrawFn) -> tuple[list[str], str]:
    tokens = draw(st.lists(words, min_size=1, max_size=8))
    separators = [draw(st.sampled_from([" ", "  ", "\t", "\u3000", "\u00a0"])) for _ in tokens[1:]]
    text = tokens[0] + "".join(sep + token for sep, token in zip(separators, tokens[1:], strict=True))
    return tokens, text


def bio(draw: st.DrawFn, length: int, types: tuple[str, ...]) -> list[str]:
    tags, previous = [], "O"
    for _ in range(length):
        choices = ["O", *(f"B-{t}" for t in types)] + ([f"I-{previous[2:]}"] if previous != "O" else [])
        previous = draw(st.sampled_from(choices))
        tags.append(previous)
    return tags


def ner_record(draw: st.DrawFn, rid: str) -> tuple[dict[str, Any], str]:
    if draw(st.booleans()):  # tokens and tags, with or without the original text
        tokens, text = tokens_text(draw)
        item: dict[str, Any] = {"id": rid, "tokens": tokens, "tags": bio(draw, len(tokens), LABELS["ner"])}
        if draw(st.booleans()):
            item["text"] = text
        else:
            text = " ".join(tokens)
        return item, text
    text = draw(texts)
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=4)) | {0, len(text)})  # spans at the boundaries
    spans = [{"start": s, "end": e, "type": draw(st.sampled_from(LABELS["ner"]))}
             for s, e in zip(cuts, cuts[1:], strict=False) if text[s:e].strip() and draw(st.booleans())]
    return {"id": rid, "text": text, "spans": spans}, text


NER_DEFECTS: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "tags and tokens differ in length": lambda v: json.dumps({"id": v["id"], "tokens": ["a", "b"],
                                                              "tags": ["O"]}).encode(),
    "I- without B-": lambda v: json.dumps({"id": v["id"], "tokens": ["a", "b"], "tags": ["O", "I-PER"]}).encode(),
    "token with a space": lambda v: json.dumps({"id": v["id"], "tokens": ["a b"]}).encode(),
    "span past the end": lambda v: json.dumps({"id": v["id"], "text": "Ann ran",
                                               "spans": [{"start": 4, "end": 8, "type": "PER"}]}).encode(),
    "overlapping spans": lambda v: json.dumps({"id": v["id"], "text": "Ann Lee ran", "spans": [
        {"start": 0, "end": 7, "type": "PER"}, {"start": 4, "end": 11, "type": "PER"}]}).encode(),
    "whitespace span": lambda v: json.dumps({"id": v["id"], "text": "a   b",
                                             "spans": [{"start": 1, "end": 4, "type": "PER"}]}).encode(),
    "unknown type": lambda v: json.dumps({"id": v["id"], "tokens": ["Ann"], "tags": ["B-ORG"]}).encode(),
    "text does not match the tokens": lambda v: json.dumps({"id": v["id"], "tokens": ["Ann"],
                                                            "text": "Bob"}).encode(),
}


@IMPORTS
@given(fuzz=jsonl_file("ner", ner_record, NER_DEFECTS))
def test_ner_jsonl(fuzz: FuzzFile) -> None:
    import_fuzzed("ner", "in.jsonl", fuzz)


def check_stored_spans(project: Project, fuzz: FuzzFile) -> None:
    """Character spans come back as token spans covering exactly the (whitespace-trimmed) characters."""
    records = [json.loads(line.decode("utf-8-sig")) for line in fuzz.lines if line.strip()]
    stored = {example.id: example for example in project.store.examples()}
    references = project.store.reference_labels()
    for record in records:
        example = stored[record["id"]]
        assert example.offsets is not None and example.tokens is not None
        assert all(0 <= s < e <= len(example.text) for s, e in example.offsets)
        assert [example.text[s:e] for s, e in example.offsets] == list(example.tokens)
        if "spans" in record:
            want = sorted((example.text[s["start"]:s["end"]].strip(), s["type"]) for s in record["spans"])
            spans = references.get(example.id, ())
            assert isinstance(spans, tuple)
            got = sorted((example.text[example.offsets[span.start][0]:example.offsets[span.end - 1][1]], span.type)
                         for span in spans)
            assert got == want


def re_record(draw: st.DrawFn, rid: str) -> tuple[dict[str, Any], str]:
    tokens, text = tokens_text(draw)
    if len(tokens) < 2:
        tokens, text = [*tokens, "x"], text + " x"
    cut = draw(st.integers(1, len(tokens) - 1))
    first = (draw(st.integers(0, cut - 1)), cut)
    second = (cut, draw(st.integers(cut + 1, len(tokens))))
    head, tail = (first, second) if draw(st.booleans()) else (second, first)

    def mention(span: tuple[int, int]) -> dict[str, Any]:
        value: dict[str, Any] = {"pos": list(span)}
        if draw(st.booleans()):
            value["name"] = " ".join(tokens[span[0]:span[1]])
        return value

    item: dict[str, Any] = {"id": rid, "tokens": tokens, "h": mention(head), "t": mention(tail)}
    if draw(st.booleans()):
        item["text"] = text
    else:
        text = " ".join(tokens)
    label = draw(st.none() | st.sampled_from(LABELS["re"]))
    if label is not None:
        item["label"] = label
    return item, text


def _re(v: dict[str, Any], **changes: Any) -> bytes:
    base = {"id": v["id"], "tokens": ["rain", "caused", "floods"], "h": {"pos": [0, 1]}, "t": {"pos": [2, 3]}}
    return json.dumps({**base, **changes}).encode()


RE_DEFECTS: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "head past the end": lambda v: _re(v, h={"pos": [2, 4]}),
    "empty mention": lambda v: _re(v, t={"pos": [1, 1]}),
    "overlapping mentions": lambda v: _re(v, h={"pos": [0, 2]}, t={"pos": [1, 3]}),
    "boolean offsets": lambda v: _re(v, h={"pos": [False, True]}),
    "name does not match": lambda v: _re(v, h={"name": "snow", "pos": [0, 1]}),
    "missing tail": lambda v: _re(v, t=None),
    "unknown relation": lambda v: _re(v, label="Eats"),
}


@IMPORTS
@given(fuzz=jsonl_file("re", re_record, RE_DEFECTS))
def test_relation_jsonl(fuzz: FuzzFile) -> None:
    import_fuzzed("re", "in.jsonl", fuzz)


# --- CSV and CoNLL -------------------------------------------------------------------------------------------------


@st.composite
def csv_file(draw: st.DrawFn) -> FuzzFile:
    """A CSV written by the csv module (quoted newlines, commas, quotes), maybe one planted defect."""
    fuzz = FuzzFile()
    ending = draw(st.sampled_from(["\n", "\r\n"]))  # also what a quoted newline in a cell becomes
    columns = draw(st.permutations(["id", "text", "label", "note"]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    fuzz.add(out.getvalue().rstrip("\n"))
    count = draw(st.integers(1, 6))
    defect = draw(st.none() | st.sampled_from(["too many cells", "blank text", "unknown label", "invalid utf-8",
                                               "unclosed quote"]))
    at = draw(st.integers(0, count - 1))
    for index in range(count):
        rid = f"r{index}"
        if index == at and defect is not None:
            row = {"too many cells": f"{rid},t,pos,n,extra", "blank text": f'{rid},"  ",pos,n',
                   "unknown label": f"{rid},t,maybe,n", "invalid utf-8": f"{rid},t\udcff,pos,n",
                   "unclosed quote": f'{rid},"t,pos,n'}[defect]
            if defect != "too many cells" and defect != "unclosed quote":
                cells = dict(zip(["id", "text", "label", "note"], row.split(","), strict=True))
                row = ",".join(cells[c] for c in columns)
            plant(fuzz, defect, row.encode("utf-8", "surrogateescape"))
            break
        text = draw(texts.filter(lambda t: "\r" not in t))  # CR inside cells: test_csv_export_round_trip
        record = {"id": rid, "text": text, "label": draw(st.sampled_from(["", *LABELS["classify"]])),
                  "note": draw(st.text(max_size=3).filter(lambda t: "\r" not in t))}
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow([record[c] for c in columns])
        for line in out.getvalue()[:-1].split("\n"):
            fuzz.add(line)
        text = text.replace("\n", ending)
        fuzz.expected[rid] = text[1:] if text.startswith("'") and text[1:].startswith(FORMULA) else text
    return fuzz.finish(ending.encode(), draw(st.booleans()))


@IMPORTS
@given(fuzz=csv_file())
def test_csv(fuzz: FuzzFile) -> None:
    import_fuzzed("classify", "in.csv", fuzz)


@st.composite
def conll_file(draw: st.DrawFn) -> FuzzFile:
    """Sentences of token<TAB>tag lines (or tokens only), blank-line separated, some with `# id = ` headers."""
    fuzz = FuzzFile()
    count = draw(st.integers(1, 5))
    defect = draw(st.none() | st.sampled_from(["mixed columns", "bad tag", "I- without B-", "invalid utf-8"]))
    at = draw(st.integers(0, count - 1))
    tagged = draw(st.booleans())
    for index in range(count):
        if draw(st.booleans()):
            fuzz.add("-DOCSTART-\tO" if draw(st.booleans()) else "")
        named = draw(st.booleans())
        rid = f"s{index}" if named else f"in-{index + 1:05d}"
        if named:
            fuzz.add(f"# id = {rid}")
        if index == at and defect is not None:
            bad = {"mixed columns": ["Ann\tB-PER", "ran"], "bad tag": ["Ann\tB-PER", "ran\tX"],
                   "I- without B-": ["Ann\tO", "ran\tI-PER"], "invalid utf-8": ["Ann\tB-PER", "r\udcffan\tO"]}
            lines = bad[defect] if tagged or defect != "mixed columns" else ["Ann", "ran\tO"]
            plant(fuzz, defect, lines[0].encode("utf-8", "surrogateescape"))
            for line in lines[1:]:
                fuzz.add(line.encode("utf-8", "surrogateescape"))
            if defect == "invalid utf-8":
                fuzz.bad_line = len(fuzz.lines)  # the decoder names the line of the bad byte
            break
        # A first token starting with U+FEFF would read as a byte-order mark.
        tokens = draw(st.lists(words.filter(lambda w: w != "-DOCSTART-" and not w.startswith("\ufeff")), min_size=1,
                               max_size=6))
        tags = bio(draw, len(tokens), LABELS["ner"])
        for token, tag in zip(tokens, tags, strict=True):
            fuzz.add(f"{token}\t{tag}" if tagged else token)
        fuzz.add("")
        fuzz.expected[rid] = " ".join(tokens)
    return fuzz.finish(draw(st.sampled_from([b"\n", b"\r\n"])), bom=False)


@IMPORTS
@given(fuzz=conll_file())
def test_conll(fuzz: FuzzFile) -> None:
    import_fuzzed("ner", "in.conll", fuzz)


# --- random bytes and projects that learn their labels ------------------------------------------------------------

FILE_NAMES = {"classify": ["f.jsonl", "f.csv", "f.jsonl.gz", "f.csv.gz"], "ner": ["f.jsonl", "f.conll", "f.conll.gz"],
              "re": ["f.jsonl", "f.jsonl.gz"]}


@IMPORTS
@given(task=st.sampled_from(sorted(LABELS)), name_index=st.integers(0, 3), labels=st.booleans(),
       data=st.one_of(st.binary(max_size=3000),
                      st.lists(st.sampled_from([b"{", b"}", b"[", b"]", b'"id"', b'"text"', b'"tokens"', b'"tags"',
                                                b'"label"', b'"spans"', b":", b",", b'"a"', b"1", b"\n", b"\t",
                                                b"B-PER", b"O", b"\xff", b"\x00", b"\xe2\x80", b'"\\ud800"',
                                                b"NaN", b"-1e999", b"true"]),
                               max_size=60).map(b"".join)),
       compress=st.booleans())
def test_random_bytes_never_crash_an_importer(task: str, name_index: int, labels: bool, data: bytes,
                                              compress: bool) -> None:
    names = FILE_NAMES[task]
    name = names[name_index % len(names)]
    with fresh_project(task, labels) as (project, folder):
        path = folder / name
        path.write_bytes(gzip.compress(data, mtime=0) if name.endswith(".gz") and compress else data)
        expect_no_crash(project, path, project.import_corpus)
        expect_no_crash(project, path, lambda p: project.import_gold(p, "test"))


@IMPORTS
@given(task=st.sampled_from(sorted(LABELS)),
       names=st.lists(st.one_of(st.sampled_from(["O", "B-X", "I-X", "", " ", "a b", "Other", "NA", "x" * 300]),
                                st.text(max_size=6)), min_size=1, max_size=4))
def test_learned_label_sets_fail_with_the_file_and_line(task: str, names: list[str]) -> None:
    """A project without labels takes them from the first labeled import; a bad name is an error at its line."""
    records: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        if task == "classify":
            records.append({"id": f"r{i}", "text": f"text {i}", "label": name})
        elif task == "ner":
            records.append({"id": f"r{i}", "tokens": ["Ann"], "tags": [f"B-{name}"]})
        else:
            records.append({"id": f"r{i}", "tokens": ["a", "b"], "h": {"pos": [0, 1]}, "t": {"pos": [1, 2]},
                            "label": name})
    with fresh_project(task, labels=False) as (project, folder):
        path = folder / "in.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        before = snapshot(project)
        try:
            project.import_gold(path, "demo")
        except LlmaaaError as error:
            assert str(error).startswith(f"{path}:"), str(error)
            assert snapshot(project) == before
            return
        learned = project.settings.label_names
        assert set(learned) == set(names)
        assert not any(ch.isspace() for name in learned for ch in name), learned


# --- annotation import ---------------------------------------------------------------------------------------------

ANNOTATED = [{"id": "a1", "text": "Ann met Bob in Rome", "tokens": ["Ann", "met", "Bob", "in", "Rome"]},
             {"id": "a2", "text": "nothing here", "tokens": ["nothing", "here"]}]
values = st.one_of(st.sampled_from(["pos", "neg", "maybe", "", "PER"]), st.integers(), st.none(), st.booleans(),
                   st.lists(st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "X"]), max_size=6),
                   st.lists(st.fixed_dictionaries({"start": st.integers(-1, 20), "end": st.integers(-1, 20),
                                                   "type": st.sampled_from(["PER", "LOC", "ORG"])}), max_size=3),
                   extra_values)
confidences = st.one_of(st.none(), st.floats(-1, 2), st.sampled_from([0, 1, True, "0.5", math.nan, math.inf]))


@IMPORTS
@given(task=st.sampled_from(["classify", "ner"]), field_name=st.none() | st.just("value"),
       records=st.lists(st.fixed_dictionaries(
           {"id": st.one_of(st.sampled_from(["a1", "a2", "zz"]), st.integers(0, 2), st.none()),
            "label": values}, optional={"confidence": confidences, "value": values, "extra": extra_values}),
           min_size=1, max_size=6))
def test_annotation_import(task: str, field_name: str | None, records: list[dict[str, Any]]) -> None:
    with fresh_project(task) as (project, folder):
        corpus = folder / "corpus.jsonl"
        corpus.write_text("".join(json.dumps({k: v for k, v in r.items() if task == "ner" or k != "tokens"}) + "\n"
                                  for r in ANNOTATED))
        project.import_corpus(corpus)
        path = folder / "llm.jsonl"
        path.write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in records))
        before = snapshot(project)
        try:
            report = project.import_annotations(path, "other", field_name)
        except LlmaaaError as error:
            assert str(error).startswith(f"{path}:"), str(error)
            assert snapshot(project) == before
            return
        assert report.added + report.unchanged == len(records)
        stored = project.store.db.execute("SELECT COUNT(*), COUNT(DISTINCT cache_key) FROM annotations "
                                          "WHERE source = 'import:other'").fetchone()
        assert stored == (report.added, report.added)
        for record in records:
            confidence = record.get("confidence")
            assert confidence is None or (isinstance(confidence, (int, float)) and 0 <= confidence <= 1)


# --- LLM output parsers --------------------------------------------------------------------------------------------

sentences = st.lists(words, min_size=1, max_size=12)


def ner_example(tokens: list[str]) -> Example:
    text = " ".join(tokens)
    offsets = []
    cursor = 0
    for token in tokens:
        offsets.append((cursor, cursor + len(token)))
        cursor += len(token) + 1
    return Example("e", text, tuple(tokens), tuple(offsets))


@st.composite
def ner_outputs(draw: st.DrawFn, tokens: list[str]) -> str:
    """Model output: random text, or JSON-ish lists of span/type items, maybe cut off or with wrong shapes."""
    kind = draw(st.sampled_from(["text", "items", "items", "nested", "number"]))
    if kind == "text":
        return draw(st.text(max_size=80))
    if kind == "nested":
        depth = draw(st.sampled_from([3, 1000, 100_000]))
        return "[" * depth + draw(st.sampled_from(["", "]" * depth, '{"span": "a"}' + "]" * depth, "}"]))
    if kind == "number":
        return "[" + "9" * draw(st.sampled_from([5, 5000])) + "]"
    surfaces = [" ".join(tokens[s:e]) for s in range(len(tokens)) for e in range(s + 1, len(tokens) + 1)]
    items = []
    for _ in range(draw(st.integers(0, 5))):
        item: dict[str, Any] = {"span": draw(st.sampled_from(surfaces) | st.text(max_size=6)),
                                "type": draw(st.sampled_from([*LABELS["ner"], "ORG", ""]))}
        if draw(st.integers(0, 5)) == 0:
            item[draw(st.sampled_from(["span", "type", "extra"]))] = draw(extra_values)
        items.append(item)
    text = json.dumps(items, ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]
    return draw(st.sampled_from(["", " ", "\n"])) + text


@PARSERS
@given(data=st.data(), tokens=sentences)
def test_entity_parser_never_raises(data: st.DataObject, tokens: list[str]) -> None:
    task = task_for(ProjectSettings("ner", tuple(LabelInfo(name) for name in LABELS["ner"])))
    example = ner_example(tokens)
    text = data.draw(ner_outputs(tokens))
    logprobs = tuple(data.draw(st.lists(st.floats(-50, 0), max_size=8)))
    parsed = task.parse(example, GenerateResponse(text, logprobs, Cost(0, 0, 0, 0.0)))
    assert parsed.status in ("ok", "parse_error")
    if parsed.status == "parse_error":
        assert parsed.label is None and parsed.error
        return
    assert isinstance(parsed.label, tuple)
    end = 0
    for span in parsed.label:
        assert isinstance(span, Span) and span.type in LABELS["ner"]
        assert end <= span.start < span.end <= len(tokens)
        end = span.end
    assert parsed.dropped >= 0
    assert parsed.confidence is None or 0.0 <= parsed.confidence <= 1.0


scores = st.floats(allow_nan=True, allow_infinity=True) | st.floats(-100, 0)


@PARSERS
@given(logprobs=st.lists(scores, max_size=4), baseline=st.none() | st.lists(scores, max_size=4))
def test_label_scoring_parser(logprobs: list[float], baseline: list[float] | None) -> None:
    task = task_for(ProjectSettings("classify", tuple(LabelInfo(name) for name in ("pos", "neg", "mixed"))))
    example = Example("e", "text")
    response = ScoreResponse(tuple(logprobs), Cost(0, 0, 0, 0.0), None if baseline is None else tuple(baseline))
    parsed = task.parse(example, response)
    usable = len(logprobs) == 3 and all(math.isfinite(x) for x in logprobs) and (
        baseline is None or (len(baseline) == 3 and all(math.isfinite(x) for x in baseline)))
    if not usable:
        assert (parsed.status, parsed.label, parsed.confidence) == ("parse_error", None, None)
        assert parsed.error
        return
    labels = ("pos", "neg", "mixed")
    assert parsed.status == "ok" and parsed.label in labels
    assert parsed.scores == dict(zip(labels, logprobs, strict=True))
    top = max(logprobs)
    probabilities = [math.exp(x - top) / sum(math.exp(y - top) for y in logprobs) for x in logprobs]
    assert parsed.confidence is not None and 1 / 3 - 1e-9 <= parsed.confidence <= 1.0
    assert math.isclose(parsed.confidence, max(probabilities), rel_tol=1e-9)
    assert math.isclose(probabilities[labels.index(parsed.label)], max(probabilities), rel_tol=1e-9)


# --- what the fuzzer found, kept as plain regression cases -------------------------------------------------------

FOUND_IMPORTS = [
    # (task, file name, content, line the error must name or None for a clean import, phrase)
    ("classify", "a.jsonl", '{"id": "r1", "text": "ok", "label": "pos"}\n{"id": "r2", "text": "x", "n": 1' + "0" * 5000
     + "}\n", 2, "invalid JSON (Exceeds the limit (4300 digits)"),
    ("classify", "a.jsonl", '{"id": "r1", "text": "ok", "label": "pos"}\n{"id": "r2", "text": "a\\ud800b", '
     '"label": "pos"}\n', 2, "half of a UTF-16 surrogate pair"),
    ("classify", "a.jsonl", '{"id": "r1", "text": "a pair \\ud83d\\ude00 is fine"}\n', None, ""),
    ("classify", "a.csv", "id,text,label\nr1,a short row\n", None, ""),
    ("classify", "a.csv", 'id,text,label\nr1,ok,pos\nr2,"never closed,pos\n', 3, "unexpected end of data"),
    ("classify", "a.csv", 'id,text,label\nr1,"quoted"then more,pos\n', 2, "',' expected after '\"'"),
    ("ner", "a.jsonl", '{"id": "r1", "tokens": ["Ann"], "tags": ["B-PER"]}\n{"id": "r2", "tokens": ["x"], '
     '"tags": ["B-O"]}\n', 2, "NER labels are entity types"),
    ("classify", "a.jsonl", '{"id": "r1", "text": "ok", "label": "pos\\n"}\n', 1, "is not allowed"),
]


@pytest.mark.parametrize(("task", "name", "content", "line", "phrase"), FOUND_IMPORTS,
                         ids=["huge-integer", "lone-surrogate", "surrogate-pair", "csv-short-row", "csv-open-quote",
                              "csv-text-after-quote", "ner-type-O", "label-with-newline"])
def test_found_import_cases(task: str, name: str, content: str, line: int | None, phrase: str) -> None:
    with fresh_project(task, labels=False) as (project, folder):
        path = folder / name
        path.write_bytes(content.encode("utf-8", "surrogatepass"))
        before = snapshot(project)
        if line is None:
            project.import_corpus(path)
            assert project.store.example_count() == 1
            return
        with pytest.raises(LlmaaaError) as caught:
            project.import_gold(path, "demo")
        assert str(caught.value).startswith(f"{path}:{line}: ") and phrase in str(caught.value), str(caught.value)
        assert snapshot(project) == before


def test_a_crlf_inside_a_quoted_csv_cell_is_kept() -> None:
    with fresh_project("classify") as (project, folder):
        path = folder / "a.csv"
        path.write_bytes(b'id,text\r\nr1,"two\r\nlines"\r\nr2,plain\r\n')
        project.import_corpus(path)
        assert {e.id: e.text for e in project.store.examples()} == {"r1": "two\r\nlines", "r2": "plain"}


@pytest.mark.parametrize(("text", "spans"), [
    ("[" * DEEP, None), ("[" * DEEP + "}", None), ("[1" + "0" * 5000 + "]", None),
    ('[{"span": "Ann", "type": "PER"}, ' + "[" * DEEP, (Span(0, 1, "PER"),)),  # the complete items are kept
], ids=["deep", "deep-brace", "long-number", "items-then-deep"])
def test_found_entity_outputs(text: str, spans: tuple[Span, ...] | None) -> None:
    task = task_for(ProjectSettings("ner", tuple(LabelInfo(name) for name in LABELS["ner"])))
    parsed = task.parse(ner_example(["Ann", "ran"]), GenerateResponse(text, (), Cost(0, 0, 0, 0.0)))
    assert parsed.label == spans
    assert parsed.status == ("ok" if spans else "parse_error") and parsed.error


@pytest.mark.parametrize(("logprobs", "baseline"), [((math.nan, -1.0), None), ((-math.inf, -math.inf), None),
                                                    ((math.inf, -1.0), None), ((-1.0, -2.0), (math.nan, -1.0)),
                                                    ((-1.0, -2.0), (-1.0,))])
def test_found_scores_are_parse_errors(logprobs: tuple[float, ...], baseline: tuple[float, ...] | None) -> None:
    task = task_for(ProjectSettings("classify", (LabelInfo("pos"), LabelInfo("neg"))))
    parsed = task.parse(Example("e", "t"), ScoreResponse(logprobs, Cost(0, 0, 0, 0.0), baseline))
    assert (parsed.status, parsed.label, parsed.confidence, parsed.scores) == ("parse_error", None, None, None)
