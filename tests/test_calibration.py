"""Calibration on synthetic score tables: biases fix a model leaning toward one label, a temperature the confidence."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import llmaaa_local.calibration as calibration_module
from llmaaa_local.calibration import Calibration, Probe, SpanTyper, fit, fit_typer
from llmaaa_local.metrics import entity_f1
from llmaaa_local.records import Example, Span
from llmaaa_local.spans import Gazetteer, label_spans, span_text, span_words, spans_to_tags

LABELS = ("positive", "negative")


def biased_table(n: int, lean: float, noise: float, seed: int = 0) -> tuple[list[dict[str, float]], list[str]]:
    """Half positive, half negative; the model's evidence is +-1 nat plus noise, and `lean` nats extra on positive."""
    rng = np.random.default_rng(seed)
    gold = ["positive" if i % 2 == 0 else "negative" for i in range(n)]
    evidence = np.array([1.0 if label == "positive" else -1.0 for label in gold]) + rng.normal(0, noise, n)
    rows = [{"positive": float(e / 2 + lean + math.log(0.3)), "negative": float(-e / 2 + math.log(0.3))}
            for e in evidence]
    return rows, gold


def argmax_accuracy(rows: list[dict[str, float]], gold: list[str], bias: dict[str, float]) -> float:
    return float(np.mean([max(LABELS, key=lambda label: row[label] + bias[label]) == g
                          for row, g in zip(rows, gold, strict=True)]))


def test_bias_toward_one_label_is_corrected() -> None:
    rows, gold = biased_table(40, lean=2.0, noise=0.5)
    raw = argmax_accuracy(rows, gold, {"positive": 0.0, "negative": 0.0})
    best = argmax_accuracy(rows, gold, {"positive": -2.0, "negative": 0.0})  # the true lean removed
    assert raw <= 0.55 and best >= 0.9  # the table is what it is meant to be
    fitted = fit(rows, gold, LABELS)
    assert fitted.n == 40
    assert fitted.raw_accuracy == pytest.approx(raw)
    assert fitted.calibrated_accuracy >= best - 0.05
    assert fitted.calibrated_accuracy - fitted.raw_accuracy >= 0.35
    assert fitted.method in ("raw+batch", "raw+match", "raw+prior", "raw+accuracy")
    assert "raw+none" in fitted.rejected  # the raw scores answer "positive" for every gold example
    assert fitted.loo_accuracy >= 0.85
    # the fitted decision boundary sits near the true lean
    shift = fitted.calibration.bias[0] - fitted.calibration.bias[1]
    assert -3.0 < shift < -1.0
    probabilities = [fitted.calibration.probabilities(row) for row in rows]
    predicted = [max(p, key=p.__getitem__) for p in probabilities]
    assert np.mean([p == g for p, g in zip(predicted, gold, strict=True)]) == pytest.approx(
        fitted.calibrated_accuracy)


def test_three_labels_with_a_lean_toward_the_middle_one() -> None:
    labels = ("a", "b", "c")
    rng = np.random.default_rng(1)
    gold = [labels[i % 3] for i in range(30)]
    rows = []
    for g in gold:
        row = {label: float(rng.normal(0, 0.3)) for label in labels}
        row[g] += 1.5
        row["b"] += 3.0
        rows.append(row)
    fitted = fit(rows, gold, labels)
    assert fitted.raw_accuracy == pytest.approx(1 / 3)  # everything is "b"
    assert fitted.calibrated_accuracy >= 0.9
    assert fitted.loo_accuracy >= 0.85


def test_an_unbiased_model_keeps_its_scores_a_bias_must_do_better_to_be_chosen() -> None:
    rows, gold = biased_table(20, lean=0.0, noise=0.1)
    fitted = fit(rows, gold, LABELS)
    assert fitted.raw_accuracy == fitted.calibrated_accuracy == fitted.loo_accuracy == 1.0
    assert fitted.method == "raw+none"  # every method scores 1.0 leave-one-out; no bias wins the tie
    assert "calibration on 20 gold examples: raw scores, no bias; leave-one-out macro-F1 1.000" in fitted.summary()
    assert abs(fitted.calibration.bias[0] - fitted.calibration.bias[1]) < 0.5


