"""Choosing demonstrations for a prompt from the gold demo pool: nearest neighbours (plain, or balanced so that the
demonstrations carry the label set), one fixed label-balanced set, random, or none.

Order rule: the most similar demonstration comes last, right before the input; balanced and fixed sets alternate
their labels strictly (a small model leans toward the labels it saw last, so which label ends the list matters,
and `tune` tries several fixed sets).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

import numpy as np

from .config import DemoMode
from .records import Example


def classes(example: Example) -> frozenset[str]:
    """What a demonstration shows: its label, or the entity types of its spans."""
    if isinstance(example.label, str):
        return frozenset([example.label])
    if isinstance(example.label, tuple):
        return frozenset(span.type for span in example.label)
    return frozenset()


class DemoPool:
    """The demo split's gold examples, with their embeddings when demonstrations are chosen by similarity."""

    def __init__(self, demos: Sequence[Example], mode: DemoMode, k: int, vectors: np.ndarray | None = None,
                 seed: int = 0) -> None:
        if mode in ("knn", "balanced") and demos and vectors is None:
            raise ValueError(f"{mode} demonstrations need the demo embeddings")
        self.demos = list(demos)
        self.mode = mode
        self.k = k
        self.vectors = vectors
        self.seed = seed
        self.classes = [classes(demo) for demo in self.demos]
        self.single_label = all(len(found) <= 1 for found in self.classes)
        self._typical = self._typicality()

    @property
    def needs_query_vectors(self) -> bool:
        return self.mode in ("knn", "balanced") and bool(self.demos)

    def choose(self, example: Example, vector: np.ndarray | None = None) -> list[Example]:
        """Up to k demonstrations, never the example itself, in prompt order."""
        candidates = [i for i, demo in enumerate(self.demos) if demo.id != example.id]
        if self.mode == "none" or not candidates or self.k == 0:
            return []
        if self.mode == "random":
            digest = hashlib.sha256(f"{self.seed}:{example.id}".encode()).digest()
            picked = random.Random(digest).sample(candidates, min(self.k, len(candidates)))
            return [self.demos[i] for i in picked]
        if self.mode == "fixed":
            scores = self._typical
        else:
            assert self.vectors is not None and vector is not None
            scores = self.vectors @ vector
        if self.mode == "knn":
            order = sorted(candidates, key=lambda i: -scores[i])[: self.k]
            return [self.demos[i] for i in reversed(order)]
        chosen = self._balanced(candidates, scores) if self.single_label else self._covering(candidates, scores)
        return [self.demos[i] for i in chosen]

    def _balanced(self, candidates: list[int], scores: np.ndarray) -> list[int]:
        """Single-label tasks: the labels strictly alternate in one order, the label of the best demonstration
        last, and each label's demonstrations come weakest first, so the best of all ends the list. With more
        labels than k, the k labels whose best demonstrations score highest."""
        by_label: dict[str, list[int]] = {}
        for i in sorted(candidates, key=lambda i: -scores[i]):
            for name in self.classes[i]:
                by_label.setdefault(name, []).append(i)
        order = sorted(by_label, key=lambda name: scores[by_label[name][0]])[-self.k:]  # best label last
        taken: list[list[int]] = []  # rounds from the best: round r holds each label's r-th best
        count = 0
        while count < self.k:
            row = [by_label[name][len(taken)] for name in order if len(by_label[name]) > len(taken)]
            if not row:
                break
            row = row[count - self.k:]  # a partial round keeps the best labels (count < k: a negative start)
            taken.append(row)
            count += len(row)
        return [i for row in reversed(taken) for i in row]

    def _covering(self, candidates: list[int], scores: np.ndarray) -> list[int]:
        """Multi-type tasks (NER): the k best, then every entity type no chosen demonstration shows is brought in
        with its best demonstration in place of the weakest one whose types others still show; best last."""
        ranked = sorted(candidates, key=lambda i: -scores[i])
        chosen = ranked[: self.k]
        types = {name for i in candidates for name in self.classes[i]}
        for name in sorted(types, key=lambda t: -max(scores[i] for i in candidates if t in self.classes[i])):
            if any(name in self.classes[i] for i in chosen):
                continue
            bringer = next(i for i in ranked if name in self.classes[i])
            for weakest in sorted(chosen, key=lambda i: scores[i]):
                others = {t for j in chosen if j != weakest for t in self.classes[j]}
                if self.classes[weakest] <= others:
                    chosen[chosen.index(weakest)] = bringer
                    break
        return sorted(chosen, key=lambda i: scores[i])

    def _typicality(self) -> np.ndarray:
        """For the fixed set: a seeded random order of the demonstrations, so that each seed is another
        label-balanced set (`tune` tries several on gold: which set works is the model's business, and the most
        central examples by embedding were no better in a trial on IMDb)."""
        rng = random.Random(f"fixed:{self.seed}")
        return np.array([rng.random() for _ in self.demos])
