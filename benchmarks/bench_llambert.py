"""LlamBERT's IMDb experiment (issue 14): students on N Llama-2-70b-chat labels vs the same N gold labels.

For each N the same N random IMDb train reviews are imported twice as annotations: with the LlamBERT authors'
Llama-2-70b-chat answers (../shared/data/imdb/llama2_70b_train.jsonl) and, as the control, with their gold labels.
A student trains on each (`train --data llm --source import:…`, early stopping on 100 other gold train reviews), and
is scored on --test IMDb test reviews; beside it, logistic regression on the frozen, mean-pooled embeddings of the same
encoder and labels (the floor fine-tuning must clear). Then the student is exported (int8) and its labeling speed and
accuracy measured on the same test reviews.

On a CPU with AMX or AVX512-BF16, `train` computes in bf16 autocast (`--precision auto`); `--precisions auto,fp32`
trains each student both ways, side by side, and `--epochs 3,10` with both schedule lengths. `--each-epoch` also
scores every epoch on the test reviews (the "each epoch" column), to see which epoch early stopping should have kept.

Usage: python benchmarks/bench_llambert.py [--n 1000,5000] [--test 2000] [--students minilm-l6,mpnet-base]
           [--variants mean/head+tail,cls/head] [--precisions auto,fp32] [--epochs 3,10] [--each-epoch]
           [--no-frozen] [--threads 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from shared_data import DATA, records, write

from llmaaa_local.config import TASK_EPOCHS, LabelInfo, ProjectSettings, TrainConfig
from llmaaa_local.embedder import Embedder, embeddings
from llmaaa_local.encoding import InputEncoder
from llmaaa_local.export import ExportConfig, export_student
from llmaaa_local.labeler import OnnxStudent
from llmaaa_local.models import default_models_dir, resolve
from llmaaa_local.project import Project
from llmaaa_local.records import Example
from llmaaa_local.student import StudentModel, Trainer, predict

LABELS = (LabelInfo("positive", "the reviewer liked the film"), LabelInfo("negative", "the reviewer disliked the film"))
LLAMBERT = [  # the paper's rows (full IMDb test set, 25k training labels)
    ("LlamBERT: Llama-2-70b-chat teacher, 0-shot", "", 0.9540),
    ("LlamBERT: DistilBERT on 25k Llama-2 labels", "gold 0.9123", 0.9077),
    ("LlamBERT: RoBERTa-large on 25k Llama-2 labels", "gold 0.9654", 0.9483),
    ("LlamBERT: RoBERTa-large on 200 Llama-2 labels", "", 0.9403),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="1000,5000", help="training set sizes, comma-separated")
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--students", default="minilm-l6,mpnet-base")
    parser.add_argument("--variants", default="mean/head+tail",
                        help="pooling/truncation pairs to train, comma-separated (e.g. mean/head+tail,cls/head)")
    parser.add_argument("--sources", default="llama2,gold", help="label sources to train on: llama2, gold")
    parser.add_argument("--precisions", default="auto", help="train --precision values, comma-separated")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--epochs", default=str(TASK_EPOCHS["classify"]),
                        help="train --epochs values, comma-separated (the most epochs; the learning rate decays to "
                             "zero over them)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate [default: the trainer's rule]")
    parser.add_argument("--each-epoch", action="store_true",
                        help="score every epoch on the test reviews (a PyTorch pass over them per epoch, counted in "
                             "the train time)")
    parser.add_argument("--no-export", action="store_true", help="skip the int8 export and the speed figure")
    parser.add_argument("--no-frozen", action="store_true",
                        help="skip logistic regression on frozen embeddings (embedding N + test reviews with a "
                             "base-size encoder takes minutes on 2 cores)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-llambert-"))
    root.mkdir(parents=True, exist_ok=True)
    models = default_models_dir()
    train = records(DATA / "imdb" / "train.jsonl.gz")
    llama = {row["id"]: row["llama2_70b_chat"] for row in records(DATA / "imdb" / "llama2_70b_train.jsonl")}
    test = random.Random(3).sample(records(DATA / "imdb" / "test.jsonl.gz"), args.test)
    order = random.Random(1).sample(train, len(train))
    validation, rest = order[:100], order[100:]
    print(f"IMDb: {args.test} test reviews, 100 gold train reviews for early stopping; {args.threads} threads",
          flush=True)
    print(f"{'student':12} {'variant':15} {'arith':5} {'N':>6} {'labels':7} {'accuracy':>8} {'frozen+LR':>9} "
          f"{'gain':>6} {'epochs':>6} {'train s':>8} {'s/1k':>6} {'int8 acc':>8} {'int8 docs/s':>11}"
          f"{'  each epoch' if args.each_epoch else ''}", flush=True)
    results: list[dict[str, Any]] = []
    for n in (int(x) for x in args.n.split(",")):
        pool = rest[:n]  # nested: the 1,000 are the first 1,000 of the 5,000
        agreement = sum(llama[row["id"]] == row["label"] for row in pool) / n
        project = _project(root / f"n{n}", pool, validation, test, llama)
        for student in args.students.split(","):
            frozen = (dict.fromkeys(("llama2", "gold"), float("nan")) if args.no_frozen
                      else _frozen(project, student, models, pool, test, llama))
            for variant in args.variants.split(","):
                pooling, truncation = variant.split("/")
                for precision, epochs, source in itertools.product(
                        args.precisions.split(","), (int(x) for x in args.epochs.split(",")), args.sources.split(",")):
                    row = _student(args, project, models, student, pooling, truncation, precision, epochs, source)
                    row |= {"student": student, "variant": variant, "n": n, "source": source, "precision": precision,
                            "epochs": epochs, "frozen": frozen[source], "teacher_agreement": agreement}
                    results.append(row)
                    int8 = (f"{row['int8_accuracy']:8.4f} {row['int8_docs_s']:11.1f}" if "int8_accuracy" in row
                            else f"{'':8} {'':11}")
                    print(f"{student:12} {variant:15} {row['arithmetic'][:4]:5} {n:6} {source:7} "
                          f"{row['accuracy']:8.4f} {frozen[source]:9.4f} "
                          f"{(row['accuracy'] - frozen[source]) * 100:+6.1f} "
                          f"{row['best_epoch']:>3}/{row['epochs_run']:<2} {row['seconds']:8.0f} "
                          f"{row['seconds'] / n * 1000:6.0f} {int8}"
                          f"{'  ' + ' / '.join(f'{a:.4f}' for a in row['each_epoch']) if args.each_epoch else ''}",
                          flush=True)
        print(f"  (Llama-2 labels of these {n} reviews agree with gold on {agreement:.2%})", flush=True)
    print("\nLlama-2 labels vs gold labels at equal N (points):")
    for row in results:
        if row["source"] == "llama2":
            gold = next((r for r in results if r["source"] == "gold" and all(
                r[k] == row[k] for k in ("student", "variant", "n", "precision", "epochs"))), None)
            if gold:
                print(f"  {row['student']:12} {row['variant']:15} {row['arithmetic'][:4]:5} N={row['n']:<6} "
                      f"--epochs {row['epochs']:<3} "
                      f"{(row['accuracy'] - gold['accuracy']) * 100:+.2f}")
    print("\nLlamBERT (paper, full 25k test set):")
    for name, note, accuracy in LLAMBERT:
        print(f"  {name:48} {accuracy:.4f}  {note}")
    (root / "results.json").write_text(json.dumps(results, indent=1))
    print(f"(projects and results.json kept in {root})", file=sys.stderr)


def _project(folder: Path, pool: list[dict[str, Any]], validation: list[dict[str, Any]], test: list[dict[str, Any]],
             llama: dict[str, str]) -> Project:
    """Pool = the N reviews (gold labels hidden), demo = the 100 validation reviews, test = the test reviews; the
    Llama-2 and the gold labels of the pool imported as two annotation sources."""
    if (folder / "project.sqlite").exists():
        return Project.open(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    project = Project.init(folder, ProjectSettings("classify", LABELS))
    project.import_corpus(write(folder.parent / f"{folder.name}-pool.jsonl", pool))
    project.import_gold(write(folder.parent / "validation.jsonl", validation), "demo")
    project.import_gold(write(folder.parent / "test.jsonl", test), "test")
    project.import_annotations(write(folder.parent / f"{folder.name}-llama2.jsonl", [
        {"id": row["id"], "label": llama[row["id"]]} for row in pool]), "llama2")
    project.import_annotations(write(folder.parent / f"{folder.name}-gold.jsonl", [
        {"id": row["id"], "label": row["label"]} for row in pool]), "gold")
    return project


def _frozen(project: Project, student: str, models: Path, pool: list[dict[str, Any]], test: list[dict[str, Any]],
            llama: dict[str, str]) -> dict[str, float]:
    """Logistic regression on the encoder's frozen, mean-pooled, normalised embeddings (the first 256 sub-words)."""
    from sklearn.linear_model import LogisticRegression

    embedder = Embedder(resolve(student, models, "hf"))
    train_x = embeddings(project.store, embedder, list(project.store.examples(ids=[r["id"] for r in pool])))
    test_examples = list(project.store.examples("test"))
    test_x = embeddings(project.store, embedder, test_examples)
    truth = [e.label for e in test_examples]
    scores = {}
    for source, labels in (("llama2", [llama[r["id"]] for r in pool]), ("gold", [r["label"] for r in pool])):
        fitted = LogisticRegression(max_iter=2000, C=1.0).fit(train_x, labels)
        scores[source] = float((fitted.predict(test_x) == truth).mean())
    return scores


