"""Other tools' files in and out: Label Studio tasks, Prodigy JSONL, spaCy DocBin, Hugging Face datasets and Parquet.

Records are turned into the shapes `formats` reads, so every check and file:record error is the one the project's
own files get; never touches the database. spaCy and datasets are imported here only, and only when asked.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, cast, get_args
from xml.sax.saxutils import quoteattr

from .config import ProjectSettings, TaskName
from .errors import LlmaaaError, at
from .formats import FORMATS, LabeledRow, build_example, read_json_lines, suffix_format, write_labeled
from .formats import read_examples as read_own
from .records import Example, Label
from .spans import align, char_to_token_span, spans_to_tags, tokenize

ForeignFormat = Literal["label-studio", "prodigy", "spacy", "hf", "parquet"]
FOREIGN_FORMATS: tuple[ForeignFormat, ...] = get_args(ForeignFormat)
# Every format export-labels writes / import reads, the project's own first.
EXPORT_FORMATS: tuple[str, ...] = ("jsonl", "csv", "conll", *FOREIGN_FORMATS)
IMPORT_FORMATS: tuple[str, ...] = tuple(name for name in EXPORT_FORMATS if name != "spacy")
FOREIGN: dict[TaskName, tuple[ForeignFormat, ...]] = {
    "classify": ("label-studio", "spacy", "hf", "parquet"),
    "ner": ("label-studio", "prodigy", "spacy", "hf", "parquet"),
    "re": ("label-studio", "hf", "parquet"),
}
_SUFFIXES: dict[str, ForeignFormat] = {".parquet": "parquet", ".spacy": "spacy"}
EXTRAS = {"spacy": "spacy", "datasets": "hf"}  # module -> the llmaaa-local extra that installs it
# Label Studio: the names the labeling config gives its tags, and the regions of a relation's two arguments.
LS_TEXT, LS_LABEL, LS_HEAD, LS_TAIL = "text", "label", "head", "tail"


@dataclass(frozen=True)
class LabelSet:
    """An example with every label an export may carry, in source priority order (gold, llm, student)."""

    example: Example
    rows: tuple[LabeledRow, ...]


@dataclass
class ReadCounts:
    """What a reader left out: records another tool marks as not done (a gold import skips them)."""

    skipped: int = 0


def choose_format(path: Path, task: TaskName, fmt: str | None, *, reading: bool) -> str:
    """The format given, else the one the name implies (.parquet, .spacy, a dataset folder, a .json array of Label
    Studio tasks, the project's own suffixes); it must suit the task."""
    suited = [name for name in (IMPORT_FORMATS if reading else EXPORT_FORMATS)
              if name in FORMATS[task] or name in FOREIGN[task]]
    chosen = fmt or _SUFFIXES.get(path.suffix.lower())
    if chosen is None and reading and path.is_dir():
        chosen = "hf"
    if chosen is None and reading and path.suffix.lower() == ".json" and _json_array(path):
        chosen = "label-studio"
    chosen = chosen or suffix_format(path)
    if chosen is None:
        raise at(path, None, "cannot tell the file format from its name", f"pass --format {'|'.join(suited)}")
    if chosen not in (IMPORT_FORMATS if reading else EXPORT_FORMATS):
        raise at(path, None, f"format {chosen!r} is written, not read" if reading else f"cannot write {chosen!r}",
                 f"use one of: {', '.join(suited)}")
    if chosen not in suited:
        raise at(path, None, f"format {chosen!r} does not suit the {task} task", f"use one of: {', '.join(suited)}")
    return chosen


def _json_array(path: Path) -> bool:
    """A .json file that holds an array (Label Studio's JSON export), not JSON lines."""
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        return handle.read(64).decode("utf-8", "replace").lstrip("\ufeff \t\r\n").startswith("[")
    return False


# --- reading ---------------------------------------------------------------------------------------------------


def read_examples(path: Path, settings: ProjectSettings, fmt: str | None = None, gold: bool = False,
                  counts: ReadCounts | None = None) -> Iterator[Example]:
    """Examples of any importable file; for a gold import, records the tool marks as not done are skipped (and
    counted in `counts`)."""
    chosen = choose_format(path, settings.task, fmt, reading=True)
    counts = counts if counts is not None else ReadCounts()
    if chosen == "label-studio":
        yield from _read_label_studio(path, settings, gold, counts)
    elif chosen == "prodigy":
        yield from _read_prodigy(path, gold, counts)
    elif chosen in ("hf", "parquet"):
        yield from _read_dataset(path, chosen, settings)
    else:
        yield from read_own(path, settings.task, chosen)


class _Unfit(ValueError):
    """A record of another tool that has no place in the project; the message says why."""


def _read_label_studio(path: Path, settings: ProjectSettings, gold: bool, counts: ReadCounts) -> Iterator[Example]:
    try:
        tasks = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as error:
        raise at(path, None, f"cannot read the file ({error.strerror})") from None
    except (ValueError, RecursionError) as error:
        raise at(path, None, f"invalid JSON ({error})", "give Label Studio's JSON export (a list of tasks)") from None
    if not isinstance(tasks, list):
        raise at(path, None, f"expected a list of Label Studio tasks, found {type(tasks).__name__}",
                 "export the project from Label Studio as JSON")
    for number, task in enumerate(tasks, 1):
        where = f"task {number}"
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict):
            raise at(path, where, "a Label Studio task must be an object with a 'data' object")
        if not isinstance(data.get(LS_TEXT), str):
            raise at(path, where, f"the task's data has no {LS_TEXT!r} string (it has {sorted(data)})",
                     "the labeling config must show the text as <Text name=\"text\" value=\"$text\"/>")
        example_id = data.get("id", task.get("id"))
        record: dict[str, Any] = {"id": example_id, "text": data[LS_TEXT]}
        if settings.task != "classify" and isinstance(data.get("tokens"), list):
            record["tokens"] = data["tokens"]
        result = _human_result(path, where, task)
        if result is None and gold:
            counts.skipped += 1
            continue
        try:
            record.update(_LS_READERS[settings.task](result, record, data, settings))
        except _Unfit as error:
            raise at(path, where, f"record {example_id!r}: {error}") from None
        yield build_example(settings.task, record, path, number, where)