@pytest.mark.parametrize("n", [
    0,  # the annotator gets here when every gold calibration answer is a parse error
    1,
])
def test_fewer_than_two_gold_examples_give_the_identity(n: int) -> None:
    rows, gold = biased_table(2, lean=2.0, noise=0.0)
    fitted = fit(rows[:n], gold[:n], LABELS)
    assert fitted.calibration == Calibration(LABELS, (0.0, 0.0), 1.0)
    assert fitted.n == n
    assert fitted.method == "none"
    expected = 1.0 if n == 1 else 0.0  # the one example is positive, and the model says positive
    assert fitted.raw_accuracy == fitted.calibrated_accuracy == fitted.loo_accuracy == expected


def test_probabilities_apply_bias_then_temperature() -> None:
    scores = {"positive": math.log(0.8), "negative": math.log(0.2)}
    identity = Calibration.identity(LABELS)
    assert identity.probabilities(scores) == pytest.approx({"positive": 0.8, "negative": 0.2})
    # scores need not be normalised: a multi-token label's log-probs sum to less than one
    shifted = {label: value - 7.0 for label, value in scores.items()}
    assert identity.probabilities(shifted) == pytest.approx({"positive": 0.8, "negative": 0.2})
    # a bias of log 4 on negative makes 0.8 : 0.2 even
    even = Calibration(LABELS, (0.0, math.log(4)))
    assert even.probabilities(scores) == pytest.approx({"positive": 0.5, "negative": 0.5})
    # temperature 2 takes square roots: sqrt(.8) : sqrt(.2) = 2 : 1
    assert Calibration(LABELS, (0.0, 0.0), 2.0).probabilities(scores) == pytest.approx(
        {"positive": 2 / 3, "negative": 1 / 3})
    # bias first, then temperature: (log .8, log .2 + log 2) / 0.5 -> .8^2 : .4^2 = 4 : 1
    assert Calibration(LABELS, (0.0, math.log(2)), 0.5).probabilities(scores) == pytest.approx(
        {"positive": 0.8, "negative": 0.2})


def test_probabilities_sum_to_one_and_follow_the_label_order_of_the_calibration() -> None:
    rng = np.random.default_rng(3)
    calibration = Calibration(("x", "y", "z"), (0.3, -1.2, 0.9), 0.7)
    for _ in range(20):
        scores = {label: float(rng.normal(-5, 3)) for label in ("z", "y", "x")}
        probabilities = calibration.probabilities(scores)
        assert list(probabilities) == ["x", "y", "z"]
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-12)
        assert all(0.0 <= value <= 1.0 for value in probabilities.values())
    # extreme scores do not overflow
    assert calibration.probabilities({"x": -1e4, "y": 0.0, "z": -2e4}) == pytest.approx({"x": 0, "y": 1, "z": 0})


def test_temperature_softens_an_overconfident_model_and_sharpens_a_timid_one() -> None:
    rows, gold = biased_table(30, lean=0.0, noise=1.2, seed=4)
    loud = [{label: 8 * value for label, value in row.items()} for row in rows]
    quiet = [{label: 0.1 * value for label, value in row.items()} for row in rows]
    assert fit(loud, gold, LABELS).calibration.temperature > 2.0
    assert fit(quiet, gold, LABELS).calibration.temperature < 0.5


def test_to_dict_from_dict_round_trip_through_json() -> None:
    rows, gold = biased_table(30, lean=1.5, noise=0.5)
    calibration = fit(rows, gold, LABELS).calibration
    data = json.loads(json.dumps(calibration.to_dict()))
    assert set(data) == {"labels", "bias", "temperature", "contextual", "probe"}
    again = Calibration.from_dict(data)
    assert again == calibration
    assert again.probabilities(rows[0]) == calibration.probabilities(rows[0])
    del data["probe"]  # as stored before the probe existed
    assert Calibration.from_dict(data) == calibration


