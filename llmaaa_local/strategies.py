"""Acquisition strategies for active learning: small classes over the student's probabilities and embeddings.

Uncertainty strategies score each example (for NER the per-token values are aggregated per sentence, by sum or
mean, as in LLMaAA); diversity strategies cluster the student's embeddings. With `seconds` given, uncertainty is
divided by the predicted LLM seconds of each example, so cheap informative examples come first (cost-aware).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .errors import LlmaaaError

Aggregate = Literal["sum", "mean"]


class EmptyPoolError(LlmaaaError):
    """There is nothing left in the pool to choose from."""


class PoolExhaustedError(LlmaaaError):
    """Fewer unlabeled examples are left than the batch asks for."""


@dataclass(frozen=True)
class PoolScores:
    """What the student says about the unlabeled pool: per example (labels,) or (tokens, labels) probabilities,
    one embedding row per example, and optionally the predicted LLM seconds per example."""

    probabilities: Sequence[np.ndarray]
    embeddings: np.ndarray | None = None
    seconds: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.probabilities)


class QueryStrategy(ABC):
    name = "base"

    def query(self, pool: PoolScores, n: int, seed: int = 0) -> np.ndarray:
        """Indices of the `n` pool examples to annotate next, best first."""
        if n < 1:
            raise LlmaaaError(f"a batch of {n} examples was asked for: ask for at least one")
        if len(pool) == 0:
            raise EmptyPoolError("the pool is empty: import more examples or stop the loop")
        if n > len(pool):
            raise PoolExhaustedError(f"only {len(pool)} unlabeled examples are left, {n} were asked for")
        return self._query(pool, n, np.random.default_rng(seed))

    @abstractmethod
    def _query(self, pool: PoolScores, n: int, rng: np.random.Generator) -> np.ndarray: ...


class RandomSampling(QueryStrategy):
    name = "random"

    def _query(self, pool: PoolScores, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(len(pool))[:n]


class Uncertainty(QueryStrategy):
    """Picks the highest uncertainty; subclasses define it for one distribution (rows of `p`)."""

    def __init__(self, aggregate: Aggregate = "mean") -> None:
        self.aggregate = aggregate

    @staticmethod
    @abstractmethod
    def values(p: np.ndarray) -> np.ndarray:
        """Uncertainty of each row of a (rows, labels) probability array."""

    def scores(self, pool: PoolScores) -> np.ndarray:
        per_example = []
        for p in pool.probabilities:
            rows = self.values(np.atleast_2d(p))
            per_example.append(float(rows.sum() if self.aggregate == "sum" else rows.mean()) if rows.size else 0.0)
        scores = np.array(per_example)
        if pool.seconds is not None:
            scores = scores / np.maximum(pool.seconds, 1e-3)
        return scores

    def _query(self, pool: PoolScores, n: int, rng: np.random.Generator) -> np.ndarray:
        scores = self.scores(pool)
        jitter = rng.random(len(scores)) * 1e-9  # ties broken at random, reproducibly
        return np.argsort(-(scores + jitter), kind="stable")[:n]


class LeastConfidence(Uncertainty):
    name = "least-confidence"

    @staticmethod
    def values(p: np.ndarray) -> np.ndarray:
        return 1.0 - p.max(axis=-1)


class Entropy(Uncertainty):
    name = "entropy"

    @staticmethod
    def values(p: np.ndarray) -> np.ndarray:
        return -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=-1)


class Margin(Uncertainty):
    name = "margin"

    @staticmethod
    def values(p: np.ndarray) -> np.ndarray:
        top = np.sort(p, axis=-1)
        return 1.0 - (top[..., -1] - top[..., -2]) if p.shape[-1] > 1 else np.zeros(p.shape[:-1])


class KMeansDiversity(QueryStrategy):
    """k = n clusters of the student's embeddings; the example nearest each centroid (LLMaAA's k-means)."""

    name = "kmeans"

    def weights(self, pool: PoolScores) -> np.ndarray | None:
        return None

    def _query(self, pool: PoolScores, n: int, rng: np.random.Generator) -> np.ndarray:
        if pool.embeddings is None:
            raise LlmaaaError(f"the {self.name} strategy needs the student's embeddings of the pool")
        from sklearn.cluster import KMeans

        vectors = pool.embeddings
        clusters = KMeans(n_clusters=n, n_init=3, random_state=int(rng.integers(2**31))).fit(
            vectors, sample_weight=self.weights(pool))
        chosen: list[int] = []
        for centre in clusters.cluster_centers_:
            distance = ((vectors - centre) ** 2).sum(axis=1)
            distance[chosen] = np.inf
            chosen.append(int(np.argmin(distance)))
        return np.array(chosen)


class Hybrid(KMeansDiversity):
    """Uncertainty-weighted k-means: centroids pulled toward uncertain regions, still spread over the pool."""

    name = "hybrid"

    def __init__(self, uncertainty: Uncertainty | None = None) -> None:
        self.uncertainty = uncertainty or Entropy()

    def weights(self, pool: PoolScores) -> np.ndarray:
        return self.uncertainty.scores(pool) + 1e-6


STRATEGIES = ("random", "least-confidence", "entropy", "margin", "kmeans", "hybrid")


def strategy_for(name: str, aggregate: Aggregate = "mean") -> QueryStrategy:
    strategies: dict[str, QueryStrategy] = {
        "random": RandomSampling(), "least-confidence": LeastConfidence(aggregate), "entropy": Entropy(aggregate),
        "margin": Margin(aggregate), "kmeans": KMeansDiversity(), "hybrid": Hybrid(Entropy(aggregate)),
    }
    if name not in strategies:
        raise LlmaaaError(f"unknown strategy {name!r}: choose one of {', '.join(STRATEGIES)}")
    return strategies[name]
