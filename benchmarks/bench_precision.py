"""Is bf16 autocast faster than fp32 for training here? (issue 14: `train --precision auto`'s rule, checked)

One training step of the classification student (mean pooling, its linear head, cross-entropy, AdamW) on a batch of
IMDb reviews cut to --max-length sub-words, in fp32 and in bf16 autocast, taking turns; the median step of each.
`auto` trains in bf16 where `fast_bf16_cpu` (AMX or AVX512-BF16) or a CUDA GPU says so: bf16 should win there and
lose elsewhere.

Usage: python benchmarks/bench_precision.py [--students minilm-l6,mpnet-base] [--batch 16] [--max-length 256]
           [--steps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from shared_data import DATA, records, rotated
from tokenizers import Tokenizer

from llmaaa_local.encoding import InputEncoder, StudentSpec
from llmaaa_local.models import default_models_dir, resolve
from llmaaa_local.records import Example
from llmaaa_local.student import StudentModel, arithmetic, fast_bf16_cpu, tensors


def step_seconds(model: StudentModel, optimizer: torch.optim.Optimizer, inputs: dict[str, torch.Tensor],
                 targets: torch.Tensor, bf16: bool) -> float:
    """One training step, timed."""
    started = time.perf_counter()
    # not student.mixed_precision: that follows the rule this benchmark checks, and bf16 must run on any CPU here
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = torch.nn.functional.cross_entropy(model(**inputs).float(), targets)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", default="minilm-l6,mpnet-base")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5, help="timed steps of each arithmetic (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    rows = random.Random(0).sample(records(DATA / "imdb" / "train.jsonl.gz"), args.batch)
    examples = [Example(id=str(i), text=row["text"]) for i, row in enumerate(rows)]
    print(f"AMX or AVX512-BF16: {fast_bf16_cpu()}; `--precision auto` trains in {arithmetic(device, 'auto')}; "
          f"{args.batch} reviews of at most {args.max_length} sub-words a step, {args.threads} threads")
    for name in args.students.split(","):
        folder = resolve(name, default_models_dir(), "hf")
        spec = StudentSpec("classify", ("positive", "negative"), args.max_length, name, pooling="mean")
        encoder = InputEncoder(Tokenizer.from_file(str(folder / "tokenizer.json")), spec)
        inputs = tensors(encoder.batch(encoder.encode(examples)), device)
        targets = torch.tensor([i % 2 for i in range(args.batch)])
        model = StudentModel(spec, folder).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        seconds: dict[bool, list[float]] = {False: [], True: []}
        for bf16 in (False, True):
            step_seconds(model, optimizer, inputs, targets, bf16)  # warm-up: first-call allocations and kernel choice
        for turn in range(args.steps):
            for bf16 in rotated([False, True], turn):
                seconds[bf16].append(step_seconds(model, optimizer, inputs, targets, bf16))
        fp32_step, bf16_step = (statistics.median(seconds[key]) for key in (False, True))
        print(f"{name:12} fp32 {fp32_step:6.2f} s/step   bf16 autocast {bf16_step:6.2f} s/step   "
              f"bf16 {fp32_step / bf16_step:4.2f}x fp32")


if __name__ == "__main__":
    main()
