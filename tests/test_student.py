"""The student trainer on a tiny in-process BERT: checkpoints and run records for every task, data modes, confidence
filtering, that it learns, failures, and the input encoding shared with ONNX labeling."""

from __future__ import annotations

import itertools
import json
import math
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import LLM_CONFIDENCE, TASK_LABELS, WRONG_CONFIDENCE, student_project, train_student
from tokenizers import Tokenizer

from llmaaa_local.config import TrainConfig, default_learning_rate
from llmaaa_local.encoding import (
    MARKERS,
    MEAN_HEAD,
    RELATION_HEAD,
    SPEC_FILE,
    InputEncoder,
    StudentSpec,
    bio_labels,
    decode,
    repair_bio,
)
from llmaaa_local.errors import LlmaaaError
from llmaaa_local.export import reference_predictions
from llmaaa_local.models import sha256_file
from llmaaa_local.project import Project
from llmaaa_local.records import Example, Mention, Span
from llmaaa_local.student import (
    Evaluation,
    StudentModel,
    Trainer,
    TrainProgress,
    arithmetic,
    load_student,
    predict,
    training_data,
    uses_bf16,
)
from llmaaa_local.tasks import task_for

TASKS = ("classify", "ner", "re")
MAIN_METRIC = {"classify": "accuracy", "ner": "f1", "re": "f1"}


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def classify_project(tmp_path: Path) -> Iterator[Project]:
    project = student_project(tmp_path, "classify")
    yield project
    project.close()


# --- a training run ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_a_run_saves_a_checkpoint_and_records_it(task: str, tmp_path: Path, tiny_encoder: Path) -> None:
    with student_project(tmp_path, task) as project:
        report = train_student(project, tiny_encoder, tmp_path)
        folder = report.folder
        assert folder == project.artifacts / "students" / f"run-{report.run_id:04d}"
        names = {path.name for path in folder.iterdir()}
        assert {"model.safetensors", "tokenizer.json", SPEC_FILE, "config.json"} <= names
        heads = {"classify": {MEAN_HEAD}, "ner": set(), "re": {RELATION_HEAD}}[task]
        assert names & {MEAN_HEAD, RELATION_HEAD} == heads

        spec = StudentSpec.load(folder)
        expected_labels = bio_labels(TASK_LABELS[task]) if task == "ner" else tuple(TASK_LABELS[task])
        pooling, head_tokens = ("mean", 16) if task == "classify" else ("cls", 0)  # a quarter of max_length 64
        assert spec == StudentSpec(task, expected_labels, 64, str(tiny_encoder), pooling,  # type: ignore[arg-type]
                                   head_tokens)
        if task == "re":  # the entity markers are whole tokens of the saved tokenizer
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            assert all(tokenizer.token_to_id(marker) is not None for marker in MARKERS)

        (artifact,) = project.store.artifacts()
        assert artifact.id == report.artifact_id and artifact.run_id == report.run_id
        assert artifact.kind == "checkpoint" and artifact.path == str(folder)
        assert artifact.sha256 == sha256_file(folder / "model.safetensors")
        assert artifact.info["spec"]["labels"] == list(expected_labels)

        (run,) = project.store.student_runs()
        assert (run["id"], run["status"], run["data_mode"], run["student"]) == (
            report.run_id, "done", "llm", str(tiny_encoder))
        assert run["finished_at"] is not None
        metrics = run["metrics"]
        assert metrics == json.loads(json.dumps(report.metrics))
        assert metrics["validation"]["n"] == 16 and metrics["test"]["n"] == 20  # no dev split: the demo validates
        for split in ("validation", "test"):
            scores = {key: value for key, value in metrics[split].items() if key != "n"}
            assert MAIN_METRIC[task] in scores
            assert all(isinstance(value, float) and 0.0 <= value <= 1.0 for value in scores.values()), scores
        assert 1 <= report.best_epoch == metrics["best_epoch"] <= 2
        assert [(row["phase"], row["epoch"]) for row in metrics["history"]] == [("llm", 1), ("llm", 2)]
        assert all(math.isfinite(row["train_loss"]) and math.isfinite(row["validation_loss"])
                   for row in metrics["history"])
        assert (report.trained_on, report.discarded) == (40, 0)
        assert report.seconds > 0

        model, encoder = load_student(folder)  # the saved checkpoint is the model that was scored
        test = list(project.store.examples("test"))
        predicted = {e.id: label for e, (label, _, _) in zip(test, predict(model, encoder, test), strict=True)}
        scores = task_for(project.settings).metrics({e.id: e.label for e in test}, predicted,  # type: ignore[misc]
                                                    {e.id: e for e in test})
        assert {"n": 20, **scores} == pytest.approx(metrics["test"])


def test_the_same_seed_trains_the_same_student(classify_project: Project, tiny_encoder: Path,
                                               tmp_path: Path) -> None:
    first = train_student(classify_project, tiny_encoder, tmp_path, seed=3)
    second = train_student(classify_project, tiny_encoder, tmp_path, seed=3)
    other = train_student(classify_project, tiny_encoder, tmp_path, seed=4)
    digests = [sha256_file(report.folder / "model.safetensors") for report in (first, second, other)]
    assert digests[0] == digests[1] != digests[2]
    assert first.metrics == second.metrics


