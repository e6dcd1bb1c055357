"""The llama.cpp backend on the real small GGUF: log-probs against an independent computation, KV prefix reuse,
grammar-constrained NER output, context limits, chat templates, and the CLI end to end, killed and resumed."""

from __future__ import annotations

import ctypes
import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import pytest
from click.testing import CliRunner
from llama_cpp import Llama

from llmaaa_local.cli import main
from llmaaa_local.config import LabelInfo, ProjectSettings, PromptSettings
from llmaaa_local.errors import LlmaaaError
from llmaaa_local.formats import read_examples
from llmaaa_local.llama_backend import LlamaBackend, chat_formatter, render_chat
from llmaaa_local.llm import ContextOverflow, Cost, GenerateResponse, Prompt, render_plain
from llmaaa_local.models import resolve
from llmaaa_local.project import DB_NAME, Project
from llmaaa_local.records import Example
from llmaaa_local.spans import align
from llmaaa_local.tasks import task_for
from llmaaa_local.tasks.ner import MAX_SPAN_TOKENS, EntityRecognition

pytestmark = pytest.mark.slow

DEMO_DATA = Path(str(files("llmaaa_local").joinpath("demo_data")))
N_CTX = 1024
# One thread: llama.cpp's threads spin at every barrier, so on a busy two-core machine two threads run far slower.
THREADS = 1


@pytest.fixture(scope="module")
def gguf(models_dir: Path) -> Path:
    return resolve("smollm2-135m", models_dir, "gguf")


@pytest.fixture(scope="module")
def backend(gguf: Path) -> LlamaBackend:
    return LlamaBackend(gguf, n_ctx=N_CTX, n_threads=THREADS)


@pytest.fixture(scope="module")
def reference(gguf: Path) -> Iterator[Llama]:
    """A separate llama.cpp context that keeps the logits of every position, evaluated from scratch each time."""
    llm = Llama(model_path=str(gguf), n_ctx=N_CTX, n_threads=THREADS, n_threads_batch=THREADS, logits_all=True,
                verbose=False)
    yield llm
    llm.close()


def reference_logprobs(reference: Llama, rendered: str, candidates: Sequence[str], chat: bool) -> list[float]:
    """log P(candidate tokens | prompt), summed over the candidate's tokens, normalised in float64.

    Chat prompts end with the assistant header, so the answer starts right there; plain prompts end with
    "Answer:" and the answer is a new word (a leading space)."""
    prompt = reference.tokenize(rendered.encode("utf-8"), add_bos=False, special=True)
    reference.reset()
    reference.eval(prompt)
    totals = []
    for candidate in candidates:
        answer = reference.tokenize((candidate if chat else " " + candidate).encode("utf-8"), add_bos=False,
                                    special=False)
        reference.n_tokens = len(prompt)  # eval() drops the cache from here: the candidate follows the prompt
        reference.eval(answer)
        logits = np.asarray(reference.scores[len(prompt) - 1 : len(prompt) - 1 + len(answer)], dtype=np.float64)
        logprobs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        totals.append(float(sum(logprobs[i, token] for i, token in enumerate(answer))))
    return totals


def classify_prompt(text: str) -> tuple[Prompt, tuple[str, ...]]:
    labels = (LabelInfo("positive"), LabelInfo("negative"), LabelInfo("mixed_feelings", "both praise and blame"))
    request = task_for(ProjectSettings("classify", labels)).request(Example("x", text), [], 4000)
    return request.prompt, request.candidates  # type: ignore[union-attr]


REVIEWS = [json.loads(line)["text"] for line in (DEMO_DATA / "classify_test.jsonl").read_text().splitlines()[:3]]


# --- scoring -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scored_review(backend: LlamaBackend, reference: Llama) -> tuple[tuple[float, ...], list[float]]:
    """(backend log-probs, reference log-probs) for a review and three labels, one of them several tokens long."""
    prompt, candidates = classify_prompt(REVIEWS[0])
    assert len(reference.tokenize(b"mixed_feelings", add_bos=False, special=False)) > 1
    response = backend.score(prompt, candidates)
    assert response.cost.tokens_in == len(reference.tokenize(backend.render(prompt).encode(), add_bos=False,
                                                             special=True))
    return response.logprobs, reference_logprobs(reference, backend.render(prompt), candidates, chat=True)


