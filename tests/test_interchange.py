"""Other tools' files: Label Studio, Prodigy, spaCy DocBin, Hugging Face datasets and Parquet, out and back in."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import snapshot
from test_export import GOLD, LABELS, add_llm_label, full

from llmaaa_local.cli import main
from llmaaa_local.errors import LlmaaaError
from llmaaa_local.interchange import choose_format, label_config, label_config_path
from llmaaa_local.project import Project
from llmaaa_local.records import Span

MakeProject = Callable[..., Project]
WriteFile = Callable[..., Path]

# Non-ASCII text, a character beyond U+FFFF before the entities, and the same strings repeated: offsets must stay
# exact, and the second "Zoë" must not be taken for the first.
HARD = "Zoë 🙂 met Zoë in Zürich, then Zürich again."
HARD_RECORD = {"id": "n4", "text": HARD, "spans": [
    {"start": HARD.index("Zoë", 2), "end": HARD.index("Zoë", 2) + 3, "type": "PER"},
    {"start": HARD.index("Zürich"), "end": HARD.index("Zürich") + 6, "type": "LOC"},
    {"start": HARD.rindex("Zürich"), "end": HARD.rindex("Zürich") + 6, "type": "LOC"},
]}
NER_GOLD = [*GOLD["ner"][1], HARD_RECORD]  # type: ignore[misc]
CLASSIFY_GOLD = GOLD["classify"][1]
RE_GOLD = GOLD["re"][1]
DATA = {"classify": CLASSIFY_GOLD, "ner": NER_GOLD, "re": RE_GOLD}


def gold_project(make_project: MakeProject, write_file: WriteFile, task: str, name: str = "proj") -> Project:
    project = make_project(task, labels=LABELS[task], name=name, **({"no_relation": "Other"} if task == "re" else {}))
    project.import_gold(write_file(f"{task}-gold.jsonl", DATA[task]), "test")
    return project


def char_spans(project: Project) -> dict[str, list[tuple[int, int, str, str]]]:
    """Each NER example's entities as character offsets with the text they cover."""
    found = {}
    for example in project.store.examples():
        assert example.offsets is not None and not isinstance(example.label, str) and example.label is not None
        found[example.id] = [(example.offsets[s.start][0], example.offsets[s.end - 1][1], s.type,
                              example.text[example.offsets[s.start][0]:example.offsets[s.end - 1][1]])
                             for s in example.label]
    return found


@pytest.mark.parametrize(("task", "fmt", "out_name"), [
    ("classify", "label-studio", "tasks.json"),
    ("ner", "label-studio", "tasks.json"),
    ("re", "label-studio", "tasks.json"),
    ("ner", "prodigy", "prodigy.jsonl"),
    ("classify", "hf", "dataset"),
    ("ner", "hf", "dataset"),
    ("re", "hf", "dataset"),
    ("classify", None, "labels.parquet"),
    ("ner", None, "labels.parquet"),
    ("re", None, "labels.parquet"),
])
def test_round_trip_gives_the_same_examples_and_labels(make_project: MakeProject, write_file: WriteFile,
                                                       tmp_path: Path, task: str, fmt: str | None,
                                                       out_name: str) -> None:
    project = gold_project(make_project, write_file, task)
    original = full(project)
    out = tmp_path / "out" / out_name
    assert project.export_labels(out, fmt) == len(original)

    fresh = make_project(task, labels=LABELS[task], name="fresh", **({"no_relation": "Other"} if task == "re" else {}))
    again = fresh.import_gold(out, "test", fmt)
    assert (again.added, again.unchanged, again.skipped) == (len(original), 0, 0)
    assert full(fresh) == original
    if task == "ner":
        assert char_spans(fresh) == char_spans(project)
        assert char_spans(fresh)["n4"][0][3] == "Zoë" and char_spans(fresh)["n4"][0][0] == HARD.index("Zoë", 2)
    # the review workflow: a file exported from a project goes back into it as the same examples
    assert project.import_gold(out, "test", fmt).unchanged == len(original)


