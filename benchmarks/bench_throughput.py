"""Annotator throughput vs bare llama-cpp-python on the same prompts, measured side by side in one run (issue 3).

The prompts are the annotator's own, rendered as its backend renders them, in the order it sends them, each distinct
prompt once (the annotator scores a zero-shot run's content-free baseline prompt once). Two bare passes:
  bare, prefix reuse: llama-cpp-python's own rule from `Llama.generate` (keep the longest common token prefix in the
     KV cache, `eval` the rest) and the last token's logits. It evaluates the same tokens at the same positions as
     the annotator, so tokens/s per evaluated token compares like with like (target >= 0.95x).
  bare, from scratch: `Llama.reset(); Llama.eval(tokens)` for every prompt: what prefix reuse saves, per document.
Annotator: the real Annotator (task prompts, cache lookups, KV prefix reuse, scoring, SQLite writes) on a fresh
project holding the same reviews. The bare passes share one `Llama` of the same GGUF with the annotator's context
settings (threads, batch, context size, extra buffer types on); all passes run in rotating order in short rounds,
so machine noise and drift hit all alike.

Usage: python benchmarks/bench_throughput.py [--n 10] [--rounds 18] [--demos none|knn] [--model gemma-3-270m]
"""

from __future__ import annotations

import argparse
import ctypes
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from llama_cpp import Llama
from shared_data import DATA, records, rotated, write

from llmaaa_local.annotate import AnnotateConfig, Annotator, load_embedder, load_teacher
from llmaaa_local.config import LabelInfo, ProjectSettings, PromptSettings, TeacherSettings
from llmaaa_local.llama_backend import N_BATCH
from llmaaa_local.models import DEFAULT_STUDENT, default_models_dir, resolve
from llmaaa_local.project import Project

LABELS = (LabelInfo("positive", "the reviewer liked the film"), LabelInfo("negative", "the reviewer disliked it"))


def reviews(data: Path, split: str, n: int, seed: int) -> list[dict[str, str]]:
    return random.Random(seed).sample(records(data / "imdb" / f"{split}.jsonl.gz"), n)


def bare_pass(llm: Llama, prompts: list[str], reuse: bool) -> tuple[int, float]:
    """Evaluate each prompt and read its last logits; returns (tokens evaluated, seconds)."""
    evaluated, started = 0, time.perf_counter()
    for text in prompts:
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        shared = min(Llama.longest_token_prefix(llm._input_ids.tolist(), tokens), len(tokens) - 1) if reuse else 0
        if shared and llm._ctx.kv_cache_seq_rm(-1, shared, -1):
            llm.n_tokens = shared
        else:
            shared = 0
            llm.reset()
        llm.eval(tokens[shared:])
        pointer = llm._ctx.get_logits_ith(-1)
        logits = np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(llm.n_vocab(),))
        float(logits.max())
        evaluated += len(tokens) - shared
    return evaluated, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10, help="reviews per round (short rounds: drift hits all passes)")
    parser.add_argument("--rounds", type=int, default=18, help="a multiple of 3: each pass goes first equally often")
    parser.add_argument("--demos", choices=["none", "knn"], default="none")
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    models = default_models_dir()
    teacher = TeacherSettings(args.model, n_ctx=4096, threads=args.threads)
    ours = load_teacher(teacher, models)
    bare = Llama(model_path=str(resolve(args.model, models, "gguf")), n_ctx=4096, n_batch=N_BATCH,
                 n_threads=args.threads, n_threads_batch=args.threads, verbose=False)
    root = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    settings = ProjectSettings("classify", LABELS, prompt=PromptSettings(demos=args.demos, k=4))
    project = Project.init(root / "p", settings)
    project.import_gold(write(root / "gold.jsonl", reviews(args.data, "train", 100, seed=2)), "demo")
    embed = load_embedder(DEFAULT_STUDENT, models, project) if args.demos == "knn" else None
    annotator = Annotator(project, ours, embed)
    passes = ("annotator", "bare, prefix reuse", "bare, from scratch")
    tokens = dict.fromkeys(passes, 0)
    seconds = dict.fromkeys(passes, 0.0)
    seen: set[str] = set()
    docs = prompt_tokens = 0
    for round_no in range(args.rounds):
        batch = reviews(args.data, "test", args.n, seed=100 + round_no)
        project.import_corpus(write(root / f"round{round_no}.jsonl", batch))
        ids = tuple(r["id"] for r in batch)
        examples = list(project.store.examples(ids=ids))
        prompts = []
        for example, demos in annotator.plan(examples):
            request = annotator.task.request(example, demos, settings.prompt.max_chars)
            for prompt in (request.prompt, getattr(request, "baseline", None)):
                text = ours.render(prompt) if prompt is not None else None  # type: ignore[attr-defined]
                if text is not None and text not in seen:
                    seen.add(text)
                    prompts.append(text)
        rates = {}
        for name in rotated(passes, round_no):
            started = time.perf_counter()
            if name == "annotator":
                report = annotator.run(AnnotateConfig(ids=ids, calibrate=False))
                count, wall = report.tokens_evaluated, time.perf_counter() - started
                docs += report.annotated
                prompt_tokens += report.tokens_in
            else:
                count, wall = bare_pass(bare, prompts, reuse=name == "bare, prefix reuse")
            tokens[name] += count
            seconds[name] += wall
            rates[name] = count / wall
        print(f"round {round_no}: " + "  ".join(f"{name} {rate:5.0f} tok/s" for name, rate in rates.items()) +
              f"  -> {rates['annotator'] / rates['bare, prefix reuse']:.3f}x", flush=True)
    rate = {name: tokens[name] / seconds[name] for name in passes}
    print(f"demos={args.demos}  docs={docs}  rounds={args.rounds}")
    print(f"per evaluated token: annotator {rate['annotator']:.0f} tok/s vs bare llama-cpp-python with its prefix "
          f"reuse {rate['bare, prefix reuse']:.0f} tok/s -> {rate['annotator'] / rate['bare, prefix reuse']:.3f}x "
          f"(target >= 0.95x); bare from scratch {rate['bare, from scratch']:.0f} tok/s")
    print(f"per document: annotator {docs / seconds['annotator']:.2f} docs/s vs bare from scratch "
          f"{docs / seconds['bare, from scratch']:.2f} docs/s -> "
          f"{seconds['bare, from scratch'] / seconds['annotator']:.3f}x")
    print(f"prompt tokens saved by KV prefix reuse (and the baseline prompt scored once): "
          f"{1 - tokens['annotator'] / prompt_tokens:.1%} ({prompt_tokens - tokens['annotator']} of {prompt_tokens})")

if __name__ == "__main__":
    main()