# --- what it trains on ---------------------------------------------------------------------------------------------


def steps_by_phase(project: Project, encoder: Path, models_dir: Path, **overrides: Any) -> tuple[Any, dict[str, int]]:
    """Train, and return the report with the number of steps per epoch that each phase reported."""
    seen: list[TrainProgress] = []
    report = train_student(project, encoder, models_dir, on_progress=seen.append, **overrides)
    return report, {progress.phase: progress.steps for progress in seen}


def test_llm_mode_trains_on_every_llm_label(classify_project: Project, tiny_encoder: Path, tmp_path: Path) -> None:
    report, steps = steps_by_phase(classify_project, tiny_encoder, tmp_path)
    assert report.trained_on == 40 == classify_project.status().counts.annotations
    assert steps == {"llm": 5}  # 40 examples in batches of 8


def test_a_small_training_set_gets_epochs_up_to_min_steps(classify_project: Project, tiny_encoder: Path,
                                                           tmp_path: Path) -> None:
    seen: list[TrainProgress] = []
    # 40 examples in batches of 8: 5 steps an epoch, so 12 steps take 3 epochs (a high patience keeps them all)
    report = train_student(classify_project, tiny_encoder, tmp_path, epochs=1, min_steps=12, patience=9,
                           on_progress=seen.append)
    assert [row["epoch"] for row in report.metrics["history"]] == [1, 2, 3]
    assert {progress.epochs for progress in seen} == {3}
    assert sum(1 for progress in seen if progress.validation_loss is None) == 15  # one report per step


@pytest.mark.parametrize(("task", "planned"), [("classify", 3), ("ner", 10), ("re", 10)])
def test_without_epochs_each_task_plans_its_own(task: str, planned: int, tiny_encoder: Path, tmp_path: Path) -> None:
    """A classification head over mean-pooled sentence states starts close to its task; NER tags and relation
    markers are learned from scratch and need more passes (TASK_EPOCHS). --epochs still decides when given."""
    for epochs, expected in ((None, planned), (2, 2)):
        seen: list[TrainProgress] = []
        with student_project(tmp_path / f"{epochs}", task) as project:
            train_student(project, tiny_encoder, tmp_path, epochs=epochs, patience=99, on_progress=seen.append)
        assert {progress.epochs for progress in seen} == {expected}


@pytest.mark.parametrize(("epochs", "min_steps"), [(3, 0), (1, 12)])
def test_the_learning_rate_decays_to_zero_over_the_epochs_it_plans(epochs: int, min_steps: int,
                                                                   classify_project: Project, tiny_encoder: Path,
                                                                   tmp_path: Path) -> None:
    """The schedule spans the epochs the run plans (--epochs, or more for --min-steps): its last epoch ends at rate
    0, so a run that goes the distance is annealed, not stopped near the peak rate."""
    report = train_student(classify_project, tiny_encoder, tmp_path, epochs=epochs, min_steps=min_steps, patience=9,
                           learning_rate=1e-3)  # 40 examples in batches of 8: 5 steps an epoch, 15 steps in all
    rates = [row["learning_rate"] for row in report.metrics["history"]]
    assert rates == pytest.approx([1e-3 * 10 / 14, 1e-3 * 5 / 14, 0.0])  # one warmup step, then linear decay


