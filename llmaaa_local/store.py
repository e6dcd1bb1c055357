"""The project database (project.sqlite): schema, migrations and every read and write; no other module writes SQL."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils
from sqlite_utils.migrations import Migrations

from .config import ProjectSettings, Split
from .errors import LlmaaaError
from .records import Annotation, Example, Label, Mention, Span, label_from_json, label_to_json

BUSY_TIMEOUT_S = 30.0
migrations = Migrations("llmaaa_local")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);

        CREATE TABLE examples (
            id TEXT PRIMARY KEY,
            seq INTEGER NOT NULL UNIQUE,
            split TEXT NOT NULL CHECK (split IN ('pool', 'demo', 'dev', 'test')),
            text TEXT NOT NULL,
            tokens TEXT,
            offsets TEXT,
            head TEXT,
            tail TEXT,
            gold TEXT,
            reference TEXT,
            content_hash TEXT NOT NULL,
            source_file TEXT,
            source_line INTEGER,
            flags TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX examples_split ON examples (split, seq);

        CREATE TABLE imports (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            kind TEXT NOT NULL,
            split TEXT NOT NULL,
            added INTEGER NOT NULL,
            unchanged INTEGER NOT NULL,
            seconds REAL NOT NULL,
            created_at TEXT NOT NULL
        );

        CREATE TABLE rounds (
            id INTEGER PRIMARY KEY,
            loop TEXT NOT NULL,
            round INTEGER NOT NULL,
            strategy TEXT NOT NULL,
            config TEXT NOT NULL,
            selected TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('selected', 'annotated', 'trained', 'done')),
            llm TEXT,
            student TEXT,
            cost TEXT,
            seconds REAL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            UNIQUE (loop, round)
        );

        CREATE TABLE annotations (
            id INTEGER PRIMARY KEY,
            example_id TEXT NOT NULL REFERENCES examples (id) ON DELETE CASCADE,
            source TEXT NOT NULL,
            cache_key TEXT UNIQUE,
            model_sha256 TEXT,
            prompt_key TEXT,
            prompt_hash TEXT,
            decoding TEXT,
            demo_ids TEXT,
            raw_output TEXT,
            label TEXT,
            scores TEXT,
            baseline TEXT,
            calibrated TEXT,
            confidence REAL,
            tokens_in INTEGER NOT NULL DEFAULT 0,
            tokens_evaluated INTEGER NOT NULL DEFAULT 0,
            tokens_out INTEGER NOT NULL DEFAULT 0,
            seconds REAL NOT NULL DEFAULT 0,
            status TEXT NOT NULL CHECK (status IN ('ok', 'parse_error')),
            error TEXT,
            flags TEXT,
            round_id INTEGER REFERENCES rounds (id),
            created_at TEXT NOT NULL
        );
        CREATE INDEX annotations_example ON annotations (example_id, source);
        CREATE INDEX annotations_prompt ON annotations (model_sha256, prompt_key);

        CREATE TABLE embeddings (
            example_id TEXT NOT NULL REFERENCES examples (id) ON DELETE CASCADE,
            embedder TEXT NOT NULL,
            vector BLOB NOT NULL,
            PRIMARY KEY (example_id, embedder)
        );

        CREATE TABLE calibrations (
            id INTEGER PRIMARY KEY,
            model_sha256 TEXT NOT NULL,
            prompt_key TEXT NOT NULL,
            method TEXT NOT NULL,
            params TEXT NOT NULL,
            metrics TEXT NOT NULL,
            created_at TEXT NOT NULL
        );

        CREATE TABLE student_runs (
            id INTEGER PRIMARY KEY,
            student TEXT NOT NULL,
            data_mode TEXT NOT NULL,
            config TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
            metrics TEXT,
            round_id INTEGER REFERENCES rounds (id),
            started_at TEXT NOT NULL,
            finished_at TEXT
        );

        CREATE TABLE artifacts (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES student_runs (id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('checkpoint', 'onnx', 'onnx-int8')),
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            info TEXT,
            created_at TEXT NOT NULL
        );

        CREATE TABLE predictions (
            artifact_id INTEGER NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
            example_id TEXT NOT NULL REFERENCES examples (id) ON DELETE CASCADE,
            label TEXT NOT NULL,
            probs TEXT,
            confidence REAL,
            PRIMARY KEY (artifact_id, example_id)
        );

        CREATE TABLE metrics (
            id INTEGER PRIMARY KEY,
            scope TEXT NOT NULL,
            split TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        """
    )


