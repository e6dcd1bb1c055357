"""ONNX export of the tiny student for every task: files, registered artifacts, parity with the PyTorch student,
tolerances that fail loudly, and ONNX predictions in input order whatever the length bucketing."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import student_project, train_student

import llmaaa_local.export
from llmaaa_local.encoding import MEAN_HEAD, RELATION_HEAD, StudentSpec
from llmaaa_local.errors import LlmaaaError
from llmaaa_local.export import FP32_FILE, INT8_FILE, ExportConfig, ExportReport, export_student
from llmaaa_local.labeler import OnnxStudent, latest_export
from llmaaa_local.models import sha256_file
from llmaaa_local.project import Project
from llmaaa_local.records import Example, Label
from llmaaa_local.student import TrainReport, load_student, predict

TASKS = ("classify", "classify-cls", "ner", "re")  # classify: the mean-pooled head; -cls: the checkpoint's own
Prediction = tuple[Label, dict[str, float] | None, float]


@dataclass
class Exported:
    name: str
    project: Project
    training: TrainReport
    export: ExportReport


@pytest.fixture(scope="module", params=TASKS)
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             tiny_encoder: Path) -> Iterator[Exported]:
    """A trained and exported tiny student per task (read-only for the tests that use it)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp(f"onnx-{request.param}")
    task, _, pooling = request.param.partition("-")
    project = student_project(root, task)
    # a few epochs at a high rate so predictions are not all near-ties, which int8 would flip at random
    training = train_student(project, tiny_encoder, root, epochs=4, patience=4, learning_rate=3e-3,
                             pooling=pooling or "mean")
    yield Exported(request.param, project, training, export_student(project, ExportConfig(threads=1)))
    project.close()


def trained_classifier(root: Path, encoder: Path) -> Project:
    torch.set_num_threads(1)
    project = student_project(root, "classify")
    train_student(project, encoder, root, epochs=1)
    return project


def assert_same_predictions(expected: list[Prediction], got: list[Prediction], tolerance: float) -> None:
    assert len(got) == len(expected)
    for (label, probabilities, confidence), (other_label, other_probabilities, other_confidence) in zip(
            expected, got, strict=True):
        assert other_label == label
        assert other_confidence == pytest.approx(confidence, abs=tolerance)
        if probabilities is None:
            assert other_probabilities is None
        else:
            assert other_probabilities is not None and other_probabilities.keys() == probabilities.keys()
            assert other_probabilities == pytest.approx(probabilities, abs=tolerance)


# --- what an export writes and registers ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_export_writes_an_optimised_and_an_int8_model(exported: Exported) -> None:
    folder = exported.export.folder
    assert folder == exported.project.artifacts / "onnx" / f"run-{exported.training.run_id:04d}"
    names = {path.name for path in folder.iterdir()}
    assert {FP32_FILE, INT8_FILE, "tokenizer.json", "student.json"} <= names
    head = StudentSpec.load(folder).head_file
    assert names & {MEAN_HEAD, RELATION_HEAD} == ({head} if head else set())
    assert head == {"classify": MEAN_HEAD, "classify-cls": None, "ner": None, "re": RELATION_HEAD}[
        exported.name]
    assert "raw" not in names  # the plain export is an intermediate
    assert (folder / INT8_FILE).stat().st_size < (folder / FP32_FILE).stat().st_size


@pytest.mark.slow
def test_int8_quantises_the_fused_graph(exported: Exported) -> None:
    """Attention is fused in the fp32 graph and runs quantised in the int8 one (the speed lever of the export)."""
    import onnx

    def ops(name: str) -> set[str]:
        return {node.op_type for node in onnx.load(str(exported.export.folder / name)).graph.node}

    assert "Attention" in ops(FP32_FILE)
    assert {"QAttention", "MatMulInteger"} <= ops(INT8_FILE) and "Attention" not in ops(INT8_FILE)


@pytest.mark.slow
def test_both_models_are_registered_with_their_parity(exported: Exported) -> None:
    store, report = exported.project.store, exported.export
    (checkpoint,) = store.artifacts("checkpoint")
    assert set(report.artifacts) == {"onnx", "onnx-int8"}
    for kind, file_name in (("onnx", FP32_FILE), ("onnx-int8", INT8_FILE)):
        (artifact,) = store.artifacts(kind)
        assert artifact.id == report.artifacts[kind]
        assert artifact.run_id == exported.training.run_id and artifact.path == str(report.folder)
        assert artifact.sha256 == sha256_file(report.folder / file_name)
        info = artifact.info
        assert info["file"] == file_name and info["checkpoint"] == checkpoint.id
        assert info["spec"]["task"] == exported.project.settings.task
        assert info["parity"] == report.parity[kind]
        assert info["parity"]["n"] == 60  # up to 64: the 20 test examples, then the 40 of the pool
    config = ExportConfig()
    assert report.parity["onnx"]["agreement"] == 1.0
    assert report.parity["onnx"]["max_difference"] <= config.fp32_max_difference
    assert report.parity["onnx-int8"]["agreement"] >= config.int8_min_agreement
    assert report.parity["onnx-int8"]["mean_difference"] <= config.int8_mean_difference
    assert report.parity["onnx-int8"]["mean_difference"] <= report.parity["onnx-int8"]["max_difference"]