def test_score_matches_an_independent_evaluation(scored_review: tuple[tuple[float, ...], list[float]]) -> None:
    logprobs, expected = scored_review
    # a wrong position or token would be off by nats; the next test checks float32 precision
    assert logprobs == pytest.approx(expected, abs=1e-2)
    assert all(value < 0 for value in logprobs)


def test_score_is_exact_to_float32_precision(scored_review: tuple[tuple[float, ...], list[float]]) -> None:
    logprobs, expected = scored_review
    assert logprobs == pytest.approx(expected, abs=2e-4)


def test_score_without_the_chat_template_matches_too(gguf: Path, reference: Llama) -> None:
    plain = LlamaBackend(gguf, n_ctx=N_CTX, n_threads=THREADS, chat_template=False)
    prompt, candidates = classify_prompt(REVIEWS[1])
    assert not plain.chat
    assert plain.render(prompt) == render_plain(prompt)
    response = plain.score(prompt, candidates)
    assert response.logprobs == pytest.approx(
        reference_logprobs(reference, render_plain(prompt), candidates, chat=False), abs=1e-2)


def test_the_chat_template_is_used_for_smollm2(backend: LlamaBackend) -> None:
    prompt, _ = classify_prompt("Nice.")
    rendered = backend.render(prompt)
    assert backend.chat
    assert rendered.startswith(f"<|im_start|>system\n{prompt.system}<|im_end|>\n")
    assert f"<|im_start|>user\n{prompt.user}<|im_end|>\n" in rendered
    assert rendered.endswith("<|im_start|>assistant\n")
    assert "Answer:" not in rendered.rsplit("<|im_end|>", 1)[1]


def test_a_named_chat_format_renders_the_llama_2_layout_and_counts_its_tokens(gguf: Path, reference: Llama) -> None:
    """Llama-2-chat GGUFs often carry no chat template; `--chat-format llama-2` renders [INST] <<SYS>> instead
    (checked here with the small model's tokenizer: no Llama-2 weights needed)."""
    prompt, candidates = classify_prompt("Nice.")
    assert render_chat(prompt, chat_formatter("llama-2")) == (
        f"[INST] <<SYS>>\n{prompt.system}\n<</SYS>> {prompt.user} [/INST]")
    backend = LlamaBackend(gguf, n_ctx=N_CTX, n_threads=THREADS, chat_format="llama-2", model_sha256="x")
    rendered = backend.render(prompt)
    assert backend.chat and rendered.startswith("[INST] <<SYS>>\n") and rendered.endswith(" [/INST]")
    expected = reference.tokenize(rendered.encode("utf-8"), add_bos=True, special=True)
    assert backend.count_tokens(prompt) == len(expected)
    response = backend.score(prompt, candidates)
    assert response.cost.tokens_in == len(expected) and all(math.isfinite(x) and x < 0 for x in response.logprobs)
    assert chat_formatter("Mistral_Instruct") is chat_formatter("mistral-instruct")
    with pytest.raises(LlmaaaError, match="knows no such chat format; choose one of .*llama2"):
        chat_formatter("llama-9")
    backend.close()


def test_a_shared_prefix_is_reused_with_the_same_log_probs(backend: LlamaBackend, gguf: Path) -> None:
    first_prompt, candidates = classify_prompt(REVIEWS[0])
    second_prompt, _ = classify_prompt(REVIEWS[2])
    backend.score(first_prompt, candidates)
    reused = backend.score(second_prompt, candidates)
    assert reused.cost.tokens_evaluated < reused.cost.tokens_in
    system_tokens = backend.count_tokens(Prompt(first_prompt.system, "", ""))
    assert reused.cost.tokens_in - reused.cost.tokens_evaluated >= system_tokens - 8  # the template's tail differs
    fresh = LlamaBackend(gguf, n_ctx=N_CTX, n_threads=THREADS)
    alone = fresh.score(second_prompt, candidates)
    assert alone.cost.tokens_evaluated == alone.cost.tokens_in
    assert reused.logprobs == pytest.approx(alone.logprobs, abs=1e-3)
    # the same prompt and candidates again (a zero-shot run's content-free baseline): remembered, nothing evaluated
    again = backend.score(second_prompt, candidates)
    assert again.cost.tokens_evaluated == 0 and again.cost.tokens_in == reused.cost.tokens_in
    assert again.logprobs == reused.logprobs
    # after the first prompt moved the KV cache, the remembered scores still equal a fresh evaluation
    backend.score(first_prompt, candidates[:1])
    assert backend.score(second_prompt, candidates).logprobs == pytest.approx(alone.logprobs, abs=1e-3)


