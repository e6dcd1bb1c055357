"""Prompt tokens/s per llama.cpp build and buffer setting, for each GGUF, side by side in one run (issue 12).

Variants, each run in a child process of its own (the build is picked by PYTHONPATH; a crash is reported as a
result, not fatal to the benchmark):
  setup build              what `make setup` installs (AMX kernels compiled out), extra buffer types on (repacking)
  setup build, extra off   the same build with extra buffer types off: what an AMX build gets at run time
  old default build        with --old DIR: llama-cpp-python built as before this change (plain GGML_NATIVE), e.g.
                           `pip install --target DIR --no-deps --no-cache-dir llama-cpp-python==0.3.36`
Each child loads the GGUF through the backend (not timed), then measures
  prompt      one 512-token prompt evaluated from an empty KV cache, best of 3
  annotator   the real Annotator, zero-shot, on the round's fresh IMDb reviews: evaluated prompt tokens per second
Every round runs every variant in rotating order on the same reviews, so drift and noise hit all alike.

Usage: python benchmarks/bench_builds.py [--old DIR] [--rounds 4] [--n 8] [--models smollm2-135m,gemma-3-270m]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shared_data import DATA, records, rotated, write

VARIANTS = ("setup build", "setup build, extra off", "old default build")


def child(model: str, extra: bool, n: int, round_no: int, threads: int, data: Path) -> dict[str, object]:
    import llama_cpp

    from llmaaa_local.annotate import AnnotateConfig, Annotator
    from llmaaa_local.config import LabelInfo, ProjectSettings, PromptSettings
    from llmaaa_local.llama_backend import LlamaBackend
    from llmaaa_local.models import default_models_dir, resolve
    from llmaaa_local.project import Project

    path = resolve(model, default_models_dir(), "gguf")
    backend = LlamaBackend(path, n_ctx=2048, n_threads=threads, extra_buffers=extra, model_sha256=f"bench-{extra}")
    tokens = backend._context.tokenize(("word " * 600).encode(), add_bos=True, special=False)[:512]
    best = 0.0
    for _ in range(3):
        backend._context.keep(0)
        started = time.perf_counter()
        backend._decode(tokens)
        best = max(best, len(tokens) / (time.perf_counter() - started))
    root = Path(tempfile.mkdtemp(prefix="bench-builds-"))
    labels = (LabelInfo("positive", "the reviewer liked the film"), LabelInfo("negative", "the reviewer disliked it"))
    project = Project.init(root / "p", ProjectSettings("classify", labels, prompt=PromptSettings(demos="none")))
    reviews = random.Random(100 + round_no).sample(records(data / "imdb" / "test.jsonl.gz"), n)
    project.import_corpus(write(root / "pool.jsonl", reviews))
    report = Annotator(project, backend).run(AnnotateConfig(n=n, calibrate=False))
    info = llama_cpp.llama_print_system_info().decode()
    return {"prompt": best, "annotator": report.tokens_evaluated / report.llm_seconds, "docs": report.annotated,
            "amx": "AMX_INT8 = 1" in info, "buffers": list(backend.weight_buffers), "build": llama_cpp.__file__}


def run_variant(variant: str, model: str, args: argparse.Namespace, round_no: int) -> dict[str, object]:
    env = dict(os.environ)
    if variant == "old default build":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(args.old), env.get("PYTHONPATH", "")]))
    argv = [sys.executable, "-X", "faulthandler", __file__, "--child", model, "--extra",
            "off" if variant.endswith("extra off") else "on", "--n", str(args.n), "--round", str(round_no),
            "--threads", str(args.threads), "--data", str(args.data)]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=Path, default=None, help="folder holding the old default build's llama_cpp")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--n", type=int, default=8, help="reviews per round and variant")
    parser.add_argument("--models", default="smollm2-135m,gemma-3-270m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--extra", choices=["on", "off"], default="on", help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.extra == "on", args.n, args.round, args.threads, args.data)))
        return
    variants = [v for v in VARIANTS if v != "old default build" or args.old is not None]
    models = args.models.split(",")
    results: dict[tuple[str, str], list[dict[str, object]]] = {(m, v): [] for m in models for v in variants}
    for round_no in range(args.rounds):
        for model in models:
            for variant in rotated(variants, round_no):
                result = run_variant(variant, model, args, round_no)
                results[model, variant].append(result)
                shown = result.get("error") or f"prompt {result['prompt']:5.0f} tok/s  annotator " \
                                               f"{result['annotator']:5.0f} tok/s  weights {result['buffers']}"
                print(f"round {round_no} {model:14} {variant:24} {shown}", flush=True)
    print(f"\n{args.threads} threads, {args.rounds} rounds of {args.n} reviews; mean over rounds")
    print(f"{'model':14} {'variant':24} {'AMX':4} {'prompt 512 tok/s':>17} {'annotator tok/s':>16}  vs setup build")
    for model in models:
        base = None
        for variant in variants:
            runs = [r for r in results[model, variant] if "error" not in r]
            if not runs:
                print(f"{model:14} {variant:24} crashed: {results[model, variant][0]['error']}")
                continue
            prompt = sum(float(r["prompt"]) for r in runs) / len(runs)  # type: ignore[arg-type,misc]
            annotator = sum(float(r["annotator"]) for r in runs) / len(runs)  # type: ignore[arg-type,misc]
            base = base or (prompt, annotator)
            print(f"{model:14} {variant:24} {'yes' if runs[0]['amx'] else 'no':4} {prompt:17.0f} {annotator:16.0f}"
                  f"  {prompt / base[0]:.3f}x / {annotator / base[1]:.3f}x")


if __name__ == "__main__":
    main()