@migrations()
def m002_reviews(db: sqlite_utils.Database) -> None:
    """Human review decisions (the review queue); each correction also makes its example gold."""
    db.executescript(
        """
        CREATE TABLE reviews (
            id INTEGER PRIMARY KEY,
            example_id TEXT NOT NULL REFERENCES examples (id) ON DELETE CASCADE,
            decision TEXT NOT NULL CHECK (decision IN ('llm', 'student', 'typed')),
            label TEXT NOT NULL,
            llm_label TEXT,
            student_label TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX reviews_example ON reviews (example_id);
        """
    )


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class StoredIdentity:
    """What an import needs to know about an id that is already stored."""

    id: str
    split: str
    content_hash: str
    gold: Label | None
    reference: Label | None
    source_file: str
    source_line: int


@dataclass(frozen=True)
class Artifact:
    """A file a student run produced (checkpoint, onnx, onnx-int8), with its run's status and metrics."""

    id: int
    run_id: int
    kind: str
    path: str
    sha256: str
    info: dict[str, Any]
    created_at: str
    status: str
    metrics: dict[str, Any]
    data_mode: str
    round_id: int | None


@dataclass(frozen=True)
class Round:
    """One active-learning round as stored: what it selected, how far it got, and what it measured."""

    id: int
    round: int
    strategy: str
    selected: tuple[str, ...]
    status: str  # selected -> annotated -> trained -> done (or failed)
    llm: dict[str, Any] | None  # LLM label quality on the examples labeled so far
    student: dict[str, Any] | None  # the run id and test metrics of the student trained this round
    cost: dict[str, Any] | None
    seconds: float | None
    started_at: str
    finished_at: str | None


