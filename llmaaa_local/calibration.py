"""Calibrating per-label LLM scores on gold examples: per-label biases for accuracy, a temperature for confidence,
and where it pays, a linear probe on the gold examples' sentence embeddings beside the LLM.

Small local models lean hard toward one label; a bias per label, fit on the gold demo/dev examples, moves the
decision boundary to where the gold data says it is, and a temperature makes the probabilities honest. A prompt
shows the LLM a few demonstrations; the probe (logistic regression on the embeddings of every gold example) brings
in what the rest of the gold pool says about a text, and is taken only when it does better on held-out gold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from .metrics import entity_f1
from .records import Example, Span
from .spans import Gazetteer, label_spans, span_text, span_words, spans_to_tags

_SWEEPS = 3
# Bounded below: on a separable gold pool the log-loss keeps falling as T -> 0, which would claim certainty.
_TEMPERATURES = np.logspace(np.log10(0.25), np.log10(20), 64)
# How much the probe's label log-probabilities count beside the LLM's; 0 (no probe) is tried first and wins ties.
PROBE_WEIGHTS = (0.0, 0.5, 1.0, 2.0)
# The probe's inverse L2 strengths (scikit-learn's C), chosen by its own leave-one-out score on gold (the task's
# metric: held-out log-loss chose C = 100 on IMDb's gold pool, a probe overconfident on new texts), the strongest
# penalty first on ties. scikit-learn's default (1) suits two labels; with many labels and a few gold examples
# each it shrinks every answer toward the prior, and the probe says nothing.
PROBE_STRENGTHS = (1.0, 10.0, 100.0)
_ABSENT = -10.0  # a label no gold example of the probe's training set has: its logit, far below the others


@dataclass(frozen=True)
class Probe:
    """Logistic regression on sentence embeddings of gold examples: one row of weights and an intercept per label."""

    embedder: str  # which sentence embedder made the vectors it reads
    weight: float  # how much its log-probabilities count beside the LLM's
    coef: tuple[tuple[float, ...], ...]
    intercept: tuple[float, ...]
    strength: float = 1.0  # the inverse L2 strength it was fit with (scikit-learn's C)

    @classmethod
    def train(cls, vectors: np.ndarray, y: np.ndarray, n_labels: int, embedder: str = "",
              weight: float = 1.0, strength: float = 1.0) -> Probe:
        """Fit on (vectors, label indices); a label absent from `y` gets a logit far below the others."""
        basis = _row_space(vectors)
        coef, intercept = _logistic(vectors @ basis.T, y, n_labels, strength)
        return cls(embedder, weight, tuple(tuple(float(x) for x in row) for row in coef @ basis),
                   tuple(float(x) for x in intercept), strength)

    def log_probabilities(self, vectors: np.ndarray) -> np.ndarray:
        return np.asarray(log_softmax(vectors @ np.array(self.coef).T + np.array(self.intercept), axis=1))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Probe:
        """A stored probe (one stored before the strength was chosen was fit at scikit-learn's default, 1)."""
        return cls(data["embedder"], float(data["weight"]), tuple(tuple(row) for row in data["coef"]),
                   tuple(data["intercept"]), float(data.get("strength", 1.0)))


@dataclass(frozen=True)
class Calibration:
    labels: tuple[str, ...]
    bias: tuple[float, ...]
    temperature: float = 1.0
    contextual: bool = False  # scores are taken relative to the content-free baseline of the same prompt
    probe: Probe | None = None  # a linear probe on gold embeddings added to the scores (needs the text's vector)

    @classmethod
    def identity(cls, labels: Sequence[str]) -> Calibration:
        return cls(tuple(labels), tuple(0.0 for _ in labels))

    def probabilities(self, scores: Mapping[str, float], baseline: Mapping[str, float] | None = None,
                      vector: np.ndarray | None = None) -> dict[str, float]:
        """Calibrated label probabilities; `vector` is the text's sentence embedding, required with a probe."""
        values = [scores[label] - (baseline[label] if self.contextual and baseline else 0.0) for label in self.labels]
        row = log_softmax(np.array([values]), axis=1)
        if self.probe is not None:
            if vector is None:
                raise ValueError("this calibration adds a probe on sentence embeddings: give the text's vector")
            row = log_softmax(row + self.probe.weight * self.probe.log_probabilities(vector[None, :]), axis=1)
        z = (row[0] + np.array(self.bias)) / self.temperature
        p = np.exp(z - z.max())
        p /= p.sum()
        return {label: float(value) for label, value in zip(self.labels, p, strict=True)}

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        probe = data.get("probe")
        return cls(tuple(data["labels"]), tuple(data["bias"]), float(data["temperature"]),
                   bool(data.get("contextual", False)), Probe.from_dict(probe) if probe else None)


@dataclass(frozen=True)
class CalibrationFit:
    """A fitted calibration and how well it does on the gold examples it was fit on."""

    calibration: Calibration
    n: int
    raw_accuracy: float
    calibrated_accuracy: float  # in-sample
    loo_accuracy: float  # each gold example predicted by a calibration fit without it
    method: str = "none"
    loo_f1: float | None = None  # with a no-relation label: micro-F1 of the other labels
    loo_score: float = 0.0  # what chose the method: leave-one-out macro-F1 (micro-F1 without the no-relation label)
    metric: str = "macro_f1"
    rejected: tuple[str, ...] = ()  # candidates that predicted (nearly) one label for every gold example
    loo_labels: tuple[str, ...] = ()  # each gold example's label as predicted by the chosen method, leave-one-out
    probe_weight: float = 0.0  # the weight of the gold-embedding probe beside the LLM's scores (0: no probe)
    probe_scores: tuple[tuple[str, float], ...] = ()  # each embedder's best leave-one-out score with its probe

    def summary(self) -> str:
        """One line for `annotate` and `status`."""
        scores, _, bias = self.method.partition("+")
        bias = bias if bias not in ("", "none") else "no"
        line = (f"calibration on {self.n} gold examples: {scores} scores, {bias} bias; leave-one-out "
                f"{self.metric.replace('_f1', '-F1')} {self.loo_score:.3f}, accuracy {self.loo_accuracy:.1%} "
                f"(raw {self.raw_accuracy:.1%})")
        if self.calibration.probe is not None:
            probe = self.calibration.probe
            line += (f"; a probe on the gold examples' {_model(probe.embedder)} embeddings (C={probe.strength:g}) "
                     f"added at weight {self.probe_weight:g}")
        line += _compared(self.probe_scores)
        if self.rejected:
            line += f"; {len(self.rejected)} fits rejected for answering one label for nearly everything"
        return line


# Candidates in order of preference on ties: uncalibrated scores first, so a fitted bias has to do better on
# held-out gold than the scores without one to be chosen.
_METHODS = ("none", "batch", "match", "prior", "accuracy")


def fit(rows: Sequence[Mapping[str, float]], gold: Sequence[str], labels: Sequence[str],
        baselines: Sequence[Mapping[str, float] | None] | None = None, ignore: str | None = None,
        vectors: Mapping[str, np.ndarray] | None = None) -> CalibrationFit:
    """Choose raw or contextual scores (relative to the content-free baseline, when every row has one), with the
    gold examples' sentence `vectors` (by embedder, in order of preference) an embedder and a probe weight
    (PROBE_WEIGHTS: the log-probabilities of a linear probe on its vectors, each gold example's from a probe fit
    without it, added to the scores), and a bias (none; batch: minus
    the mean score on gold; match: the biases that make the mean predicted distribution the gold label
    distribution; prior: log-loss biases; accuracy: biases tuned for accuracy) by their leave-one-out macro-F1 on
    gold (with `ignore`, a no-relation label: the micro-F1 of the other labels, which answering `ignore` everywhere
    cannot win). A candidate that answers one label for (nearly) every gold example when gold has several is never
    chosen. Then fit a temperature for the confidences."""
    if not rows:
        return CalibrationFit(Calibration.identity(labels), 0, 0.0, 0.0, 0.0)
    raw_scores = log_softmax(np.array([[row[label] for label in labels] for row in rows], dtype=float), axis=1)
    y = np.array([list(labels).index(label) for label in gold])
    raw = float(np.mean(raw_scores.argmax(1) == y))
    if len(y) < 2:
        return CalibrationFit(Calibration.identity(labels), len(y), raw, raw, raw, loo_score=raw)
    variants = {"raw": raw_scores}
    if baselines is not None and all(base is not None for base in baselines):
        relative = [[row[label] - base[label] for label in labels]  # type: ignore[index]
                    for row, base in zip(rows, baselines, strict=True)]
        variants["contextual"] = log_softmax(np.array(relative, dtype=float), axis=1)
    skip = list(labels).index(ignore) if ignore is not None and ignore in labels else None
    metric = "micro_f1" if skip is not None else "macro_f1"

    def measure(found: np.ndarray) -> float:
        return _micro_f1(found, y, skip) if skip is not None else _macro_f1(found, y, len(labels))

    held_out = {}  # by embedder: each gold example's probe log-probabilities, held out, and the probe's strength
    for embedder, found in (vectors or {}).items():
        probed, strength = _probe_leave_one_out(found, y, len(labels), measure)
        if probed is not None:
            held_out[embedder] = (probed, strength)

    def combined(variant: str, weight: float, embedder: str) -> np.ndarray:
        if not weight:
            return variants[variant]
        return np.asarray(log_softmax(variants[variant] + weight * held_out[embedder][0], axis=1))

    methods = {"none": _no_bias, "batch": _batch_bias, "match": _match_bias, "prior": _prior_bias,
               "accuracy": _fit_bias}
    probes = [(0.0, "")] + [(weight, embedder) for weight in PROBE_WEIGHTS[1:] for embedder in held_out]
    keys = [(variant, weight, embedder, name) for weight, embedder in probes for name in _METHODS
            for variant in variants]
    predicted = {key: _leave_one_out(methods[key[3]], combined(*key[:3]), y) for key in keys}
    score = {key: measure(found) for key, found in predicted.items()}
    collapsed = [key for key in keys if _collapsed(predicted[key], y)]
    usable = [key for key in keys if key not in collapsed] or [(next(iter(variants)), 0.0, "", "match")]
    chosen = max(usable, key=lambda key: score[key])  # max keeps the first of equals
    variant, weight, embedder, method = chosen
    scores = combined(variant, weight, embedder)  # with a probe: each gold example's held-out one, as new texts see it
    bias = methods[method](scores, y)
    temperature = _fit_temperature(scores + bias, y)
    probe = Probe.train(vectors[embedder], y, len(labels), embedder, weight, held_out[embedder][1]) \
        if weight and vectors is not None else None
    return CalibrationFit(
        Calibration(tuple(labels), tuple(float(b) for b in bias), temperature, contextual=variant == "contextual",
                    probe=probe),
        n=len(y),
        raw_accuracy=raw,
        calibrated_accuracy=float(np.mean((scores + bias).argmax(1) == y)),
        loo_accuracy=float(np.mean(predicted[chosen] == y)),
        method=f"{variant}+{method}",
        loo_f1=score[chosen] if skip is not None else None,
        loo_score=score[chosen],
        metric=metric,
        rejected=tuple(f"{v}+{m}" + (f" probe {w:g} on {e}" if w else "") for v, w, e, m in collapsed),
        loo_labels=tuple(labels[i] for i in predicted[chosen]),
        probe_weight=weight,
        probe_scores=tuple((name, max(score[key] for key in usable if key[2] == name)) for name in held_out
                           if any(key[2] == name for key in usable)),
    )


def _compared(probe_scores: Sequence[tuple[str, float]]) -> str:
    """The gold scores of the embedders' probes, when there was a choice between them."""
    if len(probe_scores) < 2:
        return ""
    return " (probes compared: " + ", ".join(f"{_model(name)} {value:.3f}" for name, value in probe_scores) + ")"


def _model(embedder: str) -> str:
    """The model folder an embedder's name starts with ("all-MiniLM-L6-v2:53aa51172d14#mentions")."""
    return embedder.partition(":")[0] or "sentence"


def _probe_leave_one_out(vectors: np.ndarray, y: np.ndarray, n_labels: int,
                         measure: Callable[[np.ndarray], float]) -> tuple[np.ndarray | None, float]:
    """Each gold example's label log-probabilities from a probe fit on the other gold examples, at the strength
    (PROBE_STRENGTHS) whose answers `measure` scores best, and that strength; None when gold has fewer than two
    labels or too few examples for a probe to say anything."""
    counts = np.unique(y, return_counts=True)[1]
    # two labels, one of them on a single example: leaving that example out leaves one label to fit
    if len(counts) < 2 or len(y) < 8 or (len(counts) == 2 and counts.min() < 2):
        return None, 1.0
    reduced = vectors @ _row_space(vectors).T  # every fold's row space lies in the whole pool's
    each = np.arange(len(y))
    held = {strength: _held_out(reduced, y, each, reduced, each, n_labels, strength) for strength in PROBE_STRENGTHS}
    best = max(held, key=lambda strength: measure(held[strength].argmax(1)))  # max keeps the first of equals
    return held[best], best


def _held_out(known: np.ndarray, y: np.ndarray, owner: np.ndarray, queries: np.ndarray, asked: np.ndarray,
              n_labels: int, strength: float) -> np.ndarray:
    """Each query's label log-probabilities from a probe fit on the `known` vectors of every other group: a query of
    group g (`asked`) is answered by a probe fit without the known vectors of group g (`owner`). A group whose
    removal leaves one label keeps zeros."""
    held = np.zeros((len(queries), n_labels))
    for group in np.unique(asked):
        keep = owner != group
        if len(np.unique(y[keep])) < 2:
            continue
        coef, intercept = _logistic(known[keep], y[keep], n_labels, strength)
        held[asked == group] = log_softmax(queries[asked == group] @ coef.T + intercept, axis=1)
    return held


def _row_space(vectors: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the span of `vectors` (as rows). An L2-penalised logistic regression's weights lie in
    the span of its training vectors, so fitting on coordinates in this basis gives the same model at a fraction of
    the cost when there are fewer examples than dimensions."""
    _, singular, basis = np.linalg.svd(vectors, full_matrices=False)
    return basis[singular > singular.max() * 1e-10]


def _logistic(x: np.ndarray, y: np.ndarray, n_labels: int, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """A multinomial logistic regression's weights and intercepts, one row per label of `n_labels`; a label absent
    from `y` gets a logit far below the others."""
    present = np.unique(y)
    coef = np.zeros((n_labels, x.shape[1]))
    intercept = np.full(n_labels, _ABSENT)
    model = LogisticRegression(C=strength, max_iter=1000).fit(x, y)
    if len(present) == 2:  # scikit-learn keeps one row for two classes: split it into two symmetric ones
        coef[present] = np.stack([-model.coef_[0], model.coef_[0]]) / 2
        intercept[present] = np.array([-model.intercept_[0], model.intercept_[0]]) / 2
    else:
        coef[present], intercept[present] = model.coef_, model.intercept_
    return coef, intercept


def _collapsed(predicted: np.ndarray, y: np.ndarray) -> bool:
    """Answers one label for nearly every example although gold has several: at least 90% of the answers, or half
    way from gold's own majority share to all of them, whichever is higher."""
    if len(np.unique(y)) < 2:
        return False
    gold_share = np.bincount(y).max() / len(y)
    return bool(np.bincount(predicted).max() / len(predicted) >= max(0.9, (1 + gold_share) / 2))


def _leave_one_out(method: Callable[[np.ndarray, np.ndarray], np.ndarray], scores: np.ndarray,
                   y: np.ndarray) -> np.ndarray:
    """Each gold example's label as predicted by a calibration fit without it."""
    return np.array([int(np.argmax(scores[i] + method(np.delete(scores, i, 0), np.delete(y, i))))
                     for i in range(len(y))])


def _macro_f1(predicted: np.ndarray, y: np.ndarray, n_labels: int) -> float:
    """Macro-F1 over the labels gold or the predictions use."""
    return float(f1_score(y, predicted, labels=sorted(set(y) | set(predicted)), average="macro", zero_division=0))


def _micro_f1(predicted: np.ndarray, y: np.ndarray, skip: int) -> float:
    """Micro-F1 over every label but `skip` (the no-relation label)."""
    labels = sorted((set(y.tolist()) | set(predicted.tolist())) - {skip})
    return float(f1_score(y, predicted, labels=labels, average="micro", zero_division=0)) if labels else 0.0


def _no_bias(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.zeros(scores.shape[1])


def _batch_bias(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Batch calibration (Zhou et al. 2024): the mean score of each label over the gold inputs is the prompt's
    bias toward it; subtract it."""
    return -scores.mean(axis=0)


def _match_bias(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Biases under which the mean predicted distribution over the gold inputs equals gold's label distribution
    (smoothed, so that a label gold lacks keeps a little mass): the answers follow the label prior gold shows."""
    target = (np.bincount(y, minlength=scores.shape[1]) + 0.5) / (len(y) + 0.5 * scores.shape[1])
    bias = np.zeros(scores.shape[1])
    for _ in range(200):
        step = np.log(target / np.exp(log_softmax(scores + bias, axis=1)).mean(axis=0))
        bias += step - step.mean()
        if np.abs(step).max() < 1e-6:
            break
    return bias


def _prior_bias(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Biases minimising log-loss (with a little L2): corrects the model's prior toward some labels."""
    onehot = np.eye(scores.shape[1])[y]

    def loss(bias: np.ndarray) -> tuple[float, np.ndarray]:
        logp = log_softmax(scores + bias, axis=1)
        gradient = (np.exp(logp) - onehot).mean(0) + 0.01 * bias
        return float(-(logp * onehot).sum(1).mean() + 0.005 * bias @ bias), gradient

    return np.asarray(minimize(loss, np.zeros(scores.shape[1]), jac=True, method="L-BFGS-B").x)


def _fit_bias(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Start from the log-loss biases, then move one label's bias at a time to the value that classifies the
    most gold examples right (the middle of the best interval, ties to the nearest)."""
    labels = scores.shape[1]
    bias = _prior_bias(scores, y)
    best = _correct(scores, bias, y)
    for _ in range(_SWEEPS):
        improved = False
        for j in range(labels):
            others = np.delete(scores + bias, j, axis=1).max(axis=1)
            flips = np.unique(others - scores[:, j])  # where example i's argmax moves to or from label j
            candidates = np.concatenate([[flips[0] - 1.0], (flips[:-1] + flips[1:]) / 2, [flips[-1] + 1.0]])
            trial = np.repeat(bias[None, :], len(candidates), axis=0)
            trial[:, j] = candidates
            correct = ((scores[None, :, :] + trial[:, None, :]).argmax(2) == y[None, :]).sum(1)
            top = correct.max()
            if top > best:
                choices = candidates[correct == top]
                bias[j] = choices[np.argmin(np.abs(choices - bias[j]))]
                best, improved = top, True
        if not improved:
            break
    return bias


def _correct(scores: np.ndarray, bias: np.ndarray, y: np.ndarray) -> int:
    return int(np.sum((scores + bias).argmax(1) == y))


def _fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    losses = [-np.mean(log_softmax(logits / t, axis=1)[np.arange(len(y)), y]) for t in _TEMPERATURES]
    return float(_TEMPERATURES[int(np.argmin(losses))])

# --- entity spans: a probe on the gold mentions' embeddings re-types, filters and extends the teacher's spans -----

# How much the type the teacher wrote counts beside the typing probe's log-probabilities, nearest the teacher first.
TYPE_VOTES = (2.0, 1.0, 0.0)
# What a probe may do to the teacher's spans, compared on gold after the spans as written, the simpler first on
# ties: re-type them; also drop those it finds no entity (a class of its own, learnt from the teacher's spans on
# the gold sentences that are no gold mention); also mark the mentions named in the gold or in any of the
# teacher's answers wherever else they recur, where it finds them entities (a small teacher names "France" in one
# sentence and misses it in the next).
SPAN_MODES = ("re-type", "drop", "mark")


@dataclass(frozen=True)
class SpanTyper:
    """Chooses each entity span's type, or (`drops`) no entity, by the probe's log-probabilities on the embedding of
    its words plus `vote` for the type the teacher wrote. With `marks`, mentions found again elsewhere (the
    gazetteer's) go through the same probe, without a vote."""

    probe: Probe  # over the entity types in the project's order, then (with `drops`) "no entity"
    types: tuple[str, ...]
    vote: float
    drops: bool = False
    marks: bool = False

    @property
    def rule(self) -> str:
        """Which of SPAN_MODES it applies."""
        return "mark" if self.marks else "drop" if self.drops else "re-type"

    def retype(self, spans: Sequence[Span], vectors: np.ndarray, voted: Sequence[bool] | None = None,
               ) -> tuple[Span, ...]:
        """The `spans` kept, in text order, with their types; `vectors`: the embedding of each span's words;
        `voted`: which spans are the teacher's (default all), whose written type gets the vote."""
        if not spans:
            return ()
        return _decide(self.probe.log_probabilities(vectors), spans, voted, self.types, self.vote)

    def to_dict(self) -> dict[str, object]:
        return {"kind": "span_typer", **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpanTyper:
        return cls(Probe.from_dict(data["probe"]), tuple(data["types"]), float(data["vote"]),
                   bool(data.get("drops", False)), bool(data.get("marks", False)))


def _decide(log_probabilities: np.ndarray, spans: Sequence[Span], voted: Sequence[bool] | None,
            types: Sequence[str], vote: float) -> tuple[Span, ...]:
    """Each span with the type of its highest row entry plus the vote, in text order; a span whose highest entry is
    past the types (no entity) is dropped."""
    written = np.array([[kind == span.type for kind in types] for span in spans], dtype=float)
    if voted is not None:
        written *= np.asarray(voted, dtype=float)[:, None]
    scores = log_probabilities.copy()
    scores[:, : len(types)] += vote * written
    chosen = scores.argmax(1)
    return tuple(sorted((replace(span, type=types[int(k)]) for span, k in zip(spans, chosen, strict=True)
                         if k < len(types)), key=lambda span: span.start))


@dataclass(frozen=True)
class TyperFit:
    """The entity spans chosen on gold: the teacher's as written, or passed through a probe (`typer`)."""

    typer: SpanTyper | None
    n: int  # gold sentences
    mentions: int  # gold entity mentions the probe learns from
    written_f1: float  # the gold sentences' entity F1 with the spans and types the teacher wrote
    loo_f1: float  # with the chosen rule, each sentence's spans decided by a probe fit without it
    probe_scores: tuple[tuple[str, float], ...] = ()  # each embedder's best leave-one-out entity F1
    mode_scores: tuple[tuple[str, float], ...] = ()  # each of SPAN_MODES' best leave-one-out entity F1
    non_mentions: int = 0  # the teacher's spans (and gazetteer finds) on the gold sentences that are no gold mention
    named: int = 0  # mentions the gazetteer knows (with `marks`)

    def summary(self) -> str:
        """One line for `annotate` and `status`."""
        line = f"entity spans on {self.n} gold sentences: "
        if self.typer is None:
            line += f"as the teacher wrote them (entity F1 {self.written_f1:.3f}"
            line += ", no probe did better)" if self.probe_scores else ")"
        else:
            typer, probe = self.typer, self.typer.probe
            done = ["re-typed"] if len(typer.types) > 1 else []  # one type: nothing to re-type
            if typer.drops:
                done.append("dropped where it finds no entity")
            if typer.marks:
                done.append(f"{'and ' if done else ''}the {self.named} mentions named in the gold or by the teacher "
                            "marked where they recur")
            line += ", ".join(done)
            learnt = f"the {self.mentions} gold mentions'"
            if typer.drops:
                learnt += f" and {self.non_mentions} non-mentions'"
            line += (f", by a probe on {learnt} {_model(probe.embedder)} embeddings (C={probe.strength:g}), the "
                     f"teacher's own type counting {typer.vote:g}; leave-one-out entity F1 {self.loo_f1:.3f} against "
                     f"{self.written_f1:.3f} as written")
        if len(self.mode_scores) > 1:
            line += " (rules compared: " + ", ".join(f"{name} {value:.3f}" for name, value in self.mode_scores) + ")"
        line += _compared(self.probe_scores)
        return line


def fit_typer(gold: Sequence[Example], written: Sequence[Sequence[Span]], types: Sequence[str],
              embedders: Mapping[str, Callable[[Sequence[str]], np.ndarray]] | None = None,
              named: Iterable[Sequence[str]] = ()) -> TyperFit:
    """Choose on the gold sentences (`gold`, with the teacher's spans `written` on each) between the spans as the
    teacher wrote them and each of SPAN_MODES with a probe on the gold mentions' embeddings by one of `embedders`
    (texts to vectors, in order of preference), at each strength (PROBE_STRENGTHS) and vote (TYPE_VOTES): by the
    entity F1 of the gold sentences, each sentence's spans decided by a probe fit without it. `named`: the mentions
    the teacher wrote in any answer, which the "mark" rule finds again (with the gold mentions of the other
    sentences). The spans as written win ties."""
    truth = [label_spans(g.label) for g in gold]

    def score(found: Sequence[Sequence[Span]]) -> float:
        return entity_f1([spans_to_tags(s, len(g.tokens or ())) for s, g in zip(truth, gold, strict=True)],
                         [spans_to_tags(tuple(s), len(g.tokens or ())) for s, g in zip(found, gold, strict=True)])["f1"]

    written_f1 = score(written)
    words = [[span_words(g, s) for s in spans] for g, spans in zip(gold, truth, strict=True)]
    named = [tuple(w) for w in named]
    # each gold sentence's candidates: the teacher's spans (voted), then in "mark" the mentions known without it
    found_again = [Gazetteer([*named, *(w for j, ws in enumerate(words) if j != i for w in ws)]).find(
        g.tokens or (), written[i]) for i, g in enumerate(gold)]
    plans = {mode: _typer_plan(gold, truth, written, found_again if mode == "mark" else None, types,
                               mode != "re-type") for mode in SPAN_MODES}
    texts = list(dict.fromkeys(text for plan in plans.values() for text in plan.texts()))
    found: dict[tuple[str, str, float, float], float] = {}
    vectors: dict[str, dict[str, np.ndarray]] = {}  # by embedder, then text
    y_types = np.array([list(types).index(s.type) for spans in truth for s in spans])
    if len(np.unique(y_types)) >= min(2, len(types)) and len(y_types) >= 8 and texts:
        for embedder, embed in (embedders or {}).items():
            vectors[embedder] = dict(zip(texts, embed(texts), strict=True))
            for mode, plan in plans.items():
                known, queries = plan.vectors(vectors[embedder])
                if len(np.unique(plan.y)) < 2 or not len(queries):
                    continue
                basis = _row_space(known)
                reduced, asked = known @ basis.T, queries @ basis.T
                for strength in PROBE_STRENGTHS:
                    held = _held_out(reduced, plan.y, plan.owner, asked, plan.asked, plan.n_labels, strength)
                    for vote in TYPE_VOTES:
                        found[(mode, embedder, strength, vote)] = score(plan.decide(held, types, vote))
    best = max(sorted(found, key=lambda k: SPAN_MODES.index(k[0])), key=found.__getitem__, default=None)
    fitted = TyperFit(None, len(gold), len(y_types), written_f1, written_f1,
                      _best_by(found, 1), (("as written", written_f1), *_best_by(found, 0)))
    if best is None or found[best] <= written_f1:
        return fitted
    mode, embedder, strength, vote = best
    plan = plans[mode]
    known, _ = plan.vectors(vectors[embedder])
    probe = Probe.train(known, plan.y, plan.n_labels, embedder, 1.0, strength)
    typer = SpanTyper(probe, tuple(types), vote, drops=mode != "re-type", marks=mode == "mark")
    return replace(fitted, typer=typer, loo_f1=found[best], non_mentions=int(np.sum(plan.y == len(types))),
                   named=len(Gazetteer([*named, *(w for ws in words for w in ws)])) if typer.marks else 0)


def _best_by(found: Mapping[tuple[str, str, float, float], float], field: int) -> tuple[tuple[str, float], ...]:
    """The best score of each mode (`field` 0) or embedder (1), in the order first tried."""
    return tuple((str(name), max(v for k, v in found.items() if k[field] == name))
                 for name in dict.fromkeys(k[field] for k in found))


@dataclass(frozen=True)
class _TyperPlan:
    """One rule's training set (the gold mentions, and with a "no entity" class the candidates that are none) and
    its queries (each gold sentence's candidates), as texts with their sentence (the leave-one-out group)."""

    known: list[str]
    y: np.ndarray
    owner: np.ndarray
    candidates: list[list[tuple[Span, bool]]]  # per sentence: (span, the teacher's?)
    query_texts: list[str]
    asked: np.ndarray
    n_labels: int

    def texts(self) -> list[str]:
        return [*self.known, *self.query_texts]

    def vectors(self, by_text: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        def rows(texts: list[str]) -> np.ndarray:
            return np.array([by_text[t] for t in texts]) if texts else np.zeros((0, 0))
        return rows(self.known), rows(self.query_texts)

    def decide(self, held: np.ndarray, types: Sequence[str], vote: float) -> list[tuple[Span, ...]]:
        decided, start = [], 0
        for candidates in self.candidates:
            rows = held[start : start + len(candidates)]
            start += len(candidates)
            decided.append(_decide(rows, [s for s, _ in candidates], [v for _, v in candidates], types, vote)
                           if candidates else ())
        return decided


def _typer_plan(gold: Sequence[Example], truth: Sequence[tuple[Span, ...]], written: Sequence[Sequence[Span]],
                found_again: Sequence[tuple[Span, ...]] | None, types: Sequence[str], drops: bool) -> _TyperPlan:
    """A rule's plan on the gold sentences: the teacher's spans, plus `found_again` (the gazetteer's) when given;
    with `drops`, the candidates that are no gold mention train a last class, "no entity"."""
    known: list[str] = []
    y: list[int] = []
    owner: list[int] = []
    candidates: list[list[tuple[Span, bool]]] = []
    query_texts: list[str] = []
    asked: list[int] = []
    for i, (g, spans) in enumerate(zip(gold, truth, strict=True)):
        mine = [(s, True) for s in written[i]] + [(s, False) for s in (found_again[i] if found_again else ())]
        candidates.append(mine)
        query_texts.extend(span_text(g, s) for s, _ in mine)
        asked.extend([i] * len(mine))
        exact = {(t.start, t.end) for t in spans}
        none = [s for s, _ in mine if (s.start, s.end) not in exact] if drops else []
        for s in [*spans, *none]:
            known.append(span_text(g, s))
            y.append(types.index(s.type) if s in spans else len(types))
            owner.append(i)
    return _TyperPlan(known, np.array(y, dtype=int), np.array(owner, dtype=int), candidates, query_texts,
                      np.array(asked, dtype=int), len(types) + drops)
