"""Active-learning curves (issue 5): random vs least confidence vs entropy vs k-means, reweighting on vs off.

One project per dataset; every strategy is a named loop in it, so the LLM annotation cache is shared and an example
two strategies both pick is annotated once. The student is scored on a gold test slice every round.

Usage: python benchmarks/bench_loop.py --dataset imdb|conll [--budget 300] [--per-round 50] [--pool 3000]
       [--test 1000] [--strategies random,least-confidence,entropy,kmeans] [--reweight entropy] [--seeds 0,1,2]
       [--keep-top 0.5] [--keep DIR]

With several seeds the curves are also averaged over them, and the share of labels is read off the mean curves.
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

from llmaaa_local.annotate import Annotator, load_embedder, load_teacher
from llmaaa_local.config import LabelInfo, ProjectSettings, PromptSettings, TeacherSettings, TrainConfig
from llmaaa_local.loop import ActiveLearningLoop, LoopConfig
from llmaaa_local.models import DEFAULT_STUDENT, default_models_dir
from llmaaa_local.project import Project, learning_curve

DATASETS: dict[str, dict[str, Any]] = {
    "imdb": {"task": "classify", "pool": "imdb/train.jsonl.gz", "gold": "imdb/train.jsonl.gz",
             "test": "imdb/test.jsonl.gz", "metric": "accuracy", "max_length": 128, "demos": "none",
             "labels": (LabelInfo("positive", "the reviewer liked the film"),
                        LabelInfo("negative", "the reviewer disliked the film"))},
    "conll": {"task": "ner", "pool": "conll2003/train.jsonl", "gold": "conll2003/dev.jsonl",
              "test": "conll2003/test.jsonl", "metric": "f1", "max_length": 96, "demos": "knn",
              "labels": tuple(LabelInfo(t) for t in ("PER", "ORG", "LOC", "MISC"))},
}




def build(root: Path, spec: dict[str, Any], args: argparse.Namespace) -> Project:
    folder = root / "project"
    if (folder / "project.sqlite").exists():
        return Project.open(folder)
    pool_source = records(DATA / spec["pool"])
    pool = random.Random(1).sample(pool_source, args.pool)
    taken = {row["id"] for row in pool}
    gold = random.Random(2).sample([r for r in records(DATA / spec["gold"]) if r["id"] not in taken], args.gold)
    test = random.Random(3).sample(records(DATA / spec["test"]), args.test)
    settings = ProjectSettings(spec["task"], spec["labels"], prompt=PromptSettings(demos=spec["demos"], k=4))
    project = Project.init(folder, settings)
    project.import_corpus(write(root / "pool.jsonl", pool))
    project.import_gold(write(root / "gold.jsonl", gold), "demo")
    project.import_gold(write(root / "test.jsonl", test), "test")
    return project


def share_needed(curve: list[dict[str, Any]], target: float, metric: str) -> int | None:
    """The fewest labeled examples at which a curve reaches `target`."""
    return next((row["labeled"] for row in curve if row["student"].get(metric, -1.0) >= target), None)


def mean_curves(runs: list[dict[str, list[dict[str, Any]]]], metric: str) -> dict[str, list[dict[str, Any]]]:
    """Curves averaged round by round over seeds (student and teacher scores; labels used from the first seed), as
    far as every seed's curve goes (a loop whose pool ran out stops early)."""
    mean: dict[str, list[dict[str, Any]]] = {}
    for name, first in runs[0].items():
        rows = []
        for i, row in enumerate(first[: min(len(curves[name]) for curves in runs)]):
            same = [curves[name][i] for curves in runs]
            rows.append({"labeled": row["labeled"],
                         "student": {metric: sum(r["student"].get(metric, 0.0) for r in same) / len(same)},
                         "llm": {metric: sum(r["llm"].get(metric, 0.0) for r in same) / len(same),
                                 "n": sum(r["llm"].get("n", 0) for r in same) / len(same)}})
        mean[name] = rows
    return mean


