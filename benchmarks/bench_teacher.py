"""Teacher quality (issue 3): raw vs calibrated, zero-shot vs kNN demos, on slices of the shared datasets.

For each dataset: a seeded random slice of the test split becomes the pool (its labels hidden, used only to score),
and a seeded 100-example gold demo pool is taken from train (IMDb, SemEval) or dev (CoNLL-2003). Calibration is fit
on the demo pool with leave-one-out demonstrations.

Usage: python benchmarks/bench_teacher.py [--n 200] [--gold 100] [--model gemma-3-270m] [--threads 2]
       [--datasets imdb,conll,semeval] [--data ../shared/data] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

from llmaaa_local.annotate import AnnotateConfig, Annotator, load_embedder, load_teacher
from llmaaa_local.config import LabelInfo, ProjectSettings, PromptSettings, TeacherSettings
from llmaaa_local.evaluate import evaluate_llm
from llmaaa_local.models import DEFAULT_STUDENT, default_models_dir
from llmaaa_local.project import Project
from llmaaa_local.tasks import task_for

DATASETS: dict[str, dict[str, Any]] = {
    "imdb": {
        "task": "classify", "pool": "imdb/test.jsonl.gz", "gold": "imdb/train.jsonl.gz",
        "labels": [LabelInfo("positive", "the reviewer liked the film"),
                   LabelInfo("negative", "the reviewer disliked the film")],
        "metric": "accuracy",
    },
    "conll": {
        "task": "ner", "pool": "conll2003/test.jsonl", "gold": "conll2003/dev.jsonl",
        "labels": [LabelInfo(name) for name in ("PER", "ORG", "LOC", "MISC")], "metric": "f1",
    },
    "semeval": {
        "task": "re", "pool": "semeval2010_task8/test.jsonl", "gold": "semeval2010_task8/train.jsonl",
        "labels": None, "no_relation": "Other", "metric": "f1",
    },
}


def sample(path: Path, n: int, seed: int, everything: bool = False) -> list[dict[str, Any]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:  # type: ignore[operator]
        records = [json.loads(line) for line in handle]
    return records if everything else random.Random(seed).sample(records, n)


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def build(root: Path, name: str, spec: dict[str, Any], data: Path, n: int, gold: int, prompt: PromptSettings,
          ) -> Project:
    pool = write(root / f"{name}-pool.jsonl", sample(data / spec["pool"], n, seed=1))
    demos = write(root / f"{name}-gold.jsonl", sample(data / spec["gold"], gold, seed=2))
    labels = tuple(spec["labels"] or [])
    if not labels:  # relation labels: every label of the full gold file, sorted
        found = {record["label"] for record in sample(data / spec["gold"], 0, seed=0, everything=True)}
        labels = tuple(LabelInfo(label) for label in sorted(found))
    settings = ProjectSettings(task=spec["task"], labels=labels, no_relation=spec.get("no_relation"), prompt=prompt)
    folder = root / f"{name}-{prompt.demos}"
    # an earlier run's project is reused: its stored annotations are cache hits, so a rerun continues
    project = Project.open(folder) if (folder / "project.sqlite").exists() else Project.init(folder, settings)
    project.store.save_settings(settings)
    project.import_corpus(pool)
    project.import_gold(demos, "demo")
    return project


def uncalibrated_quality(project: Project, model_sha256: str, prompt_key: str) -> tuple[float, float] | None:
    """The metric of the argmax of the raw label scores, and of the scores relative to the content-free
    baseline (contextual calibration without any bias); scored tasks only."""
    task = task_for(project.settings)
    if not task.scored:
        return None
    references = project.store.reference_labels("pool")
    stored = [(eid, scores, baseline) for _, eid, scores, baseline
              in project.store.scored_annotations(model_sha256, prompt_key) if eid in references]
    examples = {e.id: e for e in project.store.examples(ids=[eid for eid, _, _ in stored])}
    results = []
    for relative in (False, True):
        predicted = {eid: max(scores, key=lambda label: scores[label] - (baseline[label] if relative and baseline
                                                                            else 0.0))
                     for eid, scores, baseline in stored}
        metrics = task.metrics({i: references[i] for i in predicted}, predicted, examples)
        results.append(float(metrics.get("f1", metrics.get("accuracy"))))
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--gold", type=int, default=100)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--datasets", default="conll,semeval,imdb")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--keep", type=Path, default=None, help="Keep the projects in this folder.")
    args = parser.parse_args()
    models = default_models_dir()
    llm = load_teacher(TeacherSettings(args.model, n_ctx=4096, threads=args.threads), models)
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-teacher-"))
    root.mkdir(parents=True, exist_ok=True)
    header = (f"{'dataset':8} {'demos':5} {'metric':8} {'raw':>6} {'context':>7} {'calib.':>6} {'method':>16} "
              f"{'gold LOO':>8} {'parse err':>9} {'prompt tok':>10} {'reused':>6} {'docs/s':>6} {'seconds':>7}")
    print(header, flush=True)
    for name in args.datasets.split(","):
        spec = DATASETS[name]
        for demos in ("none", "knn"):
            prompt = PromptSettings(demos=demos, k=args.k)  # type: ignore[arg-type]
            project = build(root, name, spec, args.data, args.n, args.gold, prompt)
            embed = load_embedder(DEFAULT_STUDENT, models, project) if demos == "knn" else None
            annotator = Annotator(project, llm, embed)
            report = annotator.run(AnnotateConfig(n=args.n))
            quality = evaluate_llm(project, "pool")["llm"]
            calibrated = quality.get(spec["metric"], 0.0)
            uncalibrated = uncalibrated_quality(project, llm.model_sha256, annotator.prompt_key)
            raw, contextual = uncalibrated or (calibrated, float("nan"))
            fit = report.calibration
            loo = f"{fit.loo_accuracy:8.3f}" if fit else f"{'-':>8}"
            method = fit.method if fit else "-"
            reused = 1 - report.tokens_evaluated / max(report.tokens_in, 1)
            print(f"{name:8} {demos:5} {spec['metric']:8} {raw:6.3f} {contextual:7.3f} "
                  f"{calibrated if uncalibrated else float('nan'):6.3f} {method:>16} {loo} "
                  f"{quality['parse_error_rate']:9.1%} {report.tokens_in:10d} {reused:6.1%} "
                  f"{report.annotated / report.seconds:6.2f} {report.seconds:7.0f}", flush=True)
            project.close()
    print(f"(projects in {root}; raw = argmax of the label log-probs, calib. = after bias calibration on the gold "
          "demo pool; NER has no label scores to calibrate)", file=sys.stderr)


if __name__ == "__main__":
    main()
