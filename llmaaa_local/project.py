"""A project folder (project.sqlite + artifacts/): the public API for creating, importing, status and export."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

from .config import GOLD_SPLITS, ProjectSettings, Split, check_split
from .errors import LlmaaaError, at
from .formats import LabeledRow, read_json_lines
from .interchange import LabelSet, ReadCounts, read_examples, write
from .llm import Cost
from .models import sha256_file
from .records import Annotation, Example, Label, label_to_json
from .store import Round, Store, StoredIdentity

if TYPE_CHECKING:
    from .tasks import Task

T = TypeVar("T")
DB_NAME = "project.sqlite"
ARTIFACTS = "artifacts"
BATCH = 1000
NO_RELATION_NAMES = ("no_relation", "Other", "NA", "none", "None")

LabelSource = Literal["gold", "llm", "student"]
LABEL_SOURCES: tuple[LabelSource, ...] = get_args(LabelSource)


@dataclass(frozen=True)
class ImportReport:
    """What one import did."""

    path: str
    split: str
    added: int
    unchanged: int
    promoted: int
    labels_learned: tuple[str, ...]
    seconds: float
    skipped: int = 0  # records the other tool marks as not done (rejected, ignored, not annotated)


@dataclass(frozen=True)
class Counts:
    """Examples per split, and LLM annotation attempts."""

    pool: int
    demo: int
    dev: int
    test: int
    annotations: int
    parse_errors: int

    @property
    def gold(self) -> int:
        """Gold examples a prompt can be tuned or calibrated on (demo and dev)."""
        return self.demo + self.dev


@dataclass(frozen=True)
class ProjectStatus:
    """What `status` shows: the task, labels, counts, the LLM's total cost and the newest calibration."""

    project: str
    task: str
    labels: tuple[str, ...]
    no_relation: str | None
    counts: Counts
    cost: Cost
    calibration: dict[str, Any] | None

    def to_dict(self, curves: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        main_loop = "default" if "default" in curves else next(reversed(curves), None)
        return {"project": self.project, "task": self.task, "labels": list(self.labels),
                "no_relation": self.no_relation, "counts": asdict(self.counts), "cost": asdict(self.cost),
                "rounds": curves[main_loop] if main_loop else [], "loops": curves, "calibration": self.calibration}


class Project:
    """An open project; create with `Project.init`, open with `Project.open`."""

    def __init__(self, root: Path, store: Store) -> None:
        self.root = root
        self.store = store

    @classmethod
    def init(cls, root: Path, settings: ProjectSettings) -> Project:
        database = root / DB_NAME
        if database.exists():
            raise LlmaaaError(f"{database}: a project already exists here (open it, or choose another folder)")
        try:
            (root / ARTIFACTS).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise LlmaaaError(f"{root}: cannot create the project folder ({error.strerror})") from None
        store = Store(database, create=True)
        store.save_settings(settings)
        return cls(root, store)

    @classmethod
    def open(cls, root: Path) -> Project:
        return cls(root, Store(root / DB_NAME))

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def settings(self) -> ProjectSettings:
        return self.store.settings()

    @property
    def artifacts(self) -> Path:
        return self.root / ARTIFACTS

    # import ---------------------------------------------------------------------------------------------------

    def import_corpus(self, path: Path, fmt: str | None = None) -> ImportReport:
        """Add unlabeled pool examples; labels in the file are kept as hidden references for `evaluate`."""
        return self._import(path, "pool", fmt)

    def import_gold(self, path: Path, split: str, fmt: str | None = None) -> ImportReport:
        """Add gold examples to the demo, dev or test split; every record must carry a label."""
        return self._import(path, check_split(split, GOLD_SPLITS), fmt)

    def _import(self, path: Path, split: Split, fmt: str | None) -> ImportReport:
        started = time.perf_counter()
        settings = self.settings
        gold = split != "pool"
        learned: dict[str, None] = {}
        added = unchanged = promoted = 0
        counts = ReadCounts()
        with self.store.transaction():
            for batch in _chunks(read_examples(path, settings, fmt, gold, counts), BATCH):
                for example in batch:
                    _check_label(example, settings, learned, gold)
                current = self.store.lookup([example.id for example in batch])
                fresh: list[Example] = []
                for example in batch:
                    previous = current.get(example.id)
                    if previous is None:
                        fresh.append(example)
                    elif _same_as_stored(example, previous, split):
                        unchanged += 1
                        if not gold and previous.reference is None and example.label is not None:
                            self.store.set_reference(example.id, example.label)
                        continue
                    else:
                        self.store.set_gold(example.id, split, _require_label(example))
                        promoted += 1
                    current[example.id] = _identity(example, split, gold)
                added += self.store.insert_examples(fresh, split, gold=gold)
            if learned:
                self.store.save_settings(_learn_labels(settings, list(learned)))
            seconds = time.perf_counter() - started
            self.store.record_import(str(path), _fingerprint(path), "gold" if gold else "corpus", split, added,
                                     unchanged, seconds)
        return ImportReport(str(path), split, added, unchanged, promoted, tuple(sorted(learned)), seconds,
                            counts.skipped)

    def import_annotations(self, path: Path, source: str, field: str | None = None) -> ImportReport:
        """Labels made elsewhere (another LLM run): JSONL `{"id", "label"}` (NER: "tags" or "spans"), with an
        optional "confidence"; `field` reads the label from another key. Stored with source `import:<source>`."""
        from .tasks import task_for

        if not source.strip() or any(ch.isspace() for ch in source):
            raise LlmaaaError(f"--source {source!r}: give a short name without spaces, e.g. llama70b")
        started = time.perf_counter()
        task = task_for(self.settings)
        added = unchanged = 0
        with self.store.transaction():
            for batch in _chunks(read_json_lines(path), BATCH):
                known = {e.id: e for e in self.store.examples(ids=[str(r.get("id")) for _, r in batch])}
                annotations = [_imported(path, line_no, record, known, task, source, field)
                               for line_no, record in batch]
                new = self.store.add_annotations(annotations)
                added, unchanged = added + new, unchanged + len(annotations) - new
            seconds = time.perf_counter() - started
            self.store.record_import(str(path), sha256_file(path), f"annotations:{source}", "", added, unchanged,
                                     seconds)
        return ImportReport(str(path), f"annotations from {source}", added, unchanged, 0, (), seconds)

    # status and export ----------------------------------------------------------------------------------------

    def status(self) -> ProjectStatus:
        """Task, labels, counts, LLM cost and the newest calibration (the loops' curves: `learning_curves`)."""
        settings = self.settings
        totals = self.store.annotation_counts()
        return ProjectStatus(
            project=str(self.root), task=settings.task, labels=settings.label_names, no_relation=settings.no_relation,
            counts=Counts(**self.store.split_counts(), annotations=totals["annotations"],
                          parse_errors=totals["parse_errors"]),
            cost=Cost(totals["tokens_in"], totals["tokens_evaluated"], totals["tokens_out"], totals["seconds"]),
            calibration=self.store.latest_calibration())

    def learning_curves(self) -> dict[str, list[dict[str, Any]]]:
        """Every active-learning loop's learning curve, by loop name."""
        return {name: learning_curve(self.store.rounds(name)) for name in self.store.loops()}

    def status_dict(self) -> dict[str, Any]:
        """`status --json`: the status with every loop's learning curve, the main loop's as "rounds"."""
        return self.status().to_dict(self.learning_curves())

    def labeled_rows(self, sources: Sequence[str] = LABEL_SOURCES, min_confidence: float = 0.0,
                     ) -> Iterator[LabeledRow]:
        """Every example that has a label from `sources` (first source wins) at or above `min_confidence`."""
        return (labels.rows[0] for labels in self.label_sets(sources, min_confidence))

    def label_sets(self, sources: Sequence[str] = LABEL_SOURCES, min_confidence: float = 0.0,
                   ) -> Iterator[LabelSet]:
        """Every example that has a label from `sources` at or above `min_confidence`, with all such labels in
        source order."""
        _check_sources(sources, min_confidence)
        found_by: dict[str, dict[str, LabeledRow]] = {"llm": {}, "student": {}}
        if "llm" in sources:
            found_by["llm"] = {eid: LabeledRow(_NO_EXAMPLE, label, src, conf)
                               for eid, label, conf, src in self.store.latest_labels()}
        artifact = self.store.labeled_artifact() if "student" in sources else None
        if artifact is not None:
            found_by["student"] = {eid: LabeledRow(_NO_EXAMPLE, label, f"student:{artifact}", conf, probs)
                                   for eid, (label, conf, probs) in self.store.predictions(artifact).items()}
        for example in self.store.examples():
            found = [replace(row, example=example) for source in sources
                     if (row := _label_from(source, example, found_by)) is not None
                     and (row.confidence is None or row.confidence >= min_confidence)]
            if found:
                yield LabelSet(example, tuple(found))

    def export_labels(self, path: Path, fmt: str | None = None, sources: Sequence[str] = LABEL_SOURCES,
                      min_confidence: float = 0.0) -> int:
        """Write the labeled examples in any export format (`interchange.EXPORT_FORMATS`)."""
        _check_sources(sources, min_confidence)
        try:
            return write(path, self.settings, self.label_sets(sources, min_confidence), fmt)
        except OSError as error:
            raise LlmaaaError(f"{path}: cannot write the export ({error.strerror})") from None


def learning_curve(rounds: Sequence[Round]) -> list[dict[str, Any]]:
    """`status --json` rows: round, labeled so far, LLM label quality, student quality, seconds."""
    curve, labeled = [], 0
    for row in rounds:
        labeled += len(row.selected)
        if row.status in ("trained", "done"):
            curve.append({"round": row.round, "labeled": labeled, "llm": row.llm or {}, "student": row.student or {},
                          "seconds": round(row.seconds or 0.0, 1)})
    return curve


# --- helpers ---------------------------------------------------------------------------------------------------


def _imported(path: Path, line_no: int, record: dict[str, Any], known: dict[str, Example], task: Task,
              source: str, field: str | None) -> Annotation:
    example_id = record.get("id")
    if not isinstance(example_id, (str, int)) or str(example_id) not in known:
        raise at(path, line_no, f"id {example_id!r} is not in the project", "import the corpus first")
    example = known[str(example_id)]
    keys = [field] if field else ["label", "tags", "spans"]
    key = next((k for k in keys if k in record), None)
    if key is None:
        raise at(path, line_no, f"record {example.id!r} has no {' / '.join(repr(k) for k in keys)} field",
                 "name the label's key with --field")
    try:
        label = task.label_from_value(example, record[key])
    except ValueError as error:
        raise at(path, line_no, f"record {example.id!r}: {error}") from None
    confidence = record.get("confidence")
    if confidence is not None and (isinstance(confidence, bool) or not isinstance(confidence, (int, float))
                                   or not 0 <= confidence <= 1):
        raise at(path, line_no, f"record {example.id!r}: confidence {confidence!r} must be a number in 0..1")
    key_text = json.dumps([source, example.id, label_to_json(label), confidence])
    return Annotation(example.id, f"import:{source}", label, confidence,
                      cache_key="import:" + hashlib.sha256(key_text.encode()).hexdigest(),
                      raw_output=json.dumps(record[key], ensure_ascii=False))


def _fingerprint(path: Path) -> str:
    """The SHA-256 of a file, or of a folder's files (a saved dataset) by their relative names."""
    if not path.is_dir():
        return sha256_file(path)
    parts = [f"{file.relative_to(path)}:{sha256_file(file)}" for file in sorted(path.rglob("*")) if file.is_file()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _identity(example: Example, split: Split, gold: bool) -> StoredIdentity:
    """How an example just inserted or promoted is stored, for repeats later in the same batch."""
    return StoredIdentity(example.id, split, example.content_hash(), example.label if gold else None,
                          None if gold else example.label, example.source_file, example.source_line)


def _require_label(example: Example) -> Label:
    if example.label is None:
        raise at(example.source_file, example.where, f"gold record {example.id!r} has no label",
                 "every gold record needs its label, tags or spans")
    return example.label


def _check_label(example: Example, settings: ProjectSettings, learned: dict[str, None], gold: bool) -> None:
    if example.label is None:
        if gold:
            _require_label(example)
        return
    names = [example.label] if isinstance(example.label, str) else [span.type for span in example.label]
    known = settings.label_names
    for name in names:
        if not known:
            if name not in learned:
                try:  # the label set it would make must be valid (a label name; no BIO tag as an entity type)
                    _learn_labels(settings, [*learned, name])
                except LlmaaaError as error:
                    raise at(example.source_file, example.where, f"record {example.id!r}: {error}") from None
            learned[name] = None
        elif name not in known:
            raise at(example.source_file, example.where,
                     f"record {example.id!r}: label {name!r} is not in the project's label set {list(known)}",
                     "fix the record, or create the project with that label in --labels")


def _same_as_stored(example: Example, stored: StoredIdentity, split: Split) -> bool:
    """True when the record is already stored as is; False when a gold import should promote a pool example."""
    where = f"{stored.source_file}:{stored.source_line}"
    if example.content_hash() != stored.content_hash:
        raise at(example.source_file, example.where,
                 f"id {example.id!r} is already stored from {where} with different content",
                 "give each distinct record its own id")
    if split == "pool":
        if example.label is not None and stored.reference is not None and example.label != stored.reference:
            raise at(example.source_file, example.where,
                     f"id {example.id!r} is already stored from {where} with a different label")
        return True
    if stored.split == "pool":
        return False
    if stored.split != split or stored.gold != example.label:
        raise at(example.source_file, example.where,
                 f"id {example.id!r} is already gold in split {stored.split!r} from {where} with another label "
                 "or split", "each gold example belongs to one split with one label")
    return True


def _learn_labels(settings: ProjectSettings, names: list[str]) -> ProjectSettings:
    """A project created without --labels takes its label set from the first labeled import."""
    settings = settings.with_labels(sorted(names))
    if settings.task == "re" and settings.no_relation is None:
        found = next((name for name in NO_RELATION_NAMES if name in settings.label_names), None)
        settings = replace(settings, no_relation=found)
    return settings


def _check_sources(sources: Sequence[str], min_confidence: float) -> None:
    for source in sources:
        if source not in LABEL_SOURCES:
            raise LlmaaaError(f"unknown label source {source!r}: choose from {', '.join(LABEL_SOURCES)}")
    if not 0.0 <= min_confidence <= 1.0:
        raise LlmaaaError(f"--min-confidence {min_confidence} is outside 0..1")


_NO_EXAMPLE = Example("", "")  # placeholder until the row meets its example


def _label_from(source: str, example: Example, found_by: dict[str, dict[str, LabeledRow]]) -> LabeledRow | None:
    if source == "gold":
        return LabeledRow(example, example.label, "gold", None) if example.label is not None else None
    return found_by[source].get(example.id)
