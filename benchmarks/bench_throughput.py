"""Annotator throughput vs bare llama-cpp-python on the same prompts, measured side by side in one run (issue 3).

Bare: `Llama.reset(); Llama.eval(prompt tokens)` and the last token's logits, for each rendered prompt.
Annotator: the real Annotator (task prompts, cache lookups, KV prefix reuse, scoring, SQLite writes) on a fresh
project holding the same reviews. Reported per evaluated token (target >= 0.95x) and per document, plus the share of
prompt tokens the KV prefix reuse saved. The two run in alternating rounds so machine noise hits both alike.

Usage: python benchmarks/bench_throughput.py [--n 60] [--rounds 2] [--demos none|knn] [--model gemma-3-270m]
"""

from __future__ import annotations

import argparse
import ctypes
import gzip
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from llama_cpp import Llama

from llmaaa_local.annotate import AnnotateConfig, Annotator, load_embedder, load_teacher
from llmaaa_local.config import LabelInfo, ProjectSettings, PromptSettings, TeacherSettings
from llmaaa_local.models import DEFAULT_STUDENT, default_models_dir, resolve
from llmaaa_local.project import Project

LABELS = (LabelInfo("positive", "the reviewer liked the film"), LabelInfo("negative", "the reviewer disliked it"))


def reviews(data: Path, split: str, n: int, seed: int) -> list[dict[str, str]]:
    with gzip.open(data / "imdb" / f"{split}.jsonl.gz", "rt", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    return random.Random(seed).sample(records, n)


def bare_pass(llm: Llama, prompts: list[str]) -> tuple[int, float]:
    """Evaluate each prompt from scratch and read its last logits; returns (tokens, seconds)."""
    tokens_total, started = 0, time.perf_counter()
    for text in prompts:
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        llm.reset()
        llm.eval(tokens)
        pointer = llm._ctx.get_logits_ith(-1)
        logits = np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(llm.n_vocab(),))
        float(logits.max())
        tokens_total += len(tokens)
    return tokens_total, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=60, help="reviews per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--demos", choices=["none", "knn"], default="none")
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    models = default_models_dir()
    teacher = TeacherSettings(args.model, n_ctx=4096, threads=args.threads)
    ours = load_teacher(teacher, models)
    bare = Llama(str(resolve(args.model, models, "gguf")), n_ctx=4096, n_threads=args.threads,
                 n_threads_batch=args.threads, logits_all=False, verbose=False)
    root = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    settings = ProjectSettings("classify", LABELS, prompt=PromptSettings(demos=args.demos, k=4))
    project = Project.init(root / "p", settings)
    gold = root / "gold.jsonl"
    gold.write_text("".join(json.dumps(r) + "\n" for r in reviews(args.data, "train", 100, seed=2)))
    project.import_gold(gold, "demo")
    embed = load_embedder(DEFAULT_STUDENT, models, project) if args.demos == "knn" else None
    annotator = Annotator(project, ours, embed)
    totals = {"bare_tokens": 0, "bare_s": 0.0, "ours_in": 0, "ours_eval": 0, "ours_s": 0.0, "docs": 0}
    for round_no in range(args.rounds):
        batch = reviews(args.data, "test", args.n, seed=100 + round_no)
        corpus = root / f"round{round_no}.jsonl"
        corpus.write_text("".join(json.dumps(r) + "\n" for r in batch))
        project.import_corpus(corpus)
        ids = tuple(r["id"] for r in batch)
        # the exact prompts the annotator sends, rendered the way the backend renders them
        examples = list(project.store.examples(ids=ids))
        vectors = embed(examples) if embed else None
        prompts = []
        for i, example in enumerate(examples):
            demos = annotator.pool.choose(example, None if vectors is None else vectors[i])
            request = annotator.task.request(example, demos, settings.prompt.max_chars)
            prompts.append(ours.render(request.prompt))  # type: ignore[attr-defined]
            if getattr(request, "baseline", None) is not None:  # the content-free prompt is evaluated too
                prompts.append(ours.render(request.baseline))  # type: ignore[attr-defined]
        tokens, seconds = bare_pass(bare, prompts)
        started = time.perf_counter()
        report = annotator.run(AnnotateConfig(ids=ids, calibrate=False))
        wall = time.perf_counter() - started
        totals["bare_tokens"] += tokens
        totals["bare_s"] += seconds
        totals["ours_in"] += report.tokens_in
        totals["ours_eval"] += report.tokens_evaluated
        totals["ours_s"] += wall
        totals["docs"] += report.annotated
        print(f"round {round_no}: bare {tokens / seconds:6.0f} tok/s  annotator {report.tokens_evaluated / wall:6.0f} "
              f"evaluated tok/s  ({report.annotated} docs, {report.tokens_in} prompt tokens)", flush=True)
    bare_rate = totals["bare_tokens"] / totals["bare_s"]
    ours_rate = totals["ours_eval"] / totals["ours_s"]
    saved = 1 - totals["ours_eval"] / totals["ours_in"]
    print(f"demos={args.demos}  docs={totals['docs']}")
    print(f"per evaluated token: annotator {ours_rate:.0f} tok/s vs bare {bare_rate:.0f} tok/s -> "
          f"{ours_rate / bare_rate:.3f}x (target >= 0.95x)")
    print(f"per document: annotator {totals['docs'] / totals['ours_s']:.2f} docs/s vs bare "
          f"{totals['docs'] / totals['bare_s']:.2f} docs/s -> {totals['bare_s'] / totals['ours_s']:.3f}x")
    print(f"prompt tokens saved by KV prefix reuse: {saved:.1%} ({totals['ours_in'] - totals['ours_eval']} of "
          f"{totals['ours_in']})")


if __name__ == "__main__":
    main()