def probe_table(n: int, seed: int, signal: float = 1.0) -> tuple[list[dict[str, float]], list[str], np.ndarray]:
    """A weak LLM (evidence +-0.3 nats under noise of 1) and 8-dimensional unit embeddings whose first axis carries
    the label with strength `signal` (0: the embeddings know nothing)."""
    rng = np.random.default_rng(seed)
    gold = ["positive" if i % 2 == 0 else "negative" for i in range(n)]
    sign = np.array([1.0 if label == "positive" else -1.0 for label in gold])
    evidence = 0.3 * sign + rng.normal(0, 1.0, n)
    rows = [{"positive": float(e / 2), "negative": float(-e / 2)} for e in evidence]
    vectors = rng.normal(0, 1.0, (n, 8))
    vectors[:, 0] += 2 * signal * sign
    return rows, gold, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_a_probe_on_gold_embeddings_is_added_where_it_beats_the_llm_on_held_out_gold() -> None:
    rows, gold, vectors = probe_table(100, seed=0)
    alone = fit(rows, gold, LABELS)
    fitted = fit(rows, gold, LABELS, vectors={"minilm:abc": vectors})
    assert alone.probe_weight == 0 and alone.calibration.probe is None
    assert fitted.probe_weight > 0 and fitted.calibration.probe is not None
    assert fitted.calibration.probe.embedder == "minilm:abc"
    assert fitted.loo_score >= alone.loo_score + 0.1
    assert "probe on the gold examples' minilm embeddings (C=" in fitted.summary()
    # on new texts from the same source the probe pays too
    new_rows, new_gold, new_vectors = probe_table(400, seed=1)

    def accuracy(calibration: Calibration, with_vectors: bool) -> float:
        predicted = [calibration.probabilities(row, None, vector if with_vectors else None)
                     for row, vector in zip(new_rows, new_vectors, strict=True)]
        return float(np.mean([max(p, key=p.__getitem__) == g for p, g in zip(predicted, new_gold, strict=True)]))

    assert accuracy(fitted.calibration, True) >= accuracy(alone.calibration, False) + 0.1
    with pytest.raises(ValueError, match="give the text's vector"):
        fitted.calibration.probabilities(new_rows[0])
    again = Calibration.from_dict(json.loads(json.dumps(fitted.calibration.to_dict())))
    assert again == fitted.calibration
    assert again.probabilities(new_rows[0], None, new_vectors[0]) == pytest.approx(
        fitted.calibration.probabilities(new_rows[0], None, new_vectors[0]))


def test_a_probe_on_embeddings_that_know_nothing_is_not_taken() -> None:
    rows, gold, vectors = probe_table(60, seed=2, signal=0.0)
    rows = [{"positive": row["positive"] * 6, "negative": row["negative"] * 6} for row in rows]  # a clear LLM
    for row, label in zip(rows, gold, strict=True):
        row[label] += 3.0
    alone = fit(rows, gold, LABELS)
    fitted = fit(rows, gold, LABELS, vectors={"minilm:abc": vectors})
    assert fitted.probe_weight == 0 and fitted.calibration == alone.calibration
    # one label in gold, or too few examples: no probe is even tried
    assert fit(rows[:6], gold[:6], LABELS, vectors={"minilm:abc": vectors[:6]}).probe_weight == 0


def test_the_probe_reads_the_embedder_whose_probe_does_best_on_held_out_gold() -> None:
    """Two embedders: one whose vectors carry the label, one whose vectors carry nothing. Whichever comes first, the
    calibration takes the informative one, reports both, and labels new texts with its probe."""
    rows, gold, informative = probe_table(100, seed=0)
    _, _, blind = probe_table(100, seed=6, signal=0.0)
    for order in (("blind:1", "good:1"), ("good:1", "blind:1")):
        found = {"good:1": informative, "blind:1": blind}
        fitted = fit(rows, gold, LABELS, vectors={name: found[name] for name in order})
        assert fitted.calibration.probe is not None and fitted.calibration.probe.embedder == "good:1"
        assert fitted.loo_score == fit(rows, gold, LABELS, vectors={"good:1": informative}).loo_score
        assert [name for name, _ in fitted.probe_scores] == list(order)
        assert dict(fitted.probe_scores)["good:1"] > dict(fitted.probe_scores)["blind:1"]
        assert "probe on the gold examples' good embeddings" in fitted.summary()
        assert "probes compared: " in fitted.summary()
    # the same vectors under two names: the first named wins the tie
    twins = fit(rows, gold, LABELS, vectors={"first:1": informative, "second:1": informative})
    assert twins.calibration.probe is not None and twins.calibration.probe.embedder == "first:1"