def test_a_prompt_longer_than_the_context_overflows(backend: LlamaBackend) -> None:
    short, candidates = classify_prompt("Fine.")
    long = Prompt(short.system, "Text: " + " ".join(["word"] * 2000), "Answer:")
    with pytest.raises(ContextOverflow) as error:
        backend.score(long, candidates)
    assert error.value.limit == N_CTX and error.value.tokens == backend.count_tokens(long) + 4 > N_CTX
    # generation needs room for max_tokens after the prompt
    room = N_CTX - backend.count_tokens(short)
    with pytest.raises(ContextOverflow):
        backend.generate(short, 'root ::= "[]"', max_tokens=room + 1)
    assert backend.generate(short, 'root ::= "[]"', max_tokens=room).text == "[]"
    # the backend still works afterwards
    assert len(backend.score(short, candidates).logprobs) == 3


# --- generation under the NER grammar ----------------------------------------------------------------------------


def ner_task() -> EntityRecognition:
    task = task_for(ProjectSettings("ner", tuple(LabelInfo(name) for name in ("PER", "ORG", "LOC", "MISC"))))
    assert isinstance(task, EntityRecognition)
    return task


def surfaces(example: Example) -> set[str]:
    tokens = list(example.tokens or ())
    return {" ".join(tokens[s:e]) for s in range(len(tokens))
            for e in range(s + 1, min(s + MAX_SPAN_TOKENS, len(tokens)) + 1)}


def test_generation_under_the_ner_grammar_is_json_spans_of_the_text(backend: LlamaBackend) -> None:
    task = ner_task()
    demos = list(read_examples(DEMO_DATA / "ner_demo.jsonl", "ner"))
    for example in demos[1:3]:
        request = task.request(example, demos[:1], 4000)
        response = backend.generate(request.prompt, request.grammar, request.max_tokens)
        items = json.loads(response.text)
        assert isinstance(items, list)
        for item in items:
            assert set(item) == {"span", "type"}
            assert item["span"] in surfaces(example)
            assert item["type"] in task.types
        parsed = task.parse(example, response)
        assert parsed.status == "ok" and parsed.dropped == 0
        assert len(response.token_logprobs) == response.cost.tokens_out > 0
        assert all(value <= 0 for value in response.token_logprobs)


def grammar_accepts(reference: Llama, grammar: str, text: str) -> bool:
    """Feed `text` token by token, then the end of text, through llama.cpp's grammar sampler."""
    vocab = llama_cpp.llama_model_get_vocab(reference.model)
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
    assert sampler, "llama.cpp did not compile the grammar"
    try:
        eos = reference.token_eos()
        for token in [*reference.tokenize(text.encode("utf-8"), add_bos=False, special=False), eos]:
            data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(id=token, logit=0.0, p=0.0))
            array = llama_cpp.llama_token_data_array(data=data, size=1, selected=-1, sorted=False)
            llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
            if not math.isfinite(data[0].logit):
                return False
            if token != eos:
                llama_cpp.llama_sampler_accept(sampler, token)
        return True
    finally:
        llama_cpp.llama_sampler_free(sampler)


QUOTED = ["He", "typed", '"', "C:\\temp", '"', "to", "Ana", "\\n", "Lima", "."]


@pytest.mark.parametrize(("output", "accepted"), [
    ("[]", True),
    (' [{"span": "Lima", "type": "LOC"}]', True),
    ('[{"span": "\\" C:\\\\temp \\"", "type": "MISC"}]', True),  # JSON for: " C:\temp "
    ('[{"span": "\\\\n", "type": "MISC"}, {"span": "Ana \\\\n Lima", "type": "PER"}]', True),
    ('[{"span": "C:\\temp", "type": "MISC"}]', False),  # a lone backslash is not JSON for the text's backslash
    ('[{"span": "" C:\\\\temp "", "type": "MISC"}]', False),  # nor is an unescaped quote
    ('[{"span": "Paris", "type": "LOC"}]', False),  # not in the text
    ('[{"span": "Ana", "type": "DATE"}]', False),  # not a project type
    ('[{"span": "Ana", "type": "PER"}', False),  # unfinished
    ('[{"span": "He typed \\" C:\\\\temp \\" to Ana \\\\n", "type": "MISC"}]', True),  # 8 tokens
    ('[{"span": "He typed \\" C:\\\\temp \\" to Ana \\\\n Lima", "type": "MISC"}]', False),  # 9 tokens
], ids=["empty", "plain", "quotes", "backslash-n", "unescaped-backslash", "unescaped-quote", "not-in-text",
        "unknown-type", "unfinished", "eight-tokens", "nine-tokens"])
