"""Exports a trained student to ONNX with optimum, fuses the graph with ONNX Runtime, quantises the fused graph to
dynamic int8, and checks parity against the PyTorch student; an export past tolerance fails loudly and is not
registered.

Students with a head of their own (relations, mean-pooled classification) export their encoder (feature extraction);
the small head runs in numpy at labeling time.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .encoding import SPEC_FILE, StudentSpec
from .errors import LlmaaaError
from .labeler import OnnxStudent
from .models import sha256_file
from .project import Project
from .records import Example, Label
from .spans import spans_to_tags

EXPORT_TASKS = {"classify": "text-classification", "ner": "token-classification"}  # else the encoder alone
FP32_FILE = "model_optimized.onnx"
INT8_FILE = "model_quantized.onnx"


@dataclass(frozen=True)
class ExportConfig:
    """Parity limits: fp32 must agree everywhere; int8 may flip a few borderline examples (where one flip moves a
    confident probability almost all the way), but not drift on average."""

    int8: bool = True
    parity_examples: int = 200
    fp32_max_difference: float = 1e-3  # largest |p_torch - p_onnx| over all labels and examples
    int8_min_agreement: float = 0.95
    int8_mean_difference: float = 0.05  # mean over examples of the largest |p_torch - p_int8| over labels
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.parity_examples < 1:
            raise LlmaaaError("the parity check needs at least one example")
        if not 0 <= self.int8_min_agreement <= 1 or self.fp32_max_difference < 0 or self.int8_mean_difference < 0:
            raise LlmaaaError("parity limits: agreement in 0..1, differences 0 or more")


@dataclass(frozen=True)
class ExportReport:
    folder: Path
    artifacts: dict[str, int]  # kind -> artifact id
    parity: dict[str, dict[str, float]]
    seconds: float


def export_student(project: Project, config: ExportConfig, run_id: int | None = None) -> ExportReport:
    started = time.perf_counter()
    store = project.store
    checkpoints = [a for a in store.artifacts("checkpoint") if run_id is None or a.run_id == run_id]
    if not checkpoints:
        raise LlmaaaError("no trained student to export: run `llmaaa-local train` first" if run_id is None
                          else f"student run {run_id} has no checkpoint")
    checkpoint = checkpoints[0]
    source = Path(checkpoint.path)
    spec = StudentSpec.load(source)
    folder = project.artifacts / "onnx" / f"run-{checkpoint.run_id:04d}"
    staging = folder.with_name(folder.name + ".partial")  # a failed export leaves the registered one intact
    if staging.exists():
        shutil.rmtree(staging)
    _export(source, staging, spec, config.int8)
    files = {"onnx": FP32_FILE, **({"onnx-int8": INT8_FILE} if config.int8 else {})}
    examples = _held_out(project, config.parity_examples)
    reference = reference_predictions(source, examples)
    parity = {kind: _parity(spec, examples, reference, OnnxStudent(staging, name, config.threads).predict(examples))
              for kind, name in files.items()}
    _check(parity, config)
    if folder.exists():
        shutil.rmtree(folder)
    staging.replace(folder)
    ids = {}
    with store.transaction():
        for kind, name in files.items():
            info = {"file": name, "parity": parity[kind], "spec": spec.__dict__, "checkpoint": checkpoint.id}
            ids[kind] = store.add_artifact(checkpoint.run_id, kind, str(folder), sha256_file(folder / name), info)
    return ExportReport(folder, ids, parity, time.perf_counter() - started)


def _export(source: Path, folder: Path, spec: StudentSpec, int8: bool) -> None:
    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import OptimizationConfig

    raw = folder / "raw"
    with contextlib.redirect_stdout(io.StringIO()):
        task = "feature-extraction" if spec.head_file else EXPORT_TASKS[spec.task]
        main_export(str(source), output=str(raw), task=task, local_files_only=True,
                    do_validation=False, library_name="transformers")
        ORTOptimizer.from_pretrained(str(raw), file_names=["model.onnx"]).optimize(
            OptimizationConfig(optimization_level=2), save_dir=str(folder))
        if int8:
            _quantize(folder / FP32_FILE, folder / INT8_FILE)
    for name in ("tokenizer.json", SPEC_FILE, spec.head_file):
        if name and (source / name).exists():
            shutil.copy2(source / name, folder / name)
    shutil.rmtree(raw)


def _quantize(fused: Path, target: Path) -> None:
    """Dynamic int8 (uint8 activations, int8 weights) of the fused graph, so that attention runs as one quantised
    op; one scale per output channel: with one scale per tensor an IMDb MiniLM student lost 2.3 points of accuracy,
    per channel none. On IMDb reviews this ran 1.9x PyTorch where int8 of the unfused graph ran 1.7x (benchmarks/)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.WARNING)  # its advice to pre-process the model, printed through the root logger
    try:  # the fused ops carry no shape information for the quantizer's type inference: their outputs are float
        quantize_dynamic(fused, target, per_channel=True, weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        logging.disable(logging.NOTSET)


def _held_out(project: Project, count: int) -> list[Example]:
    """Parity examples: the gold test split, else the pool (labels are not needed)."""
    examples = list(project.store.examples("test"))[:count]
    if len(examples) < count:
        examples += list(project.store.examples("pool"))[: count - len(examples)]
    if not examples:
        raise LlmaaaError("the project has no examples to check the export on")
    return examples


def reference_predictions(source: Path, examples: list[Example]) -> list[tuple[Label, dict[str, float] | None, float]]:
    """The PyTorch student's predictions that its ONNX graphs must match: in fp32, whatever `train` computed in."""
    from .student import load_student, predict

    model, encoder = load_student(source)
    return predict(model, encoder, examples, precision="fp32")


def _parity(spec: StudentSpec, examples: list[Example], reference: list[tuple[Label, dict[str, float] | None, float]],
            exported: list[tuple[Label, dict[str, float] | None, float]]) -> dict[str, float]:
    """Agreement of the predicted labels (NER: of the words' tags), and the largest and mean (over examples)
    probability difference."""
    if spec.task == "ner":
        agree = [tag_a == tag_b
                 for e, a, b in zip(examples, reference, exported, strict=True)
                 for tag_a, tag_b in zip(_tags(e, a[0]), _tags(e, b[0]), strict=True)]
    else:
        agree = [a[0] == b[0] for a, b in zip(reference, exported, strict=True)]
    differences = [_difference(a, b) for a, b in zip(reference, exported, strict=True)]
    return {"n": len(examples), "agreement": float(np.mean(agree)), "max_difference": float(max(differences)),
            "mean_difference": float(np.mean(differences))}


def _difference(a: tuple[Label, dict[str, float] | None, float], b: tuple[Label, dict[str, float] | None, float],
                ) -> float:
    """One example's largest |p_torch - p_onnx|: over its label probabilities and its confidence."""
    gaps = [abs(a[2] - b[2])]
    if a[1] is not None and b[1] is not None:
        gaps += [abs(a[1][k] - b[1][k]) for k in a[1]]
    return max(gaps)


def _tags(example: Example, label: Label) -> list[str]:
    return spans_to_tags(label if isinstance(label, tuple) else (), len(example.tokens or ()))


def _check(parity: dict[str, dict[str, float]], config: ExportConfig) -> None:
    fp32 = parity["onnx"]
    if fp32["agreement"] < 1.0 or fp32["max_difference"] > config.fp32_max_difference:
        raise LlmaaaError(f"ONNX export differs from the PyTorch student: agreement {fp32['agreement']:.3f}, largest "
                          f"probability difference {fp32['max_difference']:.2e} (limit {config.fp32_max_difference})")
    int8 = parity.get("onnx-int8")
    if int8 and (int8["agreement"] < config.int8_min_agreement or
                 int8["mean_difference"] > config.int8_mean_difference):
        raise LlmaaaError(f"int8 export drifts too far from the PyTorch student: agreement {int8['agreement']:.3f} "
                          f"(limit {config.int8_min_agreement}), mean probability difference "
                          f"{int8['mean_difference']:.3f} (limit {config.int8_mean_difference}); export with --no-int8")
