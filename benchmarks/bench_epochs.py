"""How many epochs NER and relation students need, and which one early stopping keeps (issue 14).

A MiniLM student trains on --n gold sentences of CoNLL-2003 (NER) or SemEval-2010 Task 8 (relations), validates on
100 other gold train sentences (the dev split, which early stopping reads) and is scored on --test test sentences
after every epoch (F1: entities; relations without Other). For each --epochs value, side by side: the test F1 of
each epoch, the epoch the shipped rule keeps (the last unless an earlier one is clearly better on the dev split) and
the one the lowest dev loss would have kept.

Usage: python benchmarks/bench_epochs.py [--datasets conll,semeval] [--n 1000] [--epochs 3,10] [--test 1000]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_student import DATASETS
from shared_data import DATA, records, write

from llmaaa_local.config import LabelInfo, ProjectSettings, TrainConfig
from llmaaa_local.encoding import InputEncoder
from llmaaa_local.models import default_models_dir
from llmaaa_local.project import Project
from llmaaa_local.student import StudentModel, Trainer, predict
from llmaaa_local.tasks import task_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="conll,semeval")
    parser.add_argument("--n", type=int, default=1000, help="gold training sentences")
    parser.add_argument("--epochs", default="3,10", help="train --epochs values, comma-separated")
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--student", default="minilm-l6")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-epochs-"))
    models = default_models_dir()
    print(f"{'data':8} {'N':>5} {'--epochs':>8} {'train s':>7} {'kept':>4} {'test F1':>7} {'lowest loss':>11} "
          f"{'its F1':>6}  test F1 after each epoch", flush=True)
    for name in args.datasets.split(","):
        spec = DATASETS[name]
        train = records(DATA / spec["train"])
        order = random.Random(1).sample(train, len(train))
        pool, dev = order[: args.n], order[args.n : args.n + 100]
        test = random.Random(3).sample(records(DATA / spec["test"]), args.test)
        labels = spec["labels"] or tuple(LabelInfo(x) for x in sorted({row["label"] for row in train}))
        for epochs in (int(x) for x in args.epochs.split(",")):
            project = Project.init(root / f"{name}-{epochs}", ProjectSettings(
                spec["task"], labels, no_relation=spec.get("no_relation")))
            project.import_gold(write(root / f"{name}-pool.jsonl", pool), "demo")
            project.import_gold(write(root / f"{name}-dev.jsonl", dev), "dev")
            project.import_gold(write(root / f"{name}-test.jsonl", test), "test")
            started = time.perf_counter()
            report = Trainer(project, TrainConfig(student=args.student, data="gold", epochs=epochs,
                                                  threads=args.threads), models,
                             on_epoch=_test_f1(project)).run()
            history = report.metrics["history"]
            lowest = min(history, key=lambda row: row["validation_loss"])["epoch"]
            print(f"{name:8} {args.n:5} {epochs:8} {time.perf_counter() - started:7.0f} {report.best_epoch:4} "
                  f"{report.metrics['test']['f1']:7.4f} {lowest:11} {history[lowest - 1]['test_f1']:6.4f}  "
                  + " / ".join(f"{row['test_f1']:.3f}" for row in history), flush=True)
    print(f"(projects kept in {root})", file=sys.stderr)


def _test_f1(project: Project) -> Any:
    task = task_for(project.settings)
    examples = list(project.store.examples("test"))
    gold = {e.id: e.label for e in examples if e.label is not None}
    by_id = {e.id: e for e in examples}

    def measure(model: StudentModel, encoder: InputEncoder) -> dict[str, float]:
        predicted = {e.id: label for e, (label, _, _) in zip(examples, predict(model, encoder, examples), strict=True)}
        return {"test_f1": float(task.metrics(gold, predicted, by_id)["f1"])}

    return measure


if __name__ == "__main__":
    main()