def test_label_studio_tasks_fit_their_labeling_config(make_project: MakeProject, write_file: WriteFile,
                                                      tmp_path: Path) -> None:
    """Validated by Label Studio's own SDK: gold as annotations, the LLM's and the student's labels as predictions
    with model version and score."""
    from label_studio_sdk.label_interface import LabelInterface

    for task in ("classify", "ner", "re"):
        project = gold_project(make_project, write_file, task, name=f"{task}-ls")
        examples = list(project.store.examples())
        add_llm_label(project, examples[0].id, examples[1].label, 0.61, source="llm:gemma-3-270m.gguf")
        run = project.store.start_student_run("minilm-l6", "llm", {}, None)
        artifact = project.store.add_artifact(run, "onnx", "student.onnx", "0" * 64, {})
        project.store.add_predictions(artifact, [(examples[0].id, examples[0].label, None, 0.87)])
        out = tmp_path / f"{task}.json"
        project.export_labels(out, "label-studio")
        config = label_config_path(out).read_text()
        assert config == label_config(project.settings)
        interface = LabelInterface(config)
        interface.validate()  # raises on a config Label Studio would refuse
        tasks = json.loads(out.read_text())
        assert len(tasks) == len(examples)
        first = tasks[0]
        assert [p["model_version"] for p in first["predictions"]] == ["llm:gemma-3-270m.gguf", f"student:{artifact}"]
        assert [p["score"] for p in first["predictions"]] == [0.61, 0.87]
        for item in tasks:
            assert isinstance(item["data"]["text"], str)
            for kind in ("annotations", "predictions"):
                for prediction in item.get(kind, []):
                    assert interface.validate_prediction(prediction, return_errors=True) == [], (task, prediction)
        if task == "ner":
            for item in tasks:
                for region in item["annotations"][0]["result"]:
                    value = region["value"]
                    assert item["data"]["text"][value["start"]:value["end"]] == value["text"]


