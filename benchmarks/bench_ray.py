"""The Ray engine's cost on one machine (issue 16): LLM annotation and full-corpus labeling, local vs Ray with 1 and
2 workers on the same CPUs, side by side in one run; peak driver memory; and how many rows a second the single
SQLite writer on the driver takes (where a cluster's throughput stops growing).

Each configuration runs in a child process of its own, on a fresh copy of the same project, so no cache, warm model
or resident memory carries over. Annotation: --n IMDb test reviews, the default teacher, 4 fixed label-balanced
demonstrations from 8 gold reviews. Labeling: --label IMDb test reviews with an int8 MiniLM student trained on 200
gold-labeled train reviews.

Usage: python benchmarks/bench_ray.py [--n 60] [--label 2000] [--teacher gemma-3-270m] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from shared_data import DATA, records, write

from llmaaa_local.config import EngineSettings, LabelInfo, ProjectSettings, PromptSettings, TeacherSettings, TrainConfig
from llmaaa_local.models import default_models_dir
from llmaaa_local.project import Project
from llmaaa_local.records import Annotation
from llmaaa_local.session import Session

LABELS = (LabelInfo("positive", "the reviewer liked the film"), LabelInfo("negative", "the reviewer disliked the film"))
ENGINES = [("local", 1), ("ray", 1), ("ray", 2)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=60, help="reviews the teacher annotates per configuration")
    parser.add_argument("--label", type=int, default=2000, help="reviews the student labels per configuration")
    parser.add_argument("--teacher", default="gemma-3-270m")
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--one", nargs=4, metavar=("STAGE", "ENGINE", "WORKERS", "PROJECT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        stage, engine, workers, folder = args.one
        print(json.dumps(run_one(stage, EngineSettings(engine, workers=int(workers)), Path(folder), args.teacher)))
        return
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-ray-"))
    root.mkdir(parents=True, exist_ok=True)
    test = records(DATA / "imdb" / "test.jsonl.gz")
    train = records(DATA / "imdb" / "train.jsonl.gz")
    annotate_base = annotation_project(root / "annotate-base", test[: args.n], train[:8])
    label_base = labeling_project(root / "label-base", test[: args.label], train[100:300])
    print(f"cpu: {os.cpu_count()} cores; teacher {args.teacher}; {args.n} reviews annotated, {args.label} labeled, "
          "per configuration", flush=True)
    results: dict[tuple[str, str, int], dict[str, Any]] = {}
    for stage, base in (("annotate", annotate_base), ("label", label_base)):
        for engine, workers in ENGINES:
            copy = root / f"{stage}-{engine}-{workers}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(base, copy)
            output = subprocess.run([sys.executable, __file__, "--teacher", args.teacher, "--one", stage, engine,
                                     str(workers), str(copy)], check=True, capture_output=True, text=True)
            results[(stage, engine, workers)] = json.loads(output.stdout.strip().splitlines()[-1])
            print(f"  {stage} {engine} x{workers}: {results[(stage, engine, workers)]}", flush=True)
    report(results)
    writer(root / "writer")


def annotation_project(folder: Path, pool: list[dict[str, Any]], demos: list[dict[str, Any]]) -> Path:
    settings = ProjectSettings("classify", LABELS, prompt=PromptSettings(demos="fixed", k=4))
    with Project.init(folder, settings) as project:
        project.import_corpus(write(folder / "pool.jsonl", [{"id": r["id"], "text": r["text"]} for r in pool]))
        project.import_gold(write(folder / "demo.jsonl", demos), "demo")
    return folder


def labeling_project(folder: Path, corpus: list[dict[str, Any]], labeled: list[dict[str, Any]]) -> Path:
    """The corpus to label, and a student trained on 200 gold-labeled reviews (imported as annotations), exported."""
    with Project.init(folder, ProjectSettings("classify", LABELS)) as project:
        project.import_corpus(write(folder / "corpus.jsonl", [{"id": r["id"], "text": r["text"]} for r in
                                                              corpus + labeled]))
        project.import_annotations(write(folder / "labels.jsonl", labeled), "gold")
        session = Session(folder, default_models_dir())
        session.train(project, TrainConfig(epochs=1, min_steps=0, max_length=256))
        session.export(project)
    return folder


def run_one(stage: str, engine: EngineSettings, folder: Path, teacher: str) -> dict[str, Any]:
    """One configuration, in this (child) process: wall times, throughput and the driver's peak memory."""
    from llmaaa_local.annotate import AnnotateConfig, Annotator

    session = Session(folder, default_models_dir(), TeacherSettings(model=teacher), engine=engine)
    with session.open() as project:
        started = time.perf_counter()
        if stage == "annotate":
            llm = session.load_teacher()  # Ray: start Ray and the actors, each loading the GGUF
            ready = time.perf_counter()
            done = Annotator(project, llm, None).run(AnnotateConfig(n=10**9, select="first", calibrate=False))
            count, tokens = done.annotated, done.tokens_in
        else:
            if engine.kind == "ray":
                from llmaaa_local.ray_engine import connect

                connect(engine)  # Ray's start-up, timed apart from the labeling
            ready = time.perf_counter()
            labeled = session.label(project)
            count, tokens = labeled.labeled, 0
        finished = time.perf_counter()
    return {"startup_s": round(ready - started, 2), "seconds": round(finished - ready, 2), "docs": count,
            "docs_s": round(count / (finished - ready), 3), "tokens_s": round(tokens / (finished - ready), 1),
            "peak_driver_mb": peak_memory_mb()}


