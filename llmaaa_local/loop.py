"""The LLMaAA active-learning loop: seed -> LLM annotates -> student trains -> strategy picks -> repeat.

Every round is a row in the store that moves through selected -> annotated -> trained -> done. The next round's
selection is stored in the same transaction that closes a round, so a killed run resumes in the round it was in,
and the annotator's cache means nothing already annotated is asked again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .annotate import AnnotateConfig, AnnotateProgress, Annotator
from .config import TrainConfig

if TYPE_CHECKING:
    from .student import TrainProgress
from .errors import LlmaaaError
from .project import Project
from .records import Example, Label
from .store import Round
from .strategies import STRATEGIES, Aggregate, PoolExhaustedError, PoolScores, strategy_for
from .tasks import task_for

Schedule = Literal["fixed", "quadratic"]


@dataclass(frozen=True)
class LoopConfig:
    """Budget and strategy of one named loop; `budget` counts LLM annotations, the seed batch included."""

    name: str = "default"
    strategy: str = "entropy"
    seed_size: int = 50
    per_round: int = 50
    rounds: int | None = None  # rounds after the seed round
    budget: int | None = 500
    schedule: Schedule = "fixed"
    aggregate: Aggregate = "mean"
    cost_aware: bool = False
    candidates: int | None = 2000  # score a seeded random subset of the pool each round (None: all of it)
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise LlmaaaError(f"unknown strategy {self.strategy!r}: choose one of {', '.join(STRATEGIES)}")
        if self.seed_size < 1 or self.per_round < 1:
            raise LlmaaaError("--seed-size and --per-round must be at least 1")
        if self.rounds is None and self.budget is None:
            raise LlmaaaError("give --rounds or --budget, so the loop knows when to stop")
        if self.budget is not None and self.budget < self.seed_size:
            raise LlmaaaError(f"--budget {self.budget} is smaller than the seed batch ({self.seed_size})")
        if self.schedule not in ("fixed", "quadratic"):
            raise LlmaaaError("--schedule must be fixed or quadratic")
        largest = max(self.batch_sizes())
        if self.candidates is not None and self.candidates < largest:
            raise LlmaaaError(f"--candidates {self.candidates} is fewer than the largest batch ({largest}): score at "
                              "least that many pool examples per round (0 scores them all)")

    def batch_sizes(self) -> list[int]:
        """Seed batch, then per-round batches (quadratic: 1, 3, 5, ... times per_round) within the budget."""
        sizes = [self.seed_size]
        spent = self.seed_size
        round_no = 1
        while self.rounds is None or round_no <= self.rounds:
            size = self.per_round * (2 * round_no - 1 if self.schedule == "quadratic" else 1)
            if self.budget is not None:
                size = min(size, self.budget - spent)
            if size <= 0:
                break
            sizes.append(size)
            spent += size
            round_no += 1
        return sizes


@dataclass(frozen=True)
class RoundEvent:
    """Reported to the caller as the loop moves (for progress bars and the TUI)."""

    round: int
    rounds: int
    stage: str
    detail: str = ""


# The round's student (its checkpoint folder) scores candidates: label probabilities per example, and embeddings.
PoolScorer = Callable[[Path, Sequence[Example]], tuple[Sequence[np.ndarray], np.ndarray]]


def local_pool_scores(folder: Path, examples: Sequence[Example]) -> tuple[Sequence[np.ndarray], np.ndarray]:
    from .student import load_student, score_pool

    model, encoder = load_student(folder)
    return score_pool(model, encoder, examples)


class ActiveLearningLoop:
    def __init__(self, project: Project, config: LoopConfig, annotator: Annotator, models_dir: Path,
                 on_event: Callable[[RoundEvent], None] | None = None,
                 on_annotate: Callable[[AnnotateProgress], None] | None = None,
                 on_train: Callable[[TrainProgress], None] | None = None,
                 score_pool: PoolScorer | None = None) -> None:
        self.project = project
        self.store = project.store
        self.config = config
        self.annotator = annotator
        self.models_dir = models_dir
        self.on_event = on_event or (lambda event: None)
        self.on_annotate = on_annotate
        self.on_train = on_train
        self.score_pool = score_pool or local_pool_scores
        self.task = task_for(project.settings)

    def run(self) -> list[Round]:
        config = self.config
        sizes = config.batch_sizes()
        rounds = {row.round: row for row in self.store.rounds(config.name)}
        if not rounds:
            seed = self._random_pool(config.seed_size, set())
            if not seed:
                raise LlmaaaError("the pool is empty: import a corpus first")
            self.store.start_round(config.name, 0, "random", asdict(config), seed)
            rounds = {row.round: row for row in self.store.rounds(config.name)}
        for number in range(len(sizes)):
            row = rounds.get(number)
            if row is None:
                row = self._extend(number, sizes[number], rounds.get(number - 1))
                if row is None:
                    break  # the pool is exhausted
            if row.status == "done":
                continue
            self._run_round(row, number, sizes)
            rounds = {row.round: row for row in self.store.rounds(config.name)}
        return self.store.rounds(config.name)

    def _extend(self, number: int, size: int, previous: Round | None) -> Round | None:
        """A loop rerun with a larger budget or more rounds continues after its last finished round."""
        if previous is None or previous.status != "done":
            return None
        selected = self._select(size, set(self._labeled_through(number - 1)), previous)
        if not selected:
            return None
        self.store.start_round(self.config.name, number, self.config.strategy, asdict(self.config), selected)
        return next(row for row in self.store.rounds(self.config.name) if row.round == number)

    def _run_round(self, row: Round, number: int, sizes: list[int]) -> None:
        started = time.perf_counter() - (row.seconds or 0.0)
        total = len(sizes)
        labeled = self._labeled_through(number)
        if row.status == "selected":
            self.on_event(RoundEvent(number, total, "annotate", f"{len(row.selected)} examples"))
            report = self.annotator.run(AnnotateConfig(ids=row.selected, calibrate=number == 0, round_id=row.id),
                                        self.on_annotate)
            cost = {"tokens_in": report.tokens_in, "tokens_evaluated": report.tokens_evaluated,
                    "tokens_out": report.tokens_out, "llm_seconds": report.llm_seconds, "cached": report.cached}
            self.store.update_round(row.id, status="annotated", llm=self._llm_quality(labeled), cost=cost,
                                    seconds=time.perf_counter() - started)
            row = replace(row, status="annotated")
        if row.status == "annotated":
            self.on_event(RoundEvent(number, total, "train", f"{len(labeled)} LLM labels"))
            train = replace(self.config.train, examples=tuple(labeled), round_id=row.id,
                            seed=self.config.train.seed)
            from .student import Trainer

            trained = Trainer(self.project, train, self.models_dir, self.on_train).run()
            student = {"run_id": trained.run_id, **trained.metrics.get("test", trained.metrics.get("validation", {}))}
            self.store.update_round(row.id, status="trained", student=student,
                                    seconds=time.perf_counter() - started)
            row = replace(row, status="trained", student=student)
        if row.status == "trained":
            next_ids: list[str] = []
            if number + 1 < len(sizes):
                self.on_event(RoundEvent(number, total, "select", self.config.strategy))
                next_ids = self._select(sizes[number + 1], set(labeled), row)
            self.store.finish_round(row.id, time.perf_counter() - started, self.config.name, number + 1,
                                    self.config.strategy, asdict(self.config), next_ids)
            self.on_event(RoundEvent(number, total, "done"))

    def _labeled_through(self, number: int) -> list[str]:
        ids: list[str] = []
        for row in self.store.rounds(self.config.name):
            if row.round <= number:
                ids += row.selected
        return ids

    def _random_pool(self, n: int, exclude: set[str]) -> list[str]:
        """A seeded random sample of the unlabeled pool (empty when everything is labeled)."""
        ids = [i for i in self.store.example_ids("pool") if i not in exclude]
        ids.sort(key=lambda i: hashlib.sha256(f"{self.config.seed}:{i}".encode()).digest())
        return ids[:n]

    def _select(self, n: int, labeled: set[str], row: Round) -> list[str]:
        """Score a seeded random subset of the unlabeled pool with this round's student; the strategy picks."""
        limit = self.config.candidates
        candidates = self._random_pool(limit if limit is not None else 10**9, labeled)
        n = min(n, len(candidates))
        if n == 0:
            return []
        examples = list(self.store.examples(ids=candidates))
        strategy = strategy_for(self.config.strategy, self.config.aggregate)
        embeddings = None
        probabilities: Sequence[np.ndarray] = [np.zeros(1)] * len(examples)
        if strategy.name != "random":
            run_id = row.student["run_id"] if row.student else None
            folder = next(Path(a.path) for a in self.store.artifacts("checkpoint") if a.run_id == run_id)
            probabilities, embeddings = self.score_pool(folder, examples)
        seconds = self._predicted_seconds(examples) if self.config.cost_aware else None
        try:
            picked = strategy.query(PoolScores(probabilities, embeddings, seconds), n, self.config.seed + row.round)
        except PoolExhaustedError:
            picked = np.arange(len(examples))
        return [examples[i].id for i in picked]

    def _predicted_seconds(self, examples: Sequence[Example]) -> np.ndarray:
        """LLM seconds per example: its prompt tokens (about 4 characters each) times the measured s/token."""
        totals = self.store.annotation_counts()
        per_token = totals["seconds"] / totals["tokens_evaluated"] if totals["tokens_evaluated"] else 1e-3
        return np.array([(len(e.text) / 4 + 64) * per_token for e in examples])

    def _llm_quality(self, ids: list[str]) -> dict[str, Any]:
        """The LLM labels so far against the hidden reference labels (where the corpus had them)."""
        references = self.store.reference_labels("pool")
        labels: dict[str, Label] = {eid: label for eid, label, _, _ in self.store.latest_labels("", "pool")
                                    if eid in set(ids) and eid in references}
        summary: dict[str, Any] = {"n": len(labels), "labeled": len(ids)}
        if labels:
            examples = {e.id: e for e in self.store.examples(ids=list(labels))}
            summary.update(self.task.metrics({i: references[i] for i in labels}, labels, examples))
        return summary