def test_llama_cpp_compiles_the_ner_grammar_and_holds_the_output_to_it(reference: Llama, output: str,
                                                                       accepted: bool) -> None:
    text = " ".join(QUOTED)
    example = Example("q", text, tuple(QUOTED), tuple(align(QUOTED, text)))
    grammar = ner_task().grammar(example)
    assert grammar_accepts(reference, grammar, output) is accepted
    if accepted:
        assert ner_task().parse(example, GenerateResponse(output, (), Cost(0, 0, 0, 0))).dropped == 0


def test_generation_for_a_sentence_with_quotes_and_backslashes(backend: LlamaBackend) -> None:
    text = " ".join(QUOTED)
    example = Example("q", text, tuple(QUOTED), tuple(align(QUOTED, text)))
    task = ner_task()
    demo = next(iter(read_examples(DEMO_DATA / "ner_demo.jsonl", "ner")))
    request = task.request(example, [demo], 4000)
    response = backend.generate(request.prompt, request.grammar, request.max_tokens)
    items = json.loads(response.text)
    assert all(item["span"] in surfaces(example) for item in items)
    assert task.parse(example, response).status == "ok"


@pytest.mark.parametrize("grammar", ['root ::= "unterminated', "root ::= missing_rule", "no rules at all"])
def test_an_invalid_grammar_is_a_clear_error(backend: LlamaBackend, grammar: str) -> None:
    prompt, _ = classify_prompt("Fine.")
    with pytest.raises(LlmaaaError, match="llama.cpp rejected the output grammar"):
        backend.generate(prompt, grammar, max_tokens=5)


def test_generation_stops_at_the_end_of_the_grammar(backend: LlamaBackend) -> None:
    response = backend.generate(Prompt("Reply yes or no.", "Is ice cold?", "Answer:"), 'root ::= "yes" | "no"',
                                max_tokens=20)
    assert response.text in ("yes", "no")
    assert response.cost.tokens_out == len(response.token_logprobs) <= 2


# --- the command line, end to end --------------------------------------------------------------------------------


def classify_files(tmp_path: Path, pool: int, demo: int) -> tuple[Path, Path]:
    lines = (DEMO_DATA / "classify_corpus.jsonl").read_text().splitlines()[:pool]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    gold = tmp_path / "demo.jsonl"
    gold.write_text("\n".join((DEMO_DATA / "classify_demo.jsonl").read_text().splitlines()[:demo]) + "\n")
    return corpus, gold