def peak_memory_mb() -> int:
    """This process's peak resident memory since it started (VmHWM; ru_maxrss would count the parent's from before
    the exec)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) // 1024


def report(results: dict[tuple[str, str, int], dict[str, Any]]) -> None:
    print(f"\n{'stage':8} {'engine':8} {'workers':>7} {'start s':>8} {'docs/s':>8} {'x local':>8} {'tok/s':>8} "
          f"{'driver MB':>9}")
    for (stage, engine, workers), row in results.items():
        local = results[(stage, "local", 1)]["docs_s"]
        print(f"{stage:8} {engine:8} {workers:7d} {row['startup_s']:8.1f} {row['docs_s']:8.2f} "
              f"{row['docs_s'] / local:8.2f} {row['tokens_s']:8.0f} {row['peak_driver_mb']:9d}")


def writer(folder: Path, rows: int = 2000) -> None:
    """The driver's SQLite writes: answers one transaction each (as the annotator stores them), predictions in
    chunks (as the labeler does)."""
    shutil.rmtree(folder, ignore_errors=True)
    with Project.init(folder, ProjectSettings("classify", LABELS)) as project:
        project.import_corpus(write(folder / "pool.jsonl", [{"id": f"w{i}", "text": f"text {i}"} for i in range(rows)]))
        started = time.perf_counter()
        for i in range(rows):
            project.store.add_annotation(Annotation(f"w{i}", "llm:bench", "positive", 0.9, cache_key=f"k{i}",
                                                    scores={"positive": -0.1, "negative": -2.4},
                                                    raw_output="positive"))
        answers = rows / (time.perf_counter() - started)
        artifact = project.store.start_student_run("bench", "llm", {}, None)
        run_artifact = project.store.add_artifact(artifact, "onnx", str(folder), "0" * 64, {})
        started = time.perf_counter()
        project.store.add_predictions(run_artifact, [(f"w{i}", "positive", {"positive": 0.9, "negative": 0.1}, 0.9)
                                                     for i in range(rows)])
        predictions = rows / (time.perf_counter() - started)
    print(f"\nSQLite writer on the driver: {answers:,.0f} answers/s (one transaction each), {predictions:,.0f} "
          "predictions/s (one transaction per chunk)")


if __name__ == "__main__":
    main()
