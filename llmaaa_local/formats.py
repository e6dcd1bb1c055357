"""Corpus files in and out (JSONL, CSV, CoNLL, LLMaAA relation JSONL), streamed; never touches the database."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Literal, cast

from .config import TaskName
from .errors import at
from .records import Example, Label, Mention, Span
from .spans import SpanError, align, char_to_token_span, check_spans, spans_to_tags, tags_to_spans, tokenize

Format = Literal["jsonl", "csv", "conll"]
FORMATS: dict[TaskName, tuple[Format, ...]] = {
    "classify": ("jsonl", "csv"),
    "ner": ("jsonl", "conll"),
    "re": ("jsonl",),
}
_SUFFIXES: dict[str, Format] = {
    ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv",
    ".conll": "conll", ".bio": "conll", ".tsv": "conll", ".txt": "conll",
}
# Spreadsheets run cells starting with these as formulas; exported CSV cells get a leading quote.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def suffix_format(path: Path) -> Format | None:
    """The format the file name implies (a .gz suffix aside), if any."""
    return _SUFFIXES.get(Path(path.name.lower().removesuffix(".gz")).suffix)


def detect_format(path: Path, task: TaskName, fmt: str | None = None) -> Format:
    """The explicit format, else the one the file name implies; it must suit the task."""
    chosen = fmt or suffix_format(path)
    if chosen is None:
        raise at(path, None, "cannot tell the file format from its name",
                 f"pass --format {'|'.join(FORMATS[task])}")
    if chosen not in FORMATS[task]:
        raise at(path, None, f"format {chosen!r} does not suit the {task} task",
                 f"use one of: {', '.join(FORMATS[task])}")
    return cast(Format, chosen)


def read_examples(path: Path, task: TaskName, fmt: str | None = None) -> Iterator[Example]:
    """Stream the examples of a corpus file; bad input raises LlmaaaError naming file:line."""
    chosen = detect_format(path, task, fmt)
    if chosen == "jsonl":
        build = _RECORD_BUILDERS[task]
        for line_no, record in read_json_lines(path):
            yield _build(build, record, path, line_no)
    elif chosen == "csv":
        yield from _read_csv(path)
    else:
        yield from _read_conll(path)


def read_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL file (.gz too)."""
    for line_no, text in _lines(path):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except (ValueError, RecursionError) as error:  # also nesting too deep, or an integer too long to read
            problem = str(error).split("; use sys.")[0]
            raise at(path, line_no, f"invalid JSON ({problem})", "each line must be one JSON object") from None
        if not isinstance(record, dict):
            raise at(path, line_no, f"expected a JSON object, found {type(record).__name__}")
        if _SURROGATE_ESCAPE.search(text) and (half := _lone_surrogate(record)):
            raise at(path, line_no, f"the escape {half!r} is half of a UTF-16 surrogate pair and cannot be stored",
                     "write the character itself, or both halves of the pair")
        yield line_no, record


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _lone_surrogate(record: dict[str, Any]) -> str:
    """The first unpaired surrogate a JSON escape put into the record (json.loads joins proper pairs), or ""."""
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as error:
        return str(error.object[error.start : error.end])
    return ""


# --- reading helpers -------------------------------------------------------------------------------------------


def _open_binary(path: Path) -> IO[bytes]:
    try:
        handle: IO[bytes] = open(path, "rb")  # noqa: SIM115 - returned to the caller, closed there
    except OSError as error:
        raise at(path, None, f"cannot read the file ({error.strerror})") from None
    if path.name.endswith(".gz"):
        return cast(IO[bytes], gzip.GzipFile(fileobj=handle))
    return handle


def _lines(path: Path, keep_ends: bool = False) -> Iterator[tuple[int, str]]:
    """(line number, decoded line) with strict UTF-8; a byte-order mark at the start is dropped. Line ends are cut
    unless `keep_ends` (the CSV reader needs them: a quoted cell keeps its CRLF)."""
    with _open_binary(path) as handle:
        line_no = 0
        try:
            for raw in handle:
                line_no += 1
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise at(path, line_no, f"invalid UTF-8 at byte {error.start} of the line",
                             "re-save the file as UTF-8") from None
                if line_no == 1:
                    text = text.removeprefix("\ufeff")
                yield line_no, text if keep_ends else text.rstrip("\r\n")
        except (OSError, EOFError, zlib.error) as error:
            raise at(path, line_no + 1, f"cannot read the file ({error})") from None


