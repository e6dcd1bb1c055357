"""The student: fine-tunes a small encoder on LLM and/or gold labels and saves it as safetensors (torch lives here).

Heads: classification over the mean of the encoder states (or the checkpoint's own sequence-classification head),
token classification (first sub-word carries the BIO tag), and LLMaAA's relation classifier over the encoder states at
the [E1] and [E2] markers.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from .config import TASK_EPOCHS, TrainConfig, default_learning_rate
from .encoding import MARKERS, Encoded, InputEncoder, StudentSpec, bio_labels, decode
from .errors import LlmaaaError
from .metrics import significantly_better
from .models import resolve, sha256_file, verified_sha256
from .project import Project
from .records import Example, Label
from .tasks import task_for


@dataclass(frozen=True)
class TrainProgress:
    phase: str
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    validation_loss: float | None = None
    validation_score: float | None = None  # the task's main metric at the epoch's end, named by `validation_metric`
    validation_metric: str = ""


@dataclass(frozen=True)
class TrainReport:
    run_id: int
    artifact_id: int
    folder: Path
    trained_on: int
    discarded: int
    best_epoch: int
    metrics: dict[str, Any]
    seconds: float


class Evaluation(NamedTuple):
    """A student on gold-labeled examples: mean loss, the task's metrics (with their count `n`), and whether each
    example got exactly its gold label (what the sign test between two epochs compares)."""

    loss: float
    scores: dict[str, Any]
    right: list[bool]


class Kept(NamedTuple):
    """The epoch early stopping may go back to: the highest validation score so far (a tie: the later epoch)."""

    epoch: int
    score: float
    right: list[bool]
    state: dict[str, torch.Tensor]


class StudentModel(nn.Module):
    """One of the heads behind `forward(input_ids, attention_mask, markers) -> logits`."""

    def __init__(self, spec: StudentSpec, source: Path, vocabulary: int | None = None) -> None:
        super().__init__()
        from transformers import AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification

        self.spec = spec
        names = {"id2label": dict(enumerate(spec.labels)), "label2id": {n: i for i, n in enumerate(spec.labels)}}
        if spec.head_file is None:
            auto = AutoModelForTokenClassification if spec.task == "ner" else AutoModelForSequenceClassification
            self.net = auto.from_pretrained(str(source), num_labels=len(spec.labels), ignore_mismatched_sizes=True,
                                            local_files_only=True, use_safetensors=True, **names)
            return
        self.net = AutoModel.from_pretrained(str(source), local_files_only=True, use_safetensors=True)
        if vocabulary is not None:
            self.net.resize_token_embeddings(vocabulary)
        hidden = self.net.config.hidden_size
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(2 * hidden if spec.task == "re" else hidden, len(spec.labels))
        if (source / spec.head_file).exists():
            from safetensors.torch import load_file

            self.head.load_state_dict(load_file(str(source / spec.head_file)))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                markers: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits_and_embeddings(input_ids, attention_mask, markers)[0]

    def logits_and_embeddings(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                              markers: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits, and one vector per example (mean of the last layer; the marker pair for relations)."""
        if self.spec.head_file is None:
            output = self.net(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
            return output.logits, _mean(output.hidden_states[-1], attention_mask)
        states = self.net(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.spec.task == "re":
            assert markers is not None
            rows = torch.arange(states.shape[0], device=states.device)
            vector = torch.cat([states[rows, markers[:, 0]], states[rows, markers[:, 1]]], dim=-1)
        else:
            vector = _mean(states, attention_mask)
        return self.head(self.dropout(vector)), vector

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.net.save_pretrained(str(folder), safe_serialization=True)
        if self.spec.head_file is not None:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(folder / self.spec.head_file))
        self.spec.save(folder)


def _mean(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def load_student(folder: Path) -> tuple[StudentModel, InputEncoder]:
    """A saved student for inference (PyTorch), with its input encoder."""
    _require_safetensors(folder)
    spec = StudentSpec.load(folder)
    model = StudentModel(spec, folder)
    model.eval()
    return model, InputEncoder.from_folder(folder)


def per_example_loss(spec: StudentSpec, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per example; for NER the mean over the words' first sub-words."""
    if spec.task != "ner":
        return functional.cross_entropy(logits, targets, reduction="none")
    tokens = functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none", ignore_index=-100)
    counted = (targets != -100).sum(dim=1).clamp(min=1)
    return tokens.sum(dim=1) / counted


def tensors(arrays: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(value).to(device) for name, value in arrays.items()}


def fast_bf16_cpu() -> bool:
    """Whether this CPU's bf16 matrix products beat fp32: AMX (Xeon Sapphire Rapids and later: an mpnet-base
    training step 3.6x faster, MiniLM-L6 1.85x) or AVX512-BF16 (AMD Zen 4 and later, Xeon Cooper Lake: 2.13x and
    1.23x on 2 Zen 4 cores; benchmarks/bench_precision.py); on other CPUs bf16 is slower than fp32."""
    return any(getattr(torch.cpu, check, lambda: False)()
               for check in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))


def uses_bf16(device: torch.device, precision: str = "auto") -> bool:
    """With `precision` "auto", bf16 where its matrix products beat fp32: a CUDA GPU that has them, a CPU with
    `fast_bf16_cpu`."""
    if precision != "auto":
        return False
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and fast_bf16_cpu()


def mixed_precision(device: torch.device, precision: str = "auto") -> torch.autocast:
    """bf16 autocast where `uses_bf16`; weights, optimizer state and the loss stay fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(device, precision))


def arithmetic(device: torch.device, precision: str) -> str:
    """What `mixed_precision` computes in, for reports: "bf16 autocast on cpu", "fp32 on cuda"."""
    return f"{'bf16 autocast' if uses_bf16(device, precision) else 'fp32'} on {device.type}"


def predict(model: StudentModel, encoder: InputEncoder, examples: Sequence[Example], batch_size: int = 32,
            precision: str = "auto") -> list[tuple[Label, dict[str, float] | None, float]]:
    """PyTorch predictions (label, probabilities, confidence), for evaluation and (in fp32) the ONNX parity check."""
    encoded = encoder.encode(examples)
    rows = [row for logits in batch_logits(model, encoder, encoded, batch_size, precision) for row in logits]
    return [decode(encoder.spec, e, item, row) for e, item, row in zip(examples, encoded, rows, strict=True)]


def batch_logits(model: StudentModel, encoder: InputEncoder, encoded: Sequence[Encoded], batch_size: int,
                 precision: str) -> list[np.ndarray]:
    """The model's logits (fp32) for encoded inputs, one array per batch of `batch_size`, without gradients."""
    device = next(model.parameters()).device
    model.eval()
    with torch.inference_mode(), mixed_precision(device, precision):
        return [model(**tensors(encoder.batch(encoded[start : start + batch_size]), device)).float().cpu().numpy()
                for start in range(0, len(encoded), batch_size)]


def score_pool(model: StudentModel, encoder: InputEncoder, examples: Sequence[Example], batch_size: int = 32,
               ) -> tuple[list[np.ndarray], np.ndarray]:
    """For active learning: per example its label probabilities (NER: one row per word) and an embedding."""
    device = next(model.parameters()).device
    probabilities: list[np.ndarray] = []
    embeddings = []
    model.eval()
    with torch.inference_mode(), mixed_precision(device):
        for start in range(0, len(examples), batch_size):
            encoded = encoder.encode(examples[start : start + batch_size])
            logits, vectors = model.logits_and_embeddings(**tensors(encoder.batch(encoded), device))
            p = torch.softmax(logits.float(), dim=-1).cpu().numpy()
            embeddings.append(vectors.float().cpu().numpy())
            for row, item in enumerate(encoded):
                if encoder.spec.task == "ner":
                    positions = [i for i, word in enumerate(item.word_index) if word >= 0]
                    probabilities.append(p[row, positions])
                else:
                    probabilities.append(p[row])
    return probabilities, np.concatenate(embeddings) if embeddings else np.zeros((0, 0))


# --- training ------------------------------------------------------------------------------------------------------


def training_data(project: Project, config: TrainConfig) -> tuple[list[Example], list[float], int]:
    """Pool examples with their newest LLM label (as `label`), loss weights, and how many were discarded.

    Labels under `min_confidence` are dropped, then all but the `keep_top` most confident share of each label (NER: of
    all sentences). Weights are the confidences (when `confidence_weights`), and for classification with `balance`
    scaled so that every label carries the same total weight: a teacher that says "positive" three times in four
    should not teach the student that prior."""
    wanted = set(config.examples) if config.examples is not None else None
    labels = {eid: (label, confidence) for eid, label, confidence, _ in project.store.latest_labels(config.source,
                                                                                                      "pool")
              if wanted is None or eid in wanted}
    kept: list[tuple[Example, float | None]] = []
    discarded = 0
    for example in project.store.examples(ids=list(labels)):
        label, confidence = labels[example.id]
        if confidence is not None and confidence < config.min_confidence:
            discarded += 1
            continue
        kept.append((replace(example, label=label), confidence))
    per_label = project.settings.task != "ner"
    if config.keep_top < 1:
        chosen = most_confident(kept, config.keep_top, per_label)
        discarded += len(kept) - len(chosen)
        kept = chosen
    weights = [confidence if config.confidence_weights and confidence is not None else 1.0 for _, confidence in kept]
    if config.balance and project.settings.task == "classify" and kept:
        counts = Counter(example.label for example, _ in kept)
        weights = [w * len(kept) / (len(counts) * counts[example.label]) for w, (example, _) in zip(weights, kept,
                                                                                                  strict=True)]
    return [example for example, _ in kept], weights, discarded


def most_confident(labeled: list[tuple[Example, float | None]], share: float, per_label: bool,
                   ) -> list[tuple[Example, float | None]]:
    """The `share` (rounded up) most confident of each label's examples, in their original order; labels without a
    confidence (imported so) are always kept."""
    groups: dict[Any, list[int]] = {}
    for index, (example, _) in enumerate(labeled):
        groups.setdefault(example.label if per_label else None, []).append(index)
    confidence = [math.inf if c is None else c for _, c in labeled]
    keep: set[int] = set()
    for indexes in groups.values():
        ranked = sorted(indexes, key=lambda i: -confidence[i])
        keep.update(ranked[: math.ceil(share * len(indexes))])
    return [item for index, item in enumerate(labeled) if index in keep]


class Trainer:
    """Trains one student for a project; the loss and batching are the same for every task."""

    def __init__(self, project: Project, config: TrainConfig, models_dir: Path,
                 on_progress: Callable[[TrainProgress], None] | None = None,
                 on_epoch: Callable[[StudentModel, InputEncoder], dict[str, float]] | None = None) -> None:
        """`on_epoch` measures the model after each epoch (benchmarks: test accuracy); its figures join the
        epoch's row of the run history."""
        self.project = project
        self.config = config
        self.settings = project.settings
        self.base = resolve(config.student, models_dir, "hf")
        _check_student_folder(self.base, config.max_length)
        verified_sha256(self.base, models_dir)
        self.on_progress = on_progress
        self.on_epoch = on_epoch
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def run(self) -> TrainReport:
        started = time.perf_counter()
        config = self.config
        from transformers import set_seed

        set_seed(config.seed)
        previous_threads = torch.get_num_threads()
        if config.threads:
            torch.set_num_threads(config.threads)
        llm_data, weights, discarded = training_data(self.project, config) if config.data != "gold" else ([], [], 0)
        gold = list(self.project.store.examples("demo"))
        validation = list(self.project.store.examples("dev")) or gold
        phases = {"llm": [("llm", llm_data, weights)], "gold": [("gold", gold, [1.0] * len(gold))],
                  "combined": [("llm", llm_data, weights), ("gold", gold, [1.0] * len(gold))]}[config.data]
        for name, data, _ in phases:
            if not data:
                raise LlmaaaError(f"no {name} labels to train on: " + (
                    "run `annotate` first (or lower --min-confidence)" if name == "llm" else
                    "import gold data with `import gold FILE --split demo`"))
        store = self.project.store
        store.close_interrupted_runs()
        run_id = store.start_student_run(str(self.base), config.data, asdict(config), config.round_id)
        try:
            model, encoder, tokenizer = self._fresh_model()
            best_epoch, history = 0, list[dict[str, Any]]()
            for name, data, data_weights in phases:
                best_epoch, phase_history = self._fit(model, encoder, name, data, data_weights, validation)
                history += phase_history
            folder = self.project.artifacts / "students" / f"run-{run_id:04d}"
            model.save(folder)
            tokenizer.save_pretrained(str(folder))
            metrics = {**self._metrics(model, encoder, validation, history, best_epoch),
                       "arithmetic": arithmetic(self.device, config.precision)}
            digest = sha256_file(folder / "model.safetensors")
            artifact_id = store.add_artifact(run_id, "checkpoint", str(folder), digest, {"spec": asdict(encoder.spec)})
            store.finish_student_run(run_id, "done", metrics)
        except BaseException as error:
            store.finish_student_run(run_id, "failed", {"error": str(error)})
            raise
        finally:
            torch.set_num_threads(previous_threads)
        trained_on = len(llm_data) + (len(gold) if config.data != "llm" else 0)
        return TrainReport(run_id, artifact_id, folder, trained_on, discarded, best_epoch, metrics,
                           time.perf_counter() - started)

    def _fresh_model(self) -> tuple[StudentModel, InputEncoder, Any]:
        from transformers import AutoTokenizer

        labels = self.settings.label_names
        spec_labels = bio_labels(labels) if self.settings.task == "ner" else labels
        config = self.config
        classify = self.settings.task == "classify"
        spec = StudentSpec(self.settings.task, spec_labels, config.max_length, config.student,
                           config.pooling if classify else "cls",
                           config.max_length // 4 if classify and config.truncation == "head+tail" else 0)
        tokenizer = AutoTokenizer.from_pretrained(str(self.base), local_files_only=True)
        if spec.task == "re":
            tokenizer.add_special_tokens({"additional_special_tokens": list(MARKERS)})
        model = StudentModel(spec, self.base, vocabulary=len(tokenizer) if spec.task == "re" else None)
        from tokenizers import Tokenizer

        fast = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        return model.to(self.device), InputEncoder(fast, spec), tokenizer

    def _fit(self, model: StudentModel, encoder: InputEncoder, phase: str, data: list[Example],
             weights: list[float], validation: list[Example]) -> tuple[int, list[dict[str, Any]]]:
        """Train up to `epochs` (more when that is fewer than `min_steps` steps) and keep the last epoch's weights,
        annealed by the schedule, unless an earlier epoch is clearly better on the held-out gold examples by the
        task's main metric (`selection_metric`, with a sign test over the examples where the two differ); after
        `patience` such epochs in a row the run stops early and keeps the best one. Not by validation loss, which
        rises with confidence on noisy LLM labels while accuracy still improves, nor by the bare best score: on a
        hundred gold examples epochs a few points apart are a coin toss, and both rules kept weaker IMDb students
        than the last epoch (README, "early stopping"). A validation set that shares examples with `data` (gold
        training without a dev split) measures memorisation, not learning: then the whole schedule runs."""
        from transformers import get_linear_schedule_with_warmup

        config = self.config
        held_out = {e.id for e in validation}.isdisjoint(e.id for e in data)
        encoded = encoder.encode(data)
        valid_encoded = encoder.encode(validation)
        rate = config.learning_rate or default_learning_rate(model.net.config.hidden_size)
        optimizer = torch.optim.AdamW(model.parameters(), lr=rate, weight_decay=0.01)
        steps_per_epoch = (len(data) + config.batch_size - 1) // config.batch_size
        epochs = max(config.epochs or TASK_EPOCHS[self.settings.task], -(-config.min_steps // steps_per_epoch))
        total = steps_per_epoch * epochs
        schedule = get_linear_schedule_with_warmup(optimizer, total // 10, total)
        order = np.random.default_rng(config.seed)
        gold = list(self.project.store.examples("demo")) if config.reweight and phase == "llm" else []
        gold_encoded = encoder.encode(gold)
        best: Kept | None = None
        kept, stale = 0, 0
        history: list[dict[str, Any]] = []
        weight_array = np.array(weights, dtype=np.float32)
        for epoch in range(1, epochs + 1):
            model.train()
            losses = []
            permutation = order.permutation(len(data))
            for step, start in enumerate(range(0, len(data), config.batch_size)):
                chosen = permutation[start : start + config.batch_size]
                items = [encoded[i] for i in chosen]
                examples = [data[i] for i in chosen]
                arrays = encoder.batch(items)
                targets = torch.from_numpy(encoder.targets(examples, items)).to(self.device)
                inputs = tensors(arrays, self.device)
                batch_weights = torch.from_numpy(weight_array[chosen]).to(self.device)
                if gold:
                    batch_weights = batch_weights * self._learned_weights(model, encoder, inputs, targets, gold,
                                                                          gold_encoded, order, schedule)
                with mixed_precision(self.device, config.precision):
                    logits = model(**inputs)
                loss_each = per_example_loss(encoder.spec, logits.float(), targets)
                loss = (loss_each * batch_weights).sum() / batch_weights.sum().clamp(min=1e-8)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                losses.append(loss.item())
                if self.on_progress:
                    self.on_progress(TrainProgress(phase, epoch, epochs, step + 1, steps_per_epoch,
                                                   float(np.mean(losses))))
            validation_loss, scores, right = self._evaluate(model, encoder, validation, valid_encoded)
            metric, score = selection_metric(scores)
            history.append({"phase": phase, "epoch": epoch, "train_loss": float(np.mean(losses)),
                            "validation_loss": validation_loss, "validation_score": score,
                            "learning_rate": schedule.get_last_lr()[0],
                            **(self.on_epoch(model, encoder) if self.on_epoch else {})})
            if self.on_progress:
                self.on_progress(TrainProgress(phase, epoch, epochs, steps_per_epoch, steps_per_epoch,
                                               float(np.mean(losses)), validation_loss, score, metric))
            if not held_out:
                kept = epoch
                continue
            if best is None or score >= best.score:
                best = Kept(epoch, score, right, copy.deepcopy(model.state_dict()))
            if significantly_better(best.score, best.right, score, right):
                kept, stale = best.epoch, stale + 1
                if stale >= config.patience:
                    break
            else:
                kept, stale = epoch, 0
        if best is not None and kept == best.epoch != epoch:
            model.load_state_dict(best.state)
        return kept, history

    def _learned_weights(self, model: StudentModel, encoder: InputEncoder, inputs: dict[str, torch.Tensor],
                         targets: torch.Tensor, gold: list[Example], gold_encoded: list[Encoded],
                         rng: np.random.Generator, schedule: torch.optim.lr_scheduler.LambdaLR) -> torch.Tensor:
        from .reweight import example_weights

        picked = rng.choice(len(gold), size=min(self.config.batch_size, len(gold)), replace=False)
        items, examples = [gold_encoded[i] for i in picked], [gold[i] for i in picked]
        gold_inputs = tensors(encoder.batch(items), self.device)
        gold_targets = torch.from_numpy(encoder.targets(examples, items)).to(self.device)
        spec = encoder.spec
        return example_weights(model, inputs, targets, gold_inputs, gold_targets,
                               lambda logits, t: per_example_loss(spec, logits, t), float(schedule.get_last_lr()[0]))

    def _metrics(self, model: StudentModel, encoder: InputEncoder, validation: list[Example],
                 history: list[dict[str, Any]], best_epoch: int) -> dict[str, Any]:
        metrics: dict[str, Any] = {"best_epoch": best_epoch, "history": history}
        for split, examples in (("validation", validation), ("test", list(self.project.store.examples("test")))):
            if examples:
                metrics[split] = self._evaluate(model, encoder, examples).scores
        if validation:
            metrics["selected_by"] = selection_metric(metrics["validation"])[0]
        return metrics

    def _evaluate(self, model: StudentModel, encoder: InputEncoder, examples: list[Example],
                  encoded: list[Encoded] | None = None) -> Evaluation:
        """One pass over gold-labeled examples gives both the loss and the predictions the metrics score."""
        encoded = encoder.encode(examples) if encoded is None else encoded
        total, predicted = 0.0, dict[str, Label]()
        batches = batch_logits(model, encoder, encoded, 64, self.config.precision)
        for start, logits in zip(range(0, len(examples), 64), batches, strict=True):
            items, chunk = encoded[start : start + 64], examples[start : start + 64]
            targets = torch.from_numpy(encoder.targets(chunk, items))
            total += float(per_example_loss(encoder.spec, torch.from_numpy(logits), targets).sum())
            predicted |= {e.id: decode(encoder.spec, e, item, logits[i])[0]
                          for i, (e, item) in enumerate(zip(chunk, items, strict=True))}
        gold = {e.id: e.label for e in examples if e.label is not None}
        metrics = task_for(self.settings).metrics(gold, predicted, {e.id: e for e in examples})
        return Evaluation(total / max(len(examples), 1), {"n": len(gold), **metrics},
                          [predicted[i] == label for i, label in gold.items()])


def selection_metric(scores: dict[str, Any]) -> tuple[str, float]:
    """The metric that chooses the epoch: entity F1 (NER), micro-F1 without the no-relation label (relations), else
    macro-F1, so that a student answering the majority label for everything never looks best."""
    name = "f1" if "f1" in scores else "macro_f1"
    return name, float(scores[name])


def _check_student_folder(folder: Path, max_length: int) -> None:
    """Fail early, naming the folder, when it cannot be a student: no weights, no tokenizer, too few positions."""
    _require_safetensors(folder)
    if not any((folder / name).exists() for name in ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model")):
        raise LlmaaaError(f"{folder}: no tokenizer files (tokenizer.json or vocab.txt) in this student folder")
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise LlmaaaError(f"{folder}/config.json: cannot read it ({error})") from None
    positions = int(config.get("max_position_embeddings", 512))
    if config.get("model_type") in ("roberta", "xlm-roberta", "camembert"):
        positions -= 2  # their position ids start after the padding index
    if max_length > positions:
        raise LlmaaaError(f"--max-length {max_length} is longer than the {positions} positions of {folder.name}: "
                          f"use --max-length {positions} or less")


def _require_safetensors(folder: Path) -> None:
    """Weights load from model.safetensors only: a pickle (pytorch_model.bin) can run code when it is loaded."""
    if not (folder / "model.safetensors").exists():
        found = " (it has pytorch_model.bin: pickled weights are not loaded; save the model with "\
            "safe_serialization=True)" if (folder / "pytorch_model.bin").exists() else ""
        raise LlmaaaError(f"{folder}: no model.safetensors in this student folder{found}")