def label_studio_export(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tasks as Label Studio's JSON export writes them: its own ids, annotations with ids, users and dates."""
    return [{"id": 100 + n, "data": task["data"], "annotations": [
        {"id": 500 + n, "completed_by": 1, "was_cancelled": False, "created_at": "2026-12-01T10:00:00Z",
         **annotation} for annotation in task.get("annotations", [])], "predictions": [], "project": 3}
        for n, task in enumerate(tasks)]


def test_label_studio_export_imports_as_gold_skipping_tasks_nobody_finished(make_project: MakeProject,
                                                                           write_file: WriteFile) -> None:
    text = "Ann flew to Rome 🙂 and to Rome again."
    second = text.rindex("Rome")
    units = len(text[:second].encode("utf-16-le")) // 2  # the browser's offsets: UTF-16 code units
    tasks = label_studio_export([
        {"data": {"text": text}, "annotations": [{"result": [
            {"id": "a", "from_name": "label", "to_name": "text", "type": "labels",
             "value": {"start": 0, "end": 3, "text": "Ann", "labels": ["PER"]}},
            {"id": "b", "from_name": "label", "to_name": "text", "type": "labels",
             "value": {"start": units, "end": units + 4, "text": "Rome", "labels": ["LOC"]}}]}]},
        {"data": {"text": "Nobody labeled this."}},
        {"data": {"text": "Skipped by the reviewer."}, "annotations": [{"result": [], "was_cancelled": True}]},
        {"data": {"text": "No entities here."}, "annotations": [{"result": []}]},
    ])
    path = write_file("project-3-at-2026-12-01.json", json.dumps(tasks))
    assert choose_format(path, "ner", None, reading=True) == "label-studio"
    project = make_project("ner", labels=LABELS["ner"])
    report = project.import_gold(path, "demo")
    assert (report.added, report.skipped) == (2, 2)
    spans = char_spans(project)
    assert spans == {"100": [(0, 3, "PER", "Ann"), (second, second + 4, "LOC", "Rome")], "103": []}
    pool = make_project("ner", labels=LABELS["ner"], name="pool")
    assert pool.import_corpus(path).added == 4  # as a corpus every task is a text; finished ones carry a reference


def test_label_studio_relations_drawn_either_way(make_project: MakeProject, write_file: WriteFile) -> None:
    """A file from another Label Studio project: no tokens in the data; a relation drawn from the tail back to the
    head ("left") still reads head -> tail; no relation drawn means the no-relation label."""
    text = "The floods were caused by rain."

    def region(rid: str, word: str, name: str) -> dict[str, Any]:
        start = text.index(word)
        return {"id": rid, "from_name": "label", "to_name": "text", "type": "labels",
                "value": {"start": start, "end": start + len(word), "text": word, "labels": [name]}}

    tasks = label_studio_export([
        {"data": {"id": "x1", "text": text}, "annotations": [{"result": [
            region("h", "rain", "head"), region("t", "floods", "tail"),
            {"from_id": "t", "to_id": "h", "type": "relation", "direction": "left", "labels": ["Cause-Effect(e1,e2)"]},
        ]}]},
        {"data": {"id": "x2", "text": text}, "annotations": [{"result": [
            region("h", "floods", "head"), region("t", "rain", "tail")]}]},
    ])
    project = make_project("re", labels=LABELS["re"], no_relation="Other")
    assert project.import_gold(write_file("re.json", json.dumps(tasks)), "test").added == 2
    stored = {e.id: e for e in project.store.examples()}
    assert (stored["x1"].head and stored["x1"].head.name, stored["x1"].tail and stored["x1"].tail.name,
            stored["x1"].label) == ("rain", "floods", "Cause-Effect(e1,e2)")
    assert (stored["x2"].head and stored["x2"].head.name, stored["x2"].label) == ("floods", "Other")


def test_prodigy_export_has_prodigy_shapes_and_rejected_answers_are_not_gold(make_project: MakeProject,
                                                                          write_file: WriteFile,
                                                                          tmp_path: Path) -> None:
    project = gold_project(make_project, write_file, "ner")
    out = tmp_path / "prodigy.jsonl"
    project.export_labels(out, "prodigy")
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    hard = next(r for r in records if r["meta"]["id"] == "n4")
    assert hard["answer"] == "accept" and hard["meta"]["label_source"] == "gold"
    for span in hard["spans"]:  # token_end is inclusive in Prodigy
        assert hard["tokens"][span["token_start"]]["start"] == span["start"]
        assert hard["tokens"][span["token_end"]]["end"] == span["end"]
        assert hard["text"][span["start"]:span["end"]] in ("Zoë", "Zürich")
    rejected = dict(records[0], answer="reject")
    ignored = dict(records[1], answer="ignore")
    path = write_file("review.jsonl", [rejected, ignored, *records[2:]])
    fresh = make_project("ner", labels=LABELS["ner"], name="fresh")
    report = fresh.import_gold(path, "dev", "prodigy")
    assert (report.added, report.skipped) == (len(records) - 2, 2)


def test_prodigy_records_made_by_spacy_tokens_with_whitespace_tokens(make_project: MakeProject,
                                                                     write_file: WriteFile) -> None:
    text = "Ann  Lee\nvisited Rome"
    tokens = [{"text": "Ann", "start": 0, "end": 3, "id": 0, "ws": True}, {"text": " ", "start": 4, "end": 5, "id": 1,
              "ws": False}, {"text": "Lee", "start": 5, "end": 8, "id": 2, "ws": False},
              {"text": "\n", "start": 8, "end": 9, "id": 3, "ws": False},
              {"text": "visited", "start": 9, "end": 16, "id": 4, "ws": True},
              {"text": "Rome", "start": 17, "end": 21, "id": 5, "ws": False}]
    record = {"text": text, "tokens": tokens, "_input_hash": 42, "answer": "accept",
              "spans": [{"start": 0, "end": 8, "token_start": 0, "token_end": 2, "label": "PER"},
                        {"start": 17, "end": 21, "token_start": 5, "token_end": 5, "label": "LOC"}]}
    project = make_project("ner", labels=LABELS["ner"])
    project.import_gold(write_file("p.jsonl", [record]), "test", "prodigy")
    assert char_spans(project) == {"42": [(0, 8, "PER", "Ann  Lee"), (17, 21, "LOC", "Rome")]}


@pytest.mark.parametrize("task", ["classify", "ner"])
def test_spacy_docbin_loads_with_the_projects_labels(make_project: MakeProject, write_file: WriteFile,
                                                     tmp_path: Path, task: str) -> None:
    import spacy
    from spacy.tokens import DocBin
    from spacy.training import Corpus

    project = gold_project(make_project, write_file, task)
    out = tmp_path / "train.spacy"
    assert project.export_labels(out) == len(DATA[task])
    docs = {doc.user_data["id"]: doc for doc in DocBin().from_disk(out).get_docs(spacy.blank("en").vocab)}
    for example in project.store.examples():
        doc = docs[example.id]
        assert doc.text == example.text
        if task == "classify":
            assert doc.cats == {name: float(name == example.label) for name in LABELS[task]}
        else:
            assert [(ent.start_char, ent.end_char, ent.label_) for ent in doc.ents] == [
                (start, end, kind) for start, end, kind, _ in char_spans(project)[example.id]]
    # what `spacy train` reads its training data with
    read = list(Corpus(str(out))(spacy.blank("en")))
    assert len(read) == len(DATA[task])


def test_hf_features_name_the_labels(make_project: MakeProject, write_file: WriteFile, tmp_path: Path) -> None:
    import datasets

    project = gold_project(make_project, write_file, "ner")
    project.export_labels(tmp_path / "ds", "hf")
    dataset = datasets.load_from_disk(str(tmp_path / "ds"))
    tags = dataset.features["ner_tags"].feature
    assert tags.names == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
    row = dataset[[r["id"] for r in dataset].index("n2")]
    assert [tags.int2str(t) for t in row["ner_tags"]] == ["B-PER", "O", "B-PER", "I-PER"]
    assert row["label_source"] == "gold" and row["confidence"] is None


def test_a_plain_parquet_file_with_string_labels_imports(make_project: MakeProject, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "reviews.parquet"
    pq.write_table(pa.table({"text": ["good film", "bad film"], "label": ["pos", "neg"]}), path)
    project = make_project("classify", labels=LABELS["classify"])
    assert project.import_gold(path, "dev").added == 2
    assert {e.id: e.label for e in project.store.examples()} == {"reviews-00001": "pos", "reviews-00002": "neg"}


def bad_label_studio(task: list[dict[str, Any]]) -> str:
    return json.dumps(label_studio_export(task))


@pytest.mark.parametrize(("task", "name", "content", "message"), [
    ("classify", "ls.json", bad_label_studio([
        {"data": {"text": "fine"}, "annotations": [{"result": [
            {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}}]}]},
        {"data": {"text": "odd"}, "annotations": [{"result": [
            {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["meh"]}}]}]}]),
     r"ls.json: task 2: record '101': label 'meh' is not in the project's label set"),
    ("classify", "ls.json", bad_label_studio([{"data": {"body": "no text key"}, "annotations": [{"result": []}]}]),
     r"ls.json: task 1: the task's data has no 'text' string \(it has \['body'\]\)"),
    ("ner", "ls.json", bad_label_studio([{"data": {"text": "Annabel left", "tokens": ["Annabel", "left"]},
                                          "annotations": [{"result": [
        {"from_name": "label", "to_name": "text", "type": "labels",
         "value": {"start": 0, "end": 3, "text": "Ann", "labels": ["PER"]}}]}]}]),
     r"ls.json: task 1: record 100: span \[0, 3\) 'Ann' \(PER\) starts or ends inside a token"),
    ("ner", "ls.json", bad_label_studio([{"data": {"text": "Ann left"}, "annotations": [{"result": [
        {"from_name": "label", "to_name": "text", "type": "labels",
         "value": {"start": 0, "end": 3, "text": "Bob", "labels": ["PER"]}}]}]}]),
     r"task 1: record 100: region \[0, 3\) says 'Bob' but the text there is 'Ann'"),
    ("ner", "ls.json", '{"data": {}}', r"ls.json: expected a list of Label Studio tasks, found dict"),
    ("ner", "p.jsonl", json.dumps({"text": "Ann left", "tokens": [{"text": "Ann", "start": 1, "end": 4}]}) + "\n",
     r"p.jsonl:1: record 'p-00001': token 0 .* does not match the text"),
])
def test_bad_files_name_the_record_and_change_nothing(make_project: MakeProject, write_file: WriteFile, task: str,
                                                      name: str, content: str, message: str) -> None:
    project = make_project(task, labels=LABELS[task])
    project.import_gold(write_file("seed.jsonl", DATA[task][:1]), "demo")
    before = snapshot(project)
    fmt = "prodigy" if name.endswith(".jsonl") else None  # Label Studio: named, as for a file that is not a list
    with pytest.raises(LlmaaaError, match=message):
        project.import_gold(write_file(name, content), "test", fmt or "label-studio")
    assert snapshot(project) == before


