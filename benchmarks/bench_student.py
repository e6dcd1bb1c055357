"""LlamBERT end to end (issue 4): teacher labels -> student -> ONNX -> full-corpus labels, measured in one run.

Subcommands:
  quality  the teacher labels --n random train examples; a student trains on them; both are scored on --test
           held-out test examples (IMDb: accuracy; CoNLL-2003 / SemEval: F1). Also the gold-only and combined students.
  speed    PyTorch fp32 (batches of 32 and 8; the faster is the base) vs ONNX fp32 vs ONNX int8 docs/s (and accuracy);
           on a CPU with AMX or AVX512-BF16 also PyTorch bf16 autocast
           on the same reviews, side by side, with the student of a `quality` project; then time and peak memory to
           label all 50k IMDb reviews with int8.

Usage: python benchmarks/bench_student.py quality --dataset imdb [--n 500] [--test 2000] [--keep DIR]
       python benchmarks/bench_student.py speed --project DIR [--n 1000] [--full]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared_data import DATA, records, rotated, write

from llmaaa_local.annotate import AnnotateConfig, load_embedder, load_teacher
from llmaaa_local.config import DEMO_MODES, LabelInfo, ProjectSettings, PromptSettings, TeacherSettings, TrainConfig
from llmaaa_local.encoding import StudentSpec
from llmaaa_local.export import ExportConfig, export_student
from llmaaa_local.labeler import OnnxStudent
from llmaaa_local.models import DEFAULT_STUDENT, default_models_dir
from llmaaa_local.project import Project
from llmaaa_local.session import Session
from llmaaa_local.store import Artifact
from llmaaa_local.student import Trainer, load_student, predict, uses_bf16
from llmaaa_local.tasks import task_for
from llmaaa_local.tune import PromptTuner, TuneConfig, describe

SPEED_CHUNK = 100  # reviews per turn of the speed comparison

DATASETS: dict[str, dict[str, Any]] = {
    "imdb": {"task": "classify", "train": "imdb/train.jsonl.gz", "test": "imdb/test.jsonl.gz",
             "gold": "imdb/train.jsonl.gz",
             "labels": (LabelInfo("positive", "the reviewer liked the film"),
                        LabelInfo("negative", "the reviewer disliked the film")), "metric": "accuracy"},
    "conll": {"task": "ner", "train": "conll2003/train.jsonl", "test": "conll2003/test.jsonl",
              "gold": "conll2003/dev.jsonl", "labels": tuple(LabelInfo(t) for t in ("PER", "ORG", "LOC", "MISC")),
              "metric": "f1"},
    "semeval": {"task": "re", "train": "semeval2010_task8/train.jsonl", "test": "semeval2010_task8/test.jsonl",
                "gold": "semeval2010_task8/train.jsonl", "labels": None, "no_relation": "Other", "metric": "f1"},
}




def quality(args: argparse.Namespace) -> None:
    spec = DATASETS[args.dataset]
    root = args.keep or Path(tempfile.mkdtemp(prefix=f"bench-student-{args.dataset}-"))
    root.mkdir(parents=True, exist_ok=True)
    train = records(DATA / spec["train"])
    gold_source = records(DATA / spec["gold"])
    pool = random.Random(1).sample(train, args.n)
    taken = {row["id"] for row in pool}
    gold = random.Random(2).sample([row for row in gold_source if row["id"] not in taken], args.gold)
    test = random.Random(3).sample(records(DATA / spec["test"]), args.test)
    labels = spec["labels"] or tuple(LabelInfo(name) for name in sorted({row["label"] for row in train}))
    settings = ProjectSettings(spec["task"], labels, no_relation=spec.get("no_relation"),
                               prompt=PromptSettings(demos=args.demos, k=4))
    if (root / "project" / "project.sqlite").exists():  # a kept project: its annotations are reused, not redone
        project = Project.open(root / "project")
    else:
        project = Project.init(root / "project", settings)
        project.import_corpus(write(root / "pool.jsonl", pool))
        project.import_corpus(write(root / "held-out.jsonl", test))  # labels hidden: the teacher is scored on them
        project.import_gold(write(root / "gold.jsonl", gold), "demo")
    models = default_models_dir()
    llm = load_teacher(TeacherSettings(args.model, n_ctx=4096, threads=args.threads), models)
    if args.tune:
        started = time.perf_counter()
        tuned = PromptTuner(project, llm, load_embedder(DEFAULT_STUDENT, models, project)).run(
            TuneConfig(budget=args.budget))
        print(f"tune chose {describe(tuned.chosen.prompt)} ({tuned.metric} {tuned.chosen.score:.3f} on "
              f"{tuned.chosen.n} gold, {tuned.calls} calls) in {time.perf_counter() - started:.0f}s", flush=True)
    # as `annotate` builds it: kNN demos from --embedder, the probe on whichever pulled embedder wins on gold
    session = Session(project.root, models, embedder=args.embedder, teacher_factory=lambda *_: llm)
    annotator = session.annotator(project)
    started = time.perf_counter()
    annotated = annotator.run(AnnotateConfig(ids=tuple(row["id"] for row in pool)))
    print(f"teacher labeled {len(pool)} train examples in {time.perf_counter() - started:.0f}s "
          f"({annotated.parse_errors} parse errors)", flush=True)
    if annotated.calibration is not None:
        print(f"  {annotated.calibration.summary()}", flush=True)
    started = time.perf_counter()
    annotator.run(AnnotateConfig(ids=tuple(row["id"] for row in test)))
    print(f"teacher labeled {len(test)} held-out examples in {time.perf_counter() - started:.0f}s", flush=True)
    task = task_for(project.settings)
    references = project.store.reference_labels("pool")
    test_ids = [row["id"] for row in test]
    teacher_labels = {eid: label for eid, label, _, _ in project.store.latest_labels("", "pool")}
    teacher = _score(task, project, test_ids, references, teacher_labels)
    agreement = sum(teacher_labels[e] == references[e] for e in pool_ids(pool)) / len(pool)
    print(f"teacher on the held-out set: {spec['metric']} {teacher:.4f}  (its labels on the {len(pool)} training "
          f"examples are {agreement:.1%} right)", flush=True)
    print(f"{'student data':16} {spec['metric']:>9} {'vs teacher':>10} {'LLM labels':>10} {'train s':>8}", flush=True)
    for name in args.modes.split(","):
        mode, _, top = name.partition("-top")  # "llm-top50": the 50% most confident of each label
        config = TrainConfig(data=mode, epochs=args.epochs, max_length=args.max_length,  # type: ignore[arg-type]
                             seed=args.seed, examples=tuple(row["id"] for row in pool),
                             min_confidence=args.min_confidence, keep_top=int(top or 100) / 100,
                             balance=not args.no_balance, threads=args.threads)
        report = Trainer(project, config, models).run()
        model, encoder = load_student(report.folder)
        examples = list(project.store.examples(ids=test_ids))
        predicted = {e.id: label for e, (label, _, _) in zip(examples, predict(model, encoder, examples),
                                                              strict=True)}
        score = _score(task, project, test_ids, references, predicted)
        used = report.trained_on - (args.gold if mode == "combined" else 0) if mode != "gold" else 0
        print(f"{name:16} {score:9.4f} {score - teacher:+10.4f} {used:10} {report.seconds:8.0f}", flush=True)
    print(f"(project kept in {root})", file=sys.stderr)


def pool_ids(pool: list[dict[str, Any]]) -> list[str]:
    return [row["id"] for row in pool]


def _score(task: Any, project: Project, ids: list[str], references: dict[str, Any], predicted: dict[str, Any],
           ) -> float:
    examples = {e.id: e for e in project.store.examples(ids=ids)}
    shared = [i for i in ids if i in predicted]
    metrics = task.metrics({i: references[i] for i in shared}, {i: predicted[i] for i in shared}, examples)
    return float(metrics.get("f1", metrics.get("accuracy")))


def speed(args: argparse.Namespace) -> None:
    project = Project.open(args.project)
    run = args.run or project.store.artifacts("checkpoint")[0].run_id  # the newest student by default
    if not [a for a in project.store.artifacts("onnx-int8") if a.run_id == run]:
        export_student(project, ExportConfig(), run)
    checkpoint = Path(next(a.path for a in project.store.artifacts("checkpoint") if a.run_id == run))
    exported = next(a for a in project.store.artifacts("onnx-int8") if a.run_id == run)
    onnx_folder = Path(exported.path)
    examples = list(project.store.examples("pool"))[: args.n]
    references = project.store.reference_labels("pool")
    task = task_for(project.settings)
    model, encoder = load_student(checkpoint)
    import torch

    torch.set_num_threads(args.threads)
    fp32, int8 = (OnnxStudent(onnx_folder, name, args.threads) for name in ("model_optimized.onnx",
                                                                           "model_quantized.onnx"))
    runners: dict[str, Callable[[list[Any]], list[Any]]] = {
        "pytorch fp32 b32": lambda chunk: predict(model, encoder, chunk, batch_size=32, precision="fp32"),
        "pytorch fp32 b8": lambda chunk: predict(model, encoder, chunk, batch_size=8, precision="fp32"),
        "onnx fp32": fp32.predict,
        "onnx int8": int8.predict,
    }
    if uses_bf16(torch.device("cpu")):  # a CPU with fast bf16: what `train` evaluates with
        runners["pytorch bf16 b8"] = lambda chunk: predict(model, encoder, chunk, batch_size=8)
    for runner in runners.values():
        runner(examples[:8])  # warm-up: first-call allocations are not labeling speed
    seconds = dict.fromkeys(runners, 0.0)
    predicted: dict[str, dict[str, Any]] = {name: {} for name in runners}
    for number, start in enumerate(range(0, len(examples), SPEED_CHUNK)):  # rotating order: drift hits all alike
        chunk = examples[start : start + SPEED_CHUNK]
        for name in rotated(list(runners), number):
            run_started = time.perf_counter()
            predictions = runners[name](chunk)
            seconds[name] += time.perf_counter() - run_started
            predicted[name] |= {e.id: p[0] for e, p in zip(chunk, predictions, strict=True)}
    scored = [e.id for e in examples if e.id in references]
    results = {name: (len(examples) / seconds[name], _score(task, project, scored, references, predicted[name]))
               for name in runners}
    base_rate, base_score = max(v for k, v in results.items() if k.startswith("pytorch fp32"))  # the faster batch
    print(f"student run {run} (max length {StudentSpec.load(checkpoint).max_length}), {len(examples)} examples, "
          f"{args.threads} threads")
    for name, (rate, score) in results.items():
        print(f"{name:16} {rate:8.1f} docs/s  {rate / base_rate:5.2f}x PyTorch fp32   accuracy {score:.4f} "
              f"({(score - base_score) * 100:+.2f} points)")
    if args.full:
        full_corpus(args, project, exported)


def full_corpus(args: argparse.Namespace, source: Project, checkpoint_run: Artifact) -> None:
    """Time and peak memory of labeling all 50k IMDb reviews with the int8 student, in a fresh process."""
    root = Path(tempfile.mkdtemp(prefix="bench-label-"))
    code = (
        "import sys, time\nfrom pathlib import Path\n"
        "from llmaaa_local.project import Project\nfrom llmaaa_local.labeler import label_corpus\n"
        f"p = Project.open(Path({str(root / 'p')!r}))\nt = time.perf_counter()\n"
        f"r = label_corpus(p, True, {args.threads})\nprint(r.labeled, time.perf_counter() - t)\n"
    )
    project = Project.init(root / "p", source.settings)
    for split in ("train", "test"):
        project.import_corpus(DATA / "imdb" / f"{split}.jsonl.gz")
    # register the exported student in the fresh project, as `export` would
    run_id = project.store.start_student_run("benchmark", "llm", {}, None)
    project.store.add_artifact(run_id, "onnx-int8", checkpoint_run.path, checkpoint_run.sha256,
                               checkpoint_run.info)
    project.close()
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    assert process.stdout is not None
    labeled, seconds = process.stdout.read().split()
    print(f"full corpus: {labeled} IMDb reviews labeled in {float(seconds):.0f}s "
          f"({int(labeled) / float(seconds):.1f} docs/s), peak RSS {usage.ru_maxrss / 1024:.0f} MB, "
          f"wall {time.perf_counter() - started:.0f}s incl. start-up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--dataset", choices=list(DATASETS), default="imdb")
    q.add_argument("--n", type=int, default=500)
    q.add_argument("--gold", type=int, default=100)
    q.add_argument("--test", type=int, default=2000)
    q.add_argument("--demos", choices=list(DEMO_MODES), default="balanced")
    q.add_argument("--tune", action="store_true", help="tune the prompt on the gold pool first (issue 13)")
    q.add_argument("--budget", type=int, default=800, help="tune's budget of LLM calls")
    q.add_argument("--embedder", default=DEFAULT_STUDENT,
                   help="sentence embedder of annotate (kNN demonstrations, the calibration's probe); tune's kNN "
                        f"variants use {DEFAULT_STUDENT} either way")
    q.add_argument("--modes", default="llm,llm-top50,gold,combined,combined-top50",
                   help="llm, gold or combined; '-topNN' keeps the NN%% most confident LLM labels of each label")
    q.add_argument("--no-balance", action="store_true", help="do not balance the LLM label classes")
    q.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    q.add_argument("--max-length", type=int, default=256)
    q.add_argument("--min-confidence", type=float, default=0.0)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--model", default="gemma-3-270m")
    q.add_argument("--threads", type=int, default=2)
    q.add_argument("--keep", type=Path, default=None)
    s = sub.add_parser("speed")
    s.add_argument("--project", type=Path, required=True)
    s.add_argument("--n", type=int, default=1000)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--run", type=int, default=None, help="student run to measure [default: the newest]")
    s.add_argument("--full", action="store_true", help="also label all 50k IMDb reviews")
    args = parser.parse_args()
    {"quality": quality, "speed": speed}[args.command](args)


if __name__ == "__main__":
    main()
