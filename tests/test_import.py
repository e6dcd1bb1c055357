"""Every import format, checked field by field through the public API; hidden labels, idempotency, label learning."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import asdict
from importlib.resources import files
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from conftest import snapshot

from llmaaa_local.errors import LlmaaaError
from llmaaa_local.project import Project
from llmaaa_local.records import Mention, Span

SHARED_DATA = Path(__file__).parents[2] / "shared" / "data"
DEMO_DATA = Path(str(files("llmaaa_local").joinpath("demo_data")))

MakeProject = Callable[..., Project]
WriteFile = Callable[..., Path]


def summary(project: Project, split: str | None = None) -> list[tuple[Any, ...]]:
    """(id, split, text, tokens, label) of the stored examples, in import order."""
    return [(e.id, e.split, e.text, e.tokens, e.label) for e in project.store.examples(split)]  # type: ignore[arg-type]


def bio_spans(tags: list[str]) -> tuple[Span, ...]:
    """An independent BIO decoder for checking the importer against the shared data."""
    spans, start, kind = [], None, ""
    for index, tag in enumerate([*tags, "O"]):
        if start is not None and not tag.startswith("I-"):
            spans.append(Span(start, index, kind))
            start = None
        if tag.startswith("B-"):
            start, kind = index, tag[2:]
    return tuple(spans)


# --- classification ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["reviews.jsonl", "reviews.jsonl.gz"])
def test_classify_jsonl_fields(make_project: MakeProject, write_file: WriteFile, name: str) -> None:
    project = make_project("classify", labels=["pos", "neg"])
    path = write_file(name, [
        {"id": "r1", "text": "Great phone, would buy again.", "label": "pos"},
        "",
        {"id": 7, "text": "Caf\u00e9 au lait \u2014 na\u00efve \U0001f600", "label": "neg", "extra": [1, 2]},
        {"id": "r3", "text": "  padded  text\t"},
    ])
    report = project.import_corpus(path)
    assert (report.added, report.unchanged, report.promoted, report.split) == (3, 0, 0, "pool")
    assert report.path == str(path)
    examples = list(project.store.examples())
    assert [(e.id, e.text, e.label, e.tokens, e.split) for e in examples] == [
        ("r1", "Great phone, would buy again.", None, None, "pool"),
        ("7", "Caf\u00e9 au lait \u2014 na\u00efve \U0001f600", None, None, "pool"),
        ("r3", "  padded  text\t", None, None, "pool"),
    ]
    assert [(e.source_file, e.source_line) for e in examples] == [(str(path), 1), (str(path), 3), (str(path), 4)]
    assert project.store.reference_labels() == {"r1": "pos", "7": "neg"}
    assert asdict(project.status().counts) == {"pool": 3, "demo": 0, "dev": 0, "test": 0, "annotations": 0,
                                          "parse_errors": 0}


def test_classify_csv_with_bom_quoted_newline_and_missing_labels(make_project: MakeProject,
                                                                 write_file: WriteFile) -> None:
    project = make_project("classify", labels=["pos", "neg"])
    path = write_file("reviews.csv", (
        "\ufeffid,text,label\r\n"
        'a1,"Line one, with commas,\nline two ""quoted""",pos\r\n'
        "a2,plain text,\r\n"
        "\r\n"
        "a3,last one,neg\r\n"
    ))
    report = project.import_corpus(path)
    assert (report.added, report.unchanged) == (3, 0)
    examples = list(project.store.examples())
    assert [(e.id, e.text, e.label) for e in examples] == [
        ("a1", 'Line one, with commas,\nline two "quoted"', None),
        ("a2", "plain text", None),
        ("a3", "last one", None),
    ]
    assert [e.source_line for e in examples] == [2, 4, 6]
    assert project.store.reference_labels() == {"a1": "pos", "a3": "neg"}


def test_classify_csv_without_a_label_column(make_project: MakeProject, write_file: WriteFile) -> None:
    project = make_project("classify", labels=["pos", "neg"])
    path = write_file("texts.csv", "text,id\nhello there,x1\n\"=not a formula\",x2\n")
    assert project.import_corpus(path).added == 2
    assert summary(project) == [("x1", "pool", "hello there", None, None), ("x2", "pool", "=not a formula", None, None)]
    assert project.store.reference_labels() == {}


