"""`report`: the figures' numbers (reliability bins and ECE, confusion counts, F1 per label, label counts, running
cost) on hand-made examples and real projects of each task, a self-contained HTML page, PNG files, sections that
say what to run when the data is missing, the CLI command, and the one-line error without matplotlib."""

from __future__ import annotations

import base64
import json
import math
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TASK_LABELS, demo_file_records, student_project

from llmaaa_local.annotate import AnnotateConfig, Annotator
from llmaaa_local.cli import main
from llmaaa_local.config import PromptSettings
from llmaaa_local.errors import LlmaaaError
from llmaaa_local.llm import Prompt, ScriptedLLM
from llmaaa_local.metrics import entity_f1_by_type, f1_by_label
from llmaaa_local.project import Project
from llmaaa_local.records import Label, Span
from llmaaa_local.report import (
    BINS,
    Paired,
    ReportData,
    confusion,
    cost_curve,
    gather,
    reliability,
    write_html,
    write_pngs,
)
from llmaaa_local.spans import tags_to_spans

PNG = b"\x89PNG\r\n\x1a\n"
NOT_INSTALLED = r"pip install 'llmaaa-local\[report\]'"
POOL, DEMO, TEST = 30, 8, 12


# --- a scripted teacher that knows the demo data -------------------------------------------------------------------


def wrong_label(task: str, label: str) -> str:
    if task == "classify":
        return "negative" if label == "positive" else "positive"
    return "works_for" if label == "no_relation" else "no_relation"