class Store:
    """One open project database."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        if not create and not path.exists():
            raise LlmaaaError(
                f"{path}: no project database here (run `llmaaa-local init DIR --task ...` first, "
                "or pass --project DIR)"
            )
        self.path = path
        try:
            conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False)
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA synchronous=NORMAL")
            migrations.apply(self.db)
        except sqlite3.DatabaseError as error:
            raise LlmaaaError(f"{path}: cannot open the project database ({error})") from error

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together or not at all; nested calls become savepoints.

        The outermost one starts with BEGIN IMMEDIATE: it waits (busy timeout) for the write lock up front, instead
        of failing at its first write when another process wrote since it began reading (SQLITE_BUSY_SNAPSHOT).
        """
        if self.db.conn.in_transaction:
            with self.db.atomic():
                yield
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.db.conn.in_transaction:
                self.db.conn.execute("ROLLBACK")
            raise
        self.db.conn.execute("COMMIT")

    # settings -------------------------------------------------------------------------------------------------

    def settings(self) -> ProjectSettings:
        row = self.db.execute("SELECT value FROM settings WHERE key = 'project'").fetchone()
        if row is None:
            raise LlmaaaError(f"{self.path}: the project has no settings; re-create it with `llmaaa-local init`")
        return ProjectSettings.from_dict(json.loads(row[0]))

    def save_settings(self, settings: ProjectSettings) -> None:
        with self.transaction():
            self.db.table("settings").upsert({"key": "project", "value": json.dumps(settings.to_dict())}, pk="key")

    def save_tuning(self, record: dict[str, Any], settings: ProjectSettings) -> None:
        """What `tune` chose (with its gold scores) and the project settings that now use it, in one transaction."""
        with self.transaction():
            self.db.table("settings").upsert({"key": "tune", "value": json.dumps(record)}, pk="key")
            self.save_settings(settings)

    def tuning(self) -> dict[str, Any] | None:
        row = self.db.execute("SELECT value FROM settings WHERE key = 'tune'").fetchone()
        return json.loads(row[0]) if row else None

    # examples -------------------------------------------------------------------------------------------------

    def lookup(self, ids: Sequence[str]) -> dict[str, StoredIdentity]:
        found: dict[str, StoredIdentity] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                "SELECT id, split, content_hash, gold, reference, source_file, source_line "
                f"FROM examples WHERE id IN ({marks})",
                chunk,
            )
            for row in rows:
                found[row[0]] = StoredIdentity(
                    row[0], row[1], row[2], label_from_json(row[3]), label_from_json(row[4]), row[5], row[6]
                )
        return found

    def insert_examples(self, examples: Iterable[Example], split: Split, *, gold: bool) -> int:
        """Insert new examples; their file labels become gold (shown) or hidden references (evaluate only)."""
        row = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM examples").fetchone()
        seq = row[0]
        created = now()
        rows = []
        for example in examples:
            seq += 1
            label = label_to_json(example.label)
            rows.append(
                (
                    example.id,
                    seq,
                    split,
                    example.text,
                    json.dumps(example.tokens, ensure_ascii=False) if example.tokens is not None else None,
                    json.dumps(example.offsets) if example.offsets is not None else None,
                    json.dumps(example.head.to_json(), ensure_ascii=False) if example.head else None,
                    json.dumps(example.tail.to_json(), ensure_ascii=False) if example.tail else None,
                    label if gold else None,
                    None if gold else label,
                    example.content_hash(),
                    example.source_file,
                    example.source_line,
                    created,
                )
            )
        with self.transaction():
            self.db.conn.executemany(
                "INSERT INTO examples (id, seq, split, text, tokens, offsets, head, tail, gold, reference, "
                "content_hash, source_file, source_line, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
        return len(rows)

    def set_gold(self, example_id: str, split: Split, label: Label) -> None:
        """Make an example gold: a gold import of a pool text, or a human correction from review."""
        with self.transaction():
            self.db.execute(
                "UPDATE examples SET split = ?, gold = ? WHERE id = ?", [split, label_to_json(label), example_id]
            )

    def set_reference(self, example_id: str, label: Label) -> None:
        """A corpus re-import that now carries a hidden label for an example stored without one."""
        with self.transaction():
            self.db.execute("UPDATE examples SET reference = ? WHERE id = ?", [label_to_json(label), example_id])

    def examples(self, split: Split | None = None, ids: Sequence[str] | None = None) -> Iterator[Example]:
        """Examples with their gold label (None unless known to be right); hidden references are never read here."""
        where: list[str] = []
        params: list[Any] = []
        if split is not None:
            where.append("split = ?")
            params.append(split)
        if ids is not None:
            where.append("id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(list(ids)))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        cursor = self.db.execute(
            "SELECT id, text, tokens, offsets, head, tail, gold, split, source_file, source_line "
            f"FROM examples {clause} ORDER BY seq",
            params,
        )
        for row in cursor:
            yield _example_from_row(row)

    def reference_labels(self, split: Split | None = None) -> dict[str, Label]:
        """Gold labels, else hidden reference labels: for evaluation only, never for prompts or training."""
        clause = "WHERE split = ?" if split else ""
        params = [split] if split else []
        rows = self.db.execute(f"SELECT id, COALESCE(gold, reference) FROM examples {clause}", params)
        return {row[0]: label for row in rows if (label := label_from_json(row[1])) is not None}

    def split_counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT split, COUNT(*) FROM examples GROUP BY split")
        counts = {"pool": 0, "demo": 0, "dev": 0, "test": 0}
        counts.update({row[0]: row[1] for row in rows})
        return counts

    def record_import(self, path: str, sha256: str, kind: str, split: str, added: int, unchanged: int,
                      seconds: float) -> None:
        self.db.table("imports").insert(
            {
                "path": path, "sha256": sha256, "kind": kind, "split": split, "added": added,
                "unchanged": unchanged, "seconds": round(seconds, 3), "created_at": now(),
            }
        )

    def example_ids(self, split: Split | None) -> list[str]:
        """Ids in import order, of one split or (None) of all."""
        if split is None:
            return [row[0] for row in self.db.execute("SELECT id FROM examples ORDER BY seq")]
        return [row[0] for row in self.db.execute("SELECT id FROM examples WHERE split = ? ORDER BY seq", [split])]

    # embeddings -----------------------------------------------------------------------------------------------

    def embeddings(self, embedder: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        rows = self.db.execute(
            "SELECT example_id, vector FROM embeddings WHERE embedder = ? "
            "AND example_id IN (SELECT value FROM json_each(?))",
            [embedder, json.dumps(list(ids))],
        )
        return {row[0]: np.frombuffer(row[1], dtype=np.float32) for row in rows}

    def save_embeddings(self, embedder: str, items: Sequence[tuple[str, np.ndarray]]) -> None:
        with self.transaction():
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO embeddings (example_id, embedder, vector) VALUES (?, ?, ?)",
                [(example_id, embedder, np.asarray(vector, np.float32).tobytes()) for example_id, vector in items],
            )

    # annotations ----------------------------------------------------------------------------------------------

    def cached_keys(self, keys: Sequence[str]) -> set[str]:
        rows = self.db.execute(
            "SELECT cache_key FROM annotations WHERE cache_key IN (SELECT value FROM json_each(?))",
            [json.dumps(list(keys))],
        )
        return {row[0] for row in rows}

    def add_annotation(self, annotation: Annotation) -> bool:
        """Store one annotation in its own transaction; False when its cache key is already stored."""
        row = annotation.to_row()
        row["created_at"] = now()
        columns = ", ".join(row)
        with self.transaction():
            cursor = self.db.execute(
                f"INSERT OR IGNORE INTO annotations ({columns}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
        return cursor.rowcount == 1

    def copy_answer(self, cache_key: str, example_id: str, round_id: int | None, prompt_key: str) -> bool:
        """Give `example_id` its own row, under `prompt_key`, holding the stored answer to the same request, at no
        LLM cost: for an identical text (key `<cache_key>:<example_id>`), or for the same example asked the same
        thing by another prompt (two tune variants, or two ensemble members, that agree on its demonstrations).
        False when it already has that row or there is no answer."""
        if self.db.execute("SELECT 1 FROM annotations WHERE example_id = ? AND prompt_key = ? AND (cache_key = ? "
                           "OR cache_key LIKE ? ESCAPE '\\')",
                           [example_id, prompt_key, cache_key, _like_prefix(f"{cache_key}:")]).fetchone():
            return False
        own = f"{cache_key}:{example_id}"
        if self.cached_keys([own]):
            own = f"{own}:{prompt_key}"
        with self.transaction():
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO annotations (example_id, source, cache_key, model_sha256, prompt_key, "
                "prompt_hash, decoding, demo_ids, raw_output, label, scores, baseline, calibrated, confidence, "
                "status, error, flags, round_id, created_at) "
                "SELECT ?, source, ?, model_sha256, ?, prompt_hash, decoding, demo_ids, raw_output, label, "
                "scores, baseline, calibrated, confidence, status, error, "
                "json_set(coalesce(flags, '{}'), '$.same_request_as', example_id), ?, ? "
                "FROM annotations WHERE cache_key = ? ORDER BY id LIMIT 1",
                [example_id, own, prompt_key, round_id, now(), cache_key],
            )
        return cursor.rowcount == 1

    def add_annotations(self, annotations: Sequence[Annotation]) -> int:
        """Store many annotations in the caller's transaction; returns how many were new."""
        added = 0
        for annotation in annotations:
            row = annotation.to_row()
            row["created_at"] = now()
            cursor = self.db.execute(
                f"INSERT OR IGNORE INTO annotations ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
            added += cursor.rowcount
        return added

    def scored_annotations(self, model_sha256: str, prompt_key: str,
                           ) -> list[tuple[int, str, dict[str, float], dict[str, float] | None]]:
        """(annotation id, example id, raw per-label scores, content-free baseline scores) of every scored
        annotation made under one prompt."""
        rows = self.db.execute(
            "SELECT id, example_id, scores, baseline FROM annotations WHERE model_sha256 = ? AND prompt_key = ? "
            "AND scores IS NOT NULL ORDER BY id",
            [model_sha256, prompt_key],
        )
        return [(row[0], row[1], json.loads(row[2]), json.loads(row[3]) if row[3] else None) for row in rows]

    def prompt_annotations(self, model_sha256: str, prompt_key: str, ids: Sequence[str],
                           ) -> list[tuple[str, Label | None, dict[str, float] | None, dict[str, float] | None, int,
                                           float]]:
        """(example id, label, raw scores, baseline, prompt tokens, seconds) of the newest annotation of each of
        `ids` made under one prompt (parse errors have no label)."""
        rows = self.db.execute(
            "SELECT example_id, label, scores, baseline, tokens_in, seconds FROM annotations a "
            "WHERE model_sha256 = ? AND prompt_key = ? AND example_id IN (SELECT value FROM json_each(?)) "
            "AND id = (SELECT MAX(id) FROM annotations b WHERE b.example_id = a.example_id "
            "AND b.model_sha256 = a.model_sha256 AND b.prompt_key = a.prompt_key)",
            [model_sha256, prompt_key, json.dumps(list(ids))],
        )
        return [(row[0], label_from_json(row[1]), json.loads(row[2]) if row[2] else None,
                 json.loads(row[3]) if row[3] else None, row[4], row[5]) for row in rows]

    def generated_annotations(self, model_sha256: str, prompt_key: str) -> list[tuple[int, str, str]]:
        """(annotation id, example id, raw output) of every generated (unscored) answer made under one prompt."""
        rows = self.db.execute(
            "SELECT id, example_id, raw_output FROM annotations WHERE model_sha256 = ? AND prompt_key = ? "
            "AND scores IS NULL AND raw_output IS NOT NULL ORDER BY id",
            [model_sha256, prompt_key],
        )
        return [(row[0], row[1], row[2]) for row in rows]

    def update_spans(self, updates: Sequence[tuple[int, tuple[Span, ...], list[str]]]) -> None:
        """Set (annotation id, entity spans, the same as BIO tags) after the entity types were chosen again."""
        with self.transaction():
            self.db.conn.executemany(
                "UPDATE annotations SET label = ?, flags = json_set(coalesce(flags, '{}'), '$.tags', json(?)) "
                "WHERE id = ?",
                [(label_to_json(spans), json.dumps(tags), aid) for aid, spans, tags in updates],
            )

    def update_calibrated(self, updates: Sequence[tuple[int, str, dict[str, float], float]]) -> None:
        """Set (annotation id, label, calibrated probabilities, confidence) after a new calibration."""
        with self.transaction():
            self.db.conn.executemany(
                "UPDATE annotations SET label = ?, calibrated = ?, confidence = ? WHERE id = ?",
                [(json.dumps(label), json.dumps(probs), conf, aid) for aid, label, probs, conf in updates],
            )

    def save_calibration(self, model_sha256: str, prompt_key: str, method: str, params: dict[str, Any],
                         metrics: dict[str, Any]) -> None:
        self.db.table("calibrations").insert({
            "model_sha256": model_sha256, "prompt_key": prompt_key, "method": method,
            "params": json.dumps(params), "metrics": json.dumps(metrics), "created_at": now(),
        })

    def calibration(self, model_sha256: str, prompt_key: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        row = self.db.execute(
            "SELECT params, metrics FROM calibrations WHERE model_sha256 = ? AND prompt_key = ? "
            "ORDER BY id DESC LIMIT 1",
            [model_sha256, prompt_key],
        ).fetchone()
        return (json.loads(row[0]), json.loads(row[1])) if row else None

    def latest_calibration(self) -> dict[str, Any] | None:
        """The newest fitted calibration of the project (any model or prompt): its method and gold scores."""
        row = self.db.execute("SELECT metrics, created_at FROM calibrations ORDER BY id DESC LIMIT 1").fetchone()
        return json.loads(row[0]) | {"created_at": row[1]} if row else None

    def annotation_status(self, split: Split | None = None, source: str = "") -> dict[str, tuple[int, int]]:
        """Per example in `split`: (ok annotations, parse errors) from `source` (see `source_filter`)."""
        clause = "AND e.split = ?" if split else ""
        match, value = source_filter(source, "a.source")
        rows = self.db.execute(
            "SELECT a.example_id, SUM(a.status = 'ok'), SUM(a.status = 'parse_error') FROM annotations a "
            f"JOIN examples e ON e.id = a.example_id WHERE {match} {clause} GROUP BY a.example_id",
            [value, *([split] if split else [])],
        )
        return {row[0]: (row[1], row[2]) for row in rows}

    # students ---------------------------------------------------------------------------------------------------

    def start_student_run(self, student: str, data_mode: str, config: dict[str, Any], round_id: int | None) -> int:
        with self.transaction():
            cursor = self.db.execute(
                "INSERT INTO student_runs (student, data_mode, config, status, round_id, started_at) "
                "VALUES (?, ?, ?, 'running', ?, ?)", [student, data_mode, _json(config), round_id, now()])
        return int(cursor.lastrowid or 0)

    def close_interrupted_runs(self) -> int:
        """Student runs left 'running' by a killed process are marked failed (one trainer runs at a time)."""
        with self.transaction():
            cursor = self.db.execute(
                "UPDATE student_runs SET status = 'failed', metrics = ?, finished_at = ? WHERE status = 'running'",
                [_json({"error": "interrupted (the process was killed)"}), now()])
        return cursor.rowcount

    def finish_student_run(self, run_id: int, status: str, metrics: dict[str, Any]) -> None:
        with self.transaction():
            self.db.execute("UPDATE student_runs SET status = ?, metrics = ?, finished_at = ? WHERE id = ?",
                            [status, _json(metrics), now(), run_id])

    def add_artifact(self, run_id: int, kind: str, path: str, sha256: str, info: dict[str, Any]) -> int:
        with self.transaction():
            cursor = self.db.execute(
                "INSERT INTO artifacts (run_id, kind, path, sha256, info, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [run_id, kind, path, sha256, _json(info), now()])
        return int(cursor.lastrowid or 0)

    def artifacts(self, kind: str | None = None) -> list[Artifact]:
        """Artifacts, newest first, with their run's metrics and status."""
        rows = self.db.query(
            "SELECT a.id, a.run_id, a.kind, a.path, a.sha256, a.info, a.created_at, r.status, r.metrics, r.data_mode, "
            f"r.round_id FROM artifacts a JOIN student_runs r ON r.id = a.run_id {'WHERE a.kind = ?' if kind else ''} "
            "ORDER BY a.id DESC", [kind] if kind else [])
        return [Artifact(**row | {name: json.loads(row[name] or "{}") for name in ("info", "metrics")}) for row in rows]

    def student_runs(self) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT id, student, data_mode, status, metrics, round_id, started_at, finished_at "
                             "FROM student_runs ORDER BY id")
        return [row | {"metrics": json.loads(row["metrics"] or "{}")} for row in rows]

    # active-learning rounds -------------------------------------------------------------------------------------

    def rounds(self, loop: str) -> list[Round]:
        """The loop's rounds, oldest first."""
        rows = self.db.query(
            "SELECT id, round, strategy, selected, status, llm, student, cost, seconds, started_at, finished_at "
            "FROM rounds WHERE loop = ? ORDER BY round", [loop])
        return [Round(**row | {"selected": tuple(json.loads(row["selected"]))} | {
            name: json.loads(row[name]) if row[name] else None for name in ("llm", "student", "cost")}) for row in rows]

    def loops(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT DISTINCT loop FROM rounds ORDER BY loop")]

    def start_round(self, loop: str, number: int, strategy: str, config: dict[str, Any],
                    selected: Sequence[str]) -> None:
        with self.transaction():
            self._insert_round(loop, number, strategy, config, selected)

    def _insert_round(self, loop: str, number: int, strategy: str, config: dict[str, Any],
                      selected: Sequence[str]) -> None:
        self.db.execute(
            "INSERT INTO rounds (loop, round, strategy, config, selected, status, started_at) "
            "VALUES (?, ?, ?, ?, ?, 'selected', ?)",
            [loop, number, strategy, _json(config), json.dumps(list(selected)), now()])

    def update_round(self, round_id: int, status: str, seconds: float, **fields: Any) -> None:
        sets = ", ".join(f"{name} = ?" for name in fields)
        with self.transaction():
            self.db.execute(f"UPDATE rounds SET status = ?, seconds = ?{', ' + sets if sets else ''} WHERE id = ?",
                            [status, round(seconds, 3), *(_json(v) for v in fields.values()), round_id])

    def finish_round(self, round_id: int, seconds: float, loop: str, next_number: int, strategy: str,
                     config: dict[str, Any], next_selected: Sequence[str]) -> None:
        """Close a round and store the next round's selection in one transaction."""
        with self.transaction():
            self.db.execute("UPDATE rounds SET status = 'done', seconds = ?, finished_at = ? WHERE id = ?",
                            [round(seconds, 3), now(), round_id])
            if next_selected:
                self._insert_round(loop, next_number, strategy, config, next_selected)

    # predictions ------------------------------------------------------------------------------------------------

    def predicted_ids(self, artifact_id: int) -> set[str]:
        rows = self.db.execute("SELECT example_id FROM predictions WHERE artifact_id = ?", [artifact_id])
        return {row[0] for row in rows}

    def add_predictions(self, artifact_id: int,
                        rows: Sequence[tuple[str, Label, dict[str, float] | None, float]]) -> None:
        with self.transaction():
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO predictions (artifact_id, example_id, label, probs, confidence) "
                "VALUES (?, ?, ?, ?, ?)",
                [(artifact_id, eid, label_to_json(label), None if probs is None else json.dumps(probs), conf)
                 for eid, label, probs, conf in rows])

    def predictions(self, artifact_id: int, split: Split | None = None,
                    ) -> dict[str, tuple[Label, float | None, dict[str, float] | None]]:
        """example id -> (label, confidence, per-label probabilities) of one labeling run."""
        clause = "AND example_id IN (SELECT id FROM examples WHERE split = ?)" if split else ""
        rows = self.db.execute(
            f"SELECT example_id, label, confidence, probs FROM predictions WHERE artifact_id = ? {clause}",
            [artifact_id, *([split] if split else [])])
        return {row[0]: (label_from_json(row[1]), row[2], json.loads(row[3]) if row[3] else None)  # type: ignore[misc]
                for row in rows}

    def labeled_artifact(self) -> int | None:
        """The newest exported student that has labeled examples."""
        row = self.db.execute("SELECT MAX(artifact_id) FROM predictions").fetchone()
        return None if row[0] is None else int(row[0])

    def record_review(self, example_id: str, decision: str, label: Label, llm_label: Label | None,
                      student_label: Label | None) -> None:
        """A human decision: the example becomes gold in the demo pool and the decision is kept."""
        with self.transaction():
            self.db.execute(
                "UPDATE examples SET split = 'demo', gold = ? WHERE id = ?", [label_to_json(label), example_id])
            self.db.execute(
                "INSERT INTO reviews (example_id, decision, label, llm_label, student_label, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [example_id, decision, label_to_json(label), label_to_json(llm_label), label_to_json(student_label),
                 now()])

    def review_counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT decision, COUNT(*) FROM reviews GROUP BY decision")
        counts = {"llm": 0, "student": 0, "typed": 0}
        counts.update({row[0]: row[1] for row in rows})
        return counts

    def example_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM examples").fetchone()[0])

    def annotation_sources(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT DISTINCT source FROM annotations ORDER BY source")]

    def recent_annotations(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT a.example_id, e.text, a.label, a.confidence, a.status, a.source FROM annotations a "
            "JOIN examples e ON e.id = a.example_id ORDER BY a.id DESC LIMIT ?",
            [limit],
        )
        return [row | {"label": label_from_json(row["label"])} for row in rows]

    def annotation_counts(self) -> dict[str, Any]:
        return next(self.db.query(
            "SELECT COUNT(*) AS annotations, COALESCE(SUM(status = 'parse_error'), 0) AS parse_errors, "
            "COALESCE(SUM(tokens_in), 0) AS tokens_in, COALESCE(SUM(tokens_evaluated), 0) AS tokens_evaluated, "
            "COALESCE(SUM(tokens_out), 0) AS tokens_out, COALESCE(SUM(seconds), 0) AS seconds FROM annotations"))

    def annotation_costs(self, source: str = "") -> list[tuple[str, int, int, int, float]]:
        """(made at, prompt tokens, evaluated tokens, generated tokens, seconds) of every annotation from `source`,
        in the order they were made."""
        match, value = source_filter(source, "source")
        rows = self.db.query("SELECT created_at, tokens_in, tokens_evaluated, tokens_out, seconds FROM annotations "
                             f"WHERE {match} ORDER BY id", [value])
        return [(row["created_at"], row["tokens_in"], row["tokens_evaluated"], row["tokens_out"], row["seconds"])
                for row in rows]

    def latest_labels(self, source: str = "", split: Split | None = None,
                      ) -> Iterator[tuple[str, Label, float | None, str]]:
        """(example id, label, confidence, source) of the newest ok annotation per example from `source`."""
        clause = "AND example_id IN (SELECT id FROM examples WHERE split = ?)" if split else ""
        outer, value = source_filter(source, "a.source")
        inner, _ = source_filter(source, "b.source")
        rows = self.db.execute(
            "SELECT example_id, label, confidence, source FROM annotations a WHERE status = 'ok' "
            f"AND {outer} {clause} AND id = (SELECT MAX(id) FROM annotations b "
            f"WHERE b.example_id = a.example_id AND b.status = 'ok' AND {inner})",
            [value, *([split] if split else []), value],
        )
        for example_id, label, confidence, source in rows:
            parsed = label_from_json(label)
            if parsed is not None:
                yield example_id, parsed, confidence, source


def source_filter(source: str, column: str) -> tuple[str, str]:
    """SQL for choosing annotation sources: "" is every source, a name ending in ':' a family of sources
    (`llm:`, `import:`), anything else exactly one source."""
    if not source:
        return f"{column} LIKE ?", "%"
    if source.endswith(":"):
        return f"{column} LIKE ? ESCAPE '\\'", _like_prefix(source)
    return f"{column} = ?", source


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern (escape character backslash) for the values that start with `prefix`."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def source_matches(source: str, name: str) -> bool:
    """The Python twin of `source_filter`."""
    return not source or (name.startswith(source) if source.endswith(":") else name == source)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _example_from_row(row: Sequence[Any]) -> Example:
    example_id, text, tokens, offsets, head, tail, gold, split, source_file, source_line = row
    return Example(
        id=example_id,
        text=text,
        tokens=tuple(json.loads(tokens)) if tokens else None,
        offsets=tuple(tuple(pair) for pair in json.loads(offsets)) if offsets else None,  # type: ignore[misc]
        head=Mention.from_json(json.loads(head)) if head else None,
        tail=Mention.from_json(json.loads(tail)) if tail else None,
        label=label_from_json(gold),
        split=split,
        source_file=source_file or "",
        source_line=source_line or 0,
    )
