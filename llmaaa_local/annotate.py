"""The annotator: picks pool examples, prompts the LLM with demonstrations, calibrates, and stores every answer.

Each answer is stored in its own short transaction under a cache key (model sha256, exact request, decoding), so a
run killed at any moment loses at most the call in flight, and a rerun asks the LLM nothing it already answered.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.special import log_softmax

from .calibration import Calibration, CalibrationFit, SpanTyper, TyperFit, fit, fit_typer
from .config import PromptSettings, Split, TeacherSettings
from .demos import DemoPool
from .embedder import Embed, Embedder, StoredEmbedder
from .errors import LlmaaaError
from .llm import (
    LLM,
    ContextOverflow,
    Cost,
    GenerateRequest,
    GenerateResponse,
    Request,
    RequestPool,
    ScoreResponse,
    cache_key,
    run_many,
)
from .models import resolve, verified_sha256
from .project import Project
from .records import Annotation, Example, Span
from .spans import Gazetteer, label_spans, span_text, span_words, spans_to_tags
from .tasks import Parsed, Task, task_for

Selection = Literal["random", "first"]
_NAMING_SPLITS: tuple[Split, ...] = ("demo", "dev")  # whose gold mentions NER's mark rule finds again in the answers
MIN_CHARS = 100
CALIBRATION_LIMIT = 200


@dataclass(frozen=True)
class AnnotateConfig:
    """What to annotate: `n` pool examples in a seeded random (or file) order, or explicit `ids`."""

    n: int = 100
    select: Selection = "random"
    seed: int = 0
    ids: tuple[str, ...] | None = None
    calibrate: bool = True
    prompt: PromptSettings | None = None  # None: the project's prompt settings
    round_id: int | None = None

    def __post_init__(self) -> None:
        if self.n < 0:
            raise LlmaaaError(f"--n {self.n}: give a number of examples, 0 or more")
        if self.select not in ("random", "first"):
            raise LlmaaaError(f"--select {self.select!r}: choose random or first")


@dataclass
class AnnotateProgress:
    """Live counters for a progress bar: documents, tokens, and the newest answer."""

    stage: str = "annotate"
    total: int = 0
    done: int = 0
    cached: int = 0
    parse_errors: int = 0
    tokens_in: int = 0
    tokens_evaluated: int = 0
    tokens_out: int = 0
    llm_seconds: float = 0.0  # summed over the calls, which run side by side on `workers` workers
    workers: int = 1
    started: float = field(default_factory=time.perf_counter)
    latest: Annotation | None = None
    latest_text: str = ""

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def busy_seconds(self) -> float:
        """LLM time as the clock sees it: the calls' time shared over the workers that ran them together."""
        return self.llm_seconds / self.workers

    @property
    def docs_per_second(self) -> float:
        asked = self.done - self.cached
        return asked / self.busy_seconds if self.llm_seconds else 0.0

    @property
    def tokens_per_second(self) -> float:
        return (self.tokens_evaluated + self.tokens_out) / self.busy_seconds if self.llm_seconds else 0.0

    @property
    def eta_seconds(self) -> float | None:
        rate = self.docs_per_second
        return (self.total - self.done) / rate if rate else None


@dataclass(frozen=True)
class AnnotateReport:
    annotated: int
    cached: int
    parse_errors: int
    calibration: CalibrationFit | TyperFit | None  # NER: the entity types chosen on gold
    tokens_in: int
    tokens_evaluated: int
    tokens_out: int
    seconds: float  # wall time, calibration and cache lookups included
    llm_seconds: float = 0.0  # time spent in LLM calls made by this run
    teacher_sha256: str = ""  # the model file that made the labels


@dataclass(frozen=True)
class _Asked:
    """One request to the LLM for one example, with what made it (for a shorter retry) and its cache key."""

    example: Example
    demos: list[Example]
    max_chars: int
    request: Request
    decoding: dict[str, object]
    key: str