def build_example(task: TaskName, record: dict[str, Any], path: Path, line_no: int, where: str = "") -> Example:
    """An example from a record in the JSONL shape (other tools' files are turned into it); bad records raise
    LlmaaaError naming the file and the line, or `where` ("task 3") for files without lines."""
    return _build(_RECORD_BUILDERS[task], record, path, line_no, where)


def _build(build: Callable[[dict[str, Any]], Example], record: dict[str, Any], path: Path, line_no: int,
           where: str = "") -> Example:
    try:
        example = build(record)
    except (SpanError, _RecordError) as error:
        rid = record.get("id")
        label = f"record {rid!r}: " if isinstance(rid, (str, int)) else ""
        raise at(path, where or line_no, f"{label}{error}") from None
    return replace(example, source_file=str(path), source_line=line_no, source_record=where)


class _RecordError(ValueError):
    """A record is missing a field or has one of the wrong type."""


def _field(record: dict[str, Any], name: str, kind: type | tuple[type, ...], required: bool = True) -> Any:
    value = record.get(name)
    if value is None:
        if required:
            raise _RecordError(f"missing field {name!r}")
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _RecordError(f"field {name!r} must be {names}, found {type(value).__name__}")
    return value


def _record_id(record: dict[str, Any]) -> str:
    value = _field(record, "id", (str, int))
    text = str(value)
    if not text.strip():
        raise _RecordError("field 'id' is empty")
    return text


def _text(value: str) -> str:
    if not value.strip():
        raise _RecordError("the text is empty")
    return value


def _tokens(record: dict[str, Any]) -> tuple[str, ...]:
    tokens = _field(record, "tokens", list)
    if not tokens:
        raise _RecordError("field 'tokens' is empty")
    for index, token in enumerate(tokens):
        if not isinstance(token, str) or not token or any(ch.isspace() for ch in token):
            raise _RecordError(f"token {index} {token!r} must be a non-empty string without spaces")
    return tuple(tokens)


def _tokens_and_offsets(record: dict[str, Any]) -> tuple[str, tuple[str, ...], tuple[tuple[int, int], ...]]:
    """Tokens with their character offsets into `text` (given, else the tokens joined by spaces)."""
    tokens = _tokens(record)
    text = _field(record, "text", str, required=False)
    if text is None:
        text = " ".join(tokens)
    return text, tokens, tuple(align(tokens, text))


def _classify_record(record: dict[str, Any]) -> Example:
    label = _field(record, "label", str, required=False)
    return Example(id=_record_id(record), text=_text(_field(record, "text", str)), label=label)


def _ner_record(record: dict[str, Any]) -> Example:
    example_id = _record_id(record)
    if "tokens" in record:
        text, tokens, offsets = _tokens_and_offsets(record)
        tags = _field(record, "tags", list, required=False)
        label: Label | None = None
        if tags is not None:
            if len(tags) != len(tokens):
                raise _RecordError(f"{len(tags)} tags for {len(tokens)} tokens: give one tag per token")
            label = tags_to_spans(tags)
        elif (raw := _field(record, "spans", list, required=False)) is not None:  # character spans on given tokens
            label = _token_spans([_char_span(item, text) for item in raw], offsets, text)
        return Example(id=example_id, text=text, tokens=tokens, offsets=offsets, label=label)
    text = _text(_field(record, "text", str))
    raw_spans = _field(record, "spans", list, required=False)
    char_spans = [_char_span(item, text) for item in raw_spans or []]
    offsets = tuple(tokenize(text, [bound for s, e, _ in char_spans for bound in (s, e)]))
    if not offsets:
        raise _RecordError("the text has no tokens")
    label = _token_spans(char_spans, offsets, text)
    tokens = tuple(text[s:e] for s, e in offsets)
    return Example(id=example_id, text=text, tokens=tokens, offsets=offsets,
                   label=label if raw_spans is not None else None)


def _token_spans(char_spans: list[tuple[int, int, str]], offsets: tuple[tuple[int, int], ...], text: str,
                 ) -> tuple[Span, ...]:
    """Character spans as token spans; each must start and end on token boundaries."""
    spans = []
    for start, end, kind in char_spans:
        token_range = char_to_token_span(offsets, start, end)
        if token_range is None:
            raise _RecordError(f"span [{start}, {end}) {text[start:end]!r} ({kind}) starts or ends inside a token: "
                               "mark whole tokens")
        spans.append(Span(token_range[0], token_range[1], kind))
    check_spans(spans, len(offsets))
    return tuple(sorted(spans))


