"""Teacher quality (issues 3 and 13): main's prompt defaults, this version's defaults, and the prompt `tune` picks on
the gold pool, side by side in one run, on seeded slices of the shared datasets.

For each dataset a seeded random slice of the test split is the pool (labels hidden, used only to score) and a
seeded 100-example gold demo pool comes from train (IMDb, SemEval) or dev (CoNLL-2003). Rows:
  main      main's defaults before issue 13: plain kNN k=4, head-only clip at 4000 characters, label names
  default   this version's defaults, untuned: label-balanced kNN k=4, head+tail clip at 1500 characters
  tuned     `tune` on the gold pool (timed), then its prompt
Each row annotates in a project of its own, calibrated on the gold pool (scored tasks); `--n-rows` caps the pool for
the main and default rows (the first N of the same slice), so the slow old prompt can be measured on fewer texts.
Scored tasks show the calibration without and with the probe on the gold examples' sentence embeddings side by side
(the same LLM answers; `--embedder` picks the session's embedder, the probe may read any pulled one); NER shows the
entity F1 with the spans and types the teacher wrote (raw) and as the span rule annotate chose on gold decides
them (+probe: as written, re-type, drop or mark).

Usage: python benchmarks/bench_teacher.py [--n 1000] [--n-rows 300] [--datasets imdb,conll,semeval]
       (conll-per: CoNLL-2003 with PER as the only entity type)
       [--rows main,default,tuned] [--model gemma-3-270m] [--threads 2] [--keep DIR] [--budget 800]
       [--embedder minilm-l6]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from shared_data import DATA, records, write

from llmaaa_local.annotate import CALIBRATION_LIMIT, AnnotateConfig, Annotator, load_embedder, load_teacher
from llmaaa_local.calibration import CalibrationFit, TyperFit, fit
from llmaaa_local.config import LabelInfo, ProjectSettings, PromptSettings, TeacherSettings
from llmaaa_local.evaluate import evaluate_llm
from llmaaa_local.llm import LLM
from llmaaa_local.models import DEFAULT_STUDENT, default_models_dir
from llmaaa_local.project import Project
from llmaaa_local.session import Session
from llmaaa_local.tasks import task_for
from llmaaa_local.tune import PromptTuner, TuneConfig, describe

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
    "conll-per": {  # one entity type: CoNLL-2003 with every other type's tags made O
        "task": "ner", "pool": "conll2003/test.jsonl", "gold": "conll2003/dev.jsonl",
        "labels": [LabelInfo("PER")], "metric": "f1", "only": "PER",
    },
    "semeval": {
        "task": "re", "pool": "semeval2010_task8/test.jsonl", "gold": "semeval2010_task8/train.jsonl",
        "labels": None, "no_relation": "Other", "metric": "f1",
    },
}
MAIN = PromptSettings(demos="knn", k=4, clip="head", max_chars=4000)


def only(rows: list[dict[str, Any]], kind: str | None) -> list[dict[str, Any]]:
    """NER records with the tags of every type but `kind` made O (all of them unchanged without one)."""
    if kind is None:
        return rows
    return [{**row, "tags": [tag if tag[2:] == kind else "O" for tag in row["tags"]]} for row in rows]


def settings_for(spec: dict[str, Any], data: Path, prompt: PromptSettings) -> ProjectSettings:
    labels = tuple(spec["labels"] or [])
    if not labels:  # relation labels: every label of the full gold file, sorted
        labels = tuple(LabelInfo(label) for label in sorted({r["label"] for r in records(data / spec["gold"])}))
    return ProjectSettings(task=spec["task"], labels=labels, no_relation=spec.get("no_relation"), prompt=prompt)


def build(folder: Path, settings: ProjectSettings, pool: list[dict[str, Any]], gold: list[dict[str, Any]]) -> Project:
    # an earlier run's project is reused: its stored annotations are cache hits, so a rerun continues
    project = Project.open(folder) if (folder / "project.sqlite").exists() else Project.init(folder, settings)
    project.import_corpus(write(folder.parent / f"{folder.name}-pool.jsonl", pool))
    project.import_gold(write(folder.parent / f"{folder.name}-gold.jsonl", gold), "demo")
    return project


def offline_scores(project: Project, llm: LLM, prompt_key: str) -> tuple[float, float, float, float] | None:
    """From the label scores stored under one prompt: the metric of the argmax of the raw scores, of the scores
    relative to the content-free baseline, of the calibration fit on the same gold examples without the probe on
    their embeddings, and of the stored labels (annotate's calibration); None for NER, which has no label scores.
    (A reused project may hold newer labels of other prompts for the same texts: only this prompt's count.)"""
    task = task_for(project.settings)
    if not task.scored:
        return None
    references = project.store.reference_labels("pool")
    rows = {eid: (scores, baseline) for _, eid, scores, baseline
            in project.store.scored_annotations(llm.model_sha256, prompt_key)}
    stored = [(eid, *rows[eid]) for eid in references if eid in rows]
    examples = {e.id: e for e in project.store.examples(ids=[eid for eid, _, _ in stored])}
    gold = [e for e in (*project.store.examples("demo"), *project.store.examples("dev"))
            if e.id in rows and e.label is not None][:CALIBRATION_LIMIT]
    alone = fit([rows[e.id][0] for e in gold], [str(e.label) for e in gold], project.settings.label_names,
                [rows[e.id][1] for e in gold], ignore=project.settings.no_relation).calibration
    labels = {row[0]: row[1] for row in project.store.prompt_annotations(llm.model_sha256, prompt_key,
                                                                           [eid for eid, _, _ in stored])}
    choices = (lambda eid, scores, baseline: scores,
               lambda eid, scores, baseline: {label: scores[label] - (baseline or {}).get(label, 0.0)
                                              for label in scores},
               lambda eid, scores, baseline: alone.probabilities(scores, baseline),
               lambda eid, scores, baseline: {str(labels[eid]): 1.0})
    results = []
    for choose in choices:
        predicted = {}
        for eid, scores, baseline in stored:
            values = choose(eid, scores, baseline)
            predicted[eid] = max(values, key=values.__getitem__)
        metrics = task.metrics({i: references[i] for i in predicted}, predicted, examples)
        results.append(float(metrics.get("f1", metrics.get("accuracy", 0.0))))
    return results[0], results[1], results[2], results[3]


def as_written(project: Project, annotator: Annotator) -> float:
    """Entity F1 of the pool with the spans and types the teacher wrote (annotate may have decided them again)."""
    references = project.store.reference_labels("pool")
    rows = [(example, spans) for _, example, spans in annotator.written_spans() if example.id in references]
    metrics = task_for(project.settings).metrics({e.id: references[e.id] for e, _ in rows},
                                                 {e.id: spans for e, spans in rows}, {e.id: e for e, _ in rows})
    return float(metrics["f1"])


def row(name: str, dataset: str, spec: dict[str, Any], project: Project, llm: LLM, models: Path, n: int,
        embedder: str, tune_note: str = "") -> None:
    prompt = project.settings.prompt
    # as `annotate` builds it: kNN demos from `embedder`, the probe on whichever pulled embedder wins on gold
    annotator = Session(project.root, models, embedder=embedder, teacher_factory=lambda *_: llm).annotator(project)
    started = time.perf_counter()
    report = annotator.run(AnnotateConfig(n=n))
    seconds = time.perf_counter() - started
    quality = evaluate_llm(project, "pool").llm
    assert quality is not None
    scores = offline_scores(project, llm, annotator.prompt_key)
    found = float(quality.metrics.get(spec["metric"], 0.0))
    nan = float("nan")
    raw, contextual, alone, calibrated = scores or (found, nan, nan, found)
    fit = report.calibration
    method, loo = "-", nan
    if isinstance(fit, CalibrationFit):
        method, loo = f"{fit.method} {fit.probe_weight:g}", fit.loo_score
    elif isinstance(fit, TyperFit):  # NER: the spans as the teacher wrote them, then as annotate's rule decides
        method, loo = (fit.typer.rule if fit.typer else "as written"), fit.loo_f1
        raw = as_written(project, annotator)
    pool_docs = max(report.annotated - (fit.n if fit else 0), 1)
    asked = max(report.annotated, 1)
    docs_per_s = pool_docs / report.llm_seconds if report.llm_seconds else nan
    print(f"{dataset:8} {name:8} {quality.n:5d} {spec['metric']:8} {raw:6.3f} {contextual:7.3f} {alone:6.3f} "
          f"{calibrated:6.3f} {method:>20} "
          f"{loo:8.3f} {quality.parse_error_rate or 0.0:9.1%} "
          f"{report.tokens_in / asked:8.0f} {report.tokens_evaluated / asked:8.0f} "
          f"{docs_per_s:6.2f} {seconds:7.0f}  {describe(prompt)}{tune_note}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--n-rows", type=int, default=300, help="pool size of the main and default rows")
    parser.add_argument("--gold", type=int, default=100)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--datasets", default="imdb,conll,semeval")
    parser.add_argument("--rows", default="main,default,tuned")
    parser.add_argument("--budget", type=int, default=800, help="tune's budget of LLM calls")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--keep", type=Path, default=None, help="Keep the projects in this folder.")
    parser.add_argument("--embedder", default=DEFAULT_STUDENT,
                        help="sentence embedder of the annotate rows (kNN demonstrations; the calibration's probe "
                             "reads it or another pulled embedder that does better on gold); tune's kNN variants "
                             f"use {DEFAULT_STUDENT} either way, so a rerun reuses its calls")
    args = parser.parse_args()
    models = default_models_dir()
    llm = load_teacher(TeacherSettings(args.model, n_ctx=4096, threads=args.threads), models)
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-teacher-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"{'dataset':8} {'row':8} {'n':>5} {'metric':8} {'raw':>6} {'context':>7} {'calib.':>6} {'+probe':>6} "
          f"{'calibration, probe':>20} "
          f"{'gold LOO':>8} {'parse err':>9} {'tok in':>8} {'tok eval':>8} {'docs/s':>6} {'seconds':>7}  prompt",
          flush=True)
    for name in args.datasets.split(","):
        spec = DATASETS[name]
        pool = only(random.Random(1).sample(records(args.data / spec["pool"]), args.n), spec.get("only"))
        gold = only(random.Random(2).sample(records(args.data / spec["gold"]), args.gold), spec.get("only"))
        for kind in args.rows.split(","):
            prompt = MAIN if kind == "main" else PromptSettings()
            size = args.n if kind == "tuned" else min(args.n_rows, args.n)
            project = build(root / f"{name}-{kind}", settings_for(spec, args.data, prompt), pool[:size], gold)
            note = ""
            if kind == "tuned":
                embed = load_embedder(DEFAULT_STUDENT, models, project)
                started = time.perf_counter()
                tuned = PromptTuner(project, llm, embed).run(TuneConfig(budget=args.budget))
                note = (f"  [tune: {time.perf_counter() - started:.0f}s, {tuned.calls} calls, gold "
                        f"{tuned.chosen.score:.3f} vs {tuned.default.score:.3f} untuned]")
            row(kind, name, spec, project, llm, models, size, args.embedder, note)
            project.close()
    print(f"(projects in {root}; raw = argmax of the label log-probs, calib. = after the calibration chosen on "
          "the gold pool without the probe on the gold embeddings, +probe = the calibration annotate chose (the probe "
          "weight after its method; 0: no probe); NER: raw = the spans as the teacher wrote them, +probe = "
          "as the span rule annotate chose on gold decides them; tok in/eval: prompt tokens per request, and those "
          "evaluated after KV prefix reuse; docs/s: pool texts per second of LLM time)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
