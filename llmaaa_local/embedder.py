"""Sentence embeddings (mean-pooled MiniLM or any local encoder) for kNN demonstrations, cached in the store."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .models import sha256_file
from .records import Example
from .store import Store

BATCH = 32
MAX_TOKENS = 256


Embed = Callable[[Sequence[Example]], np.ndarray]  # examples to their vectors, row by row


class Embedder:
    """A local Hugging Face encoder folder; vectors are L2-normalised, so a dot product is cosine similarity. The
    weights load at the first `embed`, so an embedder whose cached vectors suffice costs nothing."""

    def __init__(self, folder: Path, sha256: str = "") -> None:
        weights = next((folder / name for name in ("model.safetensors", "pytorch_model.bin")
                        if (folder / name).exists()), None)
        digest = sha256 or (sha256_file(weights) if weights else "unknown")
        self.name = f"{folder.name}:{digest[:12]}"
        self.folder = folder

    @cached_property
    def _loaded(self) -> tuple[Any, Any, Any]:
        """The tokenizer, the model and its device."""
        import torch
        from transformers import AutoModel, AutoTokenizer

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model = AutoModel.from_pretrained(str(self.folder), local_files_only=True, use_safetensors=True)
        return AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True), model.eval().to(device), device

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        tokenizer, model, device = self._loaded
        vectors = []
        with torch.inference_mode():
            for start in range(0, len(texts), BATCH):
                batch = tokenizer(list(texts[start : start + BATCH]), padding=True, truncation=True,
                                  max_length=MAX_TOKENS, return_tensors="pt").to(device)
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                vectors.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
        return np.concatenate(vectors).astype(np.float32) if vectors else np.zeros((0, 0), np.float32)


def embeddings(store: Store, embedder: Embedder, examples: Sequence[Example], name: str = "",
               text: Callable[[Example], str] | None = None) -> np.ndarray:
    """Vectors for `examples` in order, computing and storing only the ones not cached yet; `text` embeds another
    part of each example than its text, cached under `name` instead of the embedder's."""
    name = name or embedder.name
    cached = store.embeddings(name, [example.id for example in examples])
    missing = [example for example in examples if example.id not in cached]
    if missing:
        fresh = embedder.embed([text(example) if text else example.text for example in missing])
        store.save_embeddings(name, [(e.id, v) for e, v in zip(missing, fresh, strict=True)])
        cached.update({example.id: vector for example, vector in zip(missing, fresh, strict=True)})
    if not examples:
        return np.zeros((0, 0), np.float32)
    return np.stack([cached[example.id] for example in examples])


class StoredEmbedder:
    """An embedder whose vectors are cached in a project's store, called like a function on examples."""

    def __init__(self, store: Store, embedder: Embedder, view: str = "",
                 text: Callable[[Example], str] | None = None) -> None:
        self.store = store
        self.embedder = embedder
        self.name = f"{embedder.name}#{view}" if view else embedder.name
        self.text = text

    def reading(self, view: str, text: Callable[[Example], str]) -> StoredEmbedder:
        """The same embedder on `text(example)` instead of the whole text, its vectors cached as `view`'s."""
        return StoredEmbedder(self.store, self.embedder, view, text)

    def __call__(self, examples: Sequence[Example]) -> np.ndarray:
        return embeddings(self.store, self.embedder, examples, self.name, self.text)

    def texts(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of loose texts such as entity mentions (not examples: not cached)."""
        return self.embedder.embed(list(texts)) if texts else np.zeros((0, 0), np.float32)