def _char_span(item: Any, text: str) -> tuple[int, int, str]:
    """A character span {"start", "end", "type"}, trimmed of surrounding whitespace."""
    if not isinstance(item, dict):
        raise _RecordError(f"span {item!r} must be an object with start, end and type")
    start, end, kind = (_field(item, key, kind) for key, kind in (("start", int), ("end", int), ("type", str)))
    if not 0 <= start < end <= len(text):
        raise _RecordError(f"span [{start}, {end}) lies outside the text of {len(text)} characters")
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start == end:
        raise _RecordError(f"span of type {kind!r} covers only whitespace")
    return start, end, kind


def _mention(record: dict[str, Any], key: str, tokens: tuple[str, ...]) -> Mention:
    value = _field(record, key, dict)
    pos = _field(value, "pos", list)
    if len(pos) != 2 or not all(isinstance(p, int) and not isinstance(p, bool) for p in pos):
        raise _RecordError(f"{key}.pos must be [start, end] token offsets")
    start, end = pos
    if not 0 <= start < end <= len(tokens):
        raise _RecordError(f"{key}.pos {pos} lies outside the {len(tokens)} tokens (offsets are end-exclusive)")
    name = _field(value, "name", str, required=False)
    joined = " ".join(tokens[start:end])
    if name is not None and name != joined:
        raise _RecordError(f"{key}.name {name!r} does not match tokens {pos}: {joined!r} (are offsets end-exclusive?)")
    return Mention(joined, start, end)


def _re_record(record: dict[str, Any]) -> Example:
    example_id = _record_id(record)
    text, tokens, offsets = _tokens_and_offsets(record)
    head, tail = _mention(record, "h", tokens), _mention(record, "t", tokens)
    if head.start < tail.end and tail.start < head.end:
        raise _RecordError(f"head {[head.start, head.end]} and tail {[tail.start, tail.end]} overlap")
    label = _field(record, "label", str, required=False)
    return Example(id=example_id, text=text, tokens=tokens, offsets=offsets, head=head, tail=tail, label=label)


_RECORD_BUILDERS: dict[TaskName, Callable[[dict[str, Any]], Example]] = {
    "classify": _classify_record,
    "ner": _ner_record,
    "re": _re_record,
}


def _read_csv(path: Path) -> Iterator[Example]:
    lines = _lines(path, keep_ends=True)
    line_numbers: list[int] = []

    def physical() -> Iterator[str]:
        for line_no, text in lines:
            line_numbers.append(line_no)
            yield text

    # strict: a quote left open at the end of the file, or text after a closing quote, is an error, not a silently
    # merged cell
    reader = csv.DictReader(physical(), strict=True)
    try:
        header = reader.fieldnames
    except csv.Error as error:
        raise at(path, 1, f"invalid CSV header ({error})") from None
    if not header or "id" not in header or "text" not in header:
        raise at(path, 1, f"the CSV header {header} lacks an 'id' or 'text' column",
                 "the first row must name the columns: id,text[,label]")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise at(path, line_numbers[-1], f"invalid CSV ({error})") from None
        start_line = line_numbers[-1] - (row_lines(row) - 1)
        if None in row:
            raise at(path, start_line, f"row has {len(header) + len(row[None])} cells for {len(header)} columns")
        # a short row leaves its last cells None: missing, like empty cells
        record = {key: (_uncell(value) if value else None) for key, value in row.items()}
        yield _build(_classify_record, record, path, start_line)


def row_lines(row: dict[str | None, Any]) -> int:
    """How many physical lines a parsed CSV row spanned (quoted cells may hold newlines)."""
    return 1 + sum(value.count("\n") for value in row.values() if isinstance(value, str))


def _read_conll(path: Path) -> Iterator[Example]:
    """Token<TAB>tag lines (other columns allowed, tag last), blank line between sentences.

    Sentence ids are `<file name without .gz/.conll/...>-00001`, or the `# id = X` header our export writes.
    """
    stem = _conll_stem(path.name)
    rows: list[list[str]] = []
    start_line = 0
    index = 0
    header_id: str | None = None
    for line_no, text in [*_lines(path), (-1, "")]:
        columns = text.split("\t") if "\t" in text else text.split()
        if text.startswith("# id = ") and "\t" not in text:
            header_id = text.removeprefix("# id = ").split("  ")[0].strip()
            continue
        if columns and columns[0] == "-DOCSTART-":
            continue
        if columns:
            if not rows:
                start_line = line_no
            rows.append(columns)
            continue
        if not rows:
            continue
        index += 1
        widths = {len(row) for row in rows}
        if len(widths) != 1:
            raise at(path, start_line, "the sentence mixes lines with and without tags",
                     "every line must be token<TAB>tag, or every line only the token")
        tokens = [row[0] for row in rows]
        record: dict[str, Any] = {"id": header_id or f"{stem}-{index:05d}", "tokens": tokens}
        header_id = None
        if widths != {1}:
            record["tags"] = [row[-1] for row in rows]
        yield _build(_ner_record, record, path, start_line)
        rows = []