def report(curves: dict[str, list[dict[str, Any]]], metric: str, title: str) -> None:
    """The learning curves as a table, the labels each loop needs to reach random's final and best scores."""
    print(f"\nstudent {metric} by LLM labels used ({title})")
    labeled = [row["labeled"] for row in next(iter(curves.values()))]
    print(f"{'loop':28}" + "".join(f"{n:>8}" for n in labeled))
    for name, curve in curves.items():
        print(f"{name:28}" + "".join(f"{row['student'].get(metric, float('nan')):8.4f}" for row in curve))
    if "random" in curves:
        scores = [row["student"].get(metric, 0.0) for row in curves["random"]]
        final = curves["random"][-1]["labeled"]
        for what, target in (("final", scores[-1]), ("best", max(scores))):
            print(f"random's {what} score {target:.4f} (of {final} labels): labels each loop needs to reach it")
            for name, curve in curves.items():
                needed = share_needed(curve, target, metric)
                share = f"{needed / final:.0%}" if needed else "not reached"
                print(f"  {name:28} {needed if needed else '-':>6}  ({share})")
    print("student vs teacher at the last round (teacher = its labels on the examples it annotated):")
    for name, curve in curves.items():
        last = curve[-1]
        print(f"  {name:28} student {last['student'].get(metric, float('nan')):.4f}   "
              f"teacher {last['llm'].get(metric, float('nan')):.4f} on {last['llm'].get('n', 0):.0f} labels")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=list(DATASETS), default="imdb")
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--seed-size", type=int, default=50)
    parser.add_argument("--per-round", type=int, default=50)
    parser.add_argument("--pool", type=int, default=3000)
    parser.add_argument("--gold", type=int, default=100)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--strategies", default="random,least-confidence,entropy,kmeans")
    parser.add_argument("--reweight", default="entropy", help="strategy to repeat with reweighting ('' for none)")
    parser.add_argument("--seeds", default="0", help="comma-separated loop seeds (seed batch, random picks, training)")
    parser.add_argument("--keep-top", type=float, default=1.0, help="train on this most confident share of each label")
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    spec = DATASETS[args.dataset]
    root = args.keep or Path(tempfile.mkdtemp(prefix=f"bench-loop-{args.dataset}-"))
    root.mkdir(parents=True, exist_ok=True)
    project = build(root, spec, args)
    models = default_models_dir()
    llm = load_teacher(TeacherSettings(args.model, n_ctx=4096, threads=args.threads), models)
    embed = load_embedder(DEFAULT_STUDENT, models, project) if project.settings.prompt.uses_embeddings else None
    annotator = Annotator(project, llm, embed)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    runs = [(name, False) for name in args.strategies.split(",")] + ([(args.reweight, True)] if args.reweight else [])
    tag = f"+top{round(args.keep_top * 100)}" if args.keep_top < 1 else ""
    metric = spec["metric"]
    by_seed: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for seed in seeds:
        train = TrainConfig(epochs=args.epochs, max_length=spec["max_length"], threads=args.threads, seed=seed,
                            keep_top=args.keep_top)
        curves = by_seed.setdefault(seed, {})
        for strategy, reweight in runs:
            label = f"{strategy}{'+reweight' if reweight else ''}"
            config = LoopConfig(name=f"{label}{tag}-s{seed}", strategy=strategy, seed_size=args.seed_size,
                                per_round=args.per_round, budget=args.budget, candidates=args.candidates, seed=seed,
                                train=TrainConfig(**{**train.__dict__, "reweight": reweight}))
            started = time.perf_counter()
            curve = learning_curve(ActiveLearningLoop(project, config, annotator, models).run())
            curves[label] = curve
            print(f"{config.name}: " + "  ".join(f"{row['labeled']}:{row['student'].get(metric, float('nan')):.4f}"
                                                 for row in curve) + f"  ({time.perf_counter() - started:.0f}s)",
                  flush=True)
        report(curves, metric, f"seed {seed}, {args.test} gold test examples")
    if len(seeds) > 1:
        report(mean_curves(list(by_seed.values()), metric), metric, f"mean of seeds {args.seeds}")
    print(f"(project kept in {root})", file=sys.stderr)


if __name__ == "__main__":
    main()
