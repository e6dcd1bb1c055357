"""Exporting labels: every format re-imports to the same examples; sources, confidence and CSV formula escaping."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import snapshot

from llmaaa_local.cli import main
from llmaaa_local.errors import LlmaaaError
from llmaaa_local.project import Project
from llmaaa_local.records import Span, label_to_json

MakeProject = Callable[..., Project]
WriteFile = Callable[..., Path]

LABELS = {"classify": ["pos", "neg"], "ner": ["PER", "LOC", "ORG"], "re": ["Other", "Cause-Effect(e1,e2)"]}
NER_TEXT = "A New-York-based firm,  Acme Corp. hired Ann."
GOLD: dict[str, tuple[str, list[Any] | str]] = {
    "classify": ("gold.jsonl", [
        {"id": "c1", "text": 'Loved it, "really".\nSecond line, too.', "label": "pos"},
        {"id": "c2", "text": "Caf\u00e9 \u2014 awful \U0001f44e", "label": "neg"},
        {"id": "c3", "text": "  leading and trailing spaces  ", "label": "pos"},
    ]),
    "ner": ("gold.jsonl", [
        {"id": "n1", "text": NER_TEXT, "spans": [
            {"start": NER_TEXT.index("New-York"), "end": NER_TEXT.index("-based"), "type": "LOC"},
            {"start": NER_TEXT.index("Acme"), "end": NER_TEXT.index(" hired"), "type": "ORG"},
            {"start": NER_TEXT.index("Ann"), "end": NER_TEXT.index("Ann") + 3, "type": "PER"},
        ]},
        {"id": "n2", "tokens": ["Bo", "met", "Ann", "Lee"], "tags": ["B-PER", "O", "B-PER", "I-PER"],
         "text": "Bo  met Ann\tLee"},
        {"id": "n3", "tokens": ["Nothing", "here"], "tags": ["O", "O"]},
    ]),
    "conll": ("data.conll", "Ann\tB-PER\nLee\tI-PER\nran\tO\n\nRome\tB-LOC\n\nquiet\tO\n"),
    "re": ("gold.jsonl", [
        {"id": "r1", "tokens": ["The", "rain", "caused", "floods", "."], "h": {"name": "rain", "pos": [1, 2]},
         "t": {"name": "floods", "pos": [3, 4]}, "label": "Cause-Effect(e1,e2)"},
        {"id": "r2", "tokens": ["Tail", "then", "head"], "text": "Tail then  head", "h": {"pos": [2, 3]},
         "t": {"pos": [0, 1]}, "label": "Other"},
    ]),
}


def full(project: Project) -> list[tuple[Any, ...]]:
    return [(e.id, e.text, e.tokens, e.offsets, e.head, e.tail, e.label) for e in project.store.examples()]


def add_llm_label(project: Project, example_id: str, label: Any, confidence: float | None,
                  source: str = "llm:tiny", status: str = "ok") -> None:
    """Store an LLM annotation row as the annotator would (the annotator is not under test here)."""
    project.store.db.table("annotations").insert({
        "example_id": example_id, "source": source, "label": label_to_json(label), "confidence": confidence,
        "status": status, "created_at": "2025-01-01T00:00:00+00:00",
    })


@pytest.mark.parametrize(("data", "task", "out_name"), [
    ("classify", "classify", "out.jsonl"),
    ("classify", "classify", "out.csv"),
    ("classify", "classify", "out.jsonl.gz"),
    ("ner", "ner", "out.jsonl"),
    ("conll", "ner", "data.conll"),  # same stem as the source, so the regenerated ids match
    ("ner", "ner", "out.conll"),
    ("re", "re", "out.jsonl"),
])
def test_export_then_import_gives_the_same_examples(make_project: MakeProject, write_file: WriteFile,
                                                    tmp_path: Path, data: str, task: str, out_name: str) -> None:
    settings = {"no_relation": "Other"} if task == "re" else {}
    project = make_project(task, labels=LABELS[task], **settings)
    name, content = GOLD[data]
    report = project.import_gold(write_file(name, content), "test")
    original = full(project)
    assert report.added == len(original) >= 2

    out = tmp_path / "export" / out_name
    assert project.export_labels(out) == len(original)

    fresh = make_project(task, labels=LABELS[task], name="fresh", **settings)
    again = fresh.import_gold(out, "test")
    assert (again.added, again.unchanged) == (len(original), 0)
    copied = full(fresh)
    if out_name == "out.conll":  # CoNLL keeps ids (the `# id =` header), tokens and tags; the text is re-joined
        assert [row[2:] for row in copied] == [
            (tokens, tuple((sum(len(t) + 1 for t in tokens[:i]), sum(len(t) + 1 for t in tokens[:i]) + len(token))
                           for i, token in enumerate(tokens)), None, None, label)
            for _, _, tokens, _, _, _, label in original
        ]
        assert [row[1] for row in copied] == [" ".join(row[2]) for row in original]
        assert [row[0] for row in copied] == [row[0] for row in original]
    else:
        assert copied == original
        assert fresh.store.reference_labels() == project.store.reference_labels()


def test_exported_jsonl_records_carry_source_and_confidence(make_project: MakeProject, write_file: WriteFile,
                                                            tmp_path: Path) -> None:
    project = make_project("ner", labels=LABELS["ner"])
    project.import_gold(write_file("gold.jsonl", GOLD["ner"][1]), "demo")
    project.import_corpus(write_file("pool.jsonl", [{"id": "p1", "tokens": ["Ann", "sat"], "tags": ["B-PER", "O"]},
                                                    {"id": "p2", "tokens": ["Rome"]}]))
    add_llm_label(project, "p1", (Span(0, 1, "PER"),), 0.87654)
    out = tmp_path / "labels.jsonl"
    assert project.export_labels(out) == 4  # p2 has no label from any source
    records = {r["id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert set(records) == {"n1", "n2", "n3", "p1"}
    assert {key: records["p1"][key] for key in ("label_source", "confidence", "tags")} == {
        "label_source": "llm:tiny", "confidence": 0.8765, "tags": ["B-PER", "O"]}
    n2 = records["n2"]
    assert (n2["label_source"], n2["confidence"]) == ("gold", None)
    assert n2["text"] == "Bo  met Ann\tLee"
    assert n2["tokens"] == ["Bo", "met", "Ann", "Lee"]
    assert n2["tags"] == ["B-PER", "O", "B-PER", "I-PER"]
    assert n2["spans"] == [{"start": 0, "end": 2, "type": "PER", "text": "Bo"},
                           {"start": 8, "end": 15, "type": "PER", "text": "Ann\tLee"}]


def test_hidden_reference_labels_are_never_exported(make_project: MakeProject, write_file: WriteFile,
                                                    tmp_path: Path) -> None:
    project = make_project("classify", labels=LABELS["classify"])
    project.import_corpus(write_file("pool.jsonl", [{"id": "h", "text": "hidden", "label": "pos"}]))
    out = tmp_path / "labels.jsonl"
    assert project.export_labels(out) == 0
    assert out.read_text() == ""


def test_sources_order_and_min_confidence(make_project: MakeProject, write_file: WriteFile, tmp_path: Path) -> None:
    project = make_project("classify", labels=LABELS["classify"])
    project.import_gold(write_file("gold.jsonl", [{"id": "g", "text": "gold one", "label": "pos"}]), "demo")
    project.import_corpus(write_file("pool.jsonl", [{"id": f"p{i}", "text": f"pool {i}"} for i in range(4)]))
    add_llm_label(project, "g", "neg", 0.99)
    add_llm_label(project, "p0", "neg", 0.2)
    add_llm_label(project, "p0", "pos", 0.9)  # newer: wins over the older p0 label
    add_llm_label(project, "p1", "neg", 0.4)
    add_llm_label(project, "p2", None, None, status="parse_error")
    add_llm_label(project, "p3", "pos", None)

    def exported(**options: Any) -> dict[str, tuple[str, str, str]]:
        out = tmp_path / "out.csv"
        project.export_labels(out, **options)
        with open(out, newline="", encoding="utf-8") as handle:
            return {row["id"]: (row["label"], row["label_source"], row["confidence"]) for row in csv.DictReader(handle)}

    assert exported() == {"g": ("pos", "gold", ""), "p0": ("pos", "llm:tiny", "0.9000"),
                          "p1": ("neg", "llm:tiny", "0.4000"), "p3": ("pos", "llm:tiny", "")}
    assert exported(sources=["llm", "gold"])["g"] == ("neg", "llm:tiny", "0.9900")
    assert exported(sources=["gold"]) == {"g": ("pos", "gold", "")}
    assert set(exported(min_confidence=0.5)) == {"g", "p0", "p3"}  # gold and unscored labels have no confidence


def test_csv_export_escapes_cells_that_spreadsheets_run_as_formulas(make_project: MakeProject,
                                                                    write_file: WriteFile, tmp_path: Path) -> None:
    project = make_project("classify", labels=LABELS["classify"])
    texts = {"e1": "=HYPERLINK(\"http://x\")", "e2": "+1 call me", "e3": "-dash first", "e4": "@user thanks",
             "e5": "safe = text", "e6": "'already quoted"}
    records = [{"id": key, "text": text, "label": "pos"} for key, text in texts.items()]
    records.append({"id": "=id", "text": "id needs escaping", "label": "neg"})
    project.import_gold(write_file("gold.jsonl", records), "test")
    out = tmp_path / "out.csv"
    project.export_labels(out)
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["id", "text", "label", "label_source", "confidence"]
    assert {row[0]: row[1] for row in rows[1:]} == {
        "e1": "'=HYPERLINK(\"http://x\")", "e2": "'+1 call me", "e3": "'-dash first", "e4": "'@user thanks",
        "e5": "safe = text", "e6": "'already quoted", "'=id": "id needs escaping",
    }


def test_csv_round_trip_keeps_labels_that_start_with_a_formula_character(make_project: MakeProject,
                                                                         write_file: WriteFile,
                                                                         tmp_path: Path) -> None:
    project = make_project("classify", labels=["-1", "+1"])
    project.import_gold(write_file("gold.jsonl", [{"id": "a", "text": "bad", "label": "-1"},
                                                  {"id": "b", "text": "good", "label": "+1"}]), "test")
    out = tmp_path / "out.csv"
    project.export_labels(out)
    fresh = make_project("classify", labels=["-1", "+1"], name="fresh")
    fresh.import_gold(out, "test")
    assert full(fresh) == full(project)


def test_unknown_label_source_is_an_error(make_project: MakeProject, write_file: WriteFile, tmp_path: Path) -> None:
    project = make_project("classify", labels=LABELS["classify"])
    project.import_gold(write_file("gold.jsonl", GOLD["classify"][1]), "test")
    with pytest.raises(LlmaaaError, match="unknown label source 'bogus': choose from gold, llm, student"):
        project.export_labels(tmp_path / "out.jsonl", sources=["gold", "bogus"])


def test_a_failed_export_leaves_an_existing_file_alone(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project("classify", labels=LABELS["classify"])
    out = tmp_path / "previous.jsonl"
    out.write_text('{"id": "kept"}\n')
    with pytest.raises(LlmaaaError, match="unknown label source"):
        project.export_labels(out, sources=["bogus"])
    assert out.read_text() == '{"id": "kept"}\n'


@pytest.mark.parametrize(("task", "name", "phrase"), [
    ("classify", "out.xml", "cannot tell the file format from its name"),
    ("ner", "out.csv", "format 'csv' does not suit the ner task"),
    ("re", "out.conll", "format 'conll' does not suit the re task"),
])
def test_export_to_a_format_that_does_not_suit_is_an_error(make_project: MakeProject, tmp_path: Path, task: str,
                                                           name: str, phrase: str) -> None:
    project = make_project(task, labels=LABELS[task])
    out = tmp_path / name
    with pytest.raises(LlmaaaError, match=phrase) as caught:
        project.export_labels(out)
    assert str(caught.value).startswith(f"{out}: ")
    assert not out.exists()


def test_cli_export_rejects_bad_options(make_project: MakeProject, write_file: WriteFile, tmp_path: Path) -> None:
    project = make_project("classify", labels=LABELS["classify"])
    project.import_gold(write_file("gold.jsonl", GOLD["classify"][1]), "test")
    before = snapshot(project)
    runner = CliRunner()
    out = tmp_path / "cli.csv"
    base = ["--project", str(project.root), "export-labels", str(out)]

    too_high = runner.invoke(main, [*base, "--min-confidence", "1.5"])
    assert too_high.exit_code == 2
    assert "--min-confidence" in too_high.output and "1.5" in too_high.output

    bogus = runner.invoke(main, [*base, "--sources", "gold,bogus"])
    assert bogus.exit_code == 1
    assert "error: unknown label source 'bogus'" in bogus.output

    ok = runner.invoke(main, [*base, "--sources", "gold", "--min-confidence", "0.5"])
    assert ok.exit_code == 0, ok.output
    assert f"wrote 3 labeled examples to {out}" in ok.output
    with open(out, newline="", encoding="utf-8") as handle:
        assert [row["id"] for row in csv.DictReader(handle)] == ["c1", "c2", "c3"]
    assert snapshot(project) == before


def test_a_low_confidence_label_falls_back_to_the_next_source(make_project: MakeProject, write_file: WriteFile,
                                                              tmp_path: Path) -> None:
    project = make_project("classify", labels=LABELS["classify"])
    project.import_gold(write_file("gold.jsonl", [{"id": "g", "text": "gold one", "label": "pos"}]), "demo")
    add_llm_label(project, "g", "neg", 0.3)
    out = tmp_path / "out.jsonl"
    project.export_labels(out, sources=["llm", "gold"], min_confidence=0.5)
    (record,) = map(json.loads, out.read_text().splitlines())
    assert (record["label"], record["label_source"]) == ("pos", "gold")
    with pytest.raises(LlmaaaError, match="outside 0..1"):
        project.export_labels(out, min_confidence=1.5)
