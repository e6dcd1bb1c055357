"""Choosing demonstrations for a prompt from the gold demo pool: k nearest neighbours, random, or none."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

import numpy as np

from .config import DemoMode
from .records import Example


class DemoPool:
    """The demo split's gold examples, with their embeddings when demonstrations are chosen by similarity."""

    def __init__(self, demos: Sequence[Example], mode: DemoMode, k: int, vectors: np.ndarray | None = None,
                 seed: int = 0) -> None:
        if mode == "knn" and demos and vectors is None:
            raise ValueError("kNN demonstrations need the demo embeddings")
        self.demos = list(demos)
        self.mode = mode
        self.k = k
        self.vectors = vectors
        self.seed = seed

    def choose(self, example: Example, vector: np.ndarray | None = None) -> list[Example]:
        """Up to k demonstrations, never the example itself, the most similar last (closest to the input)."""
        candidates = [i for i, demo in enumerate(self.demos) if demo.id != example.id]
        if self.mode == "none" or not candidates or self.k == 0:
            return []
        if self.mode == "random":
            digest = hashlib.sha256(f"{self.seed}:{example.id}".encode()).digest()
            picked = random.Random(digest).sample(candidates, min(self.k, len(candidates)))
            return [self.demos[i] for i in picked]
        assert self.vectors is not None and vector is not None
        similarity = self.vectors[candidates] @ vector
        order = np.argsort(-similarity, kind="stable")[: self.k]
        return [self.demos[candidates[i]] for i in reversed(order)]
