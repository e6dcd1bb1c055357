"""The child process `doctor` runs: it loads llama.cpp (which may crash) and prints one JSON answer.

`python -m llmaaa_local.probe info` reports the build; `... decode GGUF [--threads N]` decodes one prompt
through the backend and reports its prompt tokens/s.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import LlmaaaError
from .llm import Prompt

# About 300 tokens: long enough for a prompt speed, short enough to take a second on two cores.
PROBE_TEXT = ("The committee met on Tuesday to review the annual report, the budget for next year and the plans for "
              "the new library. ") * 12


def main(argv: list[str] | None = None) -> None:
    try:
        answer(argv)
    except LlmaaaError as error:
        sys.exit(str(error))  # one line on stderr, exit 1: doctor shows it


def answer(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmaaa_local.probe")
    parser.add_argument("what", choices=["info", "decode"])
    parser.add_argument("gguf", nargs="?", type=Path)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    from .llama_backend import LlamaBackend, build_info

    reply = build_info()
    if args.what == "decode":
        backend = LlamaBackend(args.gguf, n_ctx=1024, n_threads=args.threads, chat_template=False,
                               model_sha256="probe")
        cost = backend.score(Prompt("Read the text.", PROBE_TEXT, "Is it about a meeting? Answer:"), ["yes", "no"]).cost
        reply = {"prompt_tokens": cost.tokens_in, "seconds": cost.seconds,
                 "tokens_per_second": cost.tokens_evaluated / cost.seconds if cost.seconds else 0.0,
                 "extra_buffers": backend.extra_buffers, "weight_buffers": list(backend.weight_buffers)}
        backend.close()
    print(json.dumps(reply))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