@pytest.mark.parametrize(("right", "kept", "run"), [
    ([18, 16, 17], 3, 3),  # 2 and 1 more wrong of 20 than the best epoch: noise, so the last (annealed) epoch stays
    ([14, 16, 18], 3, 3),  # rising: the last, although the validation loss rose (below)
    ([16, 18, 18], 3, 3),  # a tie goes to the later epoch
    ([20, 10, 20], 3, 3),  # one clearly worse epoch, then as good again
    ([20, 10, 11, 20], 1, 3),  # two clearly worse epochs in a row (10 and 9 more wrong of 20) stop the run
])
def test_early_stopping_keeps_the_last_epoch_unless_an_earlier_one_is_clearly_better(
        right: list[int], kept: int, run: int, classify_project: Project, tiny_encoder: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On a hundred gold examples, epochs a few points apart are a coin toss, and noisy LLM labels make a student
    confident faster than they make it wrong (its validation loss rises while its accuracy still improves). So
    the annealed last epoch stays unless an earlier one is better on the gold examples by a sign test."""
    scripted = iter(right)
    calls = itertools.count(1)

    def evaluate(*_: Any) -> Evaluation:  # the first n of 20 examples right, macro-F1 n/20, the loss rising
        n = next(scripted, 20)
        return Evaluation(next(calls) / 10, {"n": 20, "macro_f1": n / 20}, [True] * n + [False] * (20 - n))

    monkeypatch.setattr(Trainer, "_evaluate", evaluate)
    report = train_student(classify_project, tiny_encoder, tmp_path, epochs=len(right), min_steps=0, patience=2)
    history = report.metrics["history"]
    assert [row["validation_score"] for row in history] == [n / 20 for n in right[:run]]
    assert report.best_epoch == kept and report.metrics["selected_by"] == "macro_f1"


def test_on_epoch_figures_join_each_epoch_of_the_history(classify_project: Project, tiny_encoder: Path,
                                                          tmp_path: Path) -> None:
    """Benchmarks score every epoch on test data through `on_epoch`; the run keeps its figures per epoch."""
    seen: list[int] = []

    def measure(model: StudentModel, encoder: InputEncoder) -> dict[str, float]:
        seen.append(len(seen) + 1)
        return {"test_accuracy": float(len(seen)) / 10}

    report = train_student(classify_project, tiny_encoder, tmp_path, epochs=3, patience=9, on_epoch=measure)
    assert [row["test_accuracy"] for row in report.metrics["history"]] == [0.1, 0.2, 0.3] and seen == [1, 2, 3]


def test_the_kept_epoch_is_the_one_saved(classify_project: Project, tiny_encoder: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """When early stopping goes back to an earlier epoch, the saved checkpoint has that epoch's weights."""
    scripted = iter([20, 0, 0])
    kept_weights: list[torch.Tensor] = []

    def evaluate(trainer: Trainer, model: StudentModel, *_: Any) -> Evaluation:
        n = next(scripted, 20)
        if n == 20 and not kept_weights:
            kept_weights.append(model.head.weight.detach().clone())
        return Evaluation(0.1, {"n": 20, "macro_f1": n / 20}, [True] * n + [False] * (20 - n))

    monkeypatch.setattr(Trainer, "_evaluate", evaluate)
    report = train_student(classify_project, tiny_encoder, tmp_path, epochs=3, min_steps=0, patience=2)
    assert report.best_epoch == 1 and len(report.metrics["history"]) == 3
    model, _ = load_student(report.folder)
    assert torch.equal(model.head.weight, kept_weights[0])


def test_gold_mode_trains_on_the_demo_split_only(tmp_path: Path, tiny_encoder: Path) -> None:
    with student_project(tmp_path, "classify", annotate=False) as project:  # no LLM labels needed
        report, steps = steps_by_phase(project, tiny_encoder, tmp_path, data="gold")
        assert (report.trained_on, report.discarded) == (16, 0)
        assert steps == {"gold": 2}
        (run,) = project.store.student_runs()
        assert run["data_mode"] == "gold"
        assert {row["phase"] for row in run["metrics"]["history"]} == {"gold"}


def test_combined_mode_trains_on_llm_labels_then_gold(classify_project: Project, tiny_encoder: Path,
                                                      tmp_path: Path) -> None:
    report, steps = steps_by_phase(classify_project, tiny_encoder, tmp_path, data="combined")
    assert report.trained_on == 40 + 16
    assert steps == {"llm": 5, "gold": 2}
    assert [(row["phase"], row["epoch"]) for row in report.metrics["history"]] == [
        ("llm", 1), ("llm", 2), ("gold", 1), ("gold", 2)]


def test_min_confidence_discards_low_confidence_llm_labels(classify_project: Project, tiny_encoder: Path,
                                                           tmp_path: Path) -> None:
    config = TrainConfig(student=str(tiny_encoder), min_confidence=0.5, balance=False)
    examples, weights, discarded = training_data(classify_project, config)
    assert discarded == 2 and len(examples) == 38
    assert {"rev-0001", "rev-0002"}.isdisjoint(e.id for e in examples)  # the two wrong labels
    assert weights == [pytest.approx(LLM_CONFIDENCE)] * 38
    hidden = classify_project.store.reference_labels("pool")
    assert all(example.label == hidden[example.id] for example in examples)  # the LLM label, right here

    report = train_student(classify_project, tiny_encoder, tmp_path, min_confidence=0.5)
    assert (report.trained_on, report.discarded) == (38, 2)


def test_llm_labels_weight_the_loss_by_confidence_unless_told_not_to(classify_project: Project,
                                                                    tiny_encoder: Path) -> None:
    _, weighted, _ = training_data(classify_project, TrainConfig(student=str(tiny_encoder), balance=False))
    assert sorted(set(weighted)) == [pytest.approx(WRONG_CONFIDENCE), pytest.approx(LLM_CONFIDENCE)]
    _, flat, _ = training_data(classify_project, TrainConfig(student=str(tiny_encoder), confidence_weights=False,
                                                             balance=False))
    assert flat == [1.0] * 40


def test_keep_top_keeps_the_most_confident_share_of_each_label(classify_project: Project, tiny_encoder: Path,
                                                               tmp_path: Path) -> None:
    labels = {eid: label for eid, label, _, _ in classify_project.store.latest_labels("", "pool")}
    counts = Counter(labels.values())
    examples, _, discarded = training_data(classify_project, TrainConfig(student=str(tiny_encoder), keep_top=0.3))
    assert Counter(e.label for e in examples) == {label: math.ceil(0.3 * n) for label, n in counts.items()}
    assert discarded == 40 - len(examples)
    assert {"rev-0001", "rev-0002"}.isdisjoint(e.id for e in examples)  # the least confident go first
    order = classify_project.store.example_ids("pool")
    assert [e.id for e in examples] == sorted((e.id for e in examples), key=order.index)
    report = train_student(classify_project, tiny_encoder, tmp_path, keep_top=0.3)
    assert (report.trained_on, report.discarded) == (len(examples), discarded)


def test_keep_top_ranks_all_sentences_together_for_ner(tmp_path: Path, tiny_encoder: Path) -> None:
    with student_project(tmp_path, "ner", pool=10, wrong=3) as project:
        examples, _, discarded = training_data(project, TrainConfig(student=str(tiny_encoder), keep_top=0.7))
        assert (len(examples), discarded) == (7, 3)
        assert {e.id for e in examples}.isdisjoint(project.store.example_ids("pool")[:3])


def test_balance_gives_every_label_class_the_same_total_weight(tmp_path: Path, tiny_encoder: Path) -> None:
    with student_project(tmp_path, "classify", wrong=8) as project:  # 8 flipped labels: the classes are uneven
        flat = TrainConfig(student=str(tiny_encoder), confidence_weights=False)
        examples, weights, _ = training_data(project, flat)
        totals = Counter[Any]()
        for example, weight in zip(examples, weights, strict=True):
            totals[example.label] += weight
        assert len(set(Counter(e.label for e in examples).values())) == 2  # uneven ...
        assert totals["positive"] == pytest.approx(totals["negative"]) == pytest.approx(20.0)  # ... weighted even
        _, unbalanced, _ = training_data(project, replace(flat, balance=False))
        assert unbalanced == [1.0] * 40
    with student_project(tmp_path / "ner", "ner") as project:  # NER labels are tag sequences: never balanced
        _, weights, _ = training_data(project, TrainConfig(student=str(tiny_encoder), confidence_weights=False))
        assert weights == [1.0] * 40


def test_gold_training_without_a_dev_split_runs_every_epoch(classify_project: Project, tiny_encoder: Path,
                                                           tmp_path: Path) -> None:
    """Validating on the training examples themselves says nothing about when to stop, so no early stopping."""
    report = train_student(classify_project, tiny_encoder, tmp_path, data="gold", epochs=5, patience=1,
                           learning_rate=0.9)  # a wild rate: the loss goes up somewhere
    history = report.metrics["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5] and report.best_epoch == 5
    losses = [row["validation_loss"] for row in history]
    assert any(later >= earlier for earlier, later in itertools.pairwise(losses))  # it would have stopped


def test_examples_restricts_the_llm_training_set(classify_project: Project, tiny_encoder: Path,
                                                 tmp_path: Path) -> None:
    chosen = tuple(classify_project.store.example_ids("pool")[5:15])
    config = TrainConfig(student=str(tiny_encoder), examples=(*chosen, "not-an-id"))
    examples, _, _ = training_data(classify_project, config)
    assert [example.id for example in examples] == list(chosen)
    report, steps = steps_by_phase(classify_project, tiny_encoder, tmp_path, examples=chosen)
    assert report.trained_on == 10 and steps == {"llm": 2}


def test_without_llm_labels_training_says_to_annotate_first(tmp_path: Path, tiny_encoder: Path) -> None:
    with student_project(tmp_path, "classify", annotate=False) as project:
        with pytest.raises(LlmaaaError, match=r"no llm labels to train on: run `annotate` first"):
            train_student(project, tiny_encoder, tmp_path)
        with pytest.raises(LlmaaaError, match="annotate"):
            train_student(project, tiny_encoder, tmp_path, data="combined")
        assert project.store.student_runs() == []  # nothing was started


def test_everything_below_min_confidence_is_the_same_clear_error(classify_project: Project, tiny_encoder: Path,
                                                                 tmp_path: Path) -> None:
    with pytest.raises(LlmaaaError, match="lower --min-confidence"):
        train_student(classify_project, tiny_encoder, tmp_path, min_confidence=0.95)


def test_gold_mode_without_a_demo_split_says_how_to_import_gold(tmp_path: Path, tiny_encoder: Path) -> None:
    with student_project(tmp_path, "classify", demo=0) as project:
        with pytest.raises(LlmaaaError, match="import gold FILE --split demo"):
            train_student(project, tiny_encoder, tmp_path, data="gold")


@pytest.mark.parametrize(("options", "message"), [
    ({"data": "teacher"}, "choose llm, gold or combined"),
    ({"epochs": 0}, "at least 1"),
    ({"batch_size": 0}, "at least 1"),
    ({"patience": 0}, "at least 1"),
    ({"learning_rate": 0.0}, "out of range"),
    ({"learning_rate": 1.5}, "out of range"),
    ({"max_length": 8}, "use 16 to 4096"),
    ({"min_confidence": 1.5}, "0..1"),
    ({"keep_top": 0.0}, "share of labels to keep"),
    ({"keep_top": 1.5}, "share of labels to keep"),
    ({"pooling": "max"}, "choose mean or cls"),
    ({"truncation": "tail"}, "choose head\\+tail or head"),
    ({"precision": "bf16"}, "choose auto or fp32"),
])
def test_train_config_is_validated(options: dict[str, Any], message: str) -> None:
    with pytest.raises(LlmaaaError, match=message):
        TrainConfig(**options)


def test_default_learning_rate_scales_with_the_encoder_width() -> None:
    assert default_learning_rate(384) == pytest.approx(1e-4)  # MiniLM-L6, where it was measured
    assert default_learning_rate(768) == pytest.approx(5e-5)  # base size (MPNet, RoBERTa-base, DistilBERT)
    assert default_learning_rate(128) == pytest.approx(1e-4)  # never above the measured rate
    assert TrainConfig().learning_rate is None  # the rule applies unless --lr is given


# --- arithmetic ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("amx", "avx512_bf16", "precision", "bf16"), [
    (True, True, "auto", True), (True, False, "auto", True), (False, True, "auto", True),
    (True, True, "fp32", False), (False, True, "fp32", False), (False, False, "auto", False),
    (False, False, "fp32", False)])