# --- parity --------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_onnx_predicts_like_the_pytorch_student_on_held_out_examples(exported: Exported) -> None:
    held_out = list(exported.project.store.examples("test"))
    model, encoder = load_student(exported.training.folder)
    reference = predict(model, encoder, held_out, precision="fp32")  # what the ONNX graphs compute
    assert len({round(confidence, 5) for _, _, confidence in reference}) > 1  # not a constant model: parity means it

    fp32 = OnnxStudent(exported.export.folder, FP32_FILE, threads=1).predict(held_out)
    assert_same_predictions(reference, fp32, tolerance=1e-4)

    int8 = OnnxStudent(exported.export.folder, INT8_FILE, threads=1).predict(held_out)
    agreement = sum(a[0] == b[0] for a, b in zip(reference, int8, strict=True)) / len(held_out)
    assert agreement >= ExportConfig().int8_min_agreement


@pytest.mark.slow
def test_onnx_predictions_come_back_in_input_order_whatever_the_bucketing(exported: Exported) -> None:
    store = exported.project.store
    examples: list[Example] = list(store.examples("test")) + list(store.examples("pool"))[:20]
    random.Random(0).shuffle(examples)
    student = OnnxStudent(exported.export.folder, FP32_FILE, threads=1)
    lengths = [len(item.ids) for item in student.encoder.encode(examples)]
    assert lengths != sorted(lengths) and len(set(lengths)) > 5  # bucketing really reorders them

    one_by_one = [student.predict([example])[0] for example in examples]
    for batch_tokens in (8192, 200, 1):  # one batch, a few buckets, one example per batch
        assert_same_predictions(one_by_one, student.predict(examples, batch_tokens=batch_tokens), tolerance=1e-4)
    assert student.predict([]) == []


# --- tolerances and failures ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("config", "message"), [
    (ExportConfig(fp32_max_difference=0.0, threads=1), "ONNX export differs from the PyTorch student"),
    (ExportConfig(int8_mean_difference=0.0, threads=1), "int8 export drifts too far .* export with --no-int8"),
], ids=["fp32", "int8"])
def test_an_export_past_tolerance_fails_and_registers_nothing(config: ExportConfig, message: str, tmp_path: Path,
                                                             tiny_encoder: Path) -> None:
    with trained_classifier(tmp_path, tiny_encoder) as project:
        with pytest.raises(LlmaaaError, match=message):
            export_student(project, config)
        assert [artifact.kind for artifact in project.store.artifacts()] == ["checkpoint"]
        with pytest.raises(LlmaaaError, match="no exported student"):
            latest_export(project)

        good = export_student(project, ExportConfig(threads=1))
        registered = project.store.artifacts()
        with pytest.raises(LlmaaaError, match=message):
            export_student(project, config)
        assert project.store.artifacts() == registered  # a failed re-export adds nothing
        assert latest_export(project).id == good.artifacts["onnx-int8"]


@pytest.mark.slow
def test_an_fp32_only_export_registers_one_model(tmp_path: Path, tiny_encoder: Path) -> None:
    with trained_classifier(tmp_path, tiny_encoder) as project:
        report = export_student(project, ExportConfig(int8=False, threads=1))
        assert set(report.artifacts) == set(report.parity) == {"onnx"}
        assert [artifact.kind for artifact in project.store.artifacts()] == ["onnx", "checkpoint"]
        assert latest_export(project).kind == "onnx"
        with pytest.raises(LlmaaaError, match="no exported student"):
            latest_export(project, int8=True)


@pytest.mark.slow
def test_an_fp32_only_export_does_not_quantize(tmp_path: Path, tiny_encoder: Path) -> None:
    with trained_classifier(tmp_path, tiny_encoder) as project:
        report = export_student(project, ExportConfig(int8=False, threads=1))
        assert not (report.folder / INT8_FILE).exists()


class PowerCut(Exception):
    pass


@pytest.mark.slow
def test_a_failed_re_export_keeps_the_registered_export_usable(tmp_path: Path, tiny_encoder: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with trained_classifier(tmp_path, tiny_encoder) as project:
        export_student(project, ExportConfig(threads=1))

        def crash(*args: Any) -> None:
            raise PowerCut("optimum crashed")

        monkeypatch.setattr(llmaaa_local.export, "_export", crash)
        with pytest.raises(PowerCut):
            export_student(project, ExportConfig(threads=1))
        artifact = latest_export(project)
        path = Path(artifact.path) / artifact.info["file"]
        assert path.exists() and sha256_file(path) == artifact.sha256


def test_exporting_without_a_trained_student_says_to_train(tmp_path: Path) -> None:
    with student_project(tmp_path, "classify") as project:
        with pytest.raises(LlmaaaError, match=r"no trained student to export: run `llmaaa-local train` first"):
            export_student(project, ExportConfig())
        with pytest.raises(LlmaaaError, match="student run 7 has no checkpoint"):
            export_student(project, ExportConfig(), run_id=7)


def test_a_missing_onnx_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LlmaaaError, match="exported model file is missing"):
        OnnxStudent(tmp_path, FP32_FILE)