class DemoTeacher:
    """A rule for ScriptedLLM: the demo data's own label, wrong on every fourth record of each file, with a margin
    over the other labels that varies by record, so the confidences spread over the bins."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.records: dict[object, tuple[int, dict[str, Any]]] = {}
        for part in ("corpus", "demo", "test"):
            for index, record in enumerate(demo_file_records(task, part, 10**6)):
                key = (record["text"], record["h"]["name"], record["t"]["name"]) if task == "re" else record["text"]
                self.records[key] = (index, record)

    def score(self, prompt: Prompt, candidates: Sequence[str]) -> list[float]:
        if self.task == "re":
            *_, last = re.finditer(r"Sentence: (.*)\nHead: (.*)\nTail: (.*)\n", prompt.user)
            index, record = self.records[last.groups()]
        else:
            index, record = self.records[prompt.user.rsplit("Text: ", 1)[1].split("\n", 1)[0]]
        label = record["label"] if index % 4 != 3 else wrong_label(self.task, record["label"])
        margin = 0.3 + 0.25 * (index % 12)
        return [-0.1 if candidate == label else -0.1 - margin for candidate in candidates]

    def generate(self, prompt: Prompt, grammar: str) -> str:
        index, record = self.records[prompt.user.rsplit("Text: ", 1)[1]]
        spans = list(tags_to_spans(record["tags"]))
        if index % 4 == 3:
            spans = spans[:-1] or [Span(0, 1, "MISC")]
        return json.dumps([{"span": " ".join(record["tokens"][s.start : s.end]), "type": s.type} for s in spans])


def annotated_project(root: Path, task: str) -> Project:
    """The demo data of a task with every pool text annotated by the scripted teacher (scored tasks: calibrated on
    the gold demo split first)."""
    project = student_project(root, task, pool=POOL, demo=DEMO, test=TEST, annotate=False)
    teacher = DemoTeacher(task)
    llm = ScriptedLLM(scorer=teacher.score, generator=teacher.generate)
    Annotator(project, llm, prompt=PromptSettings(demos="none", content_free=False)).run(AnnotateConfig(n=POOL))
    return project


def store_rounds(project: Project, loop: str, strategy: str, metric: str,
                 rounds: Sequence[tuple[int, float, float]]) -> None:
    """Rounds as the loop stores them: (batch size, LLM-label metric, student metric) per trained round."""
    store = project.store
    pool = store.example_ids("pool")
    start = 0
    for number, (size, llm, student) in enumerate(rounds):
        store.start_round(loop, number, "random" if number == 0 else strategy, {}, pool[start : start + size])
        row = store.rounds(loop)[-1]
        store.update_round(row.id, "trained", 2.5, llm={"n": start + size, "labeled": start + size, metric: llm},
                           student={"run_id": 1, "n": TEST, metric: student})
        start += size


def other_label(task: str, label: Label) -> Label:
    if isinstance(label, str):
        return wrong_label(task, label)
    return () if label else (Span(0, 1, "MISC"),)


def store_student_labels(project: Project, wrong: int) -> list[str]:
    """A student's labels as `label` stores them, for every example with a gold or reference label: right, except
    on the first `wrong` test examples (their ids are returned)."""
    store = project.store
    run = store.start_student_run("tiny", "llm", {}, None)
    artifact = store.add_artifact(run, "onnx-int8", "student.onnx", "0" * 64, {})
    task = project.settings.task
    missed = store.example_ids("test")[:wrong]
    store.add_predictions(artifact, [(eid, other_label(task, label) if eid in missed else label, None, 0.8)
                                     for eid, label in store.reference_labels().items()])
    return missed


def images(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


# --- the numbers, by hand ----------------------------------------------------------------------------------------


def test_reliability_bins_and_expected_calibration_error_by_hand() -> None:
    confidence = [0.05, 0.12, 0.18, 0.55, 0.55, 0.61, 0.97, 0.99, 1.0, 0.93]
    correct = [False, True, False, True, False, True, True, True, True, False]
    found = reliability(confidence, correct)

    assert found.n == 10
    assert found.counts.tolist() == [1, 2, 0, 0, 0, 2, 1, 0, 0, 4]
    expected_accuracy = [0.0, 0.5, None, None, None, 0.5, 1.0, None, None, 0.75]
    expected_mean = [0.05, 0.15, None, None, None, 0.55, 0.61, None, None, 0.9725]
    for got, want in ((found.accuracy, expected_accuracy), (found.confidence, expected_mean)):
        for value, expected in zip(got.tolist(), want, strict=True):
            assert math.isnan(value) if expected is None else value == pytest.approx(expected)
    # (1 * 0.05 + 2 * 0.35 + 2 * 0.05 + 1 * 0.39 + 4 * 0.2225) / 10
    assert found.ece == pytest.approx(0.213)
    assert found.edges.tolist() == pytest.approx([i / BINS for i in range(BINS + 1)])
    # bins are [a, b): a confidence on an edge belongs to the bin above it, and 1.0 to the last
    assert reliability([0.5, 0.1, 1.0], [True, True, True]).counts.tolist() == [0, 1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert reliability([0.9, 0.9], [True, True]).ece == pytest.approx(0.1)


def test_confusion_matrix_counts_by_hand() -> None:
    gold = ("a", "a", "b", "b", "b", "c")
    predicted = ("a", "b", "b", "b", "a", "c")
    labels = Paired("LLM", "here", tuple(str(i) for i in range(6)), gold, predicted, (None,) * 6)
    found = confusion(labels, ["a", "b", "c"])
    assert found.labels == ("a", "b", "c")
    assert found.matrix.tolist() == [[1, 1, 0], [1, 2, 0], [0, 0, 1]]  # rows gold, columns predicted


def test_f1_per_label_and_entity_type_by_hand() -> None:
    # a: 1 of 2 found, no false alarm (F1 2/3); b: 1 found, 1 false alarm (2/3); c never occurs: left out
    assert f1_by_label(["a", "a", "b"], ["a", "b", "b"], ["a", "b", "c"]) == pytest.approx({"a": 2 / 3, "b": 2 / 3})
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "O", "O"]]
    predicted = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "I-ORG", "O", "B-LOC"]]
    # PER exact; LOC missed once and invented once; ORG's span is too long
    assert entity_f1_by_type(gold, predicted) == {"LOC": 0.0, "ORG": 0.0, "PER": 1.0}
    assert entity_f1_by_type([["O", "O"]], [["O", "O"]]) == {}


def test_cost_curve_is_the_running_total_by_hand() -> None:
    found = cost_curve([("2025-01-01T10:00:00+00:00", 10, 10, 0, 0.5), ("2025-01-01T10:00:01+00:00", 12, 4, 3, 0.25),
                        ("2025-01-02T09:00:00+00:00", 0, 0, 0, 0.0)])
    assert found is not None
    assert found.tokens_in.tolist() == [10, 22, 22] and found.tokens_evaluated.tolist() == [10, 14, 14]
    assert found.tokens_out.tolist() == [0, 3, 3] and found.seconds.tolist() == [0.5, 0.75, 0.75]
    assert (found.first, found.last) == ("2025-01-01T10:00:00+00:00", "2025-01-02T09:00:00+00:00")
    assert cost_curve([]) is None


# --- on projects -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["classify", "ner", "re"])
def test_reliability_of_known_confidences_on_a_project(task: str, tmp_path: Path) -> None:
    # the imported teacher labels: 38 right at confidence 0.9, the first 2 wrong at 0.2 (conftest)
    project = student_project(tmp_path, task, pool=40, demo=8, test=8, wrong=2)
    found = gather(project).reliability
    assert found is not None
    assert found.counts.tolist() == [0, 0, 2, 0, 0, 0, 0, 0, 0, 38]
    assert found.accuracy[2] == 0.0 and found.accuracy[9] == 1.0
    assert found.ece == pytest.approx((2 * 0.2 + 38 * 0.1) / 40)


def test_confusion_and_label_counts_on_a_classification_project(tmp_path: Path) -> None:
    project = student_project(tmp_path, "classify", pool=40, demo=8, test=12, wrong=2)
    missed = store_student_labels(project, wrong=3)
    data = gather(project)

    corpus = demo_file_records("classify", "corpus", 40)
    given = [wrong_label("classify", r["label"]) if i < 2 else r["label"] for i, r in enumerate(corpus)]
    pairs = Counter(zip((r["label"] for r in corpus), given, strict=True))
    names = TASK_LABELS["classify"]
    llm, student = data.confusions
    assert (llm.source, llm.labels, student.source, student.where) == ("LLM", tuple(names), "student",
                                                                       "the test split")
    assert llm.matrix.tolist() == [[pairs[(gold, label)] for label in names] for gold in names]
    test_gold = {r["id"]: r["label"] for r in demo_file_records("classify", "test", 12)}
    student_pairs = Counter((label, wrong_label("classify", label) if eid in missed else label)
                            for eid, label in test_gold.items())
    assert student.matrix.tolist() == [[student_pairs[(gold, label)] for label in names] for gold in names]
    assert data.f1 == ()

    every = corpus + demo_file_records("classify", "demo", 8) + demo_file_records("classify", "test", 12)
    by_source = {found.source: found for found in data.distributions}
    assert by_source["gold / reference"].counts == Counter(r["label"] for r in every)
    assert by_source["gold / reference"].examples == 60
    assert by_source["LLM"].counts == Counter(given) and by_source["LLM"].examples == 40
    assert by_source["student"].examples == 60


@pytest.mark.parametrize("task", ["ner", "re"])
def test_f1_per_label_on_a_project(task: str, tmp_path: Path) -> None:
    project = student_project(tmp_path, task, pool=40, demo=8, test=8, wrong=2)
    (llm,) = gather(project).f1
    corpus = demo_file_records(task, "corpus", 40)
    if task == "ner":  # the two wrong records lost their entities, or got MISC on every token
        touched = {span.type for r in corpus[:2] for span in tags_to_spans(r["tags"])} | {"MISC"}
        occurring = {span.type for r in corpus for span in tags_to_spans(r["tags"])}
    else:
        touched = {r["label"] for r in corpus[:2]} | {wrong_label(task, r["label"]) for r in corpus[:2]}
        occurring = {r["label"] for r in corpus}
    assert (llm.source, llm.n) == ("LLM", 40)
    assert set(llm.scores) == (occurring | ({"MISC"} if task == "ner" else set())) - {"no_relation"}
    for label, score in llm.scores.items():
        assert (score < 1.0) if label in touched else (score == 1.0), (label, score)


def test_a_report_with_loops_names_each_loop_and_its_strategy(tmp_path: Path) -> None:
    project = student_project(tmp_path, "classify", pool=40, demo=8, test=8)
    store_rounds(project, "default", "entropy", "accuracy", [(10, 0.8, 0.55), (10, 0.85, 0.7), (5, 0.84, 0.75)])
    store_rounds(project, "baseline", "random", "accuracy", [(10, 0.9, 0.5), (10, 0.9, 0.6)])
    project.store.start_round("baseline", 2, "random", {}, ["rev-0001"])  # selected, not trained: no point yet

    data = gather(project)
    assert [(c.name, c.strategy, c.labeled) for c in data.curves] == [
        ("baseline", "random", (10, 20)), ("default", "entropy", (10, 20, 25))]
    baseline, default = data.curves
    assert default.student == {"accuracy": (0.55, 0.7, 0.75)} and default.llm == {"accuracy": (0.8, 0.85, 0.84)}
    assert baseline.student == {"accuracy": (0.5, 0.6)}

    written = write_html(project, tmp_path / "report.html")
    page = written.paths[0].read_text(encoding="utf-8")
    curves = page.split('<section id="learning-curves">')[1].split("</section>")[0]
    assert len(images(curves)) == 1
    assert "baseline (random), default (entropy)" in curves
    assert not any(note.startswith("No active-learning rounds") for note in written.missing)


def test_a_report_without_data_says_what_to_run(make_project: Any, tmp_path: Path) -> None:
    project = make_project("classify", labels=["positive", "negative"])
    written = write_html(project, tmp_path / "empty.html")
    page = written.paths[0].read_text(encoding="utf-8")
    assert images(page) == []
    assert len(written.missing) == 5 and page.count('<p class="missing">') == 5
    for command in ("llmaaa-local run", "llmaaa-local import gold", "llmaaa-local annotate", "llmaaa-local import"):
        assert f"<code>{command}</code>" in page
    assert "No active-learning rounds yet: run <code>llmaaa-local run</code>" in page
    assert "not tuned" in page and "none fitted yet" in page
    assert write_pngs(project, tmp_path / "figures").paths == ()


@pytest.mark.parametrize("task", ["classify", "ner", "re"])
def test_the_report_builds_for_each_task_and_is_self_contained(task: str, tmp_path: Path) -> None:
    project = annotated_project(tmp_path, task)
    metric = "accuracy" if task == "classify" else "f1"
    store_rounds(project, "default", "entropy", metric, [(10, 0.7, 0.5), (10, 0.75, 0.65)])
    store_student_labels(project, wrong=2)
    data: ReportData = gather(project)

    status = project.status()
    assert data.cost is not None and len(data.cost.seconds) == status.counts.annotations
    assert data.cost.tokens_in[-1] == status.cost.tokens_in > 0
    assert data.cost.tokens_out[-1] == status.cost.tokens_out
    assert np.all(np.diff(data.cost.tokens_evaluated) >= 0)
    labeled = POOL + DEMO  # annotate asks about the demo gold to calibrate (NER: to choose the entity types)
    assert data.reliability is not None and data.reliability.n == labeled
    assert status.calibration is not None
    if task != "ner":
        assert np.count_nonzero(data.reliability.counts) >= 3  # the margins spread the confidences
    assert [(found.source, found.where) for found in (data.confusions or data.f1)] == [
        ("LLM", "examples with gold or hidden reference labels"), ("student", "the test split")]

    written = write_html(project, tmp_path / "report.html")
    assert written.missing == ()
    page = written.paths[0].read_text(encoding="utf-8")
    sections = re.findall(r'<section id="([^"]+)">', page)
    errors = "confusion" if task == "classify" else "f1-by-label"
    assert sections == ["learning-curves", "reliability", errors, "label-distribution", "llm-cost"]
    pictures = images(page)
    assert len(pictures) == 5 and all(picture.startswith(PNG) for picture in pictures)
    # nothing is fetched: no scripts, styles or images from elsewhere, no links out
    assert "http://" not in page and "https://" not in page
    assert all(value.startswith("data:image/png;base64,") for value in re.findall(r'(?:src|href)="([^"]*)"', page))
    assert not re.search(r"<script|<link|<iframe|url\(|@import", page)
    assert f"<td>{project.root}</td>" in page and f"<td>{task}" in page

    figures = write_pngs(project, tmp_path / "figures")
    assert [path.name for path in figures.paths] == [f"{name}.png" for name in sections]
    assert all(path.read_bytes().startswith(PNG) for path in figures.paths)


def test_the_tuned_prompt_and_calibration_are_in_the_header(tmp_path: Path) -> None:
    project = annotated_project(tmp_path, "classify")
    record = {"metric": "macro_f1", "chosen": {"described": "random k=4 set 0, label names, short instruction, head "
                                                            "clip", "score": 0.8125, "n": 8}}
    project.store.save_tuning(record, project.settings)
    page = write_html(project, tmp_path / "report.html").paths[0].read_text(encoding="utf-8")
    calibration = project.status().calibration
    assert calibration is not None
    assert f"{calibration['method']}: {calibration['summary']}" in page
    assert "random k=4 set 0, label names, short instruction, head clip: macro-F1 0.812 on 8 gold examples" in page


# --- the command and the optional extra -------------------------------------------------------------------------


def test_the_report_command_writes_the_file_and_prints_its_path(tmp_path: Path) -> None:
    project = student_project(tmp_path, "classify", pool=20, demo=8, test=8)
    runner = CliRunner()
    result = runner.invoke(main, ["--project", str(project.root), "report"])
    assert result.exit_code == 0, result.output
    default = project.root / "report.html"
    assert result.stdout.strip() == str(default)
    assert default.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert "note: No active-learning rounds yet" in result.stderr

    chosen = tmp_path / "elsewhere.html"
    result = runner.invoke(main, ["--project", str(project.root), "report", str(chosen)])
    assert result.exit_code == 0 and result.stdout.strip() == str(chosen) and chosen.exists()

    result = runner.invoke(main, ["--project", str(project.root), "report", "--png", str(tmp_path / "figs")])
    assert result.exit_code == 0, result.output
    printed = result.stdout.split()
    assert printed == [str(tmp_path / "figs" / f"{name}.png") for name in ("reliability", "confusion",
                                                                          "label-distribution")]
    assert all(Path(path).read_bytes().startswith(PNG) for path in printed)

    result = runner.invoke(main, ["--project", str(project.root), "report", str(chosen), "--png", "x"])
    assert result.exit_code == 1 and result.stderr.strip() == "error: give an HTML FILE or --png DIR, not both"


def test_without_matplotlib_one_clear_line(monkeypatch: pytest.MonkeyPatch, make_project: Any,
                                           tmp_path: Path) -> None:
    project = make_project("classify", labels=["positive", "negative"])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the extra were not installed
    with pytest.raises(LlmaaaError, match=NOT_INSTALLED):
        write_html(project, tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()
    result = CliRunner().invoke(main, ["--project", str(project.root), "report"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and re.search(NOT_INSTALLED, result.stderr), result.stderr
    assert "Traceback" not in result.output


def test_importing_the_report_leaves_matplotlib_and_sklearn_unloaded() -> None:
    code = "import sys, llmaaa_local.report; print([m for m in ('matplotlib', 'sklearn') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
