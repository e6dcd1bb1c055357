"""The project database: migrations, pragmas, settings, opening and transactions, on real SQLite files."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlite_utils
from conftest import snapshot
from sqlite_utils.migrations import Migrations

from llmaaa_local.config import LabelInfo, ProjectSettings, PromptSettings
from llmaaa_local.errors import LlmaaaError
from llmaaa_local.project import DB_NAME, Project
from llmaaa_local.records import Example, Span
from llmaaa_local.store import Store, migrations

TABLES = {
    "settings", "examples", "imports", "rounds", "annotations", "embeddings", "calibrations", "student_runs", "reviews",
    "artifacts", "predictions", "metrics",
}


def applied(path: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT migration_set, name, applied_at FROM _sqlite_migrations ORDER BY rowid").fetchall()
    finally:
        conn.close()


def test_create_applies_every_migration_and_records_it(make_project: Callable[..., Project]) -> None:
    project = make_project("classify", labels=["pos", "neg"])
    rows = applied(project.root / DB_NAME)
    assert [(migration_set, name) for migration_set, name, _ in rows] == [("llmaaa_local", "m001_initial"),
                                                                          ("llmaaa_local", "m002_reviews")]
    assert migrations.pending(project.store.db) == []
    assert TABLES <= set(project.store.db.table_names())


def test_reopening_applies_nothing_twice(make_project: Callable[..., Project]) -> None:
    project = make_project("classify", labels=["pos", "neg"])
    root = project.root
    before = applied(root / DB_NAME)
    project.close()
    for _ in range(2):
        with Project.open(root) as reopened:
            assert reopened.settings.label_names == ("pos", "neg")
    assert applied(root / DB_NAME) == before  # same rows, same applied_at timestamps


def test_wal_journal_and_foreign_keys_are_on(make_project: Callable[..., Project]) -> None:
    project = make_project("classify", labels=["pos", "neg"])
    db = project.store.db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        db.execute(
            "INSERT INTO annotations (example_id, source, status, created_at) VALUES ('missing', 'llm', 'ok', 'now')"
        )


def test_settings_round_trip_through_a_reopened_store(tmp_path: Path) -> None:
    settings = ProjectSettings(
        task="re",
        labels=(
            LabelInfo("Other", "no relation between the two nominals"),
            LabelInfo("Cause-Effect(e1,e2)", "the head causes the tail"),
            LabelInfo("Component-Whole(e2,e1)", ""),
        ),
        no_relation="Other",
        prompt=PromptSettings(instruction="Answer with one label.\nNothing else.", demos="random", k=7),
    )
    Project.init(tmp_path / "p", settings).close()
    with Project.open(tmp_path / "p") as project:
        loaded = project.settings
    assert loaded == settings
    assert loaded.labels[0].description == "no relation between the two nominals"
    assert loaded.labels[1].name == "Cause-Effect(e1,e2)"
    assert loaded.no_relation == "Other"
    assert loaded.prompt == PromptSettings(instruction="Answer with one label.\nNothing else.", demos="random", k=7)


def test_save_settings_replaces_the_previous_value(make_project: Callable[..., Project]) -> None:
    project = make_project("ner")
    assert project.settings.labels == ()
    project.store.save_settings(ProjectSettings(task="ner", labels=(LabelInfo("PER", "a person"),)))
    assert project.settings.labels == (LabelInfo("PER", "a person"),)
    assert project.store.db.execute("SELECT COUNT(*) FROM settings").fetchone()[0] == 1


def test_opening_a_folder_without_a_database_names_the_path_and_creates_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "not-a-project"
    folder.mkdir()
    with pytest.raises(LlmaaaError) as caught:
        Project.open(folder)
    assert str(folder / DB_NAME) in str(caught.value)
    assert "no project database" in str(caught.value)
    assert list(folder.iterdir()) == []


def test_opening_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(LlmaaaError, match="cannot open the project database") as caught:
        Project.open(tmp_path)
    assert str(tmp_path / DB_NAME) in str(caught.value)


def test_init_on_an_existing_project_raises_and_keeps_it(make_project: Callable[..., Project]) -> None:
    project = make_project("classify", labels=["pos", "neg"])
    before = snapshot(project)
    with pytest.raises(LlmaaaError, match="already exists") as caught:
        Project.init(project.root, ProjectSettings(task="ner"))
    assert str(project.root / DB_NAME) in str(caught.value)
    assert snapshot(project) == before
    assert project.settings.task == "classify"


def test_a_failing_migration_rolls_back_and_stays_pending(make_project: Callable[..., Project],
                                                          tmp_path: Path) -> None:
    project = make_project("classify", labels=["pos", "neg"])
    project.close()
    copy = tmp_path / "copy.sqlite"
    shutil.copy(project.root / DB_NAME, copy)
    throwaway = Migrations("throwaway")

    @throwaway()
    def m001_half_done(db: sqlite_utils.Database) -> None:
        db.executescript("CREATE TABLE scratch (x INTEGER); INSERT INTO scratch VALUES (1);")
        db.execute("INSERT INTO settings (key, value) VALUES ('scratch', '1')")
        raise RuntimeError("migration failed half way")

    db = sqlite_utils.Database(sqlite3.connect(copy))
    try:
        with pytest.raises(RuntimeError, match="half way"):
            throwaway.apply(db)
        assert "scratch" not in db.table_names()
        assert db.execute("SELECT key FROM settings").fetchall() == [("project",)]
        assert [m.name for m in throwaway.pending(db)] == ["m001_half_done"]
        assert [(row["migration_set"], row["name"]) for row in db["_sqlite_migrations"].rows] == [
            ("llmaaa_local", "m001_initial"), ("llmaaa_local", "m002_reviews")
        ]
    finally:
        db.close()


def test_transaction_rolls_back_every_write_when_an_exception_is_raised(
    make_project: Callable[..., Project],
) -> None:
    project = make_project("ner", labels=["PER"])
    before = snapshot(project)
    example = Example(id="e1", text="Ann ran", tokens=("Ann", "ran"), offsets=((0, 3), (4, 7)),
                      label=(Span(0, 1, "PER"),))
    with pytest.raises(RuntimeError, match="stop"), project.store.transaction():
        assert project.store.insert_examples([example], "demo", gold=True) == 1
        project.store.save_settings(ProjectSettings(task="ner", labels=(LabelInfo("PER"), LabelInfo("LOC"))))
        project.store.record_import("x.jsonl", "0" * 64, "gold", "demo", 1, 0, 0.1)
        assert [e.id for e in project.store.examples()] == ["e1"]  # visible inside the transaction
        raise RuntimeError("stop")
    assert snapshot(project) == before
    assert list(project.store.examples()) == []
    assert project.settings.label_names == ("PER",)


def test_transaction_commits_when_the_block_succeeds(make_project: Callable[..., Project]) -> None:
    project = make_project("classify", labels=["pos"])
    with project.store.transaction():
        project.store.insert_examples([Example(id="a", text="fine", label="pos")], "test", gold=True)
        project.store.insert_examples([Example(id="b", text="also fine", label="pos")], "pool", gold=False)
    other = Store(project.root / DB_NAME)  # a second connection sees only committed data
    try:
        assert [(e.id, e.split, e.label) for e in other.examples()] == [("a", "test", "pos"), ("b", "pool", None)]
        assert other.reference_labels() == {"a": "pos", "b": "pos"}  # b's label is a hidden reference
        assert other.split_counts() == {"pool": 1, "demo": 0, "dev": 0, "test": 1}
    finally:
        other.close()


def test_an_older_database_is_upgraded_in_place_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old" / DB_NAME
    path.parent.mkdir()
    db = sqlite_utils.Database(sqlite3.connect(path))
    migrations.apply(db, stop_before="m002_reviews")  # a project made before the review queue existed
    db.execute("INSERT INTO settings (key, value) VALUES ('project', ?)",
               [json.dumps(ProjectSettings("classify", (LabelInfo("pos"), LabelInfo("neg"))).to_dict())])
    db.execute("INSERT INTO examples (id, seq, split, text, content_hash, created_at) "
               "VALUES ('a', 1, 'pool', 'kept text', 'h', 'now')")
    db.conn.commit()
    assert "reviews" not in db.table_names()
    db.close()
    with Project.open(path.parent) as project:
        assert "reviews" in project.store.db.table_names()
        assert [e.text for e in project.store.examples()] == ["kept text"]
        assert [name for _, name, _ in applied(path)] == ["m001_initial", "m002_reviews"]
