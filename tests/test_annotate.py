"""The annotator with the scripted LLM double against real project files: storage, cache and resume, parse errors,
demonstrations, calibration, context overflow, progress, and importing another model's annotations."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import snapshot

from llmaaa_local.annotate import MIN_CHARS, AnnotateConfig, AnnotateProgress, Annotator
from llmaaa_local.calibration import Calibration, TyperFit
from llmaaa_local.config import PromptSettings
from llmaaa_local.embedder import StoredEmbedder
from llmaaa_local.errors import LlmaaaError
from llmaaa_local.evaluate import evaluate_llm
from llmaaa_local.llm import Prompt, ScoreRequest, ScriptedLLM, render_plain
from llmaaa_local.project import Project
from llmaaa_local.records import Example, Span

DEMO_DATA = Path(str(files("llmaaa_local").joinpath("demo_data")))
LABELS = ["positive", "negative"]

MakeProject = Callable[..., Project]
WriteFile = Callable[..., Path]


def demo_records(name: str, count: int, start: int = 0) -> list[dict[str, Any]]:
    lines = (DEMO_DATA / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[start : start + count]]


def annotation_rows(project: Project) -> list[dict[str, Any]]:
    cursor = project.store.db.execute("SELECT * FROM annotations ORDER BY id")
    names = [column[0] for column in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    for row in rows:
        for key in ("decoding", "demo_ids", "scores", "calibrated", "flags", "label"):
            if row[key] is not None:
                row[key] = json.loads(row[key])
    return rows


def final_text(prompt: Prompt) -> str:
    """The text being annotated: the last "Text: " line of the prompt (demonstrations come before it)."""
    return prompt.user.rsplit("Text: ", 1)[1].split("\n", 1)[0]


def classify_project(make_project: MakeProject, write_file: WriteFile, pool: int = 8, demo: int = 0,
                     demos: str = "none", k: int = 2, name: str = "proj") -> Project:
    """A sentiment project from the shipped demo data: `pool` corpus texts (with hidden labels) and `demo` gold."""
    prompt = PromptSettings(demos=demos, k=k, content_free=False)  # type: ignore[arg-type]
    project = make_project("classify", labels=LABELS, name=name, prompt=prompt)
    project.import_corpus(write_file(f"{name}-corpus.jsonl", demo_records("classify_corpus.jsonl", pool)))
    if demo:
        project.import_gold(write_file(f"{name}-demo.jsonl", demo_records("classify_demo.jsonl", demo)), "demo")
    return project


def constant_scorer(prompt: Prompt, candidates: Sequence[str]) -> list[float]:
    return [-0.3, -1.5]


# --- storing answers ---------------------------------------------------------------------------------------------


def test_a_prompt_that_asks_what_another_prompt_asked_gets_its_own_rows_at_no_cost(
        make_project: MakeProject, write_file: WriteFile) -> None:
    """Two prompts with different settings can send the same request (k means nothing without demonstrations;
    tune's variants or an ensemble's members can agree on an example's demonstrations): the second asks nothing
    but still has every example's answer under its own prompt key, where tune and calibration look."""
    project = classify_project(make_project, write_file, pool=4)
    llm = ScriptedLLM(scorer=constant_scorer)
    first = Annotator(project, llm, prompt=PromptSettings(demos="none", k=2, content_free=False))
    second = Annotator(project, llm, prompt=PromptSettings(demos="none", k=8, content_free=False))
    assert first.prompt_key != second.prompt_key
    assert first.run(AnnotateConfig(n=4, calibrate=False)).annotated == 4
    report = second.run(AnnotateConfig(n=4, calibrate=False))
    assert (report.annotated, report.cached, len(llm.history)) == (0, 4, 4)
    ids = project.store.example_ids("pool")
    for annotator in (first, second):
        rows = project.store.prompt_annotations(llm.model_sha256, annotator.prompt_key, ids)
        assert sorted(row[0] for row in rows) == sorted(ids) and all(row[1] == "positive" for row in rows)
    assert second.run(AnnotateConfig(n=4, calibrate=False)).cached == 4 and len(annotation_rows(project)) == 8


def test_every_annotation_is_stored_with_its_provenance(make_project: MakeProject, write_file: WriteFile) -> None:
    project = classify_project(make_project, write_file, pool=8, demo=4, demos="random")
    llm = ScriptedLLM(scorer=constant_scorer)
    annotator = Annotator(project, llm)
    config = AnnotateConfig(n=5, calibrate=False)
    chosen = annotator.select(config)
    report = annotator.run(config)
    assert (report.annotated, report.cached, report.parse_errors, report.calibration) == (5, 0, 0, None)

    rows = annotation_rows(project)
    pool_ids = set(project.store.example_ids("pool"))
    demo_ids = set(project.store.example_ids("demo"))
    assert sorted(row["example_id"] for row in rows) == sorted(chosen)
    assert len(set(chosen)) == 5 and set(chosen) <= pool_ids
    # prompts that start with the same demonstrations run back to back, for the KV cache
    assert [row["demo_ids"] for row in rows] == sorted(row["demo_ids"] for row in rows)
    texts = {e.id: e.text for e in project.store.examples()}
    assert [(kind, final_text(prompt)) for kind, prompt, _ in llm.history] == [
        ("score", texts[row["example_id"]]) for row in rows]
    probabilities = [math.exp(-0.3) / (math.exp(-0.3) + math.exp(-1.5)),
                     math.exp(-1.5) / (math.exp(-0.3) + math.exp(-1.5))]
    for row, (_, prompt, candidates) in zip(rows, llm.history, strict=True):
        assert row["source"] == "llm:scripted" and row["status"] == "ok" and row["error"] is None
        assert row["model_sha256"] == "0" * 64
        assert re.fullmatch(r"[0-9a-f]{64}", row["cache_key"])
        assert row["prompt_key"] == rows[0]["prompt_key"] and re.fullmatch(r"[0-9a-f]{16}", row["prompt_key"])
        assert row["prompt_hash"] == ScoreRequest(prompt, candidates).key()
        assert row["decoding"] == {"mode": "score", "sum_logprobs": True}
        assert len(row["demo_ids"]) == 2 and set(row["demo_ids"]) <= demo_ids
        assert all(texts[d] in prompt.user for d in row["demo_ids"])
        assert row["tokens_in"] == len(render_plain(prompt).split()) > 0
        assert 0 < row["tokens_evaluated"] <= row["tokens_in"] and row["tokens_out"] == 0
        assert row["seconds"] == pytest.approx(0.001)
        assert json.loads(row["raw_output"]) == {"logprobs": [-0.3, -1.5]}
        assert row["scores"] == {"positive": -0.3, "negative": -1.5}
        assert row["label"] == "positive"
        assert row["calibrated"] == pytest.approx(dict(zip(LABELS, probabilities, strict=True)))
        assert row["confidence"] == pytest.approx(probabilities[0])
        assert row["flags"] is None and row["round_id"] is None
    assert len({row["cache_key"] for row in rows}) == 5
    assert project.status().counts.annotations == 5
    assert project.status().cost.tokens_in == sum(row["tokens_in"] for row in rows)


def test_select_first_takes_the_pool_in_import_order(make_project: MakeProject, write_file: WriteFile) -> None:
    project = classify_project(make_project, write_file, pool=8)
    annotator = Annotator(project, ScriptedLLM())
    assert annotator.select(AnnotateConfig(n=3, select="first")) == ["rev-0001", "rev-0002", "rev-0003"]
    shuffled = annotator.select(AnnotateConfig(n=8, seed=1))
    assert sorted(shuffled) == sorted(project.store.example_ids("pool"))
    assert annotator.select(AnnotateConfig(n=3, seed=1)) == shuffled[:3]  # a larger --n extends the same sample
    assert annotator.select(AnnotateConfig(ids=("rev-0007", "rev-0002"))) == ["rev-0007", "rev-0002"]


def test_annotating_needs_a_label_set(make_project: MakeProject) -> None:
    project = make_project("classify", prompt=PromptSettings(content_free=False))
    with pytest.raises(LlmaaaError, match="the project has no label set yet"):
        Annotator(project, ScriptedLLM())


# --- cache and resume --------------------------------------------------------------------------------------------


def test_a_second_run_asks_nothing_and_reports_everything_cached(make_project: MakeProject,
                                                                   write_file: WriteFile) -> None:
    project = classify_project(make_project, write_file, pool=8, demo=4, demos="random")
    llm = ScriptedLLM(scorer=constant_scorer)
    first = Annotator(project, llm).run(AnnotateConfig(n=5))
    assert (first.annotated, first.cached) == (4 + 5, 0)  # the gold demo examples are scored for calibration
    assert first.calibration is not None and first.calibration.n == 4
    calls = len(llm.history)
    before = annotation_rows(project)

    second = Annotator(project, llm).run(AnnotateConfig(n=5))
    assert len(llm.history) == calls
    assert (second.annotated, second.cached, second.tokens_in, second.tokens_out) == (0, 9, 0, 0)
    after = annotation_rows(project)
    assert [(r["id"], r["cache_key"], r["created_at"]) for r in after] == [
        (r["id"], r["cache_key"], r["created_at"]) for r in before]
    assert project.status().counts.annotations == 9


class PowerCut(Exception):
    pass


def test_an_interrupted_run_keeps_what_it_stored_and_the_rerun_asks_only_for_the_rest(
        make_project: MakeProject, write_file: WriteFile) -> None:
    project = classify_project(make_project, write_file, pool=8)
    answered: list[str] = []

    def failing(prompt: Prompt, candidates: Sequence[str]) -> list[float]:
        if len(answered) == 3:
            raise PowerCut("the machine went down")
        answered.append(final_text(prompt))
        return [-0.2, -2.0]

    config = AnnotateConfig(n=7)
    with pytest.raises(PowerCut):
        Annotator(project, ScriptedLLM(scorer=failing)).run(config)
    stored = annotation_rows(project)
    assert len(stored) == 3
    texts = {e.id: e.text for e in project.store.examples()}
    assert [texts[row["example_id"]] for row in stored] == answered

    llm = ScriptedLLM(scorer=constant_scorer)
    report = Annotator(project, llm).run(config)
    assert (report.annotated, report.cached) == (4, 3)
    assert len(llm.history) == 4
    assert not {final_text(prompt) for _, prompt, _ in llm.history} & set(answered)
    rows = annotation_rows(project)
    assert len(rows) == 7
    assert len({row["cache_key"] for row in rows}) == 7
    assert len({row["example_id"] for row in rows}) == 7
    assert rows[:3] == stored  # the stored answers were kept as they were
    assert sorted(row["example_id"] for row in rows) == sorted(Annotator(project, llm).select(config))


# --- parse errors ------------------------------------------------------------------------------------------------


def test_ner_parse_errors_are_stored_not_raised_and_evaluated(make_project: MakeProject,
                                                               write_file: WriteFile) -> None:
    project = make_project("ner", labels=["PER", "ORG", "LOC", "MISC"], prompt=PromptSettings(demos="none"))
    records = demo_records("ner_corpus.jsonl", 4)
    project.import_corpus(write_file("ner.jsonl", records))
    broken = {records[1]["text"], records[3]["text"]}
    gold_json = {record["text"]: json.dumps([{"span": " ".join(record["tokens"][s.start : s.end]), "type": s.type}
                                             for s in _bio(record["tags"])]) for record in records}

    def generator(prompt: Prompt, grammar: str) -> str:
        text = final_text(prompt)
        return "nonsense" if text in broken else gold_json[text]

    llm = ScriptedLLM(generator=generator)
    report = Annotator(project, llm).run(AnnotateConfig(n=4, select="first"))
    assert (report.annotated, report.parse_errors, report.calibration) == (4, 2, None)
    assert all(kind == "generate" for kind, _, _ in llm.history)
    rows = annotation_rows(project)
    by_id = {row["example_id"]: row for row in rows}
    for record in records:
        row = by_id[record["id"]]
        if record["text"] in broken:
            assert (row["status"], row["label"], row["confidence"], row["raw_output"]) == (
                "parse_error", None, None, "nonsense")
            assert row["error"].startswith("not JSON")
        else:
            assert row["status"] == "ok" and row["error"] is None
            assert row["raw_output"] == gold_json[record["text"]]
            assert row["tokens_out"] == len(gold_json[record["text"]].split())
        assert row["decoding"] == {"mode": "generate", "greedy": True, "max_tokens": 12 * 24 + 8}
        assert row["scores"] is None and row["calibrated"] is None
    assert project.status().counts.parse_errors == 2

    result = evaluate_llm(project, "pool")
    assert result.llm.parse_error_rate == 0.5
    assert result.llm.n == 2 and result.llm.coverage == 0.5
    assert result.llm.metrics["f1"] == 1.0
    assert not result.by_source

    # a parse error is an answer too: the rerun does not ask again
    calls = len(llm.history)
    assert Annotator(project, llm).run(AnnotateConfig(n=4, select="first")).cached == 4
    assert len(llm.history) == calls


def test_parse_errors_on_every_gold_example_do_not_crash_calibration(make_project: MakeProject,
                                                                      write_file: WriteFile) -> None:
    project = classify_project(make_project, write_file, pool=3, demo=3)
    report = Annotator(project, ScriptedLLM(scorer=lambda prompt, candidates: [-1.0])).run(AnnotateConfig(n=2))
    assert report.parse_errors == 5
    assert {row["status"] for row in annotation_rows(project)} == {"parse_error"}


def test_ner_annotation_flags_dropped_spans(make_project: MakeProject, write_file: WriteFile) -> None:
    project = make_project("ner", labels=["PER", "LOC"], prompt=PromptSettings(demos="none"))
    project.import_corpus(write_file("ner.jsonl", [{"id": "s1", "tokens": ["Ana", "met", "Ana", "in", "Oslo"]}]))
    llm = ScriptedLLM()
    llm.enqueue('[{"span": "Ana", "type": "PER"}, {"span": "Bergen", "type": "LOC"}, {"span": "Oslo", '
                '"type": "DATE"}]')
    Annotator(project, llm).run(AnnotateConfig(n=1))
    [row] = annotation_rows(project)
    assert row["status"] == "ok"
    assert row["label"] == [[0, 1, "PER"], [2, 3, "PER"]]
    assert row["flags"] == {"dropped_spans": 2, "tags": ["B-PER", "O", "B-PER", "O", "O"]}
    assert row["confidence"] == pytest.approx(math.exp(-0.1))


# --- demonstrations ----------------------------------------------------------------------------------------------

ANGLES = {"d0": 0, "d1": 30, "d2": 65, "d3": 90, "d4": 180, "p0": 10, "p1": 80, "p2": 170}
VECTORS = {name: np.array([math.cos(math.radians(a)), math.sin(math.radians(a))], np.float32)
           for name, a in ANGLES.items()}


def embed(examples: Sequence[Example]) -> np.ndarray:
    return np.stack([VECTORS[example.id] for example in examples])


def small_demo_project(make_project: MakeProject, write_file: WriteFile, demos: str, name: str = "proj",
                       k: int = 2) -> Project:
    prompt = PromptSettings(demos=demos, k=k, content_free=False)  # type: ignore[arg-type]
    project = make_project("classify", labels=LABELS, name=name, prompt=prompt)
    gold = [{"id": f"d{i}", "text": f"demo text number {i}", "label": LABELS[i % 2]} for i in range(5)]
    project.import_gold(write_file(f"{name}-demo.jsonl", gold), "demo")
    pool = [{"id": f"p{i}", "text": f"pool text number {i}"} for i in range(3)]
    project.import_corpus(write_file(f"{name}-pool.jsonl", pool))
    return project


def demos_by_example(project: Project) -> dict[str, list[str]]:
    return {row["example_id"]: row["demo_ids"] for row in annotation_rows(project)}


def test_knn_demos_are_the_nearest_most_similar_last_never_the_example_itself(
        make_project: MakeProject, write_file: WriteFile) -> None:
    project = small_demo_project(make_project, write_file, "knn")
    llm = ScriptedLLM(scorer=constant_scorer)
    Annotator(project, llm, embed=embed).run(AnnotateConfig(n=3, select="first"))
    assert demos_by_example(project) == {
        # pool examples: the two nearest demos by angle, the nearest last
        "p0": ["d1", "d0"],  # 10 deg: d0 is 10 away, d1 20
        "p1": ["d2", "d3"],  # 80 deg: d3 is 10 away, d2 15
        "p2": ["d3", "d4"],  # 170 deg: d4 is 10 away, d3 80
        # gold demo examples, scored for calibration, leave themselves out
        "d0": ["d2", "d1"],  # d1 30 away, d2 65
        "d1": ["d2", "d0"],  # d0 30 away, d2 35
        "d2": ["d1", "d3"],  # d3 25 away, d1 35
        "d3": ["d1", "d2"],  # d2 25 away, d1 60
        "d4": ["d2", "d3"],  # d3 90 away, d2 115
    }
    prompts = {final_text(prompt): prompt.user for _, prompt, _ in llm.history}
    user = prompts["pool text number 0"]
    assert user.index("demo text number 1") < user.index("demo text number 0") < user.index("pool text number 0")


def test_knn_demos_need_an_embedder(make_project: MakeProject, write_file: WriteFile) -> None:
    project = small_demo_project(make_project, write_file, "knn")
    with pytest.raises(LlmaaaError, match="kNN demonstrations need the sentence embedder"):
        Annotator(project, ScriptedLLM())


def test_random_demos_are_fixed_per_example(make_project: MakeProject, write_file: WriteFile) -> None:
    forward = small_demo_project(make_project, write_file, "random", name="forward")
    backward = small_demo_project(make_project, write_file, "random", name="backward")
    Annotator(forward, ScriptedLLM()).run(AnnotateConfig(ids=("p0", "p1", "p2")))
    Annotator(backward, ScriptedLLM()).run(AnnotateConfig(ids=("p2", "p1", "p0")))
    chosen = demos_by_example(forward)
    assert chosen == demos_by_example(backward)  # the same per example, whatever the order of the run
    assert set(chosen) == {f"d{i}" for i in range(5)} | {"p0", "p1", "p2"}
    for example_id, demo_ids in chosen.items():
        assert len(demo_ids) == len(set(demo_ids)) == 2
        assert example_id not in demo_ids and all(d.startswith("d") for d in demo_ids)
    assert len({tuple(sorted(ids)) for ids in chosen.values()}) > 1  # not one fixed set for everyone


def test_no_demos_mode(make_project: MakeProject, write_file: WriteFile) -> None:
    project = small_demo_project(make_project, write_file, "none")
    llm = ScriptedLLM()
    Annotator(project, llm).run(AnnotateConfig(n=3))
    assert set(map(tuple, demos_by_example(project).values())) == {()}
    assert all(prompt.user.count("Text: ") == 1 for _, prompt, _ in llm.history)


def test_k_zero_means_no_demos(make_project: MakeProject, write_file: WriteFile) -> None:
    project = small_demo_project(make_project, write_file, "random", k=0)
    Annotator(project, ScriptedLLM()).run(AnnotateConfig(n=3, calibrate=False))
    assert list(demos_by_example(project).values()) == [[], [], []]


# --- calibration -------------------------------------------------------------------------------------------------

# How strongly each text says "positive" (nats); the scripted model adds 2 nats of its own lean toward positive.
EVIDENCE = {
    "g1 the soup was wonderful": 1.0, "g2 friendly staff, fair prices": 1.2, "g3 it works as promised": 0.8,
    "g4 broke on the first day": -1.0, "g5 rude and slow": -1.3, "g6 fine, I suppose, but overpriced": 0.9,
    "p1 lovely hotel, will return": 1.6, "p2 the parcel never arrived": -1.6,
    "p3 comfortable shoes": 1.5, "p4 stale bread and cold coffee": -1.5,
    "v1 dreadful support line": -0.7, "v2 the lid leaks": -1.4, "v3 a bit loud but fine": 0.3,
    "v4 nothing worked": -1.6,
}
GOLD = {"g1": "positive", "g2": "positive", "g3": "positive", "g4": "negative", "g5": "negative",
        "g6": "negative", "v1": "negative", "v2": "negative", "v3": "positive", "v4": "negative"}


def biased_scorer(prompt: Prompt, candidates: Sequence[str]) -> list[float]:
    evidence = EVIDENCE[final_text(prompt)]
    return [-0.5 + evidence / 2 + 2.0, -0.5 - evidence / 2]


def records(prefix: str) -> list[dict[str, Any]]:
    found = []
    for text in EVIDENCE:
        if text.startswith(prefix):
            key = text.split()[0]
            label = GOLD.get(key) or ("positive" if EVIDENCE[text] > 0 else "negative")
            found.append({"id": key, "text": text, "label": label})
    return found


def test_calibration_corrects_a_biased_model_and_recalibrates_older_rows(make_project: MakeProject,
                                                                          write_file: WriteFile) -> None:
    project = make_project("classify", labels=LABELS, prompt=PromptSettings(demos="random", k=2, content_free=False))
    project.import_gold(write_file("demo.jsonl", records("g")), "demo")
    project.import_corpus(write_file("pool.jsonl", records("p")))
    llm = ScriptedLLM(scorer=biased_scorer)
    report = Annotator(project, llm).run(AnnotateConfig(n=4))
    fitted = report.calibration
    assert fitted is not None and fitted.n == 6
    assert fitted.raw_accuracy == pytest.approx(3 / 6)  # the model says positive every time
    assert fitted.calibrated_accuracy == pytest.approx(5 / 6)  # g6 reads as positive even without the lean
    assert fitted.raw_accuracy < fitted.calibrated_accuracy
    assert fitted.method in ("raw+batch", "raw+match", "raw+prior", "raw+accuracy")

    stored = project.store.calibration("0" * 64, annotation_rows(project)[0]["prompt_key"])
    assert stored is not None
    params, metrics = stored
    calibration = Calibration.from_dict(params)
    assert metrics == {"n": 6, "method": fitted.method, "raw_accuracy": fitted.raw_accuracy,
                       "calibrated_accuracy": fitted.calibrated_accuracy, "loo_accuracy": fitted.loo_accuracy,
                       "metric": "macro_f1", "loo_score": fitted.loo_score, "rejected": ["raw+none"],
                       "summary": fitted.summary()}
    assert project.status().calibration["summary"] == fitted.summary()
    before = {row["example_id"]: row for row in annotation_rows(project)}
    assert len(before) == 10
    for example_id, row in before.items():
        raw = dict(zip(LABELS, biased_scorer(Prompt("", "Text: " + _text(example_id), ""), LABELS), strict=True))
        assert row["scores"] == pytest.approx(raw)  # the raw scores are kept
        assert max(raw, key=raw.__getitem__) == "positive"
        assert row["calibrated"] == pytest.approx(calibration.probabilities(raw))
        assert row["label"] == max(row["calibrated"], key=row["calibrated"].__getitem__)
        assert row["confidence"] == pytest.approx(row["calibrated"][row["label"]])
    assert {i: before[i]["label"] for i in ("p1", "p2", "p3", "p4")} == {
        "p1": "positive", "p2": "negative", "p3": "positive", "p4": "negative"}
    assert evaluate_llm(project, "pool").llm.metrics["accuracy"] == 1.0

    # more gold (dev: not demonstrations, so the pool prompts stay the same) refits and relabels older rows
    project.import_gold(write_file("dev.jsonl", records("v")), "dev")
    calls = len(llm.history)
    again = Annotator(project, llm).run(AnnotateConfig(n=4))
    assert len(llm.history) == calls + 4  # only the new dev examples were asked
    assert (again.annotated, again.cached) == (4, 10)
    assert again.calibration is not None and again.calibration.n == 10
    newer = project.store.calibration("0" * 64, before["p1"]["prompt_key"])
    assert newer is not None and newer[0] != params
    recalibrated = Calibration.from_dict(newer[0])
    after = {row["example_id"]: row for row in annotation_rows(project)}
    assert len(after) == 14
    for example_id, row in before.items():
        updated = after[example_id]
        assert (updated["id"], updated["created_at"], updated["scores"]) == (row["id"], row["created_at"],
                                                                            row["scores"])
        assert updated["calibrated"] == pytest.approx(recalibrated.probabilities(row["scores"]))
        assert updated["calibrated"] != pytest.approx(row["calibrated"], abs=1e-6)
        assert updated["confidence"] == pytest.approx(updated["calibrated"][updated["label"]])
    count = project.store.db.execute("SELECT COUNT(*) FROM calibrations").fetchone()[0]
    assert count == 2


def _text(example_id: str) -> str:
    return next(text for text in EVIDENCE if text.split()[0] == example_id)


class NamedEmbed:
    """A stand-in sentence embedder with a name, as `load_embedder`'s: texts that start with "good" point along the
    first axis, the rest against it, each with its own seeded noise on 4 axes."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, examples: Sequence[Example]) -> np.ndarray:
        rows = []
        for example in examples:
            noise = np.random.default_rng(int(example.id[1:])).normal(0, 1.0, 4)
            noise[0] += 2.5 if example.text.startswith("good") else -2.5
            rows.append(noise / np.linalg.norm(noise))
        return np.array(rows)


class BlindEmbed(NamedEmbed):
    """A stand-in sentence embedder whose vectors know nothing of the label, and which records what it embeds."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.seen: list[str] = []

    def __call__(self, examples: Sequence[Example]) -> np.ndarray:
        self.seen.extend(example.id for example in examples)
        return np.array([np.random.default_rng(int(example.id[1:]) + 1000).normal(0, 1.0, 4) for example in examples])


def weak_teacher_project(make_project: MakeProject, write_file: WriteFile) -> Project:
    """24 gold and 20 pool texts that start with "good" (positive) or "poor" (negative)."""
    def record(i: int, prefix: str) -> dict[str, Any]:
        label = LABELS[i % 2]
        return {"id": f"{prefix}{i}", "text": f"{'good' if label == 'positive' else 'poor'} text {i}", "label": label}

    project = make_project("classify", labels=LABELS, prompt=PromptSettings(demos="none", content_free=False))
    project.import_gold(write_file("demo.jsonl", [record(i, "g") for i in range(24)]), "demo")
    project.import_corpus(write_file("pool.jsonl", [record(i, "p") for i in range(100, 120)]))
    return project


def weak(prompt: Prompt, candidates: Sequence[str]) -> list[float]:
    """A teacher that barely tells the labels apart: a coin flip seeded by the prompt."""
    return list(np.random.default_rng(len(prompt.user) * 7 + sum(map(ord, prompt.user))).normal(0, 1.0, 2))


def test_a_probe_on_the_gold_embeddings_joins_a_weak_teacher_and_relabels_every_row(
        make_project: MakeProject, write_file: WriteFile) -> None:
    """The teacher barely tells the labels apart; the embeddings of the 24 gold texts do. Calibration adds the probe,
    every stored row (gold and pool, older and new) is labeled with it, and an annotator with another embedder does
    not apply a probe it cannot read."""
    project = weak_teacher_project(make_project, write_file)
    embed = NamedEmbed("minilm:test")
    report = Annotator(project, ScriptedLLM(scorer=weak), embed=embed).run(AnnotateConfig(n=20))
    fitted = report.calibration
    assert fitted is not None and fitted.probe_weight > 0
    assert fitted.loo_accuracy >= 0.9 and fitted.raw_accuracy <= 0.75
    params, metrics = project.store.calibration("0" * 64, annotation_rows(project)[0]["prompt_key"]) or ({}, {})
    calibration = Calibration.from_dict(params)
    assert calibration.probe is not None and calibration.probe.embedder == "minilm:test"
    assert "probe on the gold examples' minilm embeddings" in metrics["summary"]
    rows = annotation_rows(project)
    assert len(rows) == 44
    vectors = dict(zip([row["example_id"] for row in rows],
                       embed(list(project.store.examples(ids=[row["example_id"] for row in rows]))), strict=True))
    for row in rows:
        assert row["calibrated"] == pytest.approx(calibration.probabilities(row["scores"], None,
                                                                            vectors[row["example_id"]]))
        assert row["label"] == max(row["calibrated"], key=row["calibrated"].__getitem__)
    assert evaluate_llm(project, "pool").llm.metrics["accuracy"] >= 0.9
    # the stored calibration's probe reads this embedder's vectors only
    assert Annotator(project, ScriptedLLM(), embed=embed).calibration == calibration
    assert Annotator(project, ScriptedLLM(), embed=NamedEmbed("mpnet:other")).calibration is None
    assert Annotator(project, ScriptedLLM()).calibration is None
    # without an embedder, calibration goes without the probe
    bare = Annotator(project, ScriptedLLM(scorer=weak)).run(AnnotateConfig(n=20)).calibration
    assert bare is not None and bare.probe_weight == 0 and bare.calibration.probe is None


def test_the_probe_reads_whichever_embedder_does_best_on_gold_and_only_it_embeds_the_pool(
        make_project: MakeProject, write_file: WriteFile) -> None:
    """Two embedders for the probe, the first blind to the label: the calibration takes the second, its vectors
    label every row, and the blind one embeds the gold examples only. A later annotator with both applies the stored
    probe with the second; one without it refits."""
    project = weak_teacher_project(make_project, write_file)
    blind, good = BlindEmbed("minilm:blind"), NamedEmbed("mpnet:good")
    annotator = Annotator(project, ScriptedLLM(scorer=weak), embed=blind, probe_embeds=[blind, good])
    fitted = annotator.run(AnnotateConfig(n=20)).calibration
    assert fitted is not None and fitted.calibration.probe is not None
    assert fitted.calibration.probe.embedder == "mpnet:good" and annotator.probe_embed is good
    assert [name for name, _ in fitted.probe_scores] == ["minilm:blind", "mpnet:good"]
    assert set(blind.seen) == {f"g{i}" for i in range(24)}
    assert evaluate_llm(project, "pool").llm.metrics["accuracy"] >= 0.9
    again = Annotator(project, ScriptedLLM(), embed=blind, probe_embeds=[blind, good])
    assert again.calibration == fitted.calibration and again.probe_embed is good
    assert Annotator(project, ScriptedLLM(), embed=blind, probe_embeds=[blind]).calibration is None


class WordEncoder:
    """A stand-in sentence encoder (as `embedder.Embedder`) that records what it embeds: a text with the word
    "works" points along the first axis, any other against it, each with its own seeded noise on 4 axes."""

    name = "words:1"

    def __init__(self) -> None:
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        rows = []
        for text in texts:
            noise = np.random.default_rng(sum(map(ord, text))).normal(0, 1.0, 4)
            noise[0] += 2.5 if "works" in text.split() else -2.5
            rows.append(noise / np.linalg.norm(noise))
        return np.array(rows)


def test_the_probe_of_a_relation_task_reads_the_mentions_and_the_words_between_them(
        make_project: MakeProject, write_file: WriteFile) -> None:
    """Half the sentences end in a clause with "works" in it whatever the relation, so only the words between the
    mentions tell works_for from lives_in: the probe embeds those, cached apart from whole sentences' vectors."""
    def record(i: int, prefix: str) -> dict[str, Any]:
        verb = ["works", "at"] if i % 2 == 0 else ["lives", "in"]
        tail = ["as", "the", "one", "who", "works", "there", "said"] if i % 3 == 0 else ["so", "we", "heard"]
        tokens = ["Ann", str(i), *verb, "Acme", str(i), ",", *tail, "."]
        return {"id": f"{prefix}{i}", "tokens": tokens, "h": {"name": f"Ann {i}", "pos": [0, 2]},
                "t": {"name": f"Acme {i}", "pos": [4, 6]}, "label": "works_for" if i % 2 == 0 else "lives_in"}

    project = make_project("re", labels=["works_for", "lives_in", "no_relation"], no_relation="no_relation",
                           prompt=PromptSettings(demos="none", content_free=False))
    project.import_gold(write_file("demo.jsonl", [record(i, "g") for i in range(24)]), "demo")
    project.import_corpus(write_file("pool.jsonl", [record(i, "p") for i in range(100, 120)]))

    def weak(prompt: Prompt, candidates: Sequence[str]) -> list[float]:  # a coin flip seeded by the text
        return list(np.random.default_rng(sum(map(ord, prompt.user))).normal(0, 1.0, len(candidates)))

    encoder = WordEncoder()
    embed = StoredEmbedder(project.store, encoder)  # type: ignore[arg-type]
    fitted = Annotator(project, ScriptedLLM(scorer=weak), embed=embed).run(AnnotateConfig(n=20)).calibration
    assert fitted is not None and fitted.calibration.probe is not None
    assert fitted.calibration.probe.embedder == "words:1#mentions"
    examples = list(project.store.examples())
    views = {" ".join((e.tokens or ())[:6]) for e in examples}
    assert encoder.texts and set(encoder.texts) <= views  # never a whole sentence
    ids = [e.id for e in examples]
    assert len(project.store.embeddings("words:1#mentions", ids)) == 44
    assert project.store.embeddings("words:1", ids) == {}
    assert evaluate_llm(project, "pool").llm.metrics["f1"] >= 0.9


NAMES = {"PER": ["Ann", "Bo", "Cy"], "ORG": ["Acme", "Globex", "Initech"], "LOC": ["Paris", "Rome", "Oslo"]}


class MentionEncoder:
    """A stand-in sentence encoder that knows which type a name is: a direction per type, with seeded noise."""

    name = "mentions:1"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            vector = np.random.default_rng(sum(map(ord, text))).normal(0, 0.5, 6)
            kind = next((k for k, names in NAMES.items() if text in names), None)
            if kind is not None:
                vector[list(NAMES).index(kind)] += 2.0
            rows.append(vector / np.linalg.norm(vector))
        return np.array(rows)


def test_a_probe_on_the_gold_mentions_re_types_the_entities_of_a_teacher_that_calls_everyone_a_person(
        make_project: MakeProject, write_file: WriteFile) -> None:
    """The teacher finds every entity and types each one PER. Calibration on the gold sentences re-types the spans
    with a probe on the gold mentions' embeddings: every stored answer (gold and pool) gets the types, its BIO tags
    follow, its raw output stays, and a later annotator applies the stored choice."""
    def record(i: int, prefix: str) -> dict[str, Any]:
        person, org, place = (NAMES[k][(i + j) % 3] for j, k in enumerate(NAMES))
        return {"id": f"{prefix}{i}", "tokens": [person, "met", org, "in", place, "today", str(i)],
                "tags": ["B-PER", "O", "B-ORG", "O", "B-LOC", "O", "O"]}

    def everyone_a_person(prompt: Prompt, grammar: str) -> str:
        tokens = prompt.user.rsplit("Text: ", 1)[1].split()
        return json.dumps([{"span": tokens[k], "type": "PER"} for k in (0, 2, 4)])

    project = make_project("ner", labels=["PER", "ORG", "LOC"], prompt=PromptSettings(demos="none"))
    project.import_gold(write_file("demo.jsonl", [record(i, "g") for i in range(24)]), "demo")
    project.import_corpus(write_file("pool.jsonl", [record(i, "p") for i in range(100, 120)]))
    embed = StoredEmbedder(project.store, MentionEncoder())  # type: ignore[arg-type]
    fitted = Annotator(project, ScriptedLLM(generator=everyone_a_person), embed=embed).run(
        AnnotateConfig(n=20)).calibration
    assert isinstance(fitted, TyperFit) and fitted.typer is not None
    assert fitted.written_f1 < 0.4 and fitted.loo_f1 >= 0.9
    assert evaluate_llm(project, "pool").llm.metrics["f1"] >= 0.9
    rows = annotation_rows(project)
    assert len(rows) == 44
    for row in rows:
        assert json.loads(row["raw_output"])[1]["type"] == "PER"  # the teacher's answer as it gave it
        assert row["flags"]["tags"] == ["B-PER", "O", "B-ORG", "O", "B-LOC", "O", "O"]
    assert "re-typed, by a probe on the 72 gold mentions'" in (project.store.latest_calibration() or {})["summary"]
    assert Annotator(project, ScriptedLLM(), embed=embed).typer == fitted.typer
    # without an embedder the types stay as written, and every row goes back to them
    bare = Annotator(project, ScriptedLLM(generator=everyone_a_person)).run(AnnotateConfig(n=20)).calibration
    assert isinstance(bare, TyperFit) and bare.typer is None
    assert evaluate_llm(project, "pool").llm.metrics["f1"] < 0.4


def test_the_annotator_drops_the_teachers_non_entities_and_marks_the_names_it_missed(
        make_project: MakeProject, write_file: WriteFile) -> None:
    """The teacher types right but never finds a place, and calls "today" an entity: the rule chosen on gold drops
    "today" and marks the places it knows (from the gold, or from the teacher's other answers) in every stored
    answer, including a place only the pool names, in the sentence where the teacher missed it too."""
    def record(i: int, prefix: str, place: str = "") -> dict[str, Any]:
        person, org, known = (NAMES[k][(i + j) % 3] for j, k in enumerate(NAMES))
        return {"id": f"{prefix}{i}", "tokens": [person, "met", org, "in", place or known, "today", str(i)],
                "tags": ["B-PER", "O", "B-ORG", "O", "B-LOC", "O", "O"]}

    def no_places(prompt: Prompt, grammar: str) -> str:
        tokens = prompt.user.rsplit("Text: ", 1)[1].split()
        said = [(tokens[0], "PER"), (tokens[2], "ORG"), ("today", "LOC")]
        if tokens[-1] in ("221", "241"):  # the answers that name a place no gold sentence has
            said.append((tokens[4], "LOC"))
        return json.dumps([{"span": span, "type": kind} for span, kind in said])

    NAMES["LOC"].extend(["Lima", "Kyiv"])  # the encoder knows them places; the gold never names them
    try:
        project = make_project("ner", labels=["PER", "ORG", "LOC"], prompt=PromptSettings(demos="none"))
        project.import_gold(write_file("demo.jsonl", [record(i, "g") for i in range(24)]), "demo")
        project.import_corpus(write_file("pool.jsonl", [*(record(i, "p") for i in range(100, 120)),
                                                        record(220, "p", "Lima"), record(221, "p", "Lima")]))
        embed = StoredEmbedder(project.store, MentionEncoder())  # type: ignore[arg-type]
        fitted = Annotator(project, ScriptedLLM(generator=no_places), embed=embed).run(
            AnnotateConfig(n=22)).calibration
        assert isinstance(fitted, TyperFit) and fitted.typer is not None
        assert fitted.typer.drops and fitted.typer.marks
        assert fitted.written_f1 < 0.7 and fitted.loo_f1 >= 0.95
        # chosen again after the pool's answers came in: the 9 gold names, the teacher's "today", and Lima
        assert fitted.named == 11
        assert evaluate_llm(project, "pool").llm.metrics["f1"] == 1.0  # Lima marked in p220 as well
        for row in annotation_rows(project):
            # a gold sentence's answer is not marked from the gazetteer its own gold mentions are in
            place = "B-LOC" if row["example_id"].startswith("p") else "O"
            assert row["flags"]["tags"] == ["B-PER", "O", "B-ORG", "O", place, "O", "O"], row["example_id"]
            assert "today" in row["raw_output"]  # the teacher's answer as it gave it
        # a later annotator applies the stored rule to new answers, with the names known so far and those they give:
        # Kyiv, missed in p240 (asked first), named in p241
        project.import_corpus(write_file("more.jsonl", [record(230, "p", "Lima"), record(240, "p", "Kyiv"),
                                                         record(241, "p", "Kyiv")]))
        again = Annotator(project, ScriptedLLM(generator=no_places), embed=embed)
        assert again.typer == fitted.typer
        again.run(AnnotateConfig(ids=["p230", "p240", "p241"], calibrate=False))
        labels = {row["example_id"]: row["label"] for row in annotation_rows(project)}
        for example_id in ("p230", "p240", "p241"):
            assert labels[example_id] == [[0, 1, "PER"], [2, 3, "ORG"], [4, 5, "LOC"]], example_id
    finally:
        NAMES["LOC"].remove("Lima")
        NAMES["LOC"].remove("Kyiv")


def test_no_calibrate_keeps_the_raw_lean(make_project: MakeProject, write_file: WriteFile) -> None:
    project = make_project("classify", labels=LABELS, prompt=PromptSettings(demos="none", content_free=False))
    project.import_gold(write_file("demo.jsonl", records("g")), "demo")
    project.import_corpus(write_file("pool.jsonl", records("p")))
    report = Annotator(project, ScriptedLLM(scorer=biased_scorer)).run(AnnotateConfig(n=4, calibrate=False))
    assert report.calibration is None
    assert {row["label"] for row in annotation_rows(project)} == {"positive"}
    assert evaluate_llm(project, "pool").llm.metrics["accuracy"] == 0.5


# --- context overflow --------------------------------------------------------------------------------------------


def test_context_overflow_retries_with_a_shorter_text_and_flags_it(make_project: MakeProject,
                                                                    write_file: WriteFile) -> None:
    project = make_project("classify", labels=LABELS, prompt=PromptSettings(demos="none", content_free=False,
                                                                             clip="head", max_chars=4000))
    long_text = " ".join(["word"] * 1000)  # 4999 characters, 1000 words
    project.import_corpus(write_file("pool.jsonl", [{"id": "long", "text": long_text},
                                                    {"id": "short", "text": "tiny text"}]))
    probe = ScriptedLLM()
    Annotator(project, probe).run(AnnotateConfig(ids=("short",)))
    overhead = probe.count_tokens(probe.history[0][1]) - 2  # the prompt's words besides "tiny text"

    # cut to 4000, 2000 and 1000 characters the text has 800, 400 and 200 words: too long; at 500 it has 100
    llm = ScriptedLLM(context=overhead + 150)
    report = Annotator(project, llm).run(AnnotateConfig(ids=("long",)))
    assert report.annotated == 1
    row = annotation_rows(project)[-1]
    assert row["example_id"] == "long" and row["status"] == "ok"
    assert row["flags"] == {"truncated_to_chars": 500}
    shown = [final_text(prompt) for _, prompt, _ in llm.history]
    assert [len(text.split()) for text in shown] == [801, 401, 201, 101]  # words and the "…" mark
    assert shown[-1] == " ".join(["word"] * 100) + " …"
    assert row["tokens_in"] <= overhead + 150

    # the rerun finds the shortened prompt in the cache and sends nothing that fits the context
    rerun = ScriptedLLM(context=overhead + 150)
    again = Annotator(project, rerun).run(AnnotateConfig(ids=("long",)))
    assert (again.annotated, again.cached) == (0, 1)
    assert all(rerun.count_tokens(prompt) > overhead + 150 for _, prompt, _ in rerun.history)
    assert len(annotation_rows(project)) == 2


def test_an_example_that_cannot_fit_raises_a_clear_error(make_project: MakeProject, write_file: WriteFile) -> None:
    project = small_demo_project(make_project, write_file, "random")
    llm = ScriptedLLM(context=5)
    with pytest.raises(LlmaaaError, match=rf"example 'p0': even a {MIN_CHARS}-character prompt does not fit .*"
                                          "raise --n-ctx"):
        Annotator(project, llm).run(AnnotateConfig(ids=("p0",), calibrate=False))
    assert annotation_rows(project) == []
    # it shortened the text first, then dropped the demonstrations one at a time
    assert [len(prompt.user.split("\n\n")) for _, prompt, _ in llm.history][-3:] == [3, 2, 1]


def test_demonstrations_are_dropped_least_similar_first_when_the_text_is_already_short(
        make_project: MakeProject, write_file: WriteFile) -> None:
    probe = ScriptedLLM()
    Annotator(small_demo_project(make_project, write_file, "knn", name="probe"), probe, embed=embed).run(
        AnnotateConfig(ids=("p0",), calibrate=False))
    full = probe.count_tokens(probe.history[0][1])
    project = small_demo_project(make_project, write_file, "knn")
    llm = ScriptedLLM(context=full - 1)  # one word too many: one demonstration has to go
    Annotator(project, llm, embed=embed).run(AnnotateConfig(ids=("p0",), calibrate=False))
    row = annotation_rows(project)[-1]
    assert row["demo_ids"] == ["d0"]  # d1, the less similar, went first
    assert row["flags"] is None  # the text itself was not cut


# --- progress and cost -------------------------------------------------------------------------------------------


def test_progress_callback_counts_documents_tokens_and_cache(make_project: MakeProject,
                                                              write_file: WriteFile) -> None:
    project = classify_project(make_project, write_file, pool=8, demo=3, demos="random")
    seen: list[tuple[Any, ...]] = []

    def record(progress: AnnotateProgress) -> None:
        seen.append((progress.stage, progress.done, progress.total, progress.cached, progress.tokens_in,
                     progress.docs_per_second, progress.eta_seconds))

    llm = ScriptedLLM(scorer=constant_scorer)
    report = Annotator(project, llm).run(AnnotateConfig(n=5), record)
    assert [s[:4] for s in seen] == [("calibrate", i, 3, 0) for i in (1, 2, 3)] + [
        ("annotate", i, 8, 0) for i in range(4, 9)]
    rows = annotation_rows(project)
    assert [s[4] for s in seen] == list(np.cumsum([row["tokens_in"] for row in rows]))
    assert seen[-1][4] == report.tokens_in
    assert all(s[5] == pytest.approx(s[1] / (0.001 * s[1])) for s in seen)  # scripted calls take 1 ms
    assert seen[-1][6] == 0.0 and seen[0][6] > 0.0

    seen.clear()
    Annotator(project, llm).run(AnnotateConfig(n=5), record)
    assert [(s[1], s[3], s[4], s[5], s[6]) for s in seen] == [(i, i, 0, 0.0, None) for i in range(1, 9)]


def test_consecutive_prompts_reuse_the_shared_instruction(make_project: MakeProject, write_file: WriteFile) -> None:
    project = classify_project(make_project, write_file, pool=6)
    llm = ScriptedLLM(scorer=constant_scorer)
    report = Annotator(project, llm).run(AnnotateConfig(n=6))
    rows = annotation_rows(project)
    instruction = len(llm.history[0][1].system.split())
    assert rows[0]["tokens_evaluated"] == rows[0]["tokens_in"]
    for row in rows[1:]:
        assert row["tokens_evaluated"] <= row["tokens_in"] - instruction
    assert report.tokens_evaluated == sum(row["tokens_evaluated"] for row in rows) < report.tokens_in


# --- importing annotations made elsewhere ------------------------------------------------------------------------


def test_import_classification_annotations_idempotently(make_project: MakeProject, write_file: WriteFile) -> None:
    project = classify_project(make_project, write_file, pool=6)
    references = project.store.reference_labels("pool")
    ids = project.store.example_ids("pool")
    flipped = {"positive": "negative", "negative": "positive"}
    lines = [{"id": i, "label": references[i] if n < 4 else flipped[str(references[i])]} for n, i in enumerate(ids)]
    lines[0]["confidence"] = 0.75
    lines[1]["confidence"] = 1
    path = write_file("answers.jsonl", lines)
    report = project.import_annotations(path, "bigmodel")
    assert (report.added, report.unchanged) == (6, 0)
    rows = annotation_rows(project)
    assert [(r["example_id"], r["source"], r["label"], r["confidence"], r["status"]) for r in rows] == [
        (line["id"], "import:bigmodel", line["label"], line.get("confidence"), "ok") for line in lines]
    assert all(r["cache_key"].startswith("import:") for r in rows)
    assert rows[0]["raw_output"] == json.dumps(lines[0]["label"])

    again = project.import_annotations(path, "bigmodel")
    assert (again.added, again.unchanged) == (0, 6)
    assert len(annotation_rows(project)) == 6

    result = evaluate_llm(project, "pool", source="import:bigmodel")
    assert result.llm.n == 6 and result.llm.metrics["accuracy"] == pytest.approx(4 / 6)
    assert result.llm.source == "import:bigmodel"
    assert not result.by_source


def test_import_two_models_answers_from_one_file_with_field(make_project: MakeProject,
                                                             write_file: WriteFile) -> None:
    project = classify_project(make_project, write_file, pool=4)
    references = project.store.reference_labels("pool")
    ids = project.store.example_ids("pool")
    flipped = {"positive": "negative", "negative": "positive"}
    path = write_file("both.jsonl", [
        {"id": i, "llama": references[i], "qwen": references[i] if n == 0 else flipped[str(references[i])]}
        for n, i in enumerate(ids)])
    assert project.import_annotations(path, "llama", field="llama").added == 4
    assert project.import_annotations(path, "qwen", field="qwen").added == 4
    assert len(annotation_rows(project)) == 8
    assert evaluate_llm(project, "pool", "import:llama").llm.metrics["accuracy"] == 1.0
    assert evaluate_llm(project, "pool", "import:qwen").llm.metrics["accuracy"] == 0.25
    result = evaluate_llm(project, "pool", "import:")
    assert set(result.by_source) == {"import:llama", "import:qwen"}
    assert result.by_source["import:llama"].metrics["accuracy"] == 1.0
    assert result.by_source["import:qwen"].metrics["accuracy"] == 0.25
    assert result.llm.metrics["accuracy"] == 0.25  # the newest label per example: qwen was imported last


def test_import_ner_annotations_as_tags_and_as_spans(make_project: MakeProject, write_file: WriteFile) -> None:
    project = make_project("ner", labels=["PER", "ORG", "LOC", "MISC"])
    records_ = demo_records("ner_corpus.jsonl", 2)
    project.import_corpus(write_file("ner.jsonl", records_))
    first, second = records_
    assert first["tokens"][:2] == ["Maria", "Olsen"] and first["tokens"][18] == "Bergholm"
    olsen = first["text"].index("Maria Olsen")
    bergholm = first["text"].index("Bergholm")
    path = write_file("ner-answers.jsonl", [
        {"id": first["id"], "spans": [{"start": olsen, "end": olsen + 11, "type": "PER"},
                                      {"start": bergholm, "end": bergholm + 8, "type": "ORG"}],
         "confidence": 0.5},
        {"id": second["id"], "tags": second["tags"]},
    ])
    assert project.import_annotations(path, "ext").added == 2
    rows = annotation_rows(project)
    assert rows[0]["label"] == [[0, 2, "PER"], [18, 19, "ORG"]] and rows[0]["confidence"] == 0.5
    assert rows[1]["label"] == [span.to_json() for span in _bio(second["tags"])]
    result = evaluate_llm(project, "pool", "import:ext").llm.metrics
    gold_entities = len(_bio(first["tags"])) + len(_bio(second["tags"]))
    # right: Maria Olsen and every entity of the second sentence; Bergholm has the wrong type
    right = 1 + len(_bio(second["tags"]))
    assert result["precision"] == pytest.approx(right / (2 + len(_bio(second["tags"]))))
    assert result["recall"] == pytest.approx(right / gold_entities)


def _bio(tags: list[str]) -> list[Span]:
    spans, start, kind = [], None, ""
    for index, tag in enumerate([*tags, "O"]):
        if start is not None and not tag.startswith("I-"):
            spans.append(Span(start, index, kind))
            start = None
        if tag.startswith("B-"):
            start, kind = index, tag[2:]
    return spans


@pytest.mark.parametrize(("bad", "field", "message"), [
    ({"id": "nope", "label": "positive"}, None, "id 'nope' is not in the project (import the corpus first)"),
    ({"id": "rev-0003", "label": "neutral"}, None, "record 'rev-0003': label 'neutral' is not in the project's"),
    ({"id": "rev-0003", "label": "positive", "confidence": 1.5}, None,
     "record 'rev-0003': confidence 1.5 must be a number in 0..1"),
    ({"id": "rev-0003", "label": "positive", "confidence": "high"}, None,
     "record 'rev-0003': confidence 'high' must be a number in 0..1"),
    ({"id": "rev-0003", "answer": "positive"}, None,
     "record 'rev-0003' has no 'label' / 'tags' / 'spans' field (name the label's key with --field)"),
    ({"id": "rev-0003", "label": "positive"}, "verdict", "record 'rev-0003' has no 'verdict' field"),
    ({"label": "positive"}, None, "id None is not in the project"),
], ids=["unknown-id", "label-outside-set", "confidence-too-high", "confidence-text", "no-label-key",
        "field-missing", "no-id"])
def test_import_annotation_errors_name_file_and_line_and_change_nothing(
        make_project: MakeProject, write_file: WriteFile, bad: dict[str, Any], field: str | None,
        message: str) -> None:
    project = classify_project(make_project, write_file, pool=4)
    good_key = field or "label"
    path = write_file("answers.jsonl", [{"id": "rev-0001", good_key: "positive"},
                                        {"id": "rev-0002", good_key: "negative"}, "", bad])
    before = snapshot(project)
    with pytest.raises(LlmaaaError) as error:
        project.import_annotations(path, "x", field=field)
    assert str(error.value).startswith(f"{path}:4: ")
    assert message in str(error.value)
    assert snapshot(project) == before


@pytest.mark.parametrize("source", ["", "two words", " "])
def test_import_annotation_source_must_be_one_word(make_project: MakeProject, write_file: WriteFile,
                                                   source: str) -> None:
    project = classify_project(make_project, write_file, pool=1)
    with pytest.raises(LlmaaaError, match="give a short name without spaces"):
        project.import_annotations(write_file("a.jsonl", [{"id": "rev-0001", "label": "positive"}]), source)


def test_import_annotation_rejects_a_boolean_confidence(make_project: MakeProject, write_file: WriteFile) -> None:
    project = classify_project(make_project, write_file, pool=1)
    path = write_file("a.jsonl", [{"id": "rev-0001", "label": "positive", "confidence": True}])
    with pytest.raises(LlmaaaError, match="must be a number in 0..1"):
        project.import_annotations(path, "x")


def _two_sources(project: Project, write_file: WriteFile, right: str, wrong: str) -> None:
    references = project.store.reference_labels("pool")
    flipped = {"positive": "negative", "negative": "positive"}
    project.import_annotations(write_file(f"{right}.jsonl", [{"id": i, "label": label}
                                                            for i, label in references.items()]), right)
    project.import_annotations(write_file(f"{wrong}.jsonl", [{"id": i, "label": flipped[str(label)]}
                                                            for i, label in references.items()]), wrong)


def test_evaluate_by_source_keeps_a_source_apart_from_one_whose_name_extends_it(
        make_project: MakeProject, write_file: WriteFile) -> None:
    project = classify_project(make_project, write_file, pool=4)
    _two_sources(project, write_file, "gpt", "gpt2")
    result = evaluate_llm(project, "pool")
    assert result.by_source["import:gpt2"].metrics["accuracy"] == 0.0
    assert result.by_source["import:gpt"].metrics["accuracy"] == 1.0


def test_evaluate_source_with_an_underscore_is_not_a_wildcard(make_project: MakeProject,
                                                               write_file: WriteFile) -> None:
    project = classify_project(make_project, write_file, pool=4)
    _two_sources(project, write_file, "m_1", "mx1")
    assert evaluate_llm(project, "pool", "import:m_1").llm.metrics["accuracy"] == 1.0


def test_content_free_baseline_is_scored_after_each_prompt_and_kept(make_project: MakeProject,
                                                                     write_file: WriteFile) -> None:
    project = make_project("classify", labels=LABELS, prompt=PromptSettings(demos="random", k=2))
    project.import_gold(write_file("demo.jsonl", [{"id": f"d{i}", "text": f"demo text {i}", "label": LABELS[i % 2]}
                                                  for i in range(4)]), "demo")
    project.import_corpus(write_file("pool.jsonl", [{"id": "p1", "text": "a lovely calm quiet evening"}]))
    llm = ScriptedLLM(scorer=lambda prompt, candidates: [-0.1, -3.0] if "N/A" in prompt.user else [-0.5, -1.0])
    Annotator(project, llm).run(AnnotateConfig(ids=("p1",), calibrate=False))
    (first, second) = [prompt for kind, prompt, _ in llm.history]
    assert first.user.endswith("Text: a lovely calm quiet evening\nAnswer with one of: positive, negative.")
    assert second.user.endswith("Text: N/A\nAnswer with one of: positive, negative.")
    assert first.user.split("Text: a lovely")[0] == second.user.split("Text: N/A")[0]  # same demonstrations
    row = project.store.db.execute("SELECT scores, baseline, tokens_in, tokens_evaluated, raw_output "
                                   "FROM annotations").fetchone()
    assert json.loads(row[0]) == {"positive": -0.5, "negative": -1.0}
    assert json.loads(row[1]) == {"positive": -0.1, "negative": -3.0}
    assert row[3] < row[2]  # the baseline reuses the prompt's prefix: only its last words are evaluated
    assert json.loads(row[4]) == {"logprobs": [-0.5, -1.0], "baseline": [-0.1, -3.0]}


# --- identical texts ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["classify", "ner"])
def test_every_example_with_an_identical_text_gets_its_own_annotation(make_project: MakeProject,
                                                                      write_file: WriteFile, task: str) -> None:
    """Repeated texts (a biomedical corpus repeats sentences such as "1 .") are asked once; each example still ends
    with its own annotation row, and status counts the rows there are."""
    if task == "classify":
        project = make_project("classify", labels=LABELS, prompt=PromptSettings(demos="none", content_free=False))
        records = [{"id": f"r{i}", "text": "1 ." if i % 2 else f"Review number {i}."} for i in range(6)]
    else:
        project = make_project("ner", labels=["PER"], prompt=PromptSettings(demos="none"))
        records = [{"id": f"r{i}", "tokens": ["1", "."] if i % 2 else ["Ann", "said", str(i)]} for i in range(6)]
    project.import_corpus(write_file("pool.jsonl", records))
    llm = ScriptedLLM(scorer=lambda prompt, candidates: [-0.1, -2.5],
                      generator=lambda prompt, grammar: '[{"span": "Ann", "type": "PER"}]' if "Ann" in
                      prompt.user else "[]")
    annotator = Annotator(project, llm)
    report = annotator.run(AnnotateConfig(n=6, select="first"))
    assert len(llm.history) == 4  # "1 ." is asked once, for r1; r3 and r5 reuse its answer
    assert (report.annotated, report.cached) == (4, 2)
    rows = annotation_rows(project)
    assert sorted(row["example_id"] for row in rows) == [f"r{i}" for i in range(6)]
    copies = [row for row in rows if row["flags"] and "same_request_as" in row["flags"]]
    assert {row["example_id"] for row in copies} == {"r3", "r5"} and {row["flags"]["same_request_as"]
                                                                       for row in copies} == {"r1"}
    original = next(row for row in rows if row["example_id"] == "r1")
    for copy in copies:
        assert copy["label"] == original["label"] and copy["tokens_in"] == copy["seconds"] == 0
        assert copy["cache_key"] == f"{original['cache_key']}:{copy['example_id']}"
    assert project.status().counts.annotations == 6
    again = annotator.run(AnnotateConfig(n=6, select="first"))
    assert (again.annotated, again.cached) == (0, 6) and len(llm.history) == 4
    assert len(annotation_rows(project)) == 6


def test_rates_count_calls_on_several_workers_as_side_by_side() -> None:
    from llmaaa_local.annotate import AnnotateProgress

    one = AnnotateProgress(total=40, done=10, llm_seconds=10.0, tokens_evaluated=900, tokens_out=100)
    two = AnnotateProgress(total=40, done=10, llm_seconds=10.0, tokens_evaluated=900, tokens_out=100, workers=2)
    assert (one.docs_per_second, one.tokens_per_second, one.eta_seconds) == (1.0, 100.0, 30.0)
    assert (two.docs_per_second, two.tokens_per_second, two.eta_seconds) == (2.0, 200.0, 15.0)
