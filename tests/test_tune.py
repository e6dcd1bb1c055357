"""`tune` with the scripted LLM: the grid, successive halving within the budget, the choice stored as the project's
prompt, every call cached, and the CLI."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.special

from llmaaa_local.annotate import AnnotateConfig, Annotator
from llmaaa_local.config import LabelInfo, ProjectSettings, PromptSettings
from llmaaa_local.errors import LlmaaaError
from llmaaa_local.llm import Prompt, ScriptedLLM
from llmaaa_local.project import Project
from llmaaa_local.records import Example
from llmaaa_local.tasks.relation import role_words
from llmaaa_local.tune import (
    PromptTuner,
    TuneConfig,
    TuneProgress,
    VariantScore,
    clearly_better,
    demo_grid,
    description_words,
    wording_grid,
)

LABELS = (LabelInfo("pos", "the writer is pleased overall"), LabelInfo("neg", "the writer is disappointed"))


def embed(examples: Sequence[Example]) -> np.ndarray:
    """A stand-in sentence embedder: good/bad words on two axes, so kNN demos follow the sentiment."""
    vectors = np.array([[e.text.count("good") + 0.1, e.text.count("bad") + 0.1] for e in examples], dtype=float)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def last_text(prompt: Prompt) -> str:
    return prompt.user.rsplit("Text: ", 1)[1].split("\n", 1)[0]


def knows_only_its_words(prompt: Prompt, candidates: Sequence[str]) -> list[float]:
    """Right when asked with the words of the descriptions; with the label names it says "pos" every time."""
    if tuple(candidates) == ("pleased", "disappointed"):
        return [-0.1, -3.0] if "good" in last_text(prompt) else [-3.0, -0.1]
    return [-0.5, -0.9]


@pytest.fixture
def project(tmp_path: Path, write_file: Callable[..., Path]) -> Project:
    settings = ProjectSettings("classify", LABELS, prompt=PromptSettings(demos="knn", k=2))
    project = Project.init(tmp_path / "p", settings)
    gold = [{"id": f"g{i}", "text": f"{'good' if i % 2 else 'bad'} film number {i}",
             "label": "pos" if i % 2 else "neg"} for i in range(24)]
    project.import_gold(write_file("gold.jsonl", gold), "demo")
    project.import_corpus(write_file("pool.jsonl", [{"id": f"p{i}", "text": f"a good film {i}"} for i in range(3)]))
    yield project
    project.close()


def test_the_grids_try_every_knob(project: Project) -> None:
    wording = wording_grid(project)
    assert len(wording) == len(set(wording)) == 6  # two label vocabularies, three instruction wordings
    assert {v.demos for v in wording} == {"fixed"}  # the wording is compared with one cheap demo set
    assert {v.verbalizers for v in wording} == {(), (("pos", "pleased"), ("neg", "disappointed"))}
    assert {v.instruction_style for v in wording} == {"list", "short", "plain"}
    demos = demo_grid(project, wording[3])
    assert demos[0] == wording[3] and {v.demos for v in demos} == {"knn", "balanced", "fixed", "none"}
    assert {v.k for v in demos[1:] if v.demos != "none"} == {4, 8}  # short texts: more demonstrations are cheap
    assert {v.demo_seed for v in demos if v.demos == "fixed"} == set(range(6))
    assert {(v.verbalizers, v.instruction_style) for v in demos} == {(wording[3].verbalizers,
                                                                      wording[3].instruction_style)}


def test_label_words_from_descriptions_and_relation_roles() -> None:
    assert description_words([("pos", "the writer is pleased"), ("neg", "The writer is disappointed.")]) == (
        ("pos", "pleased"), ("neg", "disappointed"))
    assert description_words([("pos", "good"), ("neg", "")]) == ()  # every label needs one
    assert description_words([("a", "a good thing"), ("b", "a good thing too")]) == ()  # and no two the same
    assert role_words(["Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Other"]) == (
        ("Cause-Effect(e1,e2)", "cause-effect"), ("Cause-Effect(e2,e1)", "effect-cause"), ("Other", "other"))
    assert role_words(["per:age", "no_relation"]) == ()


def test_tune_finds_the_words_the_model_knows_and_makes_them_the_projects_prompt(project: Project) -> None:
    llm = ScriptedLLM(scorer=knows_only_its_words)
    seen: list[TuneProgress] = []
    report = PromptTuner(project, llm, embed).run(TuneConfig(budget=10_000, first_rung=6),
                                                  lambda progress: seen.append(replace(progress)))
    chosen = report.chosen.prompt
    assert chosen.verbalizers == (("pos", "pleased"), ("neg", "disappointed"))
    assert report.chosen.score == pytest.approx(1.0) and report.chosen.n == 24  # halved until all gold was used
    assert report.default.prompt == PromptSettings(demos="knn", k=2) and report.default.score < 0.7
    assert project.settings.prompt == chosen
    stored = project.store.tuning()
    assert stored is not None and stored["chosen"]["score"] == 1.0 and stored["metric"] == "macro-F1"
    assert stored["model_sha256"] == llm.model_sha256 and len(stored["results"]) == len(report.results)
    # two stages of successive halving: many variants on 6 gold examples, fewer on 12, the last ones on all 24
    # (no ensemble stage: the words alone decide, and zero-shot is the cheapest of the perfect prompts)
    rungs = sorted({(p.rung, p.examples, p.variants) for p in seen})
    assert [r[1] for r in rungs] == [6, 12, 24, 6, 12, 24]
    assert rungs[0][2] > rungs[1][2] > rungs[2][2] >= 1 and rungs[3][2] > rungs[4][2] > rungs[5][2] >= 1
    assert chosen.demos == "none"
    assert report.calls == seen[-1].done == seen[-1].total
    # every call was an annotation: a rerun asks nothing, and annotate now uses the tuned prompt and its cache
    asked = len(llm.history)
    again = PromptTuner(project, llm, embed).run(TuneConfig(budget=10_000, first_rung=6))
    assert again.calls == 0 and len(llm.history) == asked and again.chosen.prompt == chosen
    annotator = Annotator(project, llm, embed)
    assert annotator.prompt == chosen
    result = annotator.run(AnnotateConfig(n=3))
    assert result.annotated == 3 and result.cached == 24  # calibration reuses the tuned prompt's gold answers
    assert all(candidates == ("pleased", "disappointed") for _, _, candidates in llm.history[asked:])


def test_the_budget_stops_the_halving_early(project: Project) -> None:
    llm = ScriptedLLM(scorer=knows_only_its_words)
    grid = wording_grid(project)
    report = PromptTuner(project, llm, embed).run(TuneConfig(budget=len(grid) * 6 * 2, first_rung=6))
    # stage 1 may spend half the budget: its first rung only; stage 2 the variants of its first rung that fit
    assert {r.n for r in report.results} == {6}
    assert report.calls == len(llm.history) // 2  # every request also scored its baseline
    assert report.calls <= len(grid) * 6 * 2 < report.calls + 6
    assert report.chosen.prompt.verbalizers == (("pos", "pleased"), ("neg", "disappointed"))


def test_an_explicit_list_of_variants_is_one_halving(project: Project) -> None:
    llm = ScriptedLLM(scorer=knows_only_its_words)
    words = (("pos", "pleased"), ("neg", "disappointed"))
    variants = (PromptSettings(demos="none"), PromptSettings(demos="none", verbalizers=words))
    project_prompt = project.settings.prompt
    report = PromptTuner(project, llm, embed).run(TuneConfig(variants=variants, first_rung=6))
    assert report.chosen.prompt == variants[1] and report.chosen.n == 12  # the last one standing after 6
    assert {r.prompt for r in report.results} == {*variants, project_prompt}
    assert report.default.prompt == project_prompt and report.default.n == 12


def test_tune_needs_gold(tmp_path: Path) -> None:
    with Project.init(tmp_path / "empty", ProjectSettings("classify", LABELS)) as empty, \
            pytest.raises(LlmaaaError, match="at least 4 gold examples"):
        PromptTuner(empty, ScriptedLLM(), embed)


def test_without_a_demo_pool_the_wording_is_tuned_zero_shot_and_needs_no_embedder(
        tmp_path: Path, write_file: Callable[..., Path]) -> None:
    gold = [{"id": f"d{i}", "text": f"{'good' if i % 2 else 'bad'} film {i}", "label": "pos" if i % 2 else "neg"}
            for i in range(8)]
    with Project.init(tmp_path / "dev-only", ProjectSettings("classify", LABELS)) as dev_only:
        dev_only.import_gold(write_file("dev.jsonl", gold), "dev")
        assert {v.demos for v in wording_grid(dev_only)} == {"none"}
        report = PromptTuner(dev_only, ScriptedLLM(scorer=knows_only_its_words), None).run(
            TuneConfig(first_rung=4))
        assert report.chosen.prompt.demos == "none" and report.chosen.score == pytest.approx(1.0)


def noisy_sets(prompt: Prompt, candidates: Sequence[str]) -> list[float]:
    """Right by a wide margin, except that each demonstration set is wrong, less confidently, on every third pair
    of texts (one of each label; which third depends on the set): two sets are wrong on different texts, and
    their mean is right."""
    shots, text = prompt.user.rsplit("Text: ", 1)[0], last_text(prompt)
    if text == "N/A":
        return [-1.0, -1.0]
    right = 0 if "good" in text else 1
    wrong = (int(hashlib.sha256(shots.encode()).hexdigest(), 16) + int(text.split()[-1]) // 2) % 3 == 0
    scores = [-4.0, -4.0]
    scores[1 - right if wrong else right] = -2.0 if wrong else -0.5
    return scores


def test_an_ensemble_averages_its_members_scores_and_asks_each_member_once(project: Project) -> None:
    llm = ScriptedLLM(scorer=noisy_sets)
    ensemble = PromptSettings(demos="fixed", k=2, demo_seed=0, ensemble=(1,))
    members = ensemble.members()
    assert [m.demo_seed for m in members] == [0, 1] and not any(m.ensemble for m in members)
    annotator = Annotator(project, llm, None, ensemble)
    report = annotator.run(AnnotateConfig(n=3, calibrate=False))
    assert report.annotated == 6 and len(llm.history) == 12  # 3 texts x 2 sets, each with its baseline
    single = [Annotator(project, llm, None, member) for member in members]
    rows = {a.prompt_key: {row[0]: row for row in project.store.prompt_annotations(
        llm.model_sha256, a.prompt_key, ["p0", "p1", "p2"])} for a in (annotator, *single)}
    for eid in ("p0", "p1", "p2"):
        combined = rows[annotator.prompt_key][eid]
        expected = np.mean([scipy.special.log_softmax([rows[a.prompt_key][eid][2][label] for label in ("pos", "neg")])
                            for a in single], axis=0)
        assert [combined[2][label] for label in ("pos", "neg")] == pytest.approx(expected)
        assert combined[4] == 0  # the members' rows carry the cost
    # the newest label of each text is the ensemble's, and a rerun asks nothing
    latest = {eid: label for eid, label, _, _ in project.store.latest_labels("llm:")}
    assert all(latest[eid] == rows[annotator.prompt_key][eid][1] for eid in ("p0", "p1", "p2"))
    asked = len(llm.history)
    again = Annotator(project, llm, None, ensemble).run(AnnotateConfig(n=3, calibrate=False))
    assert again.annotated == 0 and len(llm.history) == asked
    with pytest.raises(LlmaaaError, match="other seeds"):
        PromptSettings(demos="knn", ensemble=(1,))


def test_tune_takes_the_averaged_sets_when_they_beat_the_best_set_on_gold(
        project: Project, write_file: Callable[..., Path]) -> None:
    more = [{"id": f"g{i}", "text": f"{'good' if i % 2 else 'bad'} film number {i}", "label": "pos" if i % 2 else "neg"}
            for i in range(24, 64)]
    project.import_gold(write_file("more.jsonl", more), "demo")
    llm = ScriptedLLM(scorer=noisy_sets)
    report = PromptTuner(project, llm, embed).run(TuneConfig(budget=10_000, first_rung=8))
    chosen = report.chosen
    assert chosen.prompt.demos == "fixed" and len(chosen.prompt.ensemble) == 1
    alone = next(r for r in report.results if r.prompt == replace(chosen.prompt, ensemble=()))
    assert chosen.score > alone.score and chosen.n == alone.n == 64
    assert chosen.tokens_per_example > 1.5 * alone.tokens_per_example  # both members' prompts are paid for
    assert "averaged" in chosen.describe() and project.settings.prompt == chosen.prompt


def test_a_costlier_prompt_needs_clearly_more_right_answers_on_the_same_gold() -> None:
    def score(value: float, right: str) -> VariantScore:
        return VariantScore(PromptSettings(), len(right), value, "-", 0.0, 0.0, tuple(c == "1" for c in right))

    incumbent = score(0.80, "1" * 80 + "0" * 20)
    assert not clearly_better(score(0.83, "1" * 77 + "0" * 3 + "1" * 6 + "0" * 14), incumbent)  # 6 wins, 3 losses
    assert clearly_better(score(0.90, "1" * 79 + "0" + "1" * 11 + "0" * 9), incumbent)  # 11 wins, 1 loss
    assert not clearly_better(score(0.79, "1" * 79 + "0" * 21), incumbent)  # no better at all