def test_the_probe_fit_in_its_vectors_row_space_is_scikit_learns_on_the_vectors() -> None:
    """Fewer examples than dimensions: the probe fits on coordinates in the span of its vectors, and must be the
    same model as scikit-learn's fit on the vectors themselves, with a row per label (two labels: split in two)."""
    rng = np.random.default_rng(3)
    vectors = rng.normal(0, 1.0, (30, 64))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # unit length, as the embedders' vectors are
    for n_labels, strength in ((2, 1.0), (4, 10.0)):
        y = np.arange(30) % n_labels
        probe = Probe.train(vectors, y, n_labels, strength=strength)
        direct = LogisticRegression(C=strength, max_iter=1000).fit(vectors, y)
        new = rng.normal(0, 1.0, (5, 64))
        new /= np.linalg.norm(new, axis=1, keepdims=True)
        # the same optimum, each found to the solver's tolerance
        assert probe.log_probabilities(new) == pytest.approx(direct.predict_log_proba(new), abs=2e-3)
        assert probe.strength == strength


def label_clusters(per_label: int, seed: int) -> tuple[list[dict[str, float]], list[str], np.ndarray]:
    """Twelve labels, `per_label` examples each; an LLM that knows nothing (scores are noise); 32-dimensional unit
    embeddings that sit near their label's own direction."""
    rng = np.random.default_rng(seed)
    labels = [f"type{j}" for j in range(12)]
    gold = [labels[i % 12] for i in range(12 * per_label)]
    centres = np.random.default_rng(99).normal(0, 1.0, (12, 32))
    vectors = np.array([centres[labels.index(g)] + rng.normal(0, 1.6, 32) for g in gold])
    rows = [{label: float(x) for label, x in zip(labels, rng.normal(0, 1.0, 12), strict=True)} for _ in gold]
    return rows, gold, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_with_many_labels_and_a_few_examples_each_the_probe_fits_more_strongly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """scikit-learn's default penalty shrinks a 12-label probe on 5 examples per label to the prior; the probe's
    strength is chosen on gold, leave-one-out, and the chosen probe labels new texts far better."""
    rows, gold, vectors = label_clusters(5, seed=4)
    labels = sorted(set(gold))
    fitted = fit(rows, gold, labels, vectors={"minilm:abc": vectors})
    assert fitted.calibration.probe is not None and fitted.calibration.probe.strength > 1
    new_rows, new_gold, new_vectors = label_clusters(20, seed=5)

    def accuracy(calibration: Calibration) -> float:
        predicted = [calibration.probabilities(row, None, vector if calibration.probe else None)
                     for row, vector in zip(new_rows, new_vectors, strict=True)]
        return float(np.mean([max(p, key=p.__getitem__) == g for p, g in zip(predicted, new_gold, strict=True)]))

    monkeypatch.setattr(calibration_module, "PROBE_STRENGTHS", (1.0,))
    default = fit(rows, gold, labels, vectors={"minilm:abc": vectors})
    assert accuracy(fitted.calibration) >= accuracy(default.calibration) + 0.15
    assert accuracy(fitted.calibration) >= 0.6


def test_a_boundary_between_the_classes_wins_where_log_loss_biases_leave_examples_wrong() -> None:
    # ten negatives the model calls positive by 1 nat, two positives it calls positive by 3 nats: the log-loss
    # biases are pulled by the ten and misplace the boundary; biases tuned for accuracy put it between 1 and 3,
    # and so does batch calibration (minus the mean margin, 1.33), which comes first
    gold = ["negative"] * 10 + ["positive"] * 2
    rows = [{"positive": 0.0, "negative": -1.0}] * 10 + [{"positive": 0.0, "negative": -3.0}] * 2
    fitted = fit(rows, gold, LABELS)
    assert fitted.raw_accuracy == pytest.approx(2 / 12)
    assert fitted.method == "raw+batch"
    assert fitted.calibrated_accuracy == fitted.loo_accuracy == 1.0
    shift = fitted.calibration.bias[0] - fitted.calibration.bias[1]
    assert -3.0 < shift < -1.0


def test_leave_one_out_is_honest_about_a_lone_outlier() -> None:
    # with a single positive, leaving it out teaches the label-fitted biases nothing about positives: they all
    # answer "negative" for it (10/11). Batch calibration uses no labels: the mean margin of the ten negatives
    # alone puts the boundary at 1 nat, so the positive (3 nats) is found, honestly, and that is what is chosen.
    gold = ["negative"] * 10 + ["positive"]
    rows = [{"positive": 0.0, "negative": -1.0}] * 10 + [{"positive": 0.0, "negative": -3.0}]
    fitted = fit(rows, gold, LABELS)
    assert fitted.raw_accuracy == pytest.approx(1 / 11)
    assert fitted.method == "raw+batch"
    assert fitted.loo_accuracy == pytest.approx(1.0)
    assert fit(rows[1:], gold[1:], LABELS).loo_accuracy == pytest.approx(1.0)  # the same with nine negatives
    label_fitted = fit(rows * 1, gold, LABELS)
    assert label_fitted.calibrated_accuracy >= 10 / 11


