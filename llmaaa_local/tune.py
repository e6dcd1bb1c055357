"""Prompt selection on the project's own gold data: a small grid of prompt variants, each scored on gold examples
(the demo pool leave-one-out, and the dev split), narrowed by successive halving within a budget of LLM calls.

Every call is an ordinary annotation of a gold example (cached: a rerun asks nothing twice). The chosen prompt
settings become the project's, so `annotate`, the loop, the TUI and the demo use them.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from .annotate import AnnotateConfig, AnnotateProgress, Annotator
from .calibration import fit
from .config import SEEDED_DEMOS, PromptSettings
from .errors import LlmaaaError
from .llm import LLM
from .metrics import significantly_better
from .project import Project
from .records import Example
from .tasks import task_for
from .tasks.classify import INSTRUCTIONS
from .tasks.ner import type_words
from .tasks.relation import role_words

FIXED_SETS = 6  # fixed demonstration sets (seeds) stage 2 tries at each k
# Words a label's description starts with that say nothing about the label.
_FILLER = frozenset("a an the this that it is are was be of to in on for with by as at or and not no its their "
                    "writer reviewer text author speaker person sentence document overall".split())


@dataclass(frozen=True)
class TuneConfig:
    """How much to spend: at most `budget` new LLM calls; every variant first sees `first_rung` gold examples."""

    budget: int = 800
    first_rung: int = 12
    keep: float = 0.5
    seed: int = 0
    variants: tuple[PromptSettings, ...] | None = None  # None: `wording_grid`, then `demo_grid`

    def __post_init__(self) -> None:
        if self.budget < 1 or self.first_rung < 2 or not 0 < self.keep < 1:
            raise LlmaaaError("tune needs --budget of at least 1 call, --first-rung of at least 2 gold examples, "
                              "and a keep share between 0 and 1")


@dataclass(frozen=True)
class VariantScore:
    """One prompt variant on the gold examples it was tried on."""

    prompt: PromptSettings
    n: int
    score: float
    method: str  # the calibration the score was reached with ("-" for NER)
    tokens_per_example: float
    seconds_per_example: float
    right: tuple[bool, ...] = ()  # scored tasks: each gold example right (leave-one-out), in the subset's order

    def describe(self) -> str:
        return describe(self.prompt)


@dataclass
class TuneProgress:
    """Live counters: which rung, how many calls of the plan are done, and the newest scores."""

    rung: int = 0
    examples: int = 0
    variants: int = 0
    done: int = 0
    total: int = 0
    asked: int = 0
    llm_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    latest: str = ""

    @property
    def eta_seconds(self) -> float | None:
        return (self.total - self.done) * self.llm_seconds / self.asked if self.asked else None


@dataclass(frozen=True)
class TuneReport:
    chosen: VariantScore
    default: VariantScore  # the project's prompt before tuning, at the largest rung it reached
    results: tuple[VariantScore, ...]  # every variant at the largest rung it reached, the most tried first
    metric: str
    calls: int  # new LLM calls
    cached: int
    seconds: float

    def to_record(self, model_sha256: str) -> dict[str, Any]:
        return {"model_sha256": model_sha256, "metric": self.metric, "calls": self.calls, "cached": self.cached,
                "seconds": round(self.seconds, 1), "chosen": _score_record(self.chosen),
                "default": _score_record(self.default), "results": [_score_record(r) for r in self.results]}


def _score_record(score: VariantScore) -> dict[str, Any]:
    return {"prompt": asdict(score.prompt), "described": score.describe(), "n": score.n,
            "score": round(score.score, 4), "method": score.method,
            "tokens_per_example": round(score.tokens_per_example, 1),
            "seconds_per_example": round(score.seconds_per_example, 3)}


def clearly_better(challenger: VariantScore, incumbent: VariantScore, level: float = 0.05) -> bool:
    """A costlier prompt (an ensemble asks twice) replaces the incumbent only on evidence (`significantly_better`).
    The best of many variants on a hundred gold examples is partly luck, and averaging it with the second best
    looks better on those same examples than it is."""
    return significantly_better(challenger.score, challenger.right, incumbent.score, incumbent.right, level)


def describe(prompt: PromptSettings) -> str:
    """A variant in a few words: demo mode and k, label words, instruction, clip."""
    demos = prompt.demos if prompt.demos == "none" else f"{prompt.demos} k={prompt.k}"
    if prompt.demos in SEEDED_DEMOS:
        demos += f" set {prompt.demo_seed}" if not prompt.ensemble else \
            f" sets {'+'.join(str(seed) for seed in (prompt.demo_seed, *prompt.ensemble))} averaged"
    words = "label names" if not prompt.verbalizers else "words " + "/".join(w for _, w in prompt.verbalizers)
    return f"{demos}, {words}, {prompt.instruction_style} instruction, {prompt.clip} clip"


def description_words(labels: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """A verbalizer from the descriptions: each label's first telling word ("the writer is pleased overall" ->
    "pleased"); empty unless every label has one and no two share it."""
    words = []
    for name, description in labels:
        found = next((w for w in re.findall(r"[A-Za-z]+", description.lower())
                      if w not in _FILLER and w != name.lower() and len(w) > 2), None)
        if found is None:
            return ()
        words.append((name, found))
    return tuple(words) if len({w for _, w in words}) == len(words) else ()


def wording_grid(project: Project) -> list[PromptSettings]:
    """Stage 1, how the prompt speaks: label words (names, the user's verbalizers, a word from each description,
    relation roles, plain entity-type words) and, for classification, the instruction wordings; all with one cheap
    fixed set of demonstrations (or none without a demo pool)."""
    settings = project.settings
    current = settings.prompt
    words: list[tuple[tuple[str, str], ...]] = [current.verbalizers, ()]
    if settings.task == "ner":
        words.append(type_words(settings.label_names))
    else:
        words += [description_words([(label.name, label.description) for label in settings.labels]),
                  role_words(settings.label_names)]
    styles = INSTRUCTIONS if settings.task == "classify" else ("list",)
    # from the defaults (and the user's text limits), not from the current prompt: a rerun tries the same variants
    base = replace(PromptSettings(), instruction=current.instruction, max_chars=current.max_chars,
                   demo_max_chars=current.demo_max_chars, content_free=current.content_free)
    # one cheap fixed set when there is a demo pool; without one, zero-shot (nothing to retrieve from)
    has_pool = bool(project.store.example_ids("demo"))
    base = replace(base, demos="fixed", demo_seed=0) if has_pool else replace(base, demos="none")
    variants = [replace(base, verbalizers=verbalizers, instruction_style=style)
                for verbalizers in dict.fromkeys(w for w in words if w or w == ()) for style in styles]
    return list(dict.fromkeys(variants))


def demo_grid(project: Project, wording: PromptSettings) -> list[PromptSettings]:
    """Stage 2, which demonstrations: balanced and plain kNN, FIXED_SETS fixed label-balanced sets (cheap: their
    prefix is evaluated once; which set works varies a lot, 0.57 to 0.90 raw accuracy for five sets on IMDb),
    none (not for NER); k = 4 and 8 for the fixed sets, whose prefix is evaluated once per run, and for kNN on
    short texts, and then also fixed sets with one demonstration of every label when there are more labels."""
    demos = list(project.store.examples("demo"))
    if not demos:
        return [replace(wording, demos="none")]
    short = float(np.mean([len(d.text) for d in demos])) < 400
    ks = (4, 8) if short else (4,)
    variants = [wording]
    for k in ks:
        variants += [replace(wording, demos="balanced", k=k), replace(wording, demos="knn", k=k)]
    for k in (4, 8):  # a fixed set costs its prefix once per run, whatever its length
        variants += [replace(wording, demos="fixed", k=k, demo_seed=seed) for seed in range(FIXED_SETS)]
    labels = len(project.settings.labels)
    if short and project.settings.task != "ner" and max(ks) < labels <= 32:  # one demonstration of every label
        variants += [replace(wording, demos="fixed", k=labels, demo_seed=seed) for seed in range(FIXED_SETS // 2)]
    if project.settings.task != "ner":
        variants.append(replace(wording, demos="none"))
    return list(dict.fromkeys(variants))


class PromptTuner:
    """Scores prompt variants on gold examples with one teacher; the best becomes the project's prompt."""

    def __init__(self, project: Project, llm: LLM, embed: Callable[[Sequence[Example]], np.ndarray] | None) -> None:
        self.project = project
        self.llm = llm
        self.embed = embed
        self.settings = project.settings
        self.gold = [e for e in (*project.store.examples("demo"), *project.store.examples("dev"))
                     if e.label is not None]
        if len(self.gold) < 4:
            raise LlmaaaError(f"tune needs at least 4 gold examples in the demo or dev split, found {len(self.gold)}: "
                              "import some with `import gold FILE --split demo`")

    def run(self, config: TuneConfig = TuneConfig(),
            on_progress: Callable[[TuneProgress], None] | None = None) -> TuneReport:
        """Stage 1 chooses the wording, stage 2 the demonstrations for it (each by successive halving), unless
        `config.variants` gives the one list of variants to choose from."""
        started = time.perf_counter()
        order = sorted(self.gold, key=lambda e: random.Random(f"{config.seed}:{e.id}").random())
        progress = TuneProgress()
        scores: dict[PromptSettings, VariantScore] = {}
        spent = [0, 0]  # new calls, cached
        current = self.settings.prompt
        if config.variants is not None:
            best = self._halve(list(config.variants), order, config, config.budget, scores, spent, progress,
                               on_progress)
        else:  # the wording may spend half the budget, the demonstrations the rest
            wording = self._halve(wording_grid(self.project), order, config, config.budget // 2, scores, spent,
                                  progress, on_progress)
            best = self._halve(demo_grid(self.project, wording), order, config, config.budget, scores, spent,
                               progress, on_progress)
            # the two best fixed sets averaged, if that clearly beats the best prompt on the gold examples it was
            # chosen on
            pair = self._ensemble(best, scores)
            subset = order[: scores[best].n]
            if pair is not None and spent[0] + self._missing(pair, subset) <= config.budget:
                scores[pair] = self._evaluate(pair, subset, spent, progress, on_progress)
                if clearly_better(scores[pair], scores[best]):
                    best = pair
        # the prompt before tuning, on the examples the winner was chosen on (the budget allowing): it stays the
        # project's prompt unless the winner does better
        if current not in scores or scores[current].n < scores[best].n:
            fits = [n for n in (scores[best].n, min(config.first_rung, len(order)))
                    if spent[0] + self._missing(current, order[:n]) <= config.budget]
            if fits:
                progress.latest = f"the prompt before tuning: {describe(current)}"
                scores[current] = self._evaluate(current, order[: fits[0]], spent, progress, on_progress)
        default = scores.get(current, VariantScore(current, 0, float("nan"), "-", 0.0, 0.0))
        if default.n >= scores[best].n and round(default.score, 4) >= round(scores[best].score, 4):
            best = current
        ranked = sorted(scores.values(), key=lambda s: (-s.n, -round(s.score, 4), s.tokens_per_example))
        report = TuneReport(scores[best], default, tuple(ranked), self._metric(), spent[0], spent[1],
                            time.perf_counter() - started)
        self.project.store.save_tuning(report.to_record(self.llm.model_sha256), replace(self.settings, prompt=best))
        return report

    def _halve(self, variants: list[PromptSettings], order: Sequence[Example], config: TuneConfig, budget: int,
               scores: dict[PromptSettings, VariantScore], spent: list[int], progress: TuneProgress,
               on_progress: Callable[[TuneProgress], None] | None) -> PromptSettings:
        """Successive halving: every variant on the first gold examples, the better share on twice as many, ...,
        until one is left, the gold is used up, or the next rung would take the calls past `budget`; returns the
        best."""
        if self.embed is None:  # without the sentence embedder only fixed, random and zero-shot prompts can run
            variants = [v for v in variants if not v.uses_embeddings]
            if not variants:
                raise LlmaaaError("every prompt variant to tune needs the sentence embedder: pull minilm-l6")
        n = min(config.first_rung, len(order))
        alive: list[PromptSettings] = []
        planned = spent[0]
        for variant in dict.fromkeys(variants):  # the first rung too stays within the budget
            planned += self._missing(variant, order[:n])
            if planned > budget and alive:
                break
            alive.append(variant)
        while True:
            subset = order[:n]
            progress.rung += 1
            progress.examples, progress.variants = n, len(alive)
            progress.total = progress.done + sum(self._missing(v, subset) for v in alive)
            for variant in alive:
                asked, reused = self._annotate(variant, subset, progress, on_progress)
                spent[0], spent[1] = spent[0] + asked, spent[1] + reused
                scores[variant] = self._score(variant, subset)
                progress.latest = f"{scores[variant].score:.3f} {describe(variant)}"
                if on_progress:
                    on_progress(progress)
            ranked = sorted(alive, key=lambda v: self._rank(scores[v], variants))
            if len(alive) == 1 or n >= len(order):
                return ranked[0]
            survivors = ranked[: max(1, math.ceil(len(alive) * config.keep))]
            wider = min(2 * n, len(order))
            if spent[0] + sum(self._missing(v, order[:wider]) for v in survivors) > budget:
                return ranked[0]
            alive, n = survivors, wider

    def _evaluate(self, variant: PromptSettings, subset: Sequence[Example], spent: list[int], progress: TuneProgress,
                  on_progress: Callable[[TuneProgress], None] | None) -> VariantScore:
        """One variant on `subset`, outside the halving."""
        progress.total = progress.done + self._missing(variant, subset)
        asked, reused = self._annotate(variant, subset, progress, on_progress)
        spent[0], spent[1] = spent[0] + asked, spent[1] + reused
        return self._score(variant, subset)

    def _ensemble(self, best: PromptSettings, scores: dict[PromptSettings, VariantScore]) -> PromptSettings | None:
        """Stage 3, prompt ensembling (scored tasks): the best fixed set of the chosen wording averaged with the
        next best fixed set of its size, each the one tried on the most gold examples. Most of its members' calls
        are cached already."""
        if not task_for(self.settings).scored:
            return None
        fixed = sorted((score for prompt, score in scores.items() if prompt.demos == "fixed" and not prompt.ensemble
                        and replace(prompt, demos=best.demos, k=best.k, demo_seed=best.demo_seed) == best),
                       key=lambda score: (-score.n, -round(score.score, 4)))
        if not fixed:
            return None
        top = fixed[0].prompt
        partner = next((score.prompt for score in fixed[1:] if score.prompt.k == top.k), None)
        return None if partner is None else replace(top, ensemble=(partner.demo_seed,))

    def _rank(self, score: VariantScore, variants: Sequence[PromptSettings]) -> tuple[float, float, int]:
        """Best score first; among equals the cheaper prompt, then the earlier variant (the current one first)."""
        return (-round(score.score, 4), score.tokens_per_example, variants.index(score.prompt))

    def _annotator(self, variant: PromptSettings) -> Annotator:
        return Annotator(self.project, self.llm, self.embed if variant.uses_embeddings else None, variant)

    def _missing(self, variant: PromptSettings, subset: Sequence[Example]) -> int:
        """New LLM calls `variant` needs on `subset` (an ensemble's: its members')."""
        if variant.ensemble:
            return sum(self._missing(member, subset) for member in variant.members())
        have = self._rows(self._annotator(variant), subset)
        return sum(1 for e in subset if e.id not in have)

    def _annotate(self, variant: PromptSettings, subset: Sequence[Example], progress: TuneProgress,
                  on_progress: Callable[[TuneProgress], None] | None) -> tuple[int, int]:
        annotator = self._annotator(variant)
        done, asked, seconds = progress.done, progress.asked, progress.llm_seconds

        def update(inner: AnnotateProgress) -> None:
            new = inner.done - inner.cached
            progress.done, progress.asked = done + new, asked + new
            progress.llm_seconds = seconds + inner.llm_seconds
            if on_progress:
                on_progress(progress)

        result = annotator.run(AnnotateConfig(ids=tuple(e.id for e in subset), calibrate=False), update)
        return result.annotated, result.cached

    def _rows(self, annotator: Annotator, subset: Sequence[Example]) -> dict[str, tuple[Any, ...]]:
        """The newest annotation of each example of `subset` under the annotator's prompt, by example id."""
        return {row[0]: row for row in self.project.store.prompt_annotations(
            self.llm.model_sha256, annotator.prompt_key, [e.id for e in subset])}

    def _cost(self, variant: PromptSettings, subset: Sequence[Example],
              rows: Mapping[str, tuple[Any, ...]]) -> tuple[float, float]:
        """Prompt tokens and LLM seconds per example, from `rows` (the variant's); an ensemble's rows cost nothing,
        so its cost is its members' summed."""
        if variant.ensemble:
            costs = [self._cost(member, subset, self._rows(self._annotator(member), subset))
                     for member in variant.members()]
            return sum(tokens for tokens, _ in costs), sum(seconds for _, seconds in costs)
        if not rows:
            return 0.0, 0.0
        return float(np.mean([row[4] for row in rows.values()])), float(np.mean([row[5] for row in rows.values()]))

    def _metric(self) -> str:
        task = self.settings.task
        return "entity F1" if task == "ner" else "micro-F1 without no-relation" if self.settings.no_relation \
            else "macro-F1"

    def _score(self, variant: PromptSettings, subset: Sequence[Example]) -> VariantScore:
        annotator = self._annotator(variant)
        rows = self._rows(annotator, subset)
        known = [e for e in subset if e.id in rows]
        tokens, seconds = self._cost(variant, subset, rows)
        if annotator.task.scored:
            scored = [e for e in known if rows[e.id][2] is not None]
            fitted = fit([rows[e.id][2] for e in scored], [str(e.label) for e in scored],  # type: ignore[misc]
                         self.settings.label_names, [rows[e.id][3] for e in scored],
                         ignore=self.settings.no_relation)
            # parse errors count as wrong: scale by the share that has scores
            share = len(scored) / len(subset) if subset else 0.0
            answered = dict(zip([e.id for e in scored], fitted.loo_labels, strict=True)) if fitted.loo_labels else {}
            right = tuple(answered.get(e.id) == e.label for e in subset)
            return VariantScore(variant, len(subset), fitted.loo_score * share, fitted.method, tokens, seconds, right)
        gold = {e.id: e.label for e in subset}
        predicted = {e.id: rows[e.id][1] if e.id in rows and rows[e.id][1] is not None else () for e in subset}
        metrics = annotator.task.metrics(gold, predicted, {e.id: e for e in subset})  # type: ignore[arg-type]
        return VariantScore(variant, len(subset), float(metrics["f1"]), "-", tokens, seconds)