def test_bf16_only_on_a_cpu_with_amx_or_avx512_bf16_unless_fp32_is_asked(amx: bool, avx512_bf16: bool,
                                                                         precision: str, bf16: bool,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert uses_bf16(torch.device("cpu"), precision) is bf16
    assert arithmetic(torch.device("cpu"), precision) == ("bf16 autocast on cpu" if bf16 else "fp32 on cpu")


@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_training_computes_in_the_arithmetic_it_reports(precision: str, classify_project: Project,
                                                        tiny_encoder: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)  # any CPU runs bf16 autocast, if slowly
    seen: list[tuple[bool, bool]] = []
    forward = StudentModel.forward

    def spy(self: StudentModel, *args: Any, **kwargs: Any) -> torch.Tensor:
        seen.append((torch.is_grad_enabled(), torch.is_autocast_enabled("cpu")))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(StudentModel, "forward", spy)
    report = train_student(classify_project, tiny_encoder, tmp_path, precision=precision)
    assert report.metrics["arithmetic"] == ("bf16 autocast on cpu" if precision == "auto" else "fp32 on cpu")
    assert {autocast for grad, autocast in seen if grad} == {precision == "auto"}  # the training steps
    assert {autocast for grad, autocast in seen if not grad} == {precision == "auto"}  # validation and scoring


def test_the_export_parity_reference_is_fp32_where_training_is_bf16(classify_project: Project, tiny_encoder: Path,
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    report = train_student(classify_project, tiny_encoder, tmp_path, precision="auto")
    model, encoder = load_student(report.folder)
    examples = list(classify_project.store.examples("pool"))[:16]
    fp32, bf16 = (predict(model, encoder, examples, precision=p) for p in ("fp32", "auto"))
    assert max(abs(a[2] - b[2]) for a, b in zip(fp32, bf16, strict=True)) > 1e-5  # bf16 does change the numbers
    assert reference_predictions(report.folder, examples) == fp32


# --- it learns -----------------------------------------------------------------------------------------------------

GOOD = ("good", "great", "excellent", "lovely", "perfect")
BAD = ("bad", "awful", "terrible", "broken", "poor")
THINGS = ("lamp", "chair", "phone", "jacket", "kettle", "desk", "bike", "camera", "printer", "sofa", "watch",
          "blender")


def sentiment_records(prefix: str, things: tuple[str, ...]) -> list[dict[str, Any]]:
    records = []
    for i, thing in enumerate(things):
        for j, (good, bad) in enumerate(zip(GOOD, BAD, strict=True)):
            records.append({"id": f"{prefix}-{i}-{j}-p", "text": f"the {thing} was {good} .", "label": "positive"})
            records.append({"id": f"{prefix}-{i}-{j}-n", "text": f"the {thing} was {bad} .", "label": "negative"})
    return records


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_the_student_learns_a_separable_task_well_above_chance(pooling: str, make_project: Any, write_file: Any,
                                                                tiny_encoder: Path, tmp_path: Path) -> None:
    project = make_project("classify", labels=["positive", "negative"])
    train = sentiment_records("train", THINGS[:8])  # 80 texts
    project.import_corpus(write_file("corpus.jsonl", train))
    project.import_gold(write_file("dev.jsonl", sentiment_records("dev", THINGS[8:])), "dev")  # unseen things
    labels = [{"id": record["id"], "label": record["label"], "confidence": 1.0} for record in train]
    project.import_annotations(write_file("llm.jsonl", labels), "teacher")

    report = train_student(project, tiny_encoder, tmp_path, epochs=12, patience=12, batch_size=16,
                           learning_rate=5e-3, seed=0, pooling=pooling)  # passes for seeds 0-9 in about half a second
    history = report.metrics["history"]
    assert history[-1]["validation_loss"] < 0.3 < history[0]["validation_loss"]
    assert report.metrics["validation"]["n"] == 40
    assert report.metrics["validation"]["accuracy"] >= 0.9, report.metrics
    assert history[report.best_epoch - 1]["validation_score"] == report.metrics["validation"]["macro_f1"]

    model, encoder = load_student(report.folder)  # the saved checkpoint is the model that was scored
    dev = list(project.store.examples("dev"))
    predicted = [label for label, _, _ in predict(model, encoder, dev)]
    accuracy = np.mean([label == example.label for label, example in zip(predicted, dev, strict=True)])
    assert accuracy == pytest.approx(report.metrics["validation"]["accuracy"])


# --- failures ------------------------------------------------------------------------------------------------------


def test_a_missing_student_is_a_clear_error_before_anything_is_recorded(classify_project: Project,
                                                                        tmp_path: Path) -> None:
    with pytest.raises(LlmaaaError, match="not found: give a path to a model folder"):
        Trainer(classify_project, TrainConfig(student=str(tmp_path / "nowhere")), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LlmaaaError, match="expected a folder with config.json"):
        Trainer(classify_project, TrainConfig(student=str(tmp_path / "empty")), tmp_path)
    assert classify_project.store.student_runs() == []


@pytest.mark.parametrize("removed", [("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"),
                                     ("model.safetensors",)], ids=["no-tokenizer", "no-weights"])
def test_an_incomplete_student_folder_is_a_clear_error(removed: tuple[str, ...], classify_project: Project,
                                                       tiny_encoder: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken-student"
    shutil.copytree(tiny_encoder, broken)
    for name in removed:
        (broken / name).unlink()
    with pytest.raises(LlmaaaError, match="broken-student"):
        train_student(classify_project, broken, tmp_path)


def test_a_max_length_beyond_the_student_positions_is_a_clear_error(classify_project: Project, write_file: Any,
                                                                   tiny_encoder: Path, tmp_path: Path) -> None:
    long_text = " ".join(["the lamp was good ."] * 200)  # about 1000 sub-words; the tiny BERT has 512 positions
    classify_project.import_corpus(write_file("long.jsonl", [{"id": "long", "text": long_text}]))
    classify_project.import_annotations(write_file("long-llm.jsonl", [{"id": "long", "label": "positive"}]), "teacher")
    with pytest.raises(LlmaaaError, match="512"):
        train_student(classify_project, tiny_encoder, tmp_path, max_length=1024)


class Stop(Exception):
    pass


@pytest.mark.parametrize("error", [Stop("power cut in epoch 1"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_a_run_that_raises_mid_training_is_recorded_as_failed(error: BaseException, classify_project: Project,
                                                              tiny_encoder: Path, tmp_path: Path) -> None:
    steps: list[TrainProgress] = []

    def interrupt(progress: TrainProgress) -> None:
        steps.append(progress)
        if len(steps) == 2:
            raise error

    with pytest.raises(type(error)):
        train_student(classify_project, tiny_encoder, tmp_path, on_progress=interrupt)
    (run,) = classify_project.store.student_runs()
    assert run["status"] == "failed" and run["finished_at"] is not None
    assert run["metrics"] == {"error": str(error)}
    assert classify_project.store.artifacts() == []
    report = train_student(classify_project, tiny_encoder, tmp_path)  # the next run is unaffected
    assert [r["status"] for r in classify_project.store.student_runs()] == ["failed", "done"]
    assert report.run_id == 2


# --- input encoding ------------------------------------------------------------------------------------------------


def encoder_for(tiny_encoder: Path, task: str, labels: tuple[str, ...], max_length: int = 64) -> InputEncoder:
    tokenizer = Tokenizer.from_file(str(tiny_encoder / "tokenizer.json"))
    if task == "re":
        from tokenizers import AddedToken

        tokenizer.add_special_tokens([AddedToken(marker, normalized=False) for marker in MARKERS])
    return InputEncoder(tokenizer, StudentSpec(task, labels, max_length, "tiny"))  # type: ignore[arg-type]


NER_TAGS = bio_labels(["PER", "LOC"])


def ner_example(tokens: list[str], spans: tuple[Span, ...]) -> Example:
    return Example("n1", " ".join(tokens), tokens=tuple(tokens), label=spans)


def test_ner_tags_sit_on_the_first_sub_word_of_each_word(tiny_encoder: Path) -> None:
    encoder = encoder_for(tiny_encoder, "ner", NER_TAGS)
    tokens = ["Maria", "Olsen", "visited", "Bergholm", "troops", "U.S.", "."]
    spans = (Span(0, 2, "PER"), Span(3, 4, "LOC"))
    example = ner_example(tokens, spans)
    (item,) = encoder.encode([example])
    word_ids = encoder.tokenizer.encode(tokens, is_pretokenized=True).word_ids
    assert any(word_ids.count(word) > 1 for word in range(len(tokens)))  # some words are split into sub-words
    assert len(item.word_index) == len(item.ids) == len(word_ids)
    for word in range(len(tokens)):
        first = word_ids.index(word)
        assert item.word_index[first] == word
        assert item.word_index.count(word) == 1
    targets = encoder.targets([example], [item])
    assert targets.shape == (1, len(item.ids))
    expected = ["B-PER", "I-PER", "O", "B-LOC", "O", "O", "O"]
    for position, word in enumerate(item.word_index):
        if word >= 0:
            assert NER_TAGS[targets[0, position]] == expected[word]
        else:
            assert targets[0, position] == -100  # [CLS], [SEP] and every later sub-word
    assert (targets[0] != -100).sum() == len(tokens)


def test_ner_logits_decode_to_spans_per_word(tiny_encoder: Path) -> None:
    encoder = encoder_for(tiny_encoder, "ner", NER_TAGS)
    example = ner_example(["Maria", "Olsen", "visited", "Bergholm"], ())
    (item,) = encoder.encode([example])
    logits = np.zeros((len(item.ids), len(NER_TAGS)), dtype=np.float32)
    wanted = {0: "B-PER", 1: "I-PER", 2: "O", 3: "I-LOC"}  # a stray I-LOC opens an entity
    for position, word in enumerate(item.word_index):
        tag = wanted[word] if word >= 0 else "I-PER"  # later sub-words and specials are ignored
        logits[position, NER_TAGS.index(tag)] = 5.0
    label, probabilities, confidence = decode(encoder.spec, example, item, logits)
    assert label == (Span(0, 2, "PER"), Span(3, 4, "LOC"))
    assert probabilities is None
    assert confidence == pytest.approx(math.exp(5) / (math.exp(5) + len(NER_TAGS) - 1))


def test_classification_logits_decode_to_label_probabilities(tiny_encoder: Path) -> None:
    encoder = encoder_for(tiny_encoder, "classify", ("positive", "negative"))
    example = Example("c1", "fine")
    (item,) = encoder.encode([example])
    label, probabilities, confidence = decode(encoder.spec, example, item, np.array([0.0, 2.0], np.float32))
    assert label == "negative"
    assert probabilities == pytest.approx({"positive": 1 / (1 + math.e ** 2), "negative": 1 / (1 + math.e ** -2)})
    assert confidence == pytest.approx(probabilities["negative"])


def relation_example(tokens: list[str], head: tuple[int, int], tail: tuple[int, int]) -> Example:
    return Example("r1", " ".join(tokens), tokens=tuple(tokens),
                   head=Mention(" ".join(tokens[head[0] : head[1]]), *head),
                   tail=Mention(" ".join(tokens[tail[0] : tail[1]]), *tail), label="born_in")


def marker_ids(encoder: InputEncoder) -> dict[str, int]:
    return {marker: encoder.tokenizer.token_to_id(marker) for marker in MARKERS}


def test_relation_markers_point_at_the_marker_tokens(tiny_encoder: Path) -> None:
    encoder = encoder_for(tiny_encoder, "re", tuple(TASK_LABELS["re"]))
    ids = marker_ids(encoder)
    forward = relation_example(["Lotte", "Jansen", "was", "born", "in", "Utrecht", "."], (0, 2), (5, 6))
    backward = relation_example(["In", "Utrecht", "Lotte", "Jansen", "was", "born", "."], (2, 4), (1, 2))
    items = encoder.encode([forward, backward])
    for item in items:
        head, tail = item.markers
        assert item.ids[head] == ids["[E1]"] and item.ids[tail] == ids["[E2]"]
        assert all(item.ids.count(marker_id) == 1 for marker_id in ids.values())
    assert items[0].markers[0] < items[0].markers[1] and items[1].markers[1] < items[1].markers[0]
    # the head's words sit between [E1] and [/E1]
    head, _ = items[0].markers
    closing = items[0].ids.index(ids["[/E1]"])
    assert encoder.tokenizer.decode(items[0].ids[head + 1 : closing]) == "lotte jansen"
    arrays = encoder.batch(items)
    assert arrays["markers"].tolist() == [list(item.markers) for item in items]
    assert set(arrays) == {"input_ids", "attention_mask", "markers"}


def test_long_inputs_are_cut_to_max_length_keeping_cls_and_sep(tiny_encoder: Path) -> None:
    cls_id, sep_id = (Tokenizer.from_file(str(tiny_encoder / "tokenizer.json")).token_to_id(t)
                      for t in ("[CLS]", "[SEP]"))
    classify = encoder_for(tiny_encoder, "classify", ("positive", "negative"), max_length=16)
    (item,) = classify.encode([Example("c1", " ".join(["the lamp was good ."] * 20))])
    assert len(item.ids) == 16 and item.ids[0] == cls_id and item.ids[-1] == sep_id

    ner = encoder_for(tiny_encoder, "ner", NER_TAGS, max_length=16)
    tokens = ["Maria", "Olsen"] + ["walked"] * 30 + ["Bergholm"]
    example = ner_example(tokens, (Span(0, 2, "PER"), Span(32, 33, "LOC")))
    (item,) = ner.encode([example])
    assert len(item.ids) == len(item.word_index) == 16
    assert item.ids[-1] == sep_id and item.word_index[-1] == -1
    word_ids = ner.tokenizer.encode(tokens, is_pretokenized=True).word_ids
    kept = sorted({word for word in word_ids[:15] if word is not None})  # words that start before the cut
    assert 2 < len(kept) < len(tokens)
    assert [word for word in item.word_index if word >= 0] == kept
    targets = ner.targets([example], [item])
    assert targets.shape == (1, 16) and (targets[0] != -100).sum() == len(kept)
    logits = np.zeros((16, len(NER_TAGS)), np.float32)
    logits[:, NER_TAGS.index("B-LOC")] = 1.0  # words past the cut cannot be tagged: they stay outside entities
    label, _, _ = decode(ner.spec, example, item, logits)
    assert label == tuple(Span(i, i + 1, "LOC") for i in kept)


def test_long_texts_keep_their_start_and_their_end(tiny_encoder: Path) -> None:
    tokenizer = Tokenizer.from_file(str(tiny_encoder / "tokenizer.json"))
    spec = StudentSpec("classify", ("positive", "negative"), 16, "tiny", "mean", head_tokens=4)
    text = "the lamp was good . " + "the chair was fine . " * 10 + "the phone was awful ."
    full = tokenizer.encode(text).ids
    (item,) = InputEncoder(tokenizer, spec).encode([Example("c1", text)])
    assert len(full) > 16 and item.ids == full[:4] + full[-12:]  # [CLS] the lamp was ... the phone was awful . [SEP]
    (short,) = InputEncoder(tokenizer, spec).encode([Example("c2", "the lamp was good .")])
    assert short.ids == tokenizer.encode("the lamp was good .").ids


def test_a_student_saved_before_pooling_existed_loads_with_its_own_head(tmp_path: Path) -> None:
    StudentSpec("classify", ("a", "b"), 64, "minilm-l6").save(tmp_path)
    data = json.loads((tmp_path / SPEC_FILE).read_text())
    del data["pooling"], data["head_tokens"]
    (tmp_path / SPEC_FILE).write_text(json.dumps(data))
    spec = StudentSpec.load(tmp_path)
    assert (spec.pooling, spec.head_tokens, spec.head_file) == ("cls", 0, None)


@pytest.mark.parametrize(("head", "tail", "closed"), [
    ((100, 102), (110, 111), True),
    ((110, 111), (100, 102), True),
    ((3, 4), (12, 14), True),
    ((190, 191), (197, 198), True),
    ((170, 171), (196, 197), False),  # [E1] … [/E2] is longer than the window: the opening markers are kept
], ids=["middle", "tail-first", "near-start", "near-end", "wide"])
def test_relation_windows_keep_both_markers(tiny_encoder: Path, head: tuple[int, int], tail: tuple[int, int],
                                            closed: bool) -> None:
    encoder = encoder_for(tiny_encoder, "re", tuple(TASK_LABELS["re"]), max_length=32)
    ids = marker_ids(encoder)
    example = relation_example(["walked"] * 200, head, tail)
    (item,) = encoder.encode([example])
    assert len(item.ids) == 32
    assert item.ids[0] == encoder.tokenizer.token_to_id("[CLS]")
    assert item.ids[-1] == encoder.tokenizer.token_to_id("[SEP]")
    assert item.ids[item.markers[0]] == ids["[E1]"] and item.ids[item.markers[1]] == ids["[E2]"]
    assert (ids["[/E1]"] in item.ids and ids["[/E2]"] in item.ids) == closed


def test_relation_mentions_too_far_apart_fall_back_to_cls(tiny_encoder: Path) -> None:
    encoder = encoder_for(tiny_encoder, "re", tuple(TASK_LABELS["re"]), max_length=32)
    (item,) = encoder.encode([relation_example(["walked"] * 200, (5, 6), (150, 151))])
    assert len(item.ids) == 32
    assert item.ids[item.markers[0]] == marker_ids(encoder)["[E1]"]
    assert item.markers[1] == 0  # [CLS]: the tail marker is outside the window


@pytest.mark.parametrize(("tags", "spans"), [
    (["O", "O"], ()),
    (["B-PER", "I-PER", "O"], (Span(0, 2, "PER"),)),
    (["I-PER", "I-PER", "O"], (Span(0, 2, "PER"),)),
    (["O", "I-LOC", "O"], (Span(1, 2, "LOC"),)),
    (["B-PER", "I-LOC", "I-LOC"], (Span(0, 1, "PER"), Span(1, 3, "LOC"))),
    (["B-PER", "B-PER", "I-PER"], (Span(0, 1, "PER"), Span(1, 3, "PER"))),
    (["B-LOC", "O", "I-LOC"], (Span(0, 1, "LOC"), Span(2, 3, "LOC"))),
    (["I-ORG"], (Span(0, 1, "ORG"),)),
])
def test_repair_bio_turns_a_stray_inside_tag_into_a_beginning(tags: list[str], spans: tuple[Span, ...]) -> None:
    assert repair_bio(tags) == spans