class Annotator:
    """Runs one model over a project's examples; the task decides prompts and parsing."""

    def __init__(self, project: Project, llm: LLM, embed: Embed | None = None, prompt: PromptSettings | None = None,
                 probe_embeds: Sequence[Embed] | None = None) -> None:
        """`embed` picks similar demonstrations; the calibration's probe reads whichever of `probe_embeds`
        (default: `embed`) does best on held-out gold, the first on ties."""
        self.project = project
        self.store = project.store
        self.llm = llm
        self.settings = project.settings
        self.prompt = prompt or self.settings.prompt
        if not self.settings.labels:
            raise LlmaaaError("the project has no label set yet: import labeled data or re-create it with --labels")
        self.task: Task = task_for(replace(self.settings, prompt=self.prompt))
        self.embed = embed
        # what the calibration's probe may embed, and (after a calibration chose one) what it embeds
        self.probe_embeds = [_probe_reader(e, self.task) for e in ([embed] if probe_embeds is None else probe_embeds)
                             if e is not None]
        self.probe_embed = self.probe_embeds[0] if self.probe_embeds else None
        self.source = f"llm:{llm.name}"
        self.prompt_key = _digest(self.settings.to_dict() | {"prompt": self.prompt.key_fields()})
        if self.prompt.members() and not self.task.scored:
            raise LlmaaaError("prompt ensembling averages label scores: it applies to classification and relations")
        # an ensemble asks each member prompt (ordinary cached annotations), then stores the mean of their scores
        self.members = [Annotator(project, llm, embed, member) for member in self.prompt.members()]
        demos = list(self.store.examples("demo"))
        if self.prompt.uses_embeddings and demos and embed is None:
            kind = {"knn": "kNN", "balanced": "balanced kNN"}[self.prompt.demos]
            raise LlmaaaError(f"{kind} demonstrations need the sentence embedder: pull minilm-l6 or use --demos "
                              "random")
        vectors = embed(demos) if self.prompt.uses_embeddings and demos and embed else None
        self.pool = DemoPool(demos, self.prompt.demos, self.prompt.k, vectors, seed=self.prompt.demo_seed)
        stored = self.store.calibration(llm.model_sha256, self.prompt_key)
        self.calibration = Calibration.from_dict(stored[0]) if stored and self.task.scored else None
        self.typer = SpanTyper.from_dict(stored[0]) if stored and stored[0].get("kind") == "span_typer" else None
        self._mention_cache: dict[str, dict[str, np.ndarray]] = {}  # by embedder, then mention text
        self._named: Gazetteer | None = None  # the mentions a typer that marks finds again (built when first needed)
        probe = self.calibration.probe if self.calibration is not None else self.typer.probe if self.typer else None
        if probe is not None:
            self.probe_embed = self._probe_reading(probe.embedder)
            if self.probe_embed is None:  # its probe reads vectors no embedder here makes: the next calibration refits
                self.calibration = self.typer = None

    # --- public ------------------------------------------------------------------------------------------------

    def select(self, config: AnnotateConfig) -> list[str]:
        if config.ids is not None:
            return list(config.ids)
        ids = self.store.example_ids("pool")
        if config.select == "random":
            ids.sort(key=lambda i: hashlib.sha256(f"{config.seed}:{i}".encode()).digest())
        return ids[: config.n]

    def run(self, config: AnnotateConfig, on_progress: Callable[[AnnotateProgress], None] | None = None,
            ) -> AnnotateReport:
        started = time.perf_counter()
        progress = AnnotateProgress(workers=self.llm.workers if isinstance(self.llm, RequestPool) else 1)
        fitted: CalibrationFit | TyperFit | None = None
        gold = [*self.store.examples("demo"), *self.store.examples("dev")][:CALIBRATION_LIMIT]
        if config.calibrate and (self.task.scored or self.task.entity_spans) and len(gold) >= 2:
            progress.stage = "calibrate"
            self._annotate(gold, progress, on_progress, config.round_id)
            fitted = self.fit_calibration(gold) if self.task.scored else self.fit_typer(gold)
        targets = list(self.store.examples(ids=self.select(config)))
        progress.stage = "annotate"
        asked = progress.done - progress.cached
        self._annotate(targets, progress, on_progress, config.round_id)
        answered = progress.done - progress.cached > asked  # new answers, with new names in them
        if isinstance(fitted, TyperFit) and answered:
            # the entity rule chosen again with the names the new answers gave (the mark rule finds them again,
            # and what they find in the gold sentences teaches the probe what is no entity)
            progress.stage = "calibrate"
            fitted = self.fit_typer(gold)
        elif self.typer is not None and self.typer.marks and answered:
            self.retype(self.written_spans())  # the mentions the new answers named, marked in the earlier ones too
        return AnnotateReport(
            annotated=progress.done - progress.cached, cached=progress.cached, parse_errors=progress.parse_errors,
            calibration=fitted, tokens_in=progress.tokens_in, tokens_evaluated=progress.tokens_evaluated,
            tokens_out=progress.tokens_out, seconds=time.perf_counter() - started,
            llm_seconds=progress.llm_seconds, teacher_sha256=self.llm.model_sha256,
        )

    def fit_calibration(self, gold: Sequence[Example]) -> CalibrationFit:
        """Fit biases on the gold examples' stored scores, save, and re-label every annotation of this prompt."""
        labels = self.settings.label_names
        scored = {eid: (scores, baseline) for _, eid, scores, baseline
                  in self.store.scored_annotations(self.llm.model_sha256, self.prompt_key)}
        known = [g for g in gold if g.id in scored and g.label is not None]
        vectors = {_embedder_name(embed): embed(known) for embed in self.probe_embeds} if known else None
        fitted = fit([scored[g.id][0] for g in known], [str(g.label) for g in known], labels,
                     [scored[g.id][1] for g in known], ignore=self.settings.no_relation, vectors=vectors)
        self.calibration = fitted.calibration
        if fitted.calibration.probe is not None:
            self.probe_embed = self._probe_reading(fitted.calibration.probe.embedder)
        metrics: dict[str, Any] = {
            "n": fitted.n, "method": fitted.method, "raw_accuracy": fitted.raw_accuracy,
            "calibrated_accuracy": fitted.calibrated_accuracy, "loo_accuracy": fitted.loo_accuracy,
            "metric": fitted.metric, "loo_score": fitted.loo_score, "rejected": list(fitted.rejected),
            "summary": fitted.summary()}
        if fitted.loo_f1 is not None:
            metrics["loo_f1"] = fitted.loo_f1
        with self.store.transaction():
            self.store.save_calibration(self.llm.model_sha256, self.prompt_key, fitted.method,
                                        fitted.calibration.to_dict(), metrics)
            self.recalibrate()
        return fitted

    def fit_typer(self, gold: Sequence[Example]) -> TyperFit:
        """Choose the entity spans on gold: as the teacher wrote them, or passed through a probe on the gold
        mentions' embeddings (re-typed, filtered, extended); save the choice and apply it to every annotation of
        this prompt."""
        rows = self.written_spans()
        written = {example.id: spans for _, example, spans in rows}
        known = [g for g in gold if g.id in written and isinstance(g.label, tuple)]
        encoders = [embed for embed in self.probe_embeds if isinstance(embed, StoredEmbedder)]
        fitted = fit_typer(known, [written[g.id] for g in known], self.settings.label_names,
                           {embed.name: partial(self._mention_vectors, embed) for embed in encoders},
                           [span_words(example, span) for _, example, spans in rows for span in spans])
        self.typer = fitted.typer
        self._named = None
        if fitted.typer is not None:
            self.probe_embed = self._probe_reading(fitted.typer.probe.embedder)
        method = "span_typer" if fitted.typer else "as_written"
        metrics = {"n": fitted.n, "method": method, "metric": "f1", "written_f1": fitted.written_f1,
                   "loo_score": fitted.loo_f1, "summary": fitted.summary()}
        with self.store.transaction():
            self.store.save_calibration(self.llm.model_sha256, self.prompt_key, method,
                                        fitted.typer.to_dict() if fitted.typer else {"kind": method}, metrics)
            self.retype(rows)
        return fitted

    def retype(self, rows: Sequence[tuple[int, Example, tuple[Span, ...]]]) -> None:
        """Store the entity answers `rows` (`written_spans`: this prompt's, with the spans and types the teacher
        wrote) as the rule chosen on gold decides them; the raw output stays as the teacher gave it."""
        if self.typer is not None:  # embed every candidate's words in one go
            self._gazetteer(rows)
            self._span_vectors([span_text(example, span) for _, example, found in rows
                                for span, _ in self._candidates(example, found)])
        updates = []
        for annotation_id, example, found in rows:
            label = self._decided(example, found)
            updates.append((annotation_id, label, spans_to_tags(label, len(example.tokens or ()))))
        self.store.update_spans(updates)

    def written_spans(self) -> list[tuple[int, Example, tuple[Span, ...]]]:
        """(annotation id, example, spans with the types the teacher wrote, read again from its stored output) of
        this prompt's entity answers."""
        rows = self.store.generated_annotations(self.llm.model_sha256, self.prompt_key)
        examples = {e.id: e for e in self.store.examples(ids=list(dict.fromkeys(row[1] for row in rows)))}
        found = []
        for annotation_id, example_id, raw in rows:
            parsed = self.task.parse(examples[example_id], GenerateResponse(raw, (), Cost(0, 0, 0, 0.0)))
            if isinstance(parsed.label, tuple):
                found.append((annotation_id, examples[example_id], parsed.label))
        return found

    def _decided(self, example: Example, written: tuple[Span, ...]) -> tuple[Span, ...]:
        """The entity spans of one answer (the teacher's `written` spans) as the typer decides them."""
        if self.typer is None:
            return written
        candidates = self._candidates(example, written)
        if not candidates:
            return ()
        vectors = self._span_vectors([span_text(example, span) for span, _ in candidates])
        return self.typer.retype([span for span, _ in candidates], vectors, [mine for _, mine in candidates])

    def _candidates(self, example: Example, written: tuple[Span, ...]) -> list[tuple[Span, bool]]:
        """The teacher's spans (True), then, for a typer that marks, the known mentions found again (False); not in
        the gold examples the gazetteer learnt from, whose answers would find their own gold mentions."""
        marks = self.typer is not None and self.typer.marks and example.split not in _NAMING_SPLITS
        found = self._gazetteer().find(example.tokens or (), written) if marks else ()
        return [(span, True) for span in written] + [(span, False) for span in found]

    def _gazetteer(self, rows: Sequence[tuple[int, Example, tuple[Span, ...]]] | None = None) -> Gazetteer:
        """The gold mentions and those the teacher wrote in this prompt's answers (`rows`, else read from the
        store), gathered once per annotator; new answers add theirs."""
        if self._named is None:
            gold = [example for split in _NAMING_SPLITS for example in self.store.examples(split)]
            self._named = Gazetteer([span_words(g, span) for g in gold for span in label_spans(g.label)])
            self._named.add(span_words(example, span) for _, example, spans in (
                self.written_spans() if rows is None else rows) for span in spans)
        return self._named

    def _span_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """The embeddings of entity mentions' words by the typing probe's embedder."""
        assert isinstance(self.probe_embed, StoredEmbedder)
        return self._mention_vectors(self.probe_embed, texts)

    def _mention_vectors(self, embed: StoredEmbedder, texts: Sequence[str]) -> np.ndarray:
        """Mentions' embeddings, each distinct text embedded once per annotator (names recur across a corpus; short
        texts are not cached in the store)."""
        cache = self._mention_cache.setdefault(embed.name, {})
        new = [text for text in dict.fromkeys(texts) if text not in cache]
        if new:
            cache.update(zip(new, embed.texts(new), strict=True))
        return np.array([cache[text] for text in texts])

    def _probe_reading(self, name: str) -> Embed | None:
        """The probe embedder called `name`, if there is one here."""
        return next((embed for embed in self.probe_embeds if _embedder_name(embed) == name), None)

    def recalibrate(self) -> None:
        assert self.calibration is not None
        updates = []
        rows = self.store.scored_annotations(self.llm.model_sha256, self.prompt_key)
        vectors = self._vectors(list(self.store.examples(ids=list(dict.fromkeys(row[1] for row in rows))))
                                ) if self.calibration.probe is not None else {}
        for annotation_id, example_id, scores, baseline in rows:
            probabilities = self.calibration.probabilities(scores, baseline, vectors.get(example_id))
            label = max(probabilities, key=probabilities.__getitem__)
            updates.append((annotation_id, label, probabilities, probabilities[label]))
        self.store.update_calibrated(updates)

    # --- the loop ----------------------------------------------------------------------------------------------

    def _annotate(self, examples: Sequence[Example], progress: AnnotateProgress,
                  on_progress: Callable[[AnnotateProgress], None] | None, round_id: int | None) -> None:
        """Ask the LLM about every example whose request is not cached, storing each answer as it comes back.

        With one worker the requests go one at a time, in plan order; with several (a RequestPool) several are in
        flight, and an example whose request is already in flight waits for that answer and gets its own copy."""
        if not examples:
            return
        self._vectors(examples)  # a calibration with a probe reads the texts' embeddings: compute them together
        if self.members:
            for member in self.members:
                member._annotate(examples, progress, on_progress, round_id)
            self._combine(examples, round_id)
            return
        progress.total += len(examples)
        waiting: dict[str, list[Example]] = {}  # request key in flight -> examples with the same request

        def counted(example: Example, annotation: Annotation | None) -> None:
            progress.done += 1
            if annotation is None:
                progress.cached += 1
            else:
                progress.parse_errors += annotation.status == "parse_error"
                progress.tokens_in += annotation.tokens_in
                progress.tokens_evaluated += annotation.tokens_evaluated
                progress.tokens_out += annotation.tokens_out
                progress.llm_seconds += annotation.seconds
                progress.latest, progress.latest_text = annotation, example.text
            if on_progress is not None:
                on_progress(progress)

        def requests() -> Iterator[tuple[_Asked, Request, Hashable]]:
            for example, demos in self.plan(examples):
                asked = self._asked(example, demos, self.prompt.max_chars)
                if asked.key in waiting:
                    waiting[asked.key].append(example)
                elif self._copied(asked, round_id):
                    counted(example, None)
                else:
                    waiting[asked.key] = []
                    yield asked, asked.request, tuple(demo.id for demo in demos)

        for asked, answer in run_many(self.llm, requests()):
            twins = waiting.pop(asked.key)
            while isinstance(answer, ContextOverflow):
                asked = self._shorter(asked)
                if self._copied(asked, round_id):
                    break
                ((_, answer),) = run_many(self.llm, [(None, asked.request, ())])
            annotation = None if isinstance(answer, ContextOverflow) else self._store(asked, answer, round_id)
            counted(asked.example, annotation)
            for twin in twins:
                self.store.copy_answer(asked.key, twin.id, round_id, self.prompt_key)
                counted(twin, None)

    def _combine(self, examples: Sequence[Example], round_id: int | None) -> None:
        """An ensemble's own annotation of each example: the mean of its members' log-softmaxed label scores (and
        of their content-free baselines, so that scores minus baseline is the mean of the members' contextual
        scores), calibrated like any other. It costs no tokens: the members' rows carry the cost."""
        ids, labels = [example.id for example in examples], self.settings.label_names
        answers = [{row[0]: row for row in self.store.prompt_annotations(self.llm.model_sha256, member.prompt_key, ids)}
                   for member in self.members]
        first = {example.id: demos for example, demos in self.members[0].plan(examples)}
        keys = {example.id: _digest(["ensemble", self.llm.model_sha256, self.prompt_key, example.id])
                for example in examples}
        stored = self.store.cached_keys(list(keys.values()))
        for example in examples:
            key = keys[example.id]
            rows = [answer.get(example.id) for answer in answers]
            if key in stored or any(row is None for row in rows):
                continue  # stored before, or a member's request did not fit the context
            scores = [row[2] for row in rows if row is not None and row[2] is not None]
            response = ScoreResponse((), Cost(0, 0, 0, 0.0))  # a member without scores: a parse error
            if len(scores) == len(rows):
                raw = np.mean([log_softmax([s[label] for label in labels]) for s in scores], axis=0)
                baselines = [row[3] for row in rows if row is not None and row[3] is not None]
                baseline = None
                if len(baselines) == len(rows):
                    relative = np.mean([log_softmax([s[label] - b[label] for label in labels])
                                        for s, b in zip(scores, baselines, strict=True)], axis=0)
                    baseline = tuple(float(x) for x in raw - relative)
                response = ScoreResponse(tuple(float(x) for x in raw), Cost(0, 0, 0, 0.0), baseline)
            asked = self.members[0]._asked(example, first[example.id], self.prompt.max_chars)
            self._store(replace(asked, key=key, decoding={**asked.decoding, "ensemble": len(self.members)}),
                        response, round_id)

    def _vectors(self, examples: Sequence[Example]) -> dict[str, np.ndarray]:
        """The sentence embeddings of `examples` by id when the calibration's probe reads them (cached in the
        store: each text is embedded once), else nothing."""
        if self.calibration is None or self.calibration.probe is None or self.probe_embed is None or not examples:
            return {}
        return dict(zip([example.id for example in examples], self.probe_embed(examples), strict=True))

    def plan(self, examples: Sequence[Example]) -> list[tuple[Example, list[Example]]]:
        """Each example with its demonstrations, in the order they are sent: prompts that start with the same
        demonstrations run back to back, so the KV cache reuses them too."""
        vectors = self.embed(examples) if self.pool.needs_query_vectors and self.embed else None
        planned = [(example, self.pool.choose(example, vectors[i] if vectors is not None else None))
                   for i, example in enumerate(examples)]
        planned.sort(key=lambda item: tuple(demo.id for demo in item[1]))
        return planned

    def _asked(self, example: Example, demos: list[Example], max_chars: int) -> _Asked:
        request = self.task.request(example, demos, max_chars)
        decoding = _decoding(request)
        return _Asked(example, demos, max_chars, request, decoding, cache_key(self.llm.model_sha256, request, decoding))

    def _copied(self, asked: _Asked, round_id: int | None) -> bool:
        """True when the request was answered before: the example gets (its own copy of) that answer."""
        if not self.store.cached_keys([asked.key, f"{asked.key}:{asked.example.id}"]):
            return False
        self.store.copy_answer(asked.key, asked.example.id, round_id, self.prompt_key)
        return True

    def _shorter(self, asked: _Asked) -> _Asked:
        """The request again after a context overflow: the text halved, else one demonstration fewer."""
        example, demos, max_chars = asked.example, asked.demos, asked.max_chars
        if min(max_chars, len(example.text)) > MIN_CHARS:
            return self._asked(example, demos, max(MIN_CHARS, min(max_chars, len(example.text)) // 2))
        if demos:
            return self._asked(example, demos[1:], max_chars)  # the least similar demonstration goes first
        raise LlmaaaError(f"example {example.id!r}: even a {MIN_CHARS}-character prompt does not fit the context "
                          "window; raise --n-ctx")

    def _store(self, asked: _Asked, response: ScoreResponse | GenerateResponse, round_id: int | None) -> Annotation:
        example, demos, max_chars, request = asked.example, asked.demos, asked.max_chars, asked.request
        vector = self._vectors([example]).get(example.id)
        parsed = self._calibrated(self.task.parse(example, response), example, vector)
        flags: dict[str, Any] = {}
        if len(example.text) > max_chars:
            flags["truncated_to_chars"] = max_chars
        if parsed.dropped:
            flags["dropped_spans"] = parsed.dropped
        if isinstance(parsed.label, tuple) and example.tokens is not None:
            flags["tags"] = spans_to_tags(parsed.label, len(example.tokens))  # the spans as BIO tags, per token
        annotation = Annotation(
            example_id=example.id, source=self.source, label=parsed.label, confidence=parsed.confidence,
            status=parsed.status, cache_key=asked.key, model_sha256=self.llm.model_sha256, prompt_key=self.prompt_key,
            prompt_hash=request.key(), decoding=asked.decoding, demo_ids=tuple(demo.id for demo in demos),
            raw_output=_raw(response), scores=parsed.scores, baseline=parsed.baseline,
            calibrated=_probabilities(parsed, self.calibration, vector), tokens_in=response.cost.tokens_in,
            tokens_evaluated=response.cost.tokens_evaluated, tokens_out=response.cost.tokens_out,
            seconds=response.cost.seconds, error=parsed.error, flags=flags or None, round_id=round_id,
        )
        self.store.add_annotation(annotation)
        return annotation

    def _calibrated(self, parsed: Parsed, example: Example, vector: np.ndarray | None) -> Parsed:
        if self.typer is not None and isinstance(parsed.label, tuple):
            if self.typer.marks:
                self._gazetteer().add(span_words(example, span) for span in parsed.label)
            return replace(parsed, label=self._decided(example, parsed.label))
        if parsed.scores is None or self.calibration is None:
            return parsed
        probabilities = self.calibration.probabilities(parsed.scores, parsed.baseline, vector)
        label = max(probabilities, key=probabilities.__getitem__)
        return replace(parsed, label=label, confidence=probabilities[label])


def load_teacher(settings: TeacherSettings, models_dir: Path) -> LLM:
    """Load the teacher GGUF through llama.cpp (imported only here, when a teacher is really needed)."""
    from .llama_backend import LlamaBackend

    path = resolve(settings.model, models_dir, "gguf")
    return LlamaBackend(path, n_ctx=settings.n_ctx, n_threads=settings.threads, n_gpu_layers=settings.n_gpu_layers,
                        seed=settings.seed, chat_template=settings.chat_template, chat_format=settings.chat_format,
                        model_sha256=verified_sha256(path, models_dir))


def load_embedder(name: str, models_dir: Path, project: Project) -> StoredEmbedder:
    """The sentence embedder (kNN demonstrations, the calibration's probe), with vectors cached in the project
    database; it carries the embedder's `name`, and loads its weights when it first embeds a text."""
    folder = resolve(name, models_dir, "hf")
    return StoredEmbedder(project.store, Embedder(folder, verified_sha256(folder, models_dir)))


def _probe_reader(embed: Embed, task: Task) -> Embed:
    """The embedder of what the calibration's probe reads: the task's `probe_text` of each example (relations: the
    mentions and the words between them), cached apart from the whole texts' vectors."""
    if not task.probe_view:
        return embed
    if isinstance(embed, StoredEmbedder):
        return embed.reading(task.probe_view, task.probe_text)
    return lambda examples: embed([replace(example, text=task.probe_text(example)) for example in examples])


def _probabilities(parsed: Parsed, calibration: Calibration | None, vector: np.ndarray | None,
                   ) -> dict[str, float] | None:
    if parsed.scores is None:
        return None
    if calibration is not None:
        return calibration.probabilities(parsed.scores, parsed.baseline, vector)
    return Calibration.identity(list(parsed.scores)).probabilities(parsed.scores)


def _decoding(request: Request) -> dict[str, object]:
    if isinstance(request, GenerateRequest):
        return {"mode": "generate", "greedy": True, "max_tokens": request.max_tokens}
    return {"mode": "score", "sum_logprobs": True}


def _embedder_name(embed: Embed | None) -> str:
    """Which sentence embedder `embed` runs (`load_embedder`'s carry a name; a bare function has none)."""
    return str(getattr(embed, "name", ""))


def _raw(response: ScoreResponse | GenerateResponse) -> str:
    """What the model said: generated text, or the label log-probs (and the content-free baseline's)."""
    if isinstance(response, GenerateResponse):
        return response.text
    raw = {"logprobs": [round(x, 5) for x in response.logprobs]}
    if response.baseline is not None:
        raw["baseline"] = [round(x, 5) for x in response.baseline]
    return json.dumps(raw)


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
