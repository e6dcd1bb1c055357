"""Full-corpus labeling with the exported student on ONNX Runtime: length-bucketed batches, streamed from and to
SQLite in chunks, resumable (examples already labeled by the same export are skipped)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .encoding import Encoded, InputEncoder, decode, mean_pool
from .errors import LlmaaaError
from .project import Project
from .records import Example, Label
from .store import Artifact

CHUNK = 2048
# Padded tokens per ONNX batch (~8 IMDb reviews of 128 sub-words). Small batches keep activations in cache: the int8
# MiniLM student ran at 119 docs/s with 8 reviews a batch against 101 with 64 (2 threads, benchmarks/).
BATCH_TOKENS = 1024


class OnnxStudent:
    """An exported student loaded in ONNX Runtime; predicts like the PyTorch student."""

    def __init__(self, folder: Path, file_name: str, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        path = folder / file_name
        if not path.exists():
            raise LlmaaaError(f"{path}: exported model file is missing; run `llmaaa-local export` again")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = {item.name for item in self.session.get_inputs()}
        self.encoder = InputEncoder.from_folder(folder)
        self.spec = self.encoder.spec
        self.head: tuple[np.ndarray, np.ndarray] | None = None
        if self.spec.head_file is not None:
            from safetensors.numpy import load_file

            weights = load_file(str(folder / self.spec.head_file))
            self.head = (weights["weight"], weights["bias"])

    def logits(self, encoded: Sequence[Encoded]) -> np.ndarray:
        arrays = self.encoder.batch(encoded)
        feed = {name: arrays[name] for name in ("input_ids", "attention_mask") if name in self.inputs}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = np.zeros_like(arrays["input_ids"])
        output = self.session.run(None, feed)[0]
        if self.head is None:
            return output
        if self.spec.task == "re":
            rows, markers = np.arange(len(encoded)), arrays["markers"]
            vector = np.concatenate([output[rows, markers[:, 0]], output[rows, markers[:, 1]]], axis=-1)
        else:
            vector = mean_pool(output, arrays["attention_mask"])
        return vector @ self.head[0].T + self.head[1]

    def predict(self, examples: Sequence[Example], batch_tokens: int = BATCH_TOKENS,
                ) -> list[tuple[Label, dict[str, float] | None, float]]:
        """Predictions in input order; inside, examples of similar length share a batch (less padding)."""
        encoded = self.encoder.encode(examples)
        order = sorted(range(len(examples)), key=lambda i: len(encoded[i].ids))
        results: list[tuple[Label, dict[str, float] | None, float] | None] = [None] * len(examples)
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and (end - start + 1) * len(encoded[order[end]].ids) <= batch_tokens:
                end += 1
            batch = order[start:end]
            logits = self.logits([encoded[i] for i in batch])
            for row, i in enumerate(batch):
                results[i] = decode(self.spec, examples[i], encoded[i], logits[row])
            start = end
        return [result for result in results if result is not None]


@dataclass
class LabelProgress:
    total: int
    done: int = 0
    skipped: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def docs_per_second(self) -> float:
        elapsed = time.perf_counter() - self.started
        return (self.done - self.skipped) / elapsed if elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        rate = self.docs_per_second
        return (self.total - self.done) / rate if rate else None


@dataclass(frozen=True)
class LabelReport:
    artifact_id: int
    labeled: int
    skipped: int
    seconds: float


def latest_export(project: Project, int8: bool | None = None) -> Artifact:
    """The newest exported student (int8 when present, unless `int8` says otherwise)."""
    kinds = {True: ["onnx-int8"], False: ["onnx"], None: ["onnx-int8", "onnx"]}[int8]
    for artifact in project.store.artifacts():
        if artifact.kind in kinds:
            return artifact
    raise LlmaaaError("no exported student: run `llmaaa-local train` and `llmaaa-local export` first")


Predict = Callable[[Sequence[Example]], list[tuple[Label, dict[str, float] | None, float]]]
PredictorFactory = Callable[[Path, str, int | None, int], Predict]


def local_predictor(folder: Path, file_name: str, threads: int | None, batch_tokens: int) -> Predict:
    """The export in this process's ONNX Runtime."""
    student = OnnxStudent(folder, file_name, threads)
    return lambda examples: student.predict(examples, batch_tokens)


def label_corpus(project: Project, int8: bool | None = None, threads: int | None = None,
                 batch_tokens: int = BATCH_TOKENS, on_progress: Callable[[LabelProgress], None] | None = None,
                 predictor: PredictorFactory = local_predictor, chunk_size: int | None = None) -> LabelReport:
    """Label every example of the project with the newest export; rerunning continues where it stopped.

    `predictor` makes the function that predicts a chunk of `chunk_size` examples (default CHUNK) here or on Ray
    workers; the chunks are read from and their predictions written to the store here, one transaction each."""
    started = time.perf_counter()
    artifact = latest_export(project, int8)
    predict = predictor(Path(artifact.path), artifact.info["file"], threads, batch_tokens)
    chunk_size = chunk_size or CHUNK
    store = project.store
    done = store.predicted_ids(artifact.id)
    ids = store.example_ids(None)
    progress = LabelProgress(total=len(ids))
    for start in range(0, len(ids), chunk_size):
        chunk = [i for i in ids[start : start + chunk_size] if i not in done]
        progress.done += len(ids[start : start + chunk_size]) - len(chunk)
        progress.skipped += len(ids[start : start + chunk_size]) - len(chunk)
        if chunk:
            examples = list(store.examples(ids=chunk))
            predictions = predict(examples)
            store.add_predictions(artifact.id, [(e.id, label, probs, confidence)
                                                for e, (label, probs, confidence) in zip(examples, predictions,
                                                                                         strict=True)])
            progress.done += len(chunk)
        if on_progress is not None:
            on_progress(progress)
    return LabelReport(artifact.id, progress.done - progress.skipped, progress.skipped,
                       time.perf_counter() - started)
