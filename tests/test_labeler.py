"""Full-corpus labeling with the exported tiny student: every example once, resumable in chunks, predictions that
feed the label export and evaluation, and the whole train -> export -> label -> evaluate path through the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from conftest import demo_file_records, llm_annotation_records, student_project, train_student

import llmaaa_local.labeler
from llmaaa_local.cli import main
from llmaaa_local.errors import LlmaaaError
from llmaaa_local.evaluate import evaluate
from llmaaa_local.export import ExportConfig, export_student
from llmaaa_local.labeler import LabelProgress, OnnxStudent, label_corpus, latest_export
from llmaaa_local.project import Project
from llmaaa_local.records import Span
from llmaaa_local.student import arithmetic

pytestmark = pytest.mark.slow  # every test here trains and exports a real (tiny) student

TOTAL = 40 + 16 + 20  # pool, demo and test examples of `student_project`


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def exported_project(root: Path, encoder: Path, task: str = "classify") -> Project:
    project = student_project(root, task)
    train_student(project, encoder, root, epochs=2, learning_rate=3e-3)
    export_student(project, ExportConfig(threads=1))
    return project


@pytest.fixture
def classify_project(tmp_path: Path, tiny_encoder: Path) -> Iterator[Project]:
    project = exported_project(tmp_path, tiny_encoder)
    yield project
    project.close()


@pytest.mark.parametrize("task", ["classify", "ner", "re"])
def test_every_example_is_labeled_once_and_a_rerun_skips_them(task: str, tmp_path: Path,
                                                               tiny_encoder: Path) -> None:
    with exported_project(tmp_path, tiny_encoder, task) as project:
        store = project.store
        seen: list[tuple[int, int]] = []
        report = label_corpus(project, threads=1, on_progress=lambda p: seen.append((p.done, p.total)))
        artifact = latest_export(project)
        assert artifact.kind == "onnx-int8" and report.artifact_id == artifact.id
        assert (report.labeled, report.skipped) == (TOTAL, 0)
        assert seen[-1] == (TOTAL, TOTAL)
        stored = store.predictions(report.artifact_id)
        assert set(stored) == set(store.example_ids(None))  # every split: pool, demo and test

        examples = list(store.examples())
        student = OnnxStudent(Path(artifact.path), artifact.info["file"], threads=1)
        direct = student.predict(examples)
        assert [stored[e.id][0] for e in examples] == [label for label, _, _ in direct]
        assert [stored[e.id][1] for e in examples] == pytest.approx([confidence for _, _, confidence in direct])
        assert [stored[e.id][2] for e in examples] == [probabilities for _, probabilities, _ in direct]
        for label, confidence, _ in stored.values():
            assert confidence is not None and 0.0 <= confidence <= 1.0
            if task == "ner":
                assert isinstance(label, tuple) and all(isinstance(span, Span) for span in label)
            else:
                assert label in project.settings.label_names

        again = label_corpus(project, threads=1)
        assert (again.artifact_id, again.labeled, again.skipped) == (report.artifact_id, 0, TOTAL)
        assert store.predictions(report.artifact_id) == stored


def test_fp32_labels_with_the_fp32_export(classify_project: Project) -> None:
    int8 = label_corpus(classify_project, threads=1)
    fp32 = label_corpus(classify_project, int8=False, threads=1)
    assert fp32.artifact_id == latest_export(classify_project, int8=False).id != int8.artifact_id
    assert (fp32.labeled, fp32.skipped) == (TOTAL, 0)  # a different export labels everything again
    assert classify_project.store.labeled_artifact() == max(fp32.artifact_id, int8.artifact_id)


class PowerCut(Exception):
    pass


def test_an_interrupted_run_keeps_finished_chunks_and_the_rerun_labels_the_rest(
        classify_project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llmaaa_local.labeler, "CHUNK", 10)
    store = classify_project.store

    def cut_after_first_chunk(progress: LabelProgress) -> None:
        raise PowerCut(f"{progress.done} of {progress.total}")

    with pytest.raises(PowerCut, match=f"10 of {TOTAL}"):
        label_corpus(classify_project, threads=1, on_progress=cut_after_first_chunk)
    artifact_id = latest_export(classify_project).id
    first_chunk = store.example_ids(None)[:10]
    assert store.predicted_ids(artifact_id) == set(first_chunk)
    kept = store.predictions(artifact_id)

    seen: list[LabelProgress] = []
    report = label_corpus(classify_project, threads=1, on_progress=lambda p: seen.append(
        LabelProgress(p.total, p.done, p.skipped)))
    assert (report.labeled, report.skipped) == (TOTAL - 10, 10)
    assert [(p.done, p.skipped) for p in seen] == [(min(10 * i, TOTAL), 10) for i in range(1, 9)]
    assert store.predicted_ids(artifact_id) == set(store.example_ids(None))
    assert {eid: store.predictions(artifact_id)[eid] for eid in first_chunk} == kept


def test_labeling_needs_an_export(tmp_path: Path) -> None:
    with student_project(tmp_path, "classify") as project:
        with pytest.raises(LlmaaaError, match="run `llmaaa-local train` and `llmaaa-local export` first"):
            label_corpus(project)


def test_student_labels_feed_the_export_and_evaluation(classify_project: Project, tmp_path: Path) -> None:
    store = classify_project.store
    before = evaluate(classify_project).to_dict()
    assert set(before) == {"llm"}  # no student labels yet

    artifact_id = label_corpus(classify_project, threads=1).artifact_id
    predictions = store.predictions(artifact_id)

    path = tmp_path / "student-labels.jsonl"
    assert classify_project.export_labels(path, sources=["student"]) == TOTAL
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [row["id"] for row in rows] == store.example_ids(None)
    assert {row["label_source"] for row in rows} == {f"student:{artifact_id}"}
    for row in rows:
        label, confidence, probabilities = predictions[row["id"]]
        assert row["label"] == label and row["confidence"] == pytest.approx(confidence, abs=1e-4)
        assert row["probabilities"] == pytest.approx(probabilities, abs=1e-4)  # per-label, for the student

    result = evaluate(classify_project).to_dict()
    assert set(result) == {"llm", "student", "agreement"}
    student = result["student"]
    gold = {e.id: e.label for e in store.examples("test")}
    right = sum(predictions[eid][0] == label for eid, label in gold.items())
    assert (student["split"], student["n"], student["coverage"], student["artifact"]) == ("test", 20, 1.0,
                                                                                           artifact_id)
    assert student["accuracy"] == pytest.approx(right / 20)
    assert 0.0 <= student["macro_f1"] <= 1.0
    llm = {eid: label for eid, label, _, _ in store.latest_labels()}
    same = sum(predictions[eid][0] == label for eid, label in llm.items())
    assert result["agreement"] == {"n": 40, "rate": pytest.approx(same / 40)}
    assert result["llm"]["n"] == 40 and result["llm"]["accuracy"] == pytest.approx(38 / 40)  # two wrong labels


# --- the command line ----------------------------------------------------------------------------------------------


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


def test_train_export_label_evaluate_from_the_command_line(tmp_path: Path, tiny_encoder: Path) -> None:
    runner = CliRunner()
    project = str(tmp_path / "project")
    base = ["--project", project, "--models-dir", str(tmp_path / "models")]

    def run(*args: str) -> str:
        result = runner.invoke(main, [*base, *args])
        assert result.exit_code == 0, result.output
        return result.output

    corpus = demo_file_records("classify", "corpus", 40)
    assert runner.invoke(main, ["init", project, "--task", "classify", "--labels", "positive,negative"]).exit_code == 0
    run("import", "corpus", write_jsonl(tmp_path / "corpus.jsonl", corpus))
    run("import", "gold", write_jsonl(tmp_path / "demo.jsonl", demo_file_records("classify", "demo", 16)),
        "--split", "demo")
    run("import", "gold", write_jsonl(tmp_path / "test.jsonl", demo_file_records("classify", "test", 20)),
        "--split", "test")
    run("import", "annotations", write_jsonl(tmp_path / "llm.jsonl", llm_annotation_records("classify", corpus)),
        "--source", "teacher")

    small = ("--student", str(tiny_encoder), "--epochs", "1", "--max-length", "64", "--batch-size", "8",
             "--train-threads", "1")
    output = run("train", *small, "--keep-top", "0.5", "--no-balance")
    assert "student run 1: trained on 20 examples (20 LLM labels discarded by --min-confidence or --keep-top)" in output
    with Project.open(tmp_path / "project") as opened:
        config = json.loads(opened.store.db.execute("SELECT config FROM student_runs WHERE id = 1").fetchone()[0])
    assert (config["keep_top"], config["balance"], config["precision"]) == (0.5, False, "auto")
    assert f"s in {arithmetic(torch.device('cpu'), 'auto')} -> " in output  # bf16 autocast where the CPU has AMX
    assert "0.0 is not in the range 0<x<=1" in runner.invoke(main, [*base, "train", *small, "--keep-top", "0"]).output
    output = run("train", *small, "--precision", "fp32")
    assert "student run 2: trained on 40 examples (0 LLM labels discarded by --min-confidence or --keep-top)" in output
    assert "s in fp32 on cpu -> " in output
    assert "validation: n 16  accuracy " in output and "test: n 20  accuracy " in output

    output = run("export")
    assert "onnx      parity on 60 examples: agreement 100.0%" in output
    assert "onnx-int8 parity on 60 examples: agreement " in output
    assert "exported to " in output

    output = run("label", "--threads", "1")
    assert f"{TOTAL} examples labeled, 0 already labeled" in output
    output = run("label", "--threads", "1")
    assert f"0 examples labeled, {TOTAL} already labeled" in output

    result = json.loads(run("evaluate", "--json"))
    assert set(result) == {"llm", "student", "agreement"}
    assert result["llm"]["split"] == "pool" and result["llm"]["n"] == 40
    assert result["llm"]["accuracy"] == pytest.approx(38 / 40)
    assert result["student"]["split"] == "test" and result["student"]["n"] == 20
    assert result["student"]["coverage"] == 1.0
    assert 0.0 <= result["student"]["accuracy"] <= 1.0 and 0.0 <= result["student"]["macro_f1"] <= 1.0
    assert result["agreement"]["n"] == 40 and 0.0 <= result["agreement"]["rate"] <= 1.0

    output = run("evaluate")
    assert "student" in output and "LLM-student agreement" in output