def test_classify_csv_gold_labels_are_visible(make_project: MakeProject, write_file: WriteFile) -> None:
    project = make_project("classify", labels=["pos", "neg"])
    path = write_file("gold.csv", "id,text,label\ng1,good,pos\ng2,bad,neg\n")
    report = project.import_gold(path, "test")
    assert (report.added, report.split) == (2, "test")
    assert summary(project, "test") == [("g1", "test", "good", None, "pos"), ("g2", "test", "bad", None, "neg")]
    assert summary(project, "pool") == []


# --- NER ---------------------------------------------------------------------------------------------------------


def test_ner_jsonl_tokens_and_tags(make_project: MakeProject, write_file: WriteFile) -> None:
    project = make_project("ner", labels=["PER", "LOC", "ORG"])
    path = write_file("ner.jsonl", [
        {"id": "s1", "tokens": ["Angela", "Merkel", "visited", "New", "York", "."],
         "tags": ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"]},
        {"id": "s2", "tokens": ["IBM", "hired", "Bo"], "tags": ["B-ORG", "O", "B-PER"],
         "text": "IBM  hired\tBo"},
        {"id": "s3", "tokens": ["nothing", "here"], "tags": ["O", "O"]},
    ])
    project.import_gold(path, "dev")
    s1, s2, s3 = project.store.examples("dev")
    assert s1.text == "Angela Merkel visited New York ."
    assert s1.tokens == ("Angela", "Merkel", "visited", "New", "York", ".")
    assert s1.offsets == ((0, 6), (7, 13), (14, 21), (22, 25), (26, 30), (31, 32))
    assert s1.label == (Span(0, 2, "PER"), Span(3, 5, "LOC"))
    assert s2.text == "IBM  hired\tBo"
    assert s2.offsets == ((0, 3), (5, 10), (11, 13))
    assert s2.label == (Span(0, 1, "ORG"), Span(2, 3, "PER"))
    assert (s3.label, s3.split, s3.source_line) == ((), "dev", 3)  # labeled, with no entities


def test_ner_jsonl_char_spans_split_tokens_and_trim_whitespace(make_project: MakeProject,
                                                               write_file: WriteFile) -> None:
    project = make_project("ner", labels=["LOC", "ORG", "PER"])
    text = "A New-York-based firm,  Acme Corp. hired doves<e2>fast."
    loc = text.index("New-York")
    org = text.index("  Acme")
    per = text.index("doves")
    path = write_file("spans.jsonl", [
        {"id": "c1", "text": text, "spans": [
            {"start": per, "end": per + 5, "type": "PER"},
            {"start": org, "end": org + len("  Acme Corp. "), "type": "ORG"},  # surrounding spaces
            {"start": loc, "end": loc + len("New-York"), "type": "LOC"},
        ]},
        {"id": "c2", "text": "No entities at all."},
        {"id": "c3", "text": "Empty list.", "spans": []},
    ])
    project.import_corpus(path)
    c1, c2, c3 = project.store.examples()
    assert c1.text == text
    assert c1.tokens == ("A", "New-York", "-based", "firm", ",", "Acme", "Corp", ".", "hired", "doves", "<", "e2",
                         ">", "fast", ".")
    assert all(text[s:e] == token for (s, e), token in zip(c1.offsets or (), c1.tokens, strict=True))
    assert c1.label is None  # corpus import: hidden
    references = project.store.reference_labels()
    assert references["c1"] == (Span(1, 2, "LOC"), Span(5, 8, "ORG"), Span(9, 10, "PER"))
    assert " ".join(c1.tokens[5:8]) == "Acme Corp ."
    assert c2.tokens == ("No", "entities", "at", "all", ".")
    assert "c2" not in references  # no spans key: unlabeled
    assert references["c3"] == ()  # an empty list: labeled, no entities
    assert c3.tokens == ("Empty", "list", ".")


def test_conll_tab_separated_with_docstart_and_blank_lines(make_project: MakeProject, write_file: WriteFile) -> None:
    project = make_project("ner", labels=["PER", "LOC"])
    path = write_file("news.conll", (
        "-DOCSTART-\tO\n"
        "\n"
        "John\tB-PER\n"
        "Smith\tI-PER\n"
        "lives\tO\n"
        "\n"
        "\n"
        "# id = from-header  label_source = gold\n"
        "Paris\tB-LOC\n"
        "!\tO\n"
        "-DOCSTART-\tO\n"
        "\n"
        "Fine\tO"  # no final newline
    ))
    report = project.import_gold(path, "test")
    assert report.added == 3
    examples = list(project.store.examples("test"))
    assert [(e.id, e.text, e.tokens, e.label, e.source_line) for e in examples] == [
        ("news-00001", "John Smith lives", ("John", "Smith", "lives"), (Span(0, 2, "PER"),), 3),
        ("from-header", "Paris !", ("Paris", "!"), (Span(0, 1, "LOC"),), 9),
        ("news-00003", "Fine", ("Fine",), (), 13),
    ]


def test_conll_2003_space_separated_four_columns(make_project: MakeProject, write_file: WriteFile) -> None:
    project = make_project("ner", labels=["ORG", "MISC", "PER", "LOC"])
    path = write_file("conll03.txt", (
        "-DOCSTART- -X- -X- O\n"
        "\n"
        "EU NNP B-NP B-ORG\n"
        "rejects VBZ B-VP O\n"
        "German JJ B-NP B-MISC\n"
        "call NN I-NP O\n"
        "\n"
        "Peter NNP B-NP B-PER\n"
        "Blackburn NNP I-NP I-PER\n"
        "\n"
    ))
    project.import_corpus(path)
    assert summary(project) == [
        ("conll03-00001", "pool", "EU rejects German call", ("EU", "rejects", "German", "call"), None),
        ("conll03-00002", "pool", "Peter Blackburn", ("Peter", "Blackburn"), None),
    ]
    assert project.store.reference_labels() == {
        "conll03-00001": (Span(0, 1, "ORG"), Span(2, 3, "MISC")),
        "conll03-00002": (Span(0, 2, "PER"),),
    }


def test_conll_tokens_only_is_unlabeled(make_project: MakeProject, write_file: WriteFile) -> None:
    project = make_project("ner", labels=["PER"])
    path = write_file("raw.conll", "Hello\nworld\n\nBye\n")
    project.import_corpus(path)
    assert summary(project) == [("raw-00001", "pool", "Hello world", ("Hello", "world"), None),
                                ("raw-00002", "pool", "Bye", ("Bye",), None)]
    assert project.store.reference_labels() == {}


def test_conll_files_with_dotted_names_get_distinct_ids(make_project: MakeProject, write_file: WriteFile) -> None:
    project = make_project("ner", labels=["PER", "LOC"])
    project.import_gold(write_file("eng.testa", "Ann\tB-PER\n"), "dev", fmt="conll")
    project.import_gold(write_file("eng.testb", "Rome\tB-LOC\n"), "test", fmt="conll")
    assert [(e.id, e.split) for e in project.store.examples()] == [("eng.testa-00001", "dev"),
                                                                    ("eng.testb-00001", "test")]


def test_conll_hash_token_is_kept(make_project: MakeProject, write_file: WriteFile) -> None:
    project = make_project("ner", labels=["MISC"])
    path = write_file("tweets.txt", "We PRP B-NP O\n# NN I-NP O\nwon VBD B-VP B-MISC\n\n")
    project.import_corpus(path)
    (example,) = project.store.examples()
    assert example.tokens == ("We", "#", "won")
    assert project.store.reference_labels() == {"tweets-00001": (Span(2, 3, "MISC"),)}


# --- relation extraction -----------------------------------------------------------------------------------------


def test_re_jsonl_llmaaa_layout(make_project: MakeProject, write_file: WriteFile) -> None:
    project = make_project("re", labels=["Other", "Cause-Effect(e1,e2)"], no_relation="Other")
    path = write_file("re.jsonl", [
        {"id": "r1", "tokens": ["The", "heavy", "rain", "caused", "the", "flood", "."],
         "h": {"name": "heavy rain", "pos": [1, 3]}, "t": {"name": "flood", "pos": [5, 6]},
         "label": "Cause-Effect(e1,e2)"},
        {"id": "r2", "tokens": ["Tail", "before", "head"], "text": "Tail before  head",
         "h": {"pos": [2, 3]}, "t": {"name": "Tail", "pos": [0, 1]}, "label": "Other"},
    ])
    project.import_gold(path, "demo")
    r1, r2 = project.store.examples("demo")
    assert r1.text == "The heavy rain caused the flood ."
    assert r1.tokens == ("The", "heavy", "rain", "caused", "the", "flood", ".")
    assert (r1.head, r1.tail, r1.label) == (Mention("heavy rain", 1, 3), Mention("flood", 5, 6), "Cause-Effect(e1,e2)")
    assert r2.text == "Tail before  head"
    assert r2.offsets == ((0, 4), (5, 11), (13, 17))
    assert (r2.head, r2.tail, r2.label) == (Mention("head", 2, 3), Mention("Tail", 0, 1), "Other")


# --- hidden references vs gold -----------------------------------------------------------------------------------

RECORDS: dict[str, tuple[list[str], dict[str, Any], Any]] = {
    "classify": (["pos", "neg"], {"id": "x", "text": "lovely", "label": "pos"}, "pos"),
    "ner": (["PER"], {"id": "x", "tokens": ["Ann", "ran"], "tags": ["B-PER", "O"]}, (Span(0, 1, "PER"),)),
    "re": (["Other", "Rel"], {"id": "x", "tokens": ["a", "b"], "h": {"name": "a", "pos": [0, 1]},
                              "t": {"name": "b", "pos": [1, 2]}, "label": "Rel"}, "Rel"),
}


@pytest.mark.parametrize("task", sorted(RECORDS))
def test_corpus_labels_are_hidden_and_gold_labels_are_shown(make_project: MakeProject, write_file: WriteFile,
                                                            task: str) -> None:
    labels, record, label = RECORDS[task]
    project = make_project(task, labels=labels)
    project.import_corpus(write_file("corpus.jsonl", [record]))
    project.import_gold(write_file("gold.jsonl", [{**record, "id": "y"}]), "test")
    assert [(e.id, e.split, e.label) for e in project.store.examples()] == [("x", "pool", None), ("y", "test", label)]
    assert [e.label for e in project.store.examples("pool")] == [None]
    assert project.store.reference_labels() == {"x": label, "y": label}
    assert project.store.reference_labels("pool") == {"x": label}


# --- idempotency and promotion -----------------------------------------------------------------------------------

FILES: dict[str, tuple[str, list[str], str | list[Any]]] = {
    "classify-jsonl": ("classify", ["pos", "neg"], [{"id": i, "text": f"text {i}", "label": "pos"} for i in range(5)]),
    "classify-csv": ("classify", ["pos", "neg"], "id,text,label\n1,\"a\nb\",pos\n2,c,neg\n3,d,\n"),
    "ner-conll": ("ner", ["PER"], "Ann\tB-PER\nran\tO\n\nBo\tB-PER\n"),
    "ner-spans": ("ner", ["PER"], [{"id": "s", "text": "Ann ran", "spans": [{"start": 0, "end": 3, "type": "PER"}]}]),
    "re-jsonl": ("re", ["Other"], [dict(RECORDS["re"][1], label="Other", id=str(i)) for i in range(3)]),
}
SUFFIX = {"classify-jsonl": "jsonl", "classify-csv": "csv", "ner-conll": "conll", "ner-spans": "jsonl.gz",
          "re-jsonl": "jsonl"}


@pytest.mark.parametrize("case", sorted(FILES))
@pytest.mark.parametrize("kind", ["corpus", "gold"])
def test_importing_the_same_file_twice_adds_nothing(make_project: MakeProject, write_file: WriteFile, case: str,
                                                    kind: str) -> None:
    task, labels, content = FILES[case]
    if kind == "gold" and case == "classify-csv":
        content = str(content).replace(",d,\n", ",d,pos\n")
    project = make_project(task, labels=labels)
    path = write_file(f"data.{SUFFIX[case]}", content)

    def run() -> Any:
        return project.import_corpus(path) if kind == "corpus" else project.import_gold(path, "dev")

    first = run()
    assert first.added > 0 and first.unchanged == 0
    before = snapshot(project)
    second = run()
    assert (second.added, second.unchanged, second.promoted) == (0, first.added, 0)
    after = snapshot(project)
    assert {table for table in after if after[table] != before[table]} == {"imports"}
    imports = project.store.db.execute("SELECT path, kind, split, added, unchanged FROM imports ORDER BY id").fetchall()
    split = "pool" if kind == "corpus" else "dev"
    assert imports == [(str(path), kind, split, first.added, 0), (str(path), kind, split, 0, first.added)]


def test_gold_import_promotes_a_pool_example_then_is_idempotent(make_project: MakeProject,
                                                                write_file: WriteFile) -> None:
    project = make_project("classify", labels=["pos", "neg"])
    project.import_corpus(write_file("corpus.jsonl", [
        {"id": "a", "text": "alpha", "label": "neg"},
        {"id": "b", "text": "beta"},
    ]))
    gold = write_file("gold.jsonl", [
        {"id": "b", "text": "beta", "label": "pos"},
        {"id": "c", "text": "gamma", "label": "neg"},
    ])
    report = project.import_gold(gold, "demo")
    assert (report.added, report.unchanged, report.promoted) == (1, 0, 1)
    assert summary(project) == [("a", "pool", "alpha", None, None), ("b", "demo", "beta", None, "pos"),
                                ("c", "demo", "gamma", None, "neg")]
    assert project.status().counts.pool == 1 and project.status().counts.demo == 2
    before = snapshot(project)
    again = project.import_gold(gold, "demo")
    assert (again.added, again.unchanged, again.promoted) == (0, 2, 0)
    after = snapshot(project)
    assert {table for table in after if after[table] != before[table]} == {"imports"}


def test_a_repeated_identical_record_in_one_file_is_counted_once(make_project: MakeProject,
                                                                 write_file: WriteFile) -> None:
    project = make_project("classify", labels=["pos"])
    record = {"id": "a", "text": "same", "label": "pos"}
    report = project.import_corpus(write_file("dup.jsonl", [record, record]))
    assert (report.added, report.unchanged) == (1, 1)
    assert summary(project) == [("a", "pool", "same", None, None)]


# --- learning the label set --------------------------------------------------------------------------------------


def test_classify_project_learns_sorted_labels_from_first_labeled_import(make_project: MakeProject,
                                                                         write_file: WriteFile) -> None:
    project = make_project("classify")
    unlabeled = project.import_corpus(write_file("raw.jsonl", [{"id": "u", "text": "no label"}]))
    assert unlabeled.labels_learned == () and project.settings.labels == ()
    report = project.import_gold(write_file("gold.jsonl", [
        {"id": "1", "text": "a", "label": "positive"},
        {"id": "2", "text": "b", "label": "negative"},
        {"id": "3", "text": "c", "label": "mixed"},
        {"id": "4", "text": "d", "label": "negative"},
    ]), "demo")
    assert set(report.labels_learned) == {"positive", "negative", "mixed"}
    assert project.settings.label_names == ("mixed", "negative", "positive")
    assert project.status().labels == ("mixed", "negative", "positive")
    with pytest.raises(LlmaaaError, match="'neutral' is not in the project's label set"):
        project.import_gold(write_file("more.jsonl", [{"id": "5", "text": "e", "label": "neutral"}]), "demo")


def test_ner_project_learns_entity_types(make_project: MakeProject, write_file: WriteFile) -> None:
    project = make_project("ner")
    project.import_corpus(write_file("c.conll", "Bo\tB-PER\nin\tO\nRome\tB-LOC\n\nACME\tB-ORG\n"))
    assert project.settings.label_names == ("LOC", "ORG", "PER")
    assert project.settings.no_relation is None


@pytest.mark.parametrize("no_relation", ["no_relation", "Other"])
def test_re_project_learns_labels_and_its_no_relation_label(make_project: MakeProject, write_file: WriteFile,
                                                            no_relation: str) -> None:
    project = make_project("re")
    base = RECORDS["re"][1]
    path = write_file("re.jsonl", [dict(base, id="1", label="works_for"), dict(base, id="2", label=no_relation),
                                   dict(base, id="3", label="born_in")])
    report = project.import_gold(path, "test")
    assert report.added == 3
    assert project.settings.label_names == tuple(sorted(["works_for", no_relation, "born_in"]))
    assert project.settings.no_relation == no_relation
    assert project.status().no_relation == no_relation


# --- real files --------------------------------------------------------------------------------------------------


def json_records(text: str) -> list[dict[str, Any]]:
    # split on newlines only: str.splitlines would also cut at U+2028 and friends, which IMDb texts contain
    return [json.loads(line) for line in text.split("\n") if line.strip()]


def nonblank_lines(path: Path) -> int:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:  # type: ignore[operator]
        return sum(1 for line in handle.read().split("\n") if line.strip())


def test_real_demo_files_import(make_project: MakeProject) -> None:
    found = {task: sorted(DEMO_DATA.glob(f"{task}_*.jsonl")) for task in ("classify", "ner", "re")}
    if not any(found.values()):
        pytest.skip(f"no demo data files in {DEMO_DATA}")
    for task, paths in found.items():
        if not paths:
            continue
        project = make_project(task, name=f"demo-{task}")
        expected = {"pool": 0, "demo": 0, "dev": 0, "test": 0}
        for path in paths:
            split = path.stem.split("_", 1)[1]
            report = project.import_gold(path, split) if split in ("demo", "dev", "test") else \
                project.import_corpus(path)
            assert report.added == nonblank_lines(path), path
            expected[report.split] += report.added
        counts = asdict(project.status().counts)
        assert {split: counts[split] for split in expected} == expected
        assert project.settings.labels, f"{task}: no label set learned from the demo files"
        if "no_relation" in project.settings.label_names:
            assert project.settings.no_relation == "no_relation"
        # every demo record is labeled: pool labels are hidden references, the rest gold
        assert set(project.store.reference_labels()) == {example.id for example in project.store.examples()}
        for example in project.store.examples():
            assert example.text.strip()
            if example.split != "pool":
                assert example.label is not None


def shared_head(name: str, tmp_path: Path, lines: int = 300) -> Path:
    """The first `lines` records of a shared dataset, written to tmp_path (the shared files stay where they are)."""
    source = SHARED_DATA / name
    if not source.exists():
        pytest.skip(f"{source} is not available")
    opener = gzip.open if source.name.endswith(".gz") else open
    with opener(source, "rt", encoding="utf-8") as handle:  # type: ignore[operator]
        head = "".join(islice(handle, lines))
    target = tmp_path / name.replace("/", "-")
    target.write_bytes(gzip.compress(head.encode()) if target.name.endswith(".gz") else head.encode())
    return target


def test_shared_conll2003_head_imports(make_project: MakeProject, tmp_path: Path) -> None:
    path = shared_head("conll2003/train.jsonl", tmp_path)
    records = json_records(path.read_text(encoding="utf-8"))
    project = make_project("ner")
    report = project.import_corpus(path)
    assert (report.added, report.unchanged) == (300, 0)
    assert set(project.settings.label_names) <= {"LOC", "MISC", "ORG", "PER"}
    references = project.store.reference_labels()
    for record, example in zip(records, project.store.examples(), strict=True):
        assert (example.id, example.text, example.tokens, example.label) == (
            record["id"], record["text"], tuple(record["tokens"]), None)
        assert references[example.id] == bio_spans(record["tags"])


def test_shared_semeval_head_imports(make_project: MakeProject, tmp_path: Path) -> None:
    path = shared_head("semeval2010_task8/train.jsonl", tmp_path)
    records = json_records(path.read_text(encoding="utf-8"))
    project = make_project("re")
    report = project.import_gold(path, "demo")
    assert report.added == 300
    assert project.settings.label_names == tuple(sorted({r["label"] for r in records}))
    assert project.settings.no_relation == "Other"
    for record, example in zip(records, project.store.examples("demo"), strict=True):
        assert (example.id, example.text, example.label) == (record["id"], record["text"], record["label"])
        assert example.head == Mention(record["h"]["name"], *record["h"]["pos"])
        assert example.tail == Mention(record["t"]["name"], *record["t"]["pos"])


def test_shared_imdb_head_imports_from_gzip(make_project: MakeProject, tmp_path: Path) -> None:
    path = shared_head("imdb/train.jsonl.gz", tmp_path)
    records = json_records(gzip.decompress(path.read_bytes()).decode("utf-8"))
    project = make_project("classify")
    report = project.import_corpus(path)
    assert report.added == 300
    assert set(project.settings.label_names) <= {"negative", "positive"}
    assert [(e.id, e.text, e.label) for e in project.store.examples()] == [(r["id"], r["text"], None) for r in records]
    assert project.store.reference_labels() == {r["id"]: r["label"] for r in records}


def test_a_later_corpus_file_adds_the_missing_hidden_label(make_project: MakeProject, write_file: WriteFile) -> None:
    project = make_project("classify", labels=["pos", "neg"])
    project.import_corpus(write_file("a.jsonl", [{"id": "x", "text": "some text"}]))
    report = project.import_corpus(write_file("b.jsonl", [{"id": "x", "text": "some text", "label": "neg"}]))
    assert (report.added, report.unchanged) == (0, 1)
    assert project.store.reference_labels() == {"x": "neg"}
    assert next(project.store.examples()).label is None
