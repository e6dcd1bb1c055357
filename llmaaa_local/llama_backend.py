"""The llama.cpp backend: loads a GGUF, scores candidates and generates under a grammar, reusing the KV prefix.

The only module that imports llama_cpp. It executes requests; prompts, grammars and parsing belong to the tasks.
"""

from __future__ import annotations

import ctypes
import os
from collections import OrderedDict, deque
from collections.abc import Sequence
from pathlib import Path

import llama_cpp
import numpy as np
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from .errors import LlmaaaError
from .llm import ContextOverflow, Cost, GenerateResponse, Prompt, ScoreResponse, render_plain, timed
from .models import sha256_file

# llama.cpp logs through a callback; keep the recent lines for error messages instead of printing them.
_RECENT_LOG: deque[str] = deque(maxlen=8)
SCORE_MEMO = 16  # scored prompts remembered (their label log-probs), newest kept


@llama_cpp.llama_log_callback
def _keep_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    _RECENT_LOG.append(text.decode("utf-8", errors="replace").strip())


llama_cpp.llama_log_set(_keep_log, ctypes.c_void_p(0))


class LlamaBackend:
    """A GGUF model loaded with llama-cpp-python (CPU, or GPU layers with `n_gpu_layers`)."""

    def __init__(self, path: Path, *, n_ctx: int = 4096, n_threads: int | None = None, n_gpu_layers: int = 0,
                 seed: int = 0, chat_template: bool | None = None, model_sha256: str | None = None) -> None:
        self.name = path.name
        self.model_sha256 = model_sha256 or sha256_file(path)
        threads = n_threads or os.cpu_count() or 1
        try:
            self._llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                              n_gpu_layers=n_gpu_layers, seed=seed, logits_all=False, verbose=False)
        except (ValueError, RuntimeError) as error:
            detail = " ".join(_RECENT_LOG)[-300:]
            raise LlmaaaError(f"{path}: llama.cpp could not load this GGUF ({error}; {detail})") from None
        self.n_ctx = self._llm.n_ctx()
        # Scores of recent prompts: a content-free baseline prompt is the same for every example of a zero-shot run
        self._scored: OrderedDict[tuple[tuple[int, ...], tuple[tuple[int, ...], ...]], tuple[float, ...]] = \
            OrderedDict()
        self._vocab = self._llm._model.vocab
        self._n_vocab = self._llm.n_vocab()
        template = self._llm.metadata.get("tokenizer.chat_template")
        use_template = bool(template) if chat_template is None else chat_template
        if use_template and not template:
            raise LlmaaaError(f"{path}: this model has no chat template; run without forcing one")
        self._formatter = None
        if use_template and template:
            self._formatter = Jinja2ChatFormatter(template, eos_token=self._special(self._llm.token_eos()),
                                                  bos_token=self._special(self._llm.token_bos()))

    @property
    def chat(self) -> bool:
        return self._formatter is not None

    def _special(self, token: int) -> str:
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="replace") if token >= 0 else ""

    # --- rendering and tokens ------------------------------------------------------------------------------------

    def render(self, prompt: Prompt) -> str:
        if self._formatter is None:
            return render_plain(prompt)
        messages = [{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.user}]
        return self._formatter(messages=messages).prompt  # type: ignore[arg-type]

    def _prompt_tokens(self, prompt: Prompt) -> list[int]:
        text = self.render(prompt)
        bos = self._special(self._llm.token_bos())
        add_bos = not (bos and text.startswith(bos))  # templates that write the BOS text themselves
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def _answer_tokens(self, candidate: str) -> list[int]:
        text = candidate if self.chat else " " + candidate
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def count_tokens(self, prompt: Prompt) -> int:
        return len(self._prompt_tokens(prompt))

    # --- evaluation ----------------------------------------------------------------------------------------------

    def _decode(self, tokens: Sequence[int], all_logits: bool = False) -> np.ndarray:
        """Append tokens to the context; returns log-probs for the last token, or for every token."""
        llm = self._llm
        rows = []
        for start in range(0, len(tokens), llm.n_batch):
            chunk = list(tokens[start : start + llm.n_batch])
            llm._batch.set_batch(batch=chunk, n_past=llm.n_tokens, logits_all=all_logits)
            llm._ctx.decode(llm._batch)
            llm.input_ids[llm.n_tokens : llm.n_tokens + len(chunk)] = chunk
            llm.n_tokens += len(chunk)
            if all_logits or start + llm.n_batch >= len(tokens):
                count = len(chunk) if all_logits else 1
                pointer = llm._ctx.get_logits() if all_logits else llm._ctx.get_logits_ith(-1)
                logits = np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)),
                                               shape=(count, self._n_vocab)).copy()
                rows.append(logits)
        logits = np.concatenate(rows).astype(np.float64)  # float32 sums over a large vocabulary drift by ~1e-3
        top = logits.max(axis=1, keepdims=True)
        return logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))

    def _advance(self, tokens: list[int]) -> tuple[np.ndarray, int]:
        """Evaluate a prompt, reusing the longest prefix already in the KV cache; returns (log-probs, evaluated)."""
        llm = self._llm
        limit = min(llm.n_tokens, len(tokens) - 1)  # the last token is always evaluated, for its logits
        differs = np.flatnonzero(llm.input_ids[:limit] != np.asarray(tokens[:limit]))
        shared = int(differs[0]) if len(differs) else limit
        if not llm._ctx.kv_cache_seq_rm(-1, shared, -1):
            shared = 0
            llm._ctx.kv_cache_clear()
        llm.n_tokens = shared
        return self._decode(tokens[shared:])[-1], len(tokens) - shared

    def _check_fits(self, tokens: int, extra: int) -> None:
        if tokens + extra > self.n_ctx:
            raise ContextOverflow(tokens + extra, self.n_ctx)

    def score(self, prompt: Prompt, candidates: Sequence[str]) -> ScoreResponse:
        elapsed = timed()
        tokens = self._prompt_tokens(prompt)
        answers = [self._answer_tokens(candidate) for candidate in candidates]
        self._check_fits(len(tokens), max(len(answer) for answer in answers))
        key = (tuple(tokens), tuple(tuple(answer) for answer in answers))
        if key in self._scored:
            self._scored.move_to_end(key)
            return ScoreResponse(self._scored[key], Cost(len(tokens), 0, 0, elapsed()))
        first, evaluated = self._advance(tokens)
        after = self._continuations(answers, first)
        logprobs = tuple(sum(after[tuple(answer[:j])][token] for j, token in enumerate(answer)) for answer in answers)
        self._scored[key] = logprobs
        if len(self._scored) > SCORE_MEMO:
            self._scored.popitem(last=False)
        return ScoreResponse(logprobs, Cost(len(tokens), evaluated, 0, elapsed()))

    def _continuations(self, answers: Sequence[list[int]], first: np.ndarray,
                       ) -> dict[tuple[int, ...], dict[int, float]]:
        """For every prefix of every answer, the log-probs of the tokens that follow it in some answer.

        Answers are walked in sorted order, so a prefix they share (e.g. "Cause-Effect(e" of two directed relation
        labels) stays in the KV cache and is decoded once.
        """
        needed: dict[tuple[int, ...], set[int]] = {}
        for answer in answers:
            for j, token in enumerate(answer):
                needed.setdefault(tuple(answer[:j]), set()).add(token)
        after: dict[tuple[int, ...], dict[int, float]] = {(): {token: float(first[token]) for token in needed[()]}}
        base = self._llm.n_tokens
        current: list[int] = []  # the answer tokens now in the KV cache after the prompt
        for answer in sorted(answers):
            context = answer[:-1]
            if tuple(context) in after:
                continue
            shared = 0
            while shared < min(len(current), len(context)) and current[shared] == context[shared]:
                shared += 1
            self._llm._ctx.kv_cache_seq_rm(-1, base + shared, -1)
            self._llm.n_tokens = base + shared
            rows = self._decode(context[shared:], all_logits=True)
            for offset, row in enumerate(rows):
                prefix = tuple(context[: shared + offset + 1])
                after[prefix] = {token: float(row[token]) for token in needed.get(prefix, ())}
            current = list(context)
        return after

    def generate(self, prompt: Prompt, grammar: str, max_tokens: int) -> GenerateResponse:
        elapsed = timed()
        tokens = self._prompt_tokens(prompt)
        self._check_fits(len(tokens), max_tokens)
        constraint = _Grammar(self._vocab, grammar)
        logprobs, evaluated = self._advance(tokens)
        output: list[int] = []
        token_logprobs: list[float] = []
        try:
            for _ in range(max_tokens):
                token = constraint.best(logprobs)
                if token is None or llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    break
                constraint.accept(token)
                output.append(token)
                token_logprobs.append(float(logprobs[token]))
                logprobs = self._decode([token])[-1]
        finally:
            constraint.close()
        text = self._llm.detokenize(output).decode("utf-8", errors="replace")
        cost = Cost(len(tokens), evaluated, len(output), elapsed())
        return GenerateResponse(text, tuple(token_logprobs), cost)


