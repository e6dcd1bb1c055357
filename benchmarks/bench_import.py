"""Seconds and peak memory to import the shared datasets (issue 2), each in a fresh process.

Usage: python benchmarks/bench_import.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = [
    ("imdb train (25k reviews)", "classify", "imdb/train.jsonl.gz"),
    ("imdb test (25k reviews)", "classify", "imdb/test.jsonl.gz"),
    ("conll2003 train (14k sentences)", "ner", "conll2003/train.jsonl"),
    ("semeval2010 train (8k sentences)", "re", "semeval2010_task8/train.jsonl"),
]


def run(*args: str) -> tuple[float, float]:
    """Run the CLI in a fresh process; returns (seconds, peak resident MB) of that process alone."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "llmaaa_local", *args], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"failed: llmaaa-local {' '.join(args)}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    print(f"{'dataset':34} {'first import':>13} {'re-import':>10} {'peak RSS':>9}")
    for name, task, relative in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            project = str(Path(tmp) / "p")
            run("init", project, "--task", task)
            first, peak = run("--project", project, "import", "corpus", str(args.data / relative))
            again, _ = run("--project", project, "import", "corpus", str(args.data / relative))
        print(f"{name:34} {first:12.2f}s {again:9.2f}s {peak:7.0f}MB")
    print("(seconds include starting Python; the import itself is what `import corpus` prints)")


if __name__ == "__main__":
    main()