def test_with_a_no_relation_label_the_method_is_chosen_by_the_f1_of_the_relations() -> None:
    # 6 "Other" the model calls "Other" by 1 nat, 4 "Causes" it calls "Other" by 0.5 nats: biases tuned for
    # accuracy could answer "Other" everywhere (6/10, relation F1 0); by F1 the chosen calibration finds relations
    labels = ("Other", "Causes")
    gold = ["Other"] * 6 + ["Causes"] * 4
    rows = [{"Other": 0.0, "Causes": -1.0}] * 6 + [{"Other": 0.0, "Causes": -0.5}] * 4
    by_accuracy = fit(rows, gold, labels)
    by_f1 = fit(rows, gold, labels, ignore="Other")
    assert by_accuracy.loo_f1 is None and by_f1.loo_f1 is not None
    assert by_f1.loo_f1 > 0.5
    shift = by_f1.calibration.bias[1] - by_f1.calibration.bias[0]
    assert 0.5 < shift < 1.0  # "Causes" now wins where the model hesitated, "Other" where it was sure
    assert fit(rows, gold, labels, ignore="Missing").loo_f1 is None  # a name outside the labels is no filter


def test_contextual_scores_win_when_the_bias_changes_from_prompt_to_prompt() -> None:
    # Each prompt leans a different way (say, toward the label of its last demonstration); the content-free
    # baseline of the same prompt carries the same lean, so scores relative to it recover the signal.
    rng = np.random.default_rng(0)
    rows, baselines, gold = [], [], []
    for i in range(60):
        truth = LABELS[i % 2]
        lean = rng.choice([-3.0, 3.0])
        signal = 1.0 if truth == "positive" else -1.0
        rows.append({"positive": lean + signal + rng.normal(0, 0.2), "negative": 0.0})
        baselines.append({"positive": lean, "negative": 0.0})
        gold.append(truth)
    plain = fit(rows, gold, LABELS)
    contextual = fit(rows, gold, LABELS, baselines)
    assert plain.loo_accuracy < 0.8
    assert contextual.method.startswith("contextual+") and contextual.calibration.contextual
    assert contextual.loo_accuracy >= 0.95
    probabilities = contextual.calibration.probabilities(rows[0], baselines[0])
    assert max(probabilities, key=probabilities.__getitem__) == gold[0]
    # one row without a baseline means the raw scores are used
    assert fit(rows, gold, LABELS, [*baselines[:-1], None]).method.startswith("raw+")


def test_a_fit_that_answers_the_majority_label_everywhere_is_never_chosen() -> None:
    """A yes/no task with 21% "yes" and a model whose "yes" evidence is weak: answering "no" for everything
    scores 79% accuracy, which an accuracy-chosen bias would take; the chosen fit must still find some "yes"."""
    rng = np.random.default_rng(1)
    gold = ["yes"] * 21 + ["no"] * 79
    evidence = np.array([0.6 if label == "yes" else 0.0 for label in gold]) + rng.normal(0, 0.5, 100)
    rows = [{"yes": float(e) - 3.0, "no": 0.0} for e in evidence]  # raw scores: "no" every time
    fitted = fit(rows, gold, ("yes", "no"))
    assert "raw+none" in fitted.rejected
    p = [fitted.calibration.probabilities(row) for row in rows]
    answers = [max(item, key=item.__getitem__) for item in p]
    assert 0.05 < answers.count("yes") / len(answers) < 0.6
    assert fitted.metric == "macro_f1" and fitted.loo_score > 0.5
    assert "nearly everything" in fitted.summary() and "macro-F1" in fitted.summary()


def test_without_evidence_the_label_free_fits_collapse_and_a_label_prior_fit_is_taken() -> None:
    gold = ["yes"] * 5 + ["no"] * 5
    rows = [{"yes": -5.0, "no": 0.0}] * 10  # no evidence at all: no bias, or batch, answers "no" everywhere
    fitted = fit(rows, gold, ("yes", "no"))
    assert set(fitted.rejected) == {"raw+none", "raw+batch"}
    assert fitted.method == "raw+match"  # the first usable of equals (leave-one-out gets every one wrong)