def test_bad_datasets_name_the_column_or_row(make_project: MakeProject, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    project = make_project("classify", labels=LABELS["classify"])
    before = snapshot(project)
    pq.write_table(pa.table({"review": ["good"], "label": ["pos"]}), tmp_path / "a.parquet")
    with pytest.raises(LlmaaaError, match=r"a.parquet: no 'text' column \(the columns: review, label\)"):
        project.import_gold(tmp_path / "a.parquet", "test")
    pq.write_table(pa.table({"text": ["good", "bad"], "label": [1, 0]}), tmp_path / "b.parquet")
    with pytest.raises(LlmaaaError, match=r"b.parquet: row 1: label 1 is a number and the dataset's features name"):
        project.import_gold(tmp_path / "b.parquet", "test")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LlmaaaError, match="empty: not a saved Hugging Face dataset"):
        project.import_gold(tmp_path / "empty", "test")
    assert snapshot(project) == before


def test_formats_that_do_not_suit_the_task_or_cannot_be_read(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project("re", labels=LABELS["re"], no_relation="Other")
    with pytest.raises(LlmaaaError, match="format 'spacy' does not suit the re task"):
        project.export_labels(tmp_path / "x.spacy")
    with pytest.raises(LlmaaaError, match="format 'prodigy' does not suit the re task"):
        project.export_labels(tmp_path / "x.jsonl", "prodigy")
    with pytest.raises(LlmaaaError, match=r"format 'spacy' is written, not read"):
        choose_format(tmp_path / "x.spacy", "ner", None, reading=True)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(LlmaaaError, match="notes: exists and is not a saved dataset"):
        project.export_labels(tmp_path / "notes", "hf")
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"


def test_cli_imports_and_exports_other_tools_files(make_project: MakeProject, write_file: WriteFile,
                                                   tmp_path: Path) -> None:
    project = gold_project(make_project, write_file, "ner")
    runner = CliRunner()
    out = tmp_path / "tasks.json"
    result = runner.invoke(main, ["--project", str(project.root), "export-labels", str(out), "--format",
                                  "label-studio"])
    assert result.exit_code == 0, result.output
    assert f"Label Studio labeling config: {label_config_path(out)}" in result.output
    fresh = make_project("ner", labels=LABELS["ner"], name="fresh")
    result = runner.invoke(main, ["--project", str(fresh.root), "import", "gold", str(out), "--split", "test"])
    assert result.exit_code == 0, result.output
    assert f"{len(NER_GOLD)} added" in result.output
    result = runner.invoke(main, ["--project", str(fresh.root), "export-labels", str(tmp_path / "ds"), "--format",
                                  "hf"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["--project", str(fresh.root), "import", "corpus", str(tmp_path / "ds")])
    assert result.exit_code == 0, result.output
    assert f"0 added, {len(NER_GOLD)} already present" in result.output


@pytest.mark.slow
def test_spacy_train_runs_on_the_exported_docbin(make_project: MakeProject, write_file: WriteFile,
                                                tmp_path: Path) -> None:
    """`spacy train` itself, a few steps of a blank English NER pipeline on the export (offline, no vectors)."""
    import subprocess
    import sys

    project = gold_project(make_project, write_file, "ner")
    data = tmp_path / "train.spacy"
    project.export_labels(data)
    config = tmp_path / "config.cfg"
    spacy = [sys.executable, "-m", "spacy"]
    subprocess.run([*spacy, "init", "config", str(config), "--lang", "en", "--pipeline", "ner", "--optimize",
                    "efficiency"], check=True, capture_output=True)
    trained = subprocess.run([*spacy, "train", str(config), "--paths.train", str(data), "--paths.dev", str(data),
                              "--training.max_steps", "4", "--training.eval_frequency", "2", "--output",
                              str(tmp_path / "model")], capture_output=True, text=True)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert (tmp_path / "model" / "model-last" / "ner").is_dir()


@pytest.mark.parametrize("task", ["classify", "ner", "re"])
def test_reviewed_llm_predictions_come_back_as_gold(make_project: MakeProject, write_file: WriteFile,
                                                    tmp_path: Path, task: str) -> None:
    """The review workflow: pool examples pre-labeled by the LLM go to Label Studio, a reviewer accepts one
    prediction as it is and corrects another, and the export comes back as gold for those pool examples."""
    project = make_project(task, labels=LABELS[task], **({"no_relation": "Other"} if task == "re" else {}))
    project.import_corpus(write_file(f"{task}.jsonl", DATA[task]))
    examples = list(project.store.examples())
    llm_label = {"classify": "pos", "ner": (Span(0, 1, "PER"),), "re": "Cause-Effect(e1,e2)"}[task]
    for example in examples:
        add_llm_label(project, example.id, llm_label, 0.7)
    out = tmp_path / "tasks.json"
    assert project.export_labels(out, "label-studio", ["llm"]) == len(examples)
    tasks = json.loads(out.read_text())
    assert not any("annotations" in item for item in tasks)  # the pool's hidden references never leave
    tasks[0]["annotations"] = [{"result": tasks[0]["predictions"][0]["result"]}]  # accepted as it is
    fixed = json.loads(json.dumps(tasks[1]["predictions"][0]["result"]))
    if task == "classify":
        fixed[0]["value"]["choices"] = [LABELS[task][1]]
    elif task == "ner":
        fixed[0]["value"]["labels"] = ["LOC"]
    else:
        fixed[2]["labels"] = ["Other"]
    tasks[1]["annotations"] = [{"result": fixed}]  # corrected
    reviewed = write_file("reviewed.json", json.dumps(label_studio_export(tasks)))
    report = project.import_gold(reviewed, "dev")
    assert (report.promoted, report.added, report.skipped) == (2, 0, len(examples) - 2)
    gold = {e.id: e.label for e in project.store.examples(split="dev")}
    assert gold[examples[0].id] == llm_label
    assert gold[examples[1].id] == {"classify": "neg", "ner": (Span(0, 1, "LOC"),), "re": "Other"}[task]
