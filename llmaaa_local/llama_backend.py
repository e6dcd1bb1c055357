"""The llama.cpp backend: loads a GGUF, scores candidates and generates under a grammar, reusing the KV prefix.

The only module that imports llama_cpp. It executes requests; prompts, grammars and parsing belong to the tasks.
It drives llama.cpp through its C API as llama-cpp-python binds it (model, context, batch, memory, vocab and
sampler functions), not through the private state of `llama_cpp.Llama`; `SURFACE` lists what it relies on.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
from collections import OrderedDict, deque
from collections.abc import Sequence
from pathlib import Path

import llama_cpp
import numpy as np
from llama_cpp import llama_chat_format
from llama_cpp.llama_chat_format import ChatFormatter, Jinja2ChatFormatter

from .doctor import build_features
from .errors import LlmaaaError
from .llm import ContextOverflow, Cost, GenerateResponse, Prompt, ScoreResponse, render_plain, timed
from .models import sha256_file

log = logging.getLogger(__name__)
# llama.cpp logs through a callback; keep the recent lines for error messages instead of printing them.
_RECENT_LOG: deque[str] = deque(maxlen=8)
SCORE_MEMO = 16  # scored prompts remembered (their label log-probs), newest kept
N_BATCH = 512
# The llama_cpp functions and struct fields this module uses; a test checks that the installed release has them.
SURFACE = (
    "llama_backend_init", "llama_print_system_info", "llama_supports_gpu_offload", "llama_model_default_params",
    "llama_context_default_params",
    "llama_model_load_from_file", "llama_model_free", "llama_init_from_model", "llama_free",
    "llama_model_get_vocab", "llama_vocab_n_tokens", "llama_vocab_bos", "llama_vocab_eos", "llama_vocab_is_eog",
    "llama_model_meta_val_str", "llama_tokenize", "llama_token_to_piece", "llama_n_ctx", "llama_batch_init",
    "llama_batch_free", "llama_decode", "llama_get_logits_ith", "llama_get_memory", "llama_memory_seq_rm",
    "llama_memory_clear", "llama_sampler_init_grammar", "llama_sampler_apply", "llama_sampler_accept",
    "llama_sampler_free", "llama_token_data_array", "llama_token_data_p", "llama_log_set", "llama_log_callback",
)
MODEL_FIELDS = ("n_gpu_layers", "use_extra_bufts")
CONTEXT_FIELDS = ("n_ctx", "n_batch", "n_ubatch", "n_threads", "n_threads_batch", "flash_attn_type")


_LOADING: list[list[str]] = []  # while a model loads, its log lines also go here (its weight buffers are read off)
_WEIGHT_BUFFER = re.compile(r"load_tensors:\s+(\S+) model buffer size")


@llama_cpp.llama_log_callback
def _keep_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    line = text.decode("utf-8", errors="replace").strip()
    _RECENT_LOG.append(line)
    if _LOADING:
        _LOADING[-1].append(line)


llama_cpp.llama_log_set(_keep_log, ctypes.c_void_p(0))
llama_cpp.llama_backend_init()
_said_amx = False


def build_info() -> dict[str, object]:
    """The installed llama-cpp-python: version, llama.cpp's system info (its compiled features), GPU offload."""
    return {"version": llama_cpp.__version__, "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
            "system_info": llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")}


def extra_buffers_default() -> bool:
    """Whether models of this llama.cpp build load with extra buffer types; see `extra_buffers_for`."""
    return extra_buffers_for(str(build_info()["system_info"]))


def extra_buffers_for(system_info: str) -> bool:
    """Extra buffer types (weight repacking, AMX) are used unless the build has llama.cpp's AMX kernels, whose
    matrix product crashes at the first decode on AMX CPUs (ggml-org/llama.cpp#20824); said once in the log."""
    global _said_amx
    if "AMX_INT8" not in build_features(system_info):
        return True
    if not _said_amx:
        log.warning("this llama-cpp-python build has AMX kernels, which crash on AMX CPUs: loading models without "
                    "extra buffer types (no weight repacking); `llmaaa-local doctor` explains the fix")
        _said_amx = True
    return False


def chat_formatter(name: str) -> ChatFormatter:
    """A chat format llama-cpp-python knows, by name ("llama-2", "chatml", "mistral-instruct", ...)."""
    formats = {attribute.removeprefix("format_"): getattr(llama_chat_format, attribute)
               for attribute in dir(llama_chat_format) if attribute.startswith("format_")}
    wanted = name.lower().replace("-", "").replace("_", "")
    for found, formatter in formats.items():
        if found.replace("_", "") == wanted and callable(formatter):
            return formatter  # type: ignore[no-any-return]
    known = ", ".join(sorted(found.replace("_", "-") for found in formats))
    raise LlmaaaError(f"--chat-format {name!r}: llama-cpp-python knows no such chat format; choose one of {known}")


def render_chat(prompt: Prompt, formatter: ChatFormatter) -> str:
    """The prompt as a system and a user message in a chat format, ending where the assistant's answer starts."""
    messages = [{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.user}]
    return formatter(messages=messages).prompt  # type: ignore[arg-type]


class _Context:
    """One GGUF model and one llama.cpp context over the C API; knows which tokens its KV cache holds."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int, n_gpu_layers: int, extra_buffers: bool) -> None:
        self.model = self.ctx = None
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = 0x7FFFFFFF if n_gpu_layers == -1 else n_gpu_layers
        model_params.use_extra_bufts = extra_buffers
        lines: list[str] = []
        _LOADING.append(lines)
        try:
            self.model = llama_cpp.llama_model_load_from_file(str(path).encode("utf-8"), model_params)
        finally:
            _LOADING.remove(lines)
        # Where the weights went, e.g. ("CPU_Mapped", "CPU_REPACK"): repacked, or AMX, or CUDA0 buffers
        self.weight_buffers = tuple(dict.fromkeys(m[1] for m in map(_WEIGHT_BUFFER.search, lines) if m))
        if not self.model:
            raise LlmaaaError(f"{path}: llama.cpp could not load this GGUF ({' '.join(_RECENT_LOG)[-300:]})")
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = params.n_ubatch = min(n_ctx, N_BATCH)
        params.n_threads = params.n_threads_batch = n_threads
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as llama_cpp.Llama's default
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not self.ctx:
            self.close()
            raise LlmaaaError(f"{path}: llama.cpp could not create a context of {n_ctx} tokens "
                              f"({' '.join(_RECENT_LOG)[-300:]}); try a smaller --n-ctx")
        self.n_batch = params.n_batch
        self.n_ctx = llama_cpp.llama_n_ctx(self.ctx)
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self.tokens: list[int] = []  # what the KV cache holds, in order

    def close(self) -> None:
        if self.ctx:
            llama_cpp.llama_batch_free(self.batch)
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            llama_cpp.llama_model_free(self.model)
            self.model = None

    def __del__(self) -> None:
        # at interpreter exit llama_cpp's functions may be gone before this runs; the process frees the memory
        with contextlib.suppress(TypeError, AttributeError):
            self.close()

    def metadata(self, key: str) -> str | None:
        size = 1 << 16
        while True:
            buffer = ctypes.create_string_buffer(size)
            length = llama_cpp.llama_model_meta_val_str(self.model, key.encode("utf-8"), buffer, size)
            if length < 0:
                return None
            if length < size:
                return buffer.value.decode("utf-8", errors="replace")
            size = length + 1

    def tokenize(self, text: bytes, add_bos: bool, special: bool) -> list[int]:
        size = len(text) + 8
        while True:
            tokens = (llama_cpp.llama_token * size)()
            count = llama_cpp.llama_tokenize(self.vocab, text, len(text), tokens, size, add_bos, special)
            if count >= 0:
                return list(tokens[:count])
            size = -count

    def piece(self, token: int, special: bool) -> bytes:
        size = 64
        while True:
            buffer = ctypes.create_string_buffer(size)
            length = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, size, 0, special)
            if length >= 0:
                return buffer.raw[:length]
            size = -length

    def keep(self, count: int) -> None:
        """Drop the KV cache after its first `count` tokens."""
        if not llama_cpp.llama_memory_seq_rm(self.memory, -1, count, -1):
            llama_cpp.llama_memory_clear(self.memory, True)
            count = 0
        del self.tokens[count:]

    def decode(self, tokens: Sequence[int], all_logits: bool) -> np.ndarray:
        """Append tokens to the KV cache; returns the logits of the last token, or of every token."""
        rows = []
        for start in range(0, len(tokens), self.n_batch):
            chunk = list(tokens[start : start + self.n_batch])
            last_chunk = start + self.n_batch >= len(tokens)
            batch = self.batch
            batch.n_tokens = len(chunk)
            for i, token in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = len(self.tokens) + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = all_logits or (last_chunk and i == len(chunk) - 1)
            status = llama_cpp.llama_decode(self.ctx, batch)
            if status != 0:
                raise LlmaaaError(f"llama.cpp could not evaluate the prompt (llama_decode returned {status}: "
                                  f"{' '.join(_RECENT_LOG)[-200:]})")
            self.tokens.extend(chunk)
            if all_logits or last_chunk:
                outputs = range(len(chunk)) if all_logits else (len(chunk) - 1,)
                for i in outputs:
                    pointer = llama_cpp.llama_get_logits_ith(self.ctx, i)
                    rows.append(np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy())
        return np.stack(rows)


class LlamaBackend:
    """A GGUF model loaded with llama-cpp-python (CPU, or GPU layers with `n_gpu_layers`).

    `extra_buffers` None: on, unless the llama.cpp build has the AMX kernels that crash (see
    `extra_buffers_default`)."""

    def __init__(self, path: Path, *, n_ctx: int = 4096, n_threads: int | None = None, n_gpu_layers: int = 0,
                 seed: int = 0, chat_template: bool | None = None, model_sha256: str | None = None,
                 extra_buffers: bool | None = None, chat_format: str | None = None) -> None:
        self.name = path.name
        self.model_sha256 = model_sha256 or sha256_file(path)
        if not path.is_file():
            raise LlmaaaError(f"{path}: no such GGUF file")
        self.extra_buffers = extra_buffers_default() if extra_buffers is None else extra_buffers
        threads = n_threads or os.cpu_count() or 1
        self._context = _Context(path, n_ctx, threads, n_gpu_layers, self.extra_buffers)
        self.n_ctx = self._context.n_ctx
        self.weight_buffers = self._context.weight_buffers
        # Scores of recent prompts: a content-free baseline prompt is the same for every example of a zero-shot run
        self._scored: OrderedDict[tuple[tuple[int, ...], tuple[tuple[int, ...], ...]], tuple[float, ...]] = \
            OrderedDict()
        self._vocab = self._context.vocab
        self._bos = llama_cpp.llama_vocab_bos(self._vocab)
        self._eos = llama_cpp.llama_vocab_eos(self._vocab)
        template = self._context.metadata("tokenizer.chat_template")
        use_template = bool(template) if chat_template is None else chat_template
        if use_template and not template and chat_format is None:
            raise LlmaaaError(f"{path}: this model has no chat template; name a chat format (e.g. --chat-format "
                              "llama-2 for a Llama-2-chat model) or run without forcing one")
        self._formatter: ChatFormatter | None = None
        if chat_format is not None:
            self._formatter = chat_formatter(chat_format)
        elif use_template and template:
            self._formatter = Jinja2ChatFormatter(template, eos_token=self._special(self._eos),
                                                  bos_token=self._special(self._bos))

    def close(self) -> None:
        self._context.close()

    @property
    def chat(self) -> bool:
        return self._formatter is not None

    def _special(self, token: int) -> str:
        return self._context.piece(token, special=True).decode("utf-8", errors="replace") if token >= 0 else ""

    # --- rendering and tokens ------------------------------------------------------------------------------------

    def render(self, prompt: Prompt) -> str:
        return render_chat(prompt, self._formatter) if self._formatter is not None else render_plain(prompt)

    def _prompt_tokens(self, prompt: Prompt) -> list[int]:
        text = self.render(prompt)
        bos = self._special(self._bos)
        add_bos = not (bos and text.startswith(bos))  # templates that write the BOS text themselves
        return self._context.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def _answer_tokens(self, candidate: str) -> list[int]:
        text = candidate if self.chat else " " + candidate
        return self._context.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def count_tokens(self, prompt: Prompt) -> int:
        return len(self._prompt_tokens(prompt))

    # --- evaluation ----------------------------------------------------------------------------------------------

    def _decode(self, tokens: Sequence[int], all_logits: bool = False) -> np.ndarray:
        """Append tokens to the context; returns log-probs for the last token, or for every token."""
        logits = self._context.decode(tokens, all_logits)
        return logits.astype(np.float64) - _log_sum_exp(logits)[:, None]

    def _advance(self, tokens: list[int]) -> tuple[np.ndarray, int]:
        """Evaluate a prompt, reusing the longest prefix already in the KV cache; returns (log-probs, evaluated)."""
        held = self._context.tokens
        limit = min(len(held), len(tokens) - 1)  # the last token is always evaluated, for its logits
        differs = np.flatnonzero(np.asarray(held[:limit]) != np.asarray(tokens[:limit]))
        self._context.keep(int(differs[0]) if len(differs) else limit)
        shared = len(self._context.tokens)
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
        base = len(self._context.tokens)
        current: list[int] = []  # the answer tokens now in the KV cache after the prompt
        for answer in sorted(answers):
            context = answer[:-1]
            if tuple(context) in after:
                continue
            shared = 0
            while shared < min(len(current), len(context)) and current[shared] == context[shared]:
                shared += 1
            self._context.keep(base + shared)
            logits = self._context.decode(context[shared:], all_logits=True)  # only a few entries of each row matter
            for offset, (row, total) in enumerate(zip(logits, _log_sum_exp(logits), strict=True)):
                prefix = tuple(context[: shared + offset + 1])
                after[prefix] = {token: float(row[token] - total) for token in needed.get(prefix, ())}
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
        text = b"".join(self._context.piece(token, special=False) for token in output).decode("utf-8", errors="replace")
        cost = Cost(len(tokens), evaluated, len(output), elapsed())
        return GenerateResponse(text, tuple(token_logprobs), cost)


def _log_sum_exp(logits: np.ndarray) -> np.ndarray:
    """Each row's log-sum-exp, summed in float64 (float32 sums over a large vocabulary drift by ~1e-3), one row at
    a time: a row of a 262k-token vocabulary stays in cache, where float64 copies of many rows would not."""
    return np.array([float(top) + np.log(np.exp(row - top).sum(dtype=np.float64))
                     for row, top in zip(logits, logits.max(axis=1), strict=True)])


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