# --- entity spans --------------------------------------------------------------------------------------------------

TYPES = ["PER", "ORG", "LOC"]
FILLER = [f"w{k}" for k in range(30)]  # the words around the entities


class WorldEncoder:
    """Embeds a text near its entity type's direction, a filler word near a direction of its own; seeded noise per
    text, so a text always gets the same vector. `blind`: one vector for every text, nothing to learn."""

    def __init__(self, types: list[str], blind: bool = False) -> None:
        self.types, self.blind = types, blind
        self.centres = np.random.default_rng(7).normal(0, 1.0, (len(types) + 1, 16))

    def __call__(self, texts: Any) -> np.ndarray:
        rows = []
        for text in texts:
            kind = next((i for i, t in enumerate(self.types) if text.startswith(t.lower())), len(self.types))
            if self.blind:
                rows.append(self.centres[0])
                continue
            noise = np.random.default_rng(sum(map(ord, text)) * 31 + len(text)).normal(0, 1.0, 16)
            rows.append(self.centres[kind] + noise)
        vectors = np.array(rows)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def world(n: int, seed: int, right: float, types: list[str] | None = None, missed: float = 0.0,
          spurious: float = 0.0) -> tuple[list[Example], list[tuple[Span, ...]]]:
    """`n` sentences of 8 words with two entities each, named from 12 names per type (names recur); the teacher
    misses each entity with probability `missed`, writes its true type with probability `right` (else another),
    and calls a filler word an entity with probability `spurious`. Returns the gold sentences and its spans."""
    types = types or TYPES
    rng = np.random.default_rng(seed)
    sentences, written = [], []
    for i in range(n):
        words = [str(w) for w in rng.choice(FILLER, 8)]
        kinds = [types[int(k)] for k in rng.integers(0, len(types), 2)]
        truth = [Span(1, 2, kinds[0]), Span(5, 6, kinds[1])]
        for span in truth:
            words[span.start] = f"{span.type.lower()}{int(rng.integers(0, 12))}"
        said = [replace(span, type=span.type if rng.random() < right else
                        types[(types.index(span.type) + int(rng.integers(1, len(types)))) % len(types)])
                for span in truth if rng.random() >= missed]
        if rng.random() < spurious:
            said.append(Span(3, 4, types[int(rng.integers(0, len(types)))]))
        text = " ".join(words)
        starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]])
        offsets = tuple((int(a), int(a) + len(w)) for a, w in zip(starts, words, strict=True))
        sentences.append(Example(f"s{seed}-{i}", text, tuple(words), offsets, label=tuple(truth), split="demo"))
        written.append(tuple(sorted(said, key=lambda span: span.start)))
    return sentences, written


def entity_score(sentences: list[Example], found: list[tuple[Span, ...]]) -> float:
    return entity_f1([spans_to_tags(label_spans(e.label), 8) for e in sentences],
                     [spans_to_tags(spans, 8) for spans in found])["f1"]


def decided(typer: SpanTyper, embed: WorldEncoder, sentences: list[Example], written: list[tuple[Span, ...]],
            known: Gazetteer | None = None) -> list[tuple[Span, ...]]:
    """Each sentence's spans as the typer decides them: the teacher's, and with `known`, the mentions found again."""
    found = []
    for example, spans in zip(sentences, written, strict=True):
        again = known.find(example.tokens or (), spans) if known is not None else ()
        candidates = [*spans, *again]
        vectors = embed([span_text(example, span) for span in candidates])
        found.append(typer.retype(candidates, vectors, [True] * len(spans) + [False] * len(again)))
    return found