def _human_result(path: Path, where: str, task: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The result of the task's newest annotation that was not skipped, or None."""
    annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    if not annotations:
        return None
    result = annotations[-1].get("result")
    if not isinstance(result, list) or not all(isinstance(item, dict) for item in result):
        raise at(path, where, "the annotation's 'result' must be a list of objects")
    return result


def _ls_choice(result: list[dict[str, Any]] | None, record: dict[str, Any], data: dict[str, Any],
               settings: ProjectSettings) -> dict[str, Any]:
    if result is None:
        return {}
    choices = [choice for item in result if item.get("type") == "choices"
               for choice in (item.get("value") or {}).get("choices") or []]
    if len(choices) > 1:
        raise _Unfit(f"{len(choices)} choices {choices}: give each text one label")
    return {"label": choices[0]} if choices else {}


def _ls_spans(result: list[dict[str, Any]] | None, record: dict[str, Any], data: dict[str, Any],
              settings: ProjectSettings) -> dict[str, Any]:
    if result is None:
        return {}
    return {"spans": [{"start": start, "end": end, "type": kind}
                      for start, end, kind in _ls_regions(result, record["text"]).values()]}


def _ls_relation(result: list[dict[str, Any]] | None, record: dict[str, Any], data: dict[str, Any],
                 settings: ProjectSettings) -> dict[str, Any]:
    """Head, tail and label: the relation drawn (from head to tail), else the regions named head and tail with the
    no-relation label, else the pair our export put in the task's data."""
    regions = _ls_regions(result or [], record["text"])
    relations = [item for item in result or [] if item.get("type") == "relation"]
    if len(relations) > 1:
        raise _Unfit(f"{len(relations)} relations are drawn: give each pair one relation")
    label: str | None = None
    pair: tuple[tuple[int, int, str], tuple[int, int, str]] | None = None
    if relations:
        relation = relations[0]
        ends = regions.get(relation.get("from_id")), regions.get(relation.get("to_id"))
        if ends[0] is None or ends[1] is None:
            raise _Unfit("the relation joins regions the result does not hold")
        direction = relation.get("direction", "right")
        if direction not in ("right", "left"):
            raise _Unfit(f"the relation's direction is {direction!r}: draw it from the head to the tail")
        pair = (ends[0], ends[1]) if direction == "right" else (ends[1], ends[0])
        names = relation.get("labels") or []
        if len(names) != 1 or not isinstance(names[0], str):
            raise _Unfit(f"the relation has labels {names}: give it exactly one")
        label = names[0]
    elif result is not None:
        if settings.no_relation is None:
            raise _Unfit("no relation is drawn and the project has no no-relation label: draw one")
        label = settings.no_relation
        named = {kind: (s, e, kind) for s, e, kind in regions.values() if kind in (LS_HEAD, LS_TAIL)}
        if len(named) == 2:
            pair = (named[LS_HEAD], named[LS_TAIL])
    if pair is None:
        if not (isinstance(data.get("h"), dict) and isinstance(data.get("t"), dict)):
            raise _Unfit("cannot tell the head and tail: draw a relation from the head region to the tail region")
        return {"h": data["h"], "t": data["t"], **({"label": label} if label is not None else {})}
    text = record["text"]
    if "tokens" in record:
        offsets = _aligned(record["tokens"], text)
    else:
        offsets = tokenize(text, [bound for start, end, _ in pair for bound in (start, end)])
        record["tokens"] = [text[s:e] for s, e in offsets]
    head, tail = (_token_pos(offsets, start, end, text) for start, end, _ in pair)
    return {"h": {"pos": head}, "t": {"pos": tail}, **({"label": label} if label is not None else {})}


def _ls_regions(result: list[dict[str, Any]], text: str) -> dict[Any, tuple[int, int, str]]:
    """Region id -> (start, end, label) of every labeled text span, offsets checked against the region's text."""
    regions: dict[Any, tuple[int, int, str]] = {}
    for index, item in enumerate(result):
        if item.get("type") != "labels":
            continue
        value = item.get("value") or {}
        start, end, names = value.get("start"), value.get("end"), value.get("labels") or []
        if not (isinstance(start, int) and isinstance(end, int)):
            raise _Unfit(f"region {index} has no integer start and end (only text spans can be imported)")
        if len(names) != 1 or not isinstance(names[0], str):
            raise _Unfit(f"region [{start}, {end}) has labels {names}: give each region one label")
        start, end = _code_points(text, start, end, value.get("text"))
        regions[item.get("id", index)] = (start, end, names[0])
    return regions


def _code_points(text: str, start: int, end: int, shown: Any) -> tuple[int, int]:
    """Python offsets (code points) of a region. Label Studio writes code points; older versions counted the
    browser's UTF-16 units, which differ after a character beyond U+FFFF (HumanSignal/label-studio#1347)."""
    if not isinstance(shown, str) or text[start:end] == shown:
        return start, end
    units = text.encode("utf-16-le")
    converted = (len(units[: 2 * start].decode("utf-16-le", "ignore")),
                 len(units[: 2 * end].decode("utf-16-le", "ignore")))
    if text[converted[0] : converted[1]] == shown:
        return converted
    raise _Unfit(f"region [{start}, {end}) says {shown!r} but the text there is {text[start:end]!r}")


def _aligned(tokens: Any, text: str) -> list[tuple[int, int]]:
    if not (isinstance(tokens, list) and all(isinstance(token, str) for token in tokens)):
        raise _Unfit("the task's data 'tokens' must be a list of strings")
    try:
        return align(tokens, text)
    except ValueError as error:
        raise _Unfit(f"the task's tokens do not match its text: {error}") from None


def _token_pos(offsets: list[tuple[int, int]], start: int, end: int, text: str) -> list[int]:
    token_range = char_to_token_span(offsets, start, end)
    if token_range is None:
        raise _Unfit(f"region [{start}, {end}) {text[start:end]!r} starts or ends inside a token: mark whole tokens")
    return list(token_range)


_LS_READERS: dict[TaskName, Callable[[list[dict[str, Any]] | None, dict[str, Any], dict[str, Any], ProjectSettings],
                                     dict[str, Any]]] = {
    "classify": _ls_choice, "ner": _ls_spans, "re": _ls_relation,
}


def _read_prodigy(path: Path, gold: bool, counts: ReadCounts) -> Iterator[Example]:
    """Prodigy NER JSONL: text, tokens with character offsets, spans with a label; rejected and ignored answers are
    not gold."""
    stem = path.name.split(".")[0]
    for line_no, record in read_json_lines(path):
        answer = record.get("answer", "accept")
        if answer != "accept" and gold:
            counts.skipped += 1
            continue
        meta: dict[str, Any] = record["meta"] if isinstance(record.get("meta"), dict) else {}
        example_id = meta.get("id", record.get("id", record.get("_input_hash", f"{stem}-{line_no:05d}")))
        text = record.get("text")
        built: dict[str, Any] = {"id": example_id, "text": text}
        if isinstance(text, str) and isinstance(record.get("tokens"), list):
            try:
                built["tokens"] = _prodigy_tokens(record["tokens"], text)
            except _Unfit as error:
                raise at(path, line_no, f"record {example_id!r}: {error}") from None
        spans = record.get("spans")
        if isinstance(spans, list) and answer == "accept":
            built["spans"] = [{"start": s.get("start"), "end": s.get("end"), "type": s.get("label")}
                              if isinstance(s, dict) else s for s in spans]
        yield build_example("ner", built, path, line_no)


def _prodigy_tokens(tokens: list[Any], text: str) -> list[str]:
    """The words of Prodigy's tokens, checked against the text (spaCy's whitespace tokens left out)."""
    words = []
    for index, token in enumerate(tokens):
        start, end, word = (token.get(key) for key in ("start", "end", "text")) if isinstance(token, dict) else [0] * 3
        if not (isinstance(start, int) and isinstance(end, int) and isinstance(word, str)) or text[start:end] != word:
            raise _Unfit(f"token {index} {token!r} does not match the text at its start and end")
        if word.strip():
            words.append(word)
    return words


def _read_dataset(path: Path, fmt: str, settings: ProjectSettings) -> Iterator[Example]:
    """Rows of a saved Hugging Face dataset or a Parquet file; ClassLabel ids are read as their names."""
    datasets = _need("datasets")
    if fmt == "hf":
        try:
            loaded = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as error:
            raise at(path, None, f"not a saved Hugging Face dataset ({error})",
                     "give a folder written by Dataset.save_to_disk") from None
        if isinstance(loaded, datasets.DatasetDict):
            raise at(path, None, f"the folder holds the splits {', '.join(loaded)}",
                     f"import one of them, e.g. {path / next(iter(loaded))}")
        features, rows = loaded.features, iter(loaded)
    else:
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except (OSError, ValueError) as error:
            raise at(path, None, f"not a Parquet file ({error})") from None
        features = datasets.Features.from_arrow_schema(parquet.schema_arrow)
        rows = (row for batch in parquet.iter_batches() for row in batch.to_pylist())
    needed = {"classify": ("text",), "ner": ("tokens",), "re": ("tokens", "h", "t")}[settings.task]
    missing = [name for name in needed if name not in features]
    if missing:
        raise at(path, None, f"no {', '.join(repr(m) for m in missing)} column (the columns: {', '.join(features)})",
                 "rename them with Dataset.rename_column")
    tag_column = next((name for name in ("ner_tags", "tags") if name in features), None)
    stem = path.name.split(".")[0]
    for number, row in enumerate(rows, 1):
        record = {key: _decode(features[key], value) for key, value in row.items()}
        record.setdefault("id", f"{stem}-{number:05d}")
        if tag_column is not None:
            record["tags"] = record.pop(tag_column)
        label = record.get("label")
        if isinstance(label, int) and not isinstance(label, bool):
            raise at(path, f"row {number}", f"label {label} is a number and the dataset's features name no labels",
                     "cast the column to a ClassLabel, or store the label names")
        yield build_example(settings.task, record, path, number, f"row {number}")


def _decode(feature: Any, value: Any) -> Any:
    """ClassLabel ids as names, in lists too."""
    if hasattr(feature, "int2str") and isinstance(value, int) and not isinstance(value, bool):
        return feature.int2str(value)
    inner = getattr(feature, "feature", None)
    if inner is not None and isinstance(value, list):
        return [_decode(inner, item) for item in value]
    return value


def _need(module: str) -> ModuleType:
    import importlib

    try:
        found = importlib.import_module(module)
    except ImportError:
        raise LlmaaaError(f"this format needs {module}: pip install 'llmaaa-local[{EXTRAS[module]}]'") from None
    if module == "datasets":
        found.disable_progress_bars()  # the command prints its own summary
    return found


# --- writing ---------------------------------------------------------------------------------------------------


def write(path: Path, settings: ProjectSettings, items: Iterable[LabelSet], fmt: str | None = None) -> int:
    """Write labeled examples in any export format; returns how many were written. Label Studio gets every label
    (gold as annotations, LLM and student as predictions) and a labeling config beside the tasks; the others the
    first label in source order."""
    chosen = choose_format(path, settings.task, fmt, reading=False)
    if chosen not in FOREIGN_FORMATS:
        return write_labeled(path, settings.task, (item.rows[0] for item in items), chosen)
    written = 0

    def counted() -> Iterator[LabelSet]:
        nonlocal written
        for item in items:
            written += 1
            yield item

    if chosen == "label-studio":
        _write_text(path, _label_studio_json(counted(), settings))
        _write_text(label_config_path(path), [label_config(settings)])
    elif chosen == "prodigy":
        _write_text(path, (json.dumps(_prodigy_record(item.rows[0]), ensure_ascii=False) + "\n" for item in counted()))
    elif chosen == "spacy":
        _write_spacy(path, settings, counted())
    else:
        _write_dataset(path, cast(Literal["hf", "parquet"], chosen), settings, counted())
    return written


def label_config_path(path: Path) -> Path:
    """Where the Label Studio labeling config of an export goes: beside it."""
    return path.with_name(path.name.split(".")[0] + ".label_config.xml")


def _write_text(path: Path, chunks: Iterable[str]) -> None:
    def write_to(partial: Path) -> None:
        with open(partial, "w", encoding="utf-8") as handle:
            handle.writelines(chunks)

    _replace(path, write_to)


def label_config(settings: ProjectSettings) -> str:
    """The Label Studio labeling config the exported tasks fit: choices, entity labels, or a relation between the
    head and tail regions; label descriptions (the LLM's) show to the reviewer as hints."""
    hints = {label.name: label.description for label in settings.labels}

    def tags(tag: str, names: Iterable[str], hinted: bool = True) -> str:
        return "".join(f"\n    <{tag} value={quoteattr(name)}"
                       f"{f' hint={quoteattr(hints[name])}' if hinted and hints.get(name) else ''}/>" for name in names)

    text = f'  <Text name="{LS_TEXT}" value="${LS_TEXT}"/>'
    labels = f'  <Labels name="{LS_LABEL}" toName="{LS_TEXT}">'
    if settings.task == "classify":
        body = (f'{text}\n  <Choices name="{LS_LABEL}" toName="{LS_TEXT}" choice="single" showInline="true">'
                f"{tags('Choice', settings.label_names)}\n  </Choices>")
    elif settings.task == "ner":
        body = f"{labels}{tags('Label', settings.label_names)}\n  </Labels>\n{text}"
    else:
        body = (f"  <Relations>{tags('Relation', settings.label_names, hinted=False)}\n  </Relations>\n"
                f"{labels}{tags('Label', (LS_HEAD, LS_TAIL))}\n  </Labels>\n{text}")
    return f"<View>\n{body}\n</View>\n"


def _label_studio_json(items: Iterable[LabelSet], settings: ProjectSettings) -> Iterator[str]:
    """A JSON array of tasks, one chunk per task."""
    first = True
    for item in items:
        yield ("[\n" if first else ",\n") + json.dumps(label_studio_task(item, settings), ensure_ascii=False)
        first = False
    yield "[]\n" if first else "\n]\n"


def label_studio_task(item: LabelSet, settings: ProjectSettings) -> dict[str, Any]:
    example = item.example
    data: dict[str, Any] = {"id": example.id, LS_TEXT: example.text}
    if settings.task != "classify":
        assert example.tokens is not None
        data["tokens"] = list(example.tokens)  # the project's tokens: a re-import gets the same example back
    if settings.task == "re":
        assert example.head is not None and example.tail is not None
        data.update(h=example.head.to_json(), t=example.tail.to_json())
    task: dict[str, Any] = {"data": data}
    for number, row in enumerate(item.rows):
        result = _ls_result(example, row.label, settings, f"r{number}")
        if row.source == "gold":
            task.setdefault("annotations", []).append({"result": result, "ground_truth": True})
        else:
            prediction: dict[str, Any] = {"model_version": row.source, "result": result}
            if row.confidence is not None:
                prediction["score"] = round(row.confidence, 4)
            task.setdefault("predictions", []).append(prediction)
    return task


def _ls_result(example: Example, label: Label, settings: ProjectSettings, prefix: str) -> list[dict[str, Any]]:
    common = {"from_name": LS_LABEL, "to_name": LS_TEXT}
    if settings.task == "classify":
        return [{"id": prefix, **common, "type": "choices", "value": {"choices": [label]}}]
    offsets = example.offsets
    assert offsets is not None

    def region(region_id: str, start: int, end: int, name: str) -> dict[str, Any]:
        first, last = offsets[start][0], offsets[end - 1][1]
        return {"id": region_id, **common, "type": "labels",
                "value": {"start": first, "end": last, "text": example.text[first:last], "labels": [name]}}

    if settings.task == "ner":
        assert not isinstance(label, str)
        return [region(f"{prefix}e{i}", span.start, span.end, span.type) for i, span in enumerate(label)]
    assert example.head is not None and example.tail is not None and isinstance(label, str)
    head, tail = f"{prefix}h", f"{prefix}t"
    return [region(head, example.head.start, example.head.end, LS_HEAD),
            region(tail, example.tail.start, example.tail.end, LS_TAIL),
            {"from_id": head, "to_id": tail, "type": "relation", "direction": "right", "labels": [label]}]


def _prodigy_record(row: LabeledRow) -> dict[str, Any]:
    example = row.example
    assert example.tokens is not None and example.offsets is not None and not isinstance(row.label, str)
    text, offsets = example.text, example.offsets
    tokens = [{"text": token, "start": start, "end": end, "id": index, "ws": text[end:end + 1].isspace()}
              for index, (token, (start, end)) in enumerate(zip(example.tokens, offsets, strict=True))]
    spans = [{"start": offsets[s.start][0], "end": offsets[s.end - 1][1], "token_start": s.start,
              "token_end": s.end - 1, "label": s.type} for s in row.label]
    meta: dict[str, Any] = {"id": example.id, "label_source": row.source}
    if row.confidence is not None:
        meta["confidence"] = round(row.confidence, 4)
    return {"text": text, "tokens": tokens, "spans": spans, "answer": "accept", "meta": meta}


def _write_spacy(path: Path, settings: ProjectSettings, items: Iterable[LabelSet]) -> None:
    """A DocBin `spacy train` reads: the project's tokens, entities (NER) or cats (classification)."""
    spacy = _need("spacy")
    from spacy.tokens import Doc, DocBin

    vocab = spacy.blank("xx").vocab
    docs = DocBin(store_user_data=True)
    for item in items:
        row = item.rows[0]
        example = row.example
        words, spaces = _words(example.text, example.offsets or tuple(tokenize(example.text)))
        doc = Doc(vocab, words=words, spaces=spaces)
        if isinstance(row.label, str):
            doc.cats = {name: float(name == row.label) for name in settings.label_names}
        else:
            offsets = example.offsets
            assert offsets is not None
            entities = [doc.char_span(offsets[s.start][0], offsets[s.end - 1][1], label=s.type) for s in row.label]
            doc.ents = [entity for entity in entities if entity is not None]  # all: the words are the tokens
        doc.user_data.update(id=example.id, label_source=row.source, confidence=row.confidence)
        docs.add(doc)
    _replace(path, lambda partial: docs.to_disk(partial))


def _words(text: str, offsets: tuple[tuple[int, int], ...]) -> tuple[list[str], list[bool]]:
    """spaCy words and trailing-space flags that rebuild `text` exactly: one space after a word is its flag, other
    whitespace becomes a whitespace token, as spaCy's tokenizer makes."""
    words: list[str] = []
    spaces: list[bool] = []

    def gap(chunk: str) -> None:
        if chunk.startswith(" ") and words:
            spaces[-1], chunk = True, chunk[1:]
        if chunk:
            words.append(chunk)
            spaces.append(False)

    gap(text[: offsets[0][0]] if offsets else text)
    for index, (start, end) in enumerate(offsets):
        words.append(text[start:end])
        spaces.append(False)
        gap(text[end : offsets[index + 1][0] if index + 1 < len(offsets) else len(text)])
    return words, spaces


def _write_dataset(path: Path, fmt: Literal["hf", "parquet"], settings: ProjectSettings,
                   items: Iterable[LabelSet]) -> None:
    """A Hugging Face dataset (save_to_disk folder or Parquet) with the labels as ClassLabel features."""
    datasets = _need("datasets")
    if fmt == "hf" and path.exists() and not (path / "dataset_info.json").exists():
        raise at(path, None, "exists and is not a saved dataset", "choose a new folder for the dataset")
    features, rows = _dataset_rows(datasets, settings, [item.rows[0] for item in items])
    columns = {name: [row[name] for row in rows] for name in features}  # by columns: no rows still has a schema
    dataset = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    if fmt == "parquet":
        _replace(path, lambda partial: dataset.to_parquet(str(partial)))
    else:
        _replace(path, lambda partial: dataset.save_to_disk(str(partial)))


def _dataset_rows(datasets: ModuleType, settings: ProjectSettings, rows: list[LabeledRow],
                  ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    string, names = datasets.Value("string"), list(settings.label_names)
    features: dict[str, Any] = {"id": string, "text": string}
    records: list[dict[str, Any]] = [{"id": row.example.id, "text": row.example.text} for row in rows]
    if settings.task == "ner":
        tags = ["O", *[f"{prefix}-{name}" for name in names for prefix in ("B", "I")]]
        features.update(tokens=datasets.Sequence(string), ner_tags=datasets.Sequence(datasets.ClassLabel(names=tags)))
        for record, row in zip(records, rows, strict=True):
            assert row.example.tokens is not None and not isinstance(row.label, str)
            record.update(tokens=list(row.example.tokens), ner_tags=spans_to_tags(row.label, len(row.example.tokens)))
    else:
        if settings.task == "re":
            mention = {"name": string, "pos": datasets.Sequence(datasets.Value("int32"))}
            features.update(tokens=datasets.Sequence(string), h=mention, t=mention)
            for record, row in zip(records, rows, strict=True):
                assert row.example.tokens is not None and row.example.head and row.example.tail
                record.update(tokens=list(row.example.tokens), h=row.example.head.to_json(),
                              t=row.example.tail.to_json())
        features["label"] = datasets.ClassLabel(names=names)
        for record, row in zip(records, rows, strict=True):
            record["label"] = row.label
    features.update(label_source=string, confidence=datasets.Value("float32"))
    for record, row in zip(records, rows, strict=True):
        record.update(label_source=row.source, confidence=row.confidence)
    return features, records


def _replace(path: Path, write_to: Callable[[Path], object]) -> None:
    """Write through a partial file or folder renamed over `path` when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        write_to(partial)
    except BaseException:
        _remove(partial)
        raise
    if path.is_dir():
        shutil.rmtree(path)
    partial.replace(path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)