def _conll_stem(name: str) -> str:
    name = name.removesuffix(".gz")
    for suffix in (".conll", ".bio", ".tsv", ".txt", ".iob"):
        name = name.removesuffix(suffix)
    return name


# --- writing ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabeledRow:
    """An example with the label chosen for export and where that label came from."""

    example: Example
    label: Label
    source: str
    confidence: float | None
    probabilities: dict[str, float] | None = None  # per label, where the source gives them (the student)


def write_labeled(path: Path, task: TaskName, rows: Iterable[LabeledRow], fmt: str | None = None) -> int:
    """Write labeled examples in a format the importers read back; returns the count written."""
    chosen = detect_format(path, task, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.name.endswith(".gz") else open
    count = 0
    partial = path.with_name(path.name + ".partial")  # renamed over `path` only when complete
    try:
        with opener(partial, "wt", encoding="utf-8", newline="") as raw:  # type: ignore[operator]
            handle = cast(io.TextIOBase, raw)
            writer = csv.writer(handle) if chosen == "csv" else None
            if writer is not None:
                writer.writerow(["id", "text", "label", "label_source", "confidence"])
            for row in rows:
                count += 1
                if writer is not None:
                    writer.writerow([_cell(row.example.id), _cell(row.example.text), _cell(str(row.label)),
                                     row.source, _confidence(row.confidence)])
                elif chosen == "conll":
                    handle.write(_conll_block(row))
                else:
                    handle.write(json.dumps(_json_record(task, row), ensure_ascii=False) + "\n")
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)  # a failed export (a full disk) leaves no half-written file behind
        raise
    partial.replace(path)
    return count


def _cell(value: str) -> str:
    """Keep spreadsheets from running a cell as a formula: a leading apostrophe, which `_uncell` removes. A value
    whose apostrophes already stand before a formula character gets one more, so it reads back unchanged."""
    return "'" + value if value.lstrip("'").startswith(_FORMULA_PREFIXES) else value


def _uncell(value: str) -> str:
    return value[1:] if value.startswith("'") and value.lstrip("'").startswith(_FORMULA_PREFIXES) else value


def _confidence(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _json_record(task: TaskName, row: LabeledRow) -> dict[str, Any]:
    example = row.example
    record: dict[str, Any] = {"id": example.id, "text": example.text}
    if task == "ner":
        assert example.tokens is not None and example.offsets is not None and not isinstance(row.label, str)
        record["tokens"] = list(example.tokens)
        record["tags"] = spans_to_tags(row.label, len(example.tokens))
        record["spans"] = [
            {"start": example.offsets[s.start][0], "end": example.offsets[s.end - 1][1], "type": s.type,
             "text": example.text[example.offsets[s.start][0] : example.offsets[s.end - 1][1]]}
            for s in row.label
        ]
    elif task == "re":
        assert example.tokens is not None and example.head is not None and example.tail is not None
        record.update(tokens=list(example.tokens), h=example.head.to_json(), t=example.tail.to_json(),
                      label=row.label)
    else:
        record["label"] = row.label
    record["label_source"] = row.source
    record["confidence"] = None if row.confidence is None else round(row.confidence, 4)
    if row.probabilities is not None:
        record["probabilities"] = {label: round(p, 4) for label, p in row.probabilities.items()}
    return record


def _conll_block(row: LabeledRow) -> str:
    example = row.example
    assert example.tokens is not None and not isinstance(row.label, str)
    tags = spans_to_tags(row.label, len(example.tokens))
    confidence = "" if row.confidence is None else f"  confidence = {row.confidence:.4f}"
    header = f"# id = {example.id}  label_source = {row.source}{confidence}\n"
    body = "".join(f"{token}\t{tag}\n" for token, tag in zip(example.tokens, tags, strict=True))
    return header + body + "\n"