def cli(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_cli_annotate_evaluate_and_rerun(tmp_path: Path, models_dir: Path) -> None:
    corpus, gold = classify_files(tmp_path, pool=8, demo=4)
    project = str(tmp_path / "P")
    cli("init", project, "--task", "classify", "--labels", "positive,negative")
    cli("--project", project, "import", "corpus", str(corpus))
    cli("--project", project, "import", "gold", str(gold), "--split", "demo")
    common = ["--models-dir", str(models_dir), "--project", project]
    annotate = [*common, "annotate", "--n", "5", "--model", "smollm2-135m", "--demos", "random", "--k", "2",
                "--threads", str(THREADS)]
    first = cli(*annotate)
    # the 4 gold demo examples are scored for calibration, then the 5 pool examples
    assert re.search(r"^9 annotated, 0 already cached, 0 parse errors; \d+ prompt tokens", first.output, re.M)
    assert re.search(r"^calibration on 4 gold examples: (raw|contextual) scores, (no|batch|match|prior|accuracy) "
                     r"bias; leave-one-out macro-F1 [01]\.\d{3}", first.output, re.M)

    result = cli(*common, "evaluate", "--json")
    summary = json.loads(result.stdout)["llm"]
    assert {"n", "accuracy", "macro_f1", "coverage", "parse_error_rate", "split", "source"} <= set(summary)
    assert summary["n"] == 5 and summary["coverage"] == 5 / 8 and summary["parse_error_rate"] == 0.0
    assert 0.0 <= summary["accuracy"] <= 1.0

    again = cli(*annotate)
    assert re.search(r"^0 annotated, 9 already cached, 0 parse errors; 0 prompt tokens", again.output, re.M)
    status = json.loads(cli(*common, "status", "--json").stdout)
    assert status["counts"]["annotations"] == 9


def test_an_ensemble_prompt_runs_on_the_real_teacher_and_a_demo_mode_override_is_one_prompt(
        tmp_path: Path, models_dir: Path) -> None:
    corpus, gold = classify_files(tmp_path, pool=6, demo=4)
    folder = tmp_path / "P"
    cli("init", str(folder), "--task", "classify", "--labels", "positive,negative")
    cli("--project", str(folder), "import", "corpus", str(corpus))
    cli("--project", str(folder), "import", "gold", str(gold), "--split", "demo")
    with Project.open(folder) as project:  # as `tune` leaves it when two averaged sets win on gold
        project.store.save_settings(replace(project.settings, prompt=PromptSettings(demos="random", k=2,
                                                                                    ensemble=(1,))))
    common = ["--models-dir", str(models_dir), "--project", str(folder), "annotate", "--n", "3", "--model",
              "smollm2-135m", "--threads", str(THREADS)]
    first = cli(*common)
    # (4 gold + 3 pool) x 2 sets; where both sets happen to pick the same demonstrations, one answer serves both
    counts = re.search(r"^(\d+) annotated, (\d+) already cached, 0 parse errors", first.output, re.M)
    assert counts and int(counts[1]) + int(counts[2]) == 14 and "calibration on 4 gold examples" in first.output
    with Project.open(folder) as project:
        rows = project.store.db.execute("SELECT decoding, tokens_in, scores FROM annotations").fetchall()
        combined = [row for row in rows if '"ensemble": 2' in row[0]]
        assert len(rows) == 21 and len(combined) == 7 and all(row[1] == 0 and row[2] for row in combined)
        assert json.loads(cli("--project", str(folder), "status", "--json").stdout)["counts"]["annotations"] == 21
    assert re.search(r"^0 annotated, 14 already cached", cli(*common).output, re.M)
    single = cli(*common, "--demos", "none")  # no demonstration sets to average: one prompt
    assert re.search(r"^7 annotated, 0 already cached, 0 parse errors", single.output, re.M)


def annotation_rows(database: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(database)
    try:
        return conn.execute("SELECT id, example_id, cache_key, created_at, label, scores FROM annotations "
                            "ORDER BY id").fetchall()
    finally:
        conn.close()


def test_kill_minus_nine_and_resume(tmp_path: Path, models_dir: Path) -> None:
    corpus, _ = classify_files(tmp_path, pool=30, demo=0)
    project = tmp_path / "P"
    cli("init", str(project), "--task", "classify", "--labels", "positive,negative")
    cli("--project", str(project), "import", "corpus", str(corpus))
    database = project / DB_NAME
    command = [sys.executable, "-m", "llmaaa_local", "--models-dir", str(models_dir), "--project", str(project),
               "annotate", "--n", "20", "--model", "smollm2-135m", "--demos", "none", "--threads", str(THREADS)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    try:
        while True:
            assert child.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no annotations appeared"
            if database.exists() and len(annotation_rows(database)) >= 3:
                break
            time.sleep(0.01)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL

    conn = sqlite3.connect(database)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    stored = annotation_rows(database)
    assert 3 <= len(stored) < 20, "the run was not caught in the middle"

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    found = re.search(r"^(\d+) annotated, (\d+) already cached, 0 parse errors", rerun.stdout, re.M)
    assert found, rerun.stdout
    assert (int(found.group(1)), int(found.group(2))) == (20 - len(stored), len(stored))

    rows = annotation_rows(database)
    assert len(rows) == 20
    assert len({row[2] for row in rows}) == 20 and len({row[1] for row in rows}) == 20
    assert rows[: len(stored)] == stored  # rows stored before the kill were neither replaced nor duplicated


def test_labels_sharing_a_prefix_are_scored_exactly(backend: LlamaBackend, reference: Llama) -> None:
    # Directed relation labels share long prefixes; the backend decodes a shared prefix once (sorted walk).
    prompt = Prompt("Name the relation.", "Sentence: The burst was caused by the pressure.", "Answer:")
    candidates = ("Cause-Effect(e2,e1)", "Cause-Effect(e1,e2)", "Other", "Cause", "Component-Whole(e1,e2)")
    response = backend.score(prompt, candidates)
    expected = reference_logprobs(reference, backend.render(prompt), candidates, chat=backend.chat)
    assert response.logprobs == pytest.approx(expected, abs=2e-3)
    assert len(set(response.logprobs)) == len(candidates)