def _student(args: argparse.Namespace, project: Project, models: Path, student: str, pooling: str, truncation: str,
             precision: str, epochs: int, source: str) -> dict[str, Any]:
    options: dict[str, Any] = {"learning_rate": args.lr} if args.lr else {}
    config = TrainConfig(student=student, data="llm", source=f"import:{source}", epochs=epochs,
                         max_length=args.max_length, pooling=pooling, truncation=truncation, precision=precision,
                         threads=args.threads, **options)
    test = list(project.store.examples("test"))

    def test_accuracy(model: StudentModel, encoder: InputEncoder) -> dict[str, float]:
        predicted = predict(model, encoder, test, precision=precision)
        return {"test_accuracy": _accuracy(predicted, test)}

    report = Trainer(project, config, models, on_epoch=test_accuracy if args.each_epoch else None).run()
    history = report.metrics["history"]
    row: dict[str, Any] = {"accuracy": report.metrics["test"]["accuracy"], "seconds": report.seconds,
                           "best_epoch": report.best_epoch, "epochs_run": len(history),
                           "arithmetic": report.metrics["arithmetic"],
                           "each_epoch": [epoch["test_accuracy"] for epoch in history if "test_accuracy" in epoch]}
    if not args.no_export:
        exported = export_student(project, ExportConfig(threads=args.threads), report.run_id)
        int8 = OnnxStudent(exported.folder, "model_quantized.onnx", args.threads)
        int8.predict(test[:8])
        started = time.perf_counter()
        predicted = int8.predict(test)
        seconds = time.perf_counter() - started
        row["int8_accuracy"] = _accuracy(predicted, test)
        row["int8_docs_s"] = len(test) / seconds
    return row


def _accuracy(predicted: list[tuple[Any, ...]], examples: list[Example]) -> float:
    return sum(p[0] == e.label for p, e in zip(predicted, examples, strict=True)) / len(examples)


if __name__ == "__main__":
    main()