def test_a_probe_on_the_gold_mentions_re_types_a_teacher_that_finds_entities_but_mistypes_them() -> None:
    gold, written = world(60, seed=0, right=0.4)
    embed = WorldEncoder(TYPES)
    fitted = fit_typer(gold, written, TYPES, {"minilm:abc": embed})
    assert fitted.typer is not None and fitted.loo_f1 >= fitted.written_f1 + 0.2
    assert fitted.mentions == 120 and fitted.n == 60
    # the teacher finds every entity and nothing else: nothing to drop or mark, so the simplest rule of equals
    assert not fitted.typer.drops and not fitted.typer.marks
    assert "re-typed, by a probe on the 120 gold mentions' minilm embeddings" in fitted.summary()
    again = SpanTyper.from_dict(json.loads(json.dumps(fitted.typer.to_dict())))
    assert again == fitted.typer
    # new sentences: re-typed, the teacher's spans kept, the types far more often right
    gold2, written2 = world(200, seed=1, right=0.4)
    retyped = decided(again, embed, gold2, written2)
    assert [[(s.start, s.end) for s in a] for a in retyped] == [[(s.start, s.end) for s in b] for b in written2]

    def right(found: list[tuple[Span, ...]]) -> float:
        return float(np.mean([a.type == b.type for spans, example in zip(found, gold2, strict=True)
                              for a, b in zip(spans, label_spans(example.label), strict=True)]))

    assert right(retyped) >= right(written2) + 0.3
    assert again.retype([], np.zeros((0, 16))) == ()


def test_the_probe_drops_what_is_no_entity_and_marks_the_names_the_teacher_missed() -> None:
    """A teacher that types right but misses half the entities and calls a filler word an entity in half the
    sentences: the chosen rule drops what the probe finds no entity and marks the names known from the gold or the
    teacher's other answers; on new sentences F1 rises far above the teacher's."""
    gold, written = world(60, seed=4, right=1.0, missed=0.5, spurious=0.5)
    embed = WorldEncoder(TYPES)
    fitted = fit_typer(gold, written, TYPES, {"minilm:abc": embed})
    assert fitted.typer is not None and fitted.typer.drops and fitted.typer.marks
    assert fitted.loo_f1 >= fitted.written_f1 + 0.15
    assert [name for name, _ in fitted.mode_scores] == ["as written", "re-type", "drop", "mark"]
    assert "dropped where it finds no entity, and the" in fitted.summary()
    assert SpanTyper.from_dict(json.loads(json.dumps(fitted.typer.to_dict()))) == fitted.typer
    new, said = world(200, seed=5, right=1.0, missed=0.5, spurious=0.5)
    known = Gazetteer(span_words(e, s) for e in gold for s in label_spans(e.label))
    known.add(span_words(e, s) for e, spans in zip(new, said, strict=True) for s in spans)
    found = decided(fitted.typer, embed, new, said, known)
    assert entity_score(new, found) >= entity_score(new, said) + 0.2
    assert not any(span.start == 3 for spans in found for span in spans)  # no filler word left an entity
    # with one entity type, nothing to re-type, still spans to drop and to mark
    gold, written = world(60, seed=6, right=1.0, types=["PER"], missed=0.5, spurious=0.5)
    single = fit_typer(gold, written, ["PER"], {"minilm:abc": WorldEncoder(["PER"])})
    assert single.typer is not None and single.typer.marks and single.loo_f1 >= single.written_f1 + 0.15
    assert "gold sentences: dropped where it finds no entity, and the" in single.summary()


def test_the_spans_as_written_stay_where_no_probe_does_better_on_gold() -> None:
    gold, written = world(60, seed=2, right=0.4, spurious=0.3)
    blind = fit_typer(gold, written, TYPES, {"blind:1": WorldEncoder(TYPES, blind=True)})  # vectors know nothing
    assert blind.typer is None and blind.loo_f1 == blind.written_f1
    assert "as the teacher wrote them" in blind.summary()
    gold, written = world(60, seed=3, right=1.0)  # a teacher that finds and types every entity right
    assert fit_typer(gold, written, TYPES, {"minilm:abc": WorldEncoder(TYPES)}).typer is None
    assert fit_typer(gold, written, TYPES).typer is None  # no embedder


def test_the_gazetteer_finds_the_longest_known_mention_left_to_right_outside_taken_spans() -> None:
    known = Gazetteer([["New", "York"], ["New", "York", "Times"], ["York"], ["Paris"], []])
    tokens = "the New York Times in New York and York , Paris".split()
    assert len(known) == 4
    assert known.find(tokens) == (Span(1, 4, ""), Span(5, 7, ""), Span(8, 9, ""), Span(10, 11, ""))
    assert known.find(tokens, [Span(1, 2, "ORG"), Span(9, 11, "LOC")]) == (Span(2, 3, ""), Span(5, 7, ""),
                                                                             Span(8, 9, ""))
    assert known.find([]) == ()