_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class _Grammar:
    """Greedy choice under a GBNF grammar: the top candidates are checked first, the whole vocabulary only
    when none of them is allowed (checking all of a 262k vocabulary every step halves generation speed)."""

    TOP = 16

    def __init__(self, vocab: llama_cpp.llama_vocab_p, grammar: str) -> None:
        self._sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
        if not self._sampler:
            detail = " ".join(line for line in _RECENT_LOG if "grammar" in line or "parse" in line)[-300:]
            raise LlmaaaError(f"llama.cpp rejected the output grammar: {detail or 'no detail logged'}")

    def best(self, logprobs: np.ndarray) -> int | None:
        top = np.argpartition(-logprobs, self.TOP)[: self.TOP]
        found = self._allowed_best(top, logprobs)
        return found if found is not None else self._allowed_best(np.arange(len(logprobs)), logprobs)

    def _allowed_best(self, ids: np.ndarray, logprobs: np.ndarray) -> int | None:
        data = np.zeros(len(ids), dtype=_TOKEN_DATA)
        data["id"] = ids
        data["logit"] = logprobs[ids]
        array = llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(llama_cpp.llama_token_data_p), size=len(ids), selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(self._sampler, ctypes.byref(array))
        allowed = np.isfinite(data["logit"])
        if not allowed.any():
            return None
        return int(data["id"][np.flatnonzero(allowed)[np.argmax(data["logit"][allowed])]])

    def accept(self, token: int) -> None:
        llama_cpp.llama_sampler_accept(self._sampler, token)

    def close(self) -> None:
        llama_cpp.llama_sampler_free(self._sampler)
