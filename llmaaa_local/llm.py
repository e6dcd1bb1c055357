"""What an LLM backend must do (score candidates, generate under a grammar), and a scripted double for tests."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from .config import TeacherSettings


@dataclass(frozen=True)
class Prompt:
    """A prompt in parts; the backend renders it with the model's chat template or as plain text.

    `system` comes first so that prompts of one task share it as a prefix the backend evaluates once.
    """

    system: str
    user: str
    answer_prefix: str  # what the plain rendering puts before the answer, e.g. "Answer:"

    def key(self) -> str:
        return json.dumps([self.system, self.user, self.answer_prefix], ensure_ascii=False)


@dataclass(frozen=True)
class ScoreRequest:
    """Score each candidate answer: the log-probability of its full token sequence after the prompt.

    With a `baseline` (the same prompt with a content-free input such as "N/A") the candidates are scored there
    too, right after the prompt, so the KV cache holds everything but the last few tokens (contextual calibration).
    """

    prompt: Prompt
    candidates: tuple[str, ...]
    baseline: Prompt | None = None

    def key(self) -> str:
        baseline = self.baseline.key() if self.baseline else None
        return _digest(["score", self.prompt.key(), list(self.candidates), baseline])

    def run(self, llm: LLM) -> ScoreResponse:
        main = llm.score(self.prompt, self.candidates)
        if self.baseline is None:
            return main
        base = llm.score(self.baseline, self.candidates)
        cost = Cost(main.cost.tokens_in + base.cost.tokens_in, main.cost.tokens_evaluated + base.cost.tokens_evaluated,
                    0, main.cost.seconds + base.cost.seconds)
        return ScoreResponse(main.logprobs, cost, baseline=base.logprobs)


@dataclass(frozen=True)
class GenerateRequest:
    """Greedy generation constrained by a llama.cpp GBNF grammar."""

    prompt: Prompt
    grammar: str
    max_tokens: int

    def key(self) -> str:
        return _digest(["generate", self.prompt.key(), self.grammar, self.max_tokens])

    def run(self, llm: LLM) -> GenerateResponse:
        return llm.generate(self.prompt, self.grammar, self.max_tokens)


Request = ScoreRequest | GenerateRequest


@dataclass(frozen=True)
class Cost:
    """Tokens and time one call took; `tokens_evaluated` excludes the prefix reused from the KV cache."""

    tokens_in: int
    tokens_evaluated: int
    tokens_out: int
    seconds: float


@dataclass(frozen=True)
class ScoreResponse:
    logprobs: tuple[float, ...]  # one per candidate, summed over its tokens
    cost: Cost
    baseline: tuple[float, ...] | None = None  # the same candidates after a content-free input


@dataclass(frozen=True)
class GenerateResponse:
    text: str
    token_logprobs: tuple[float, ...]
    cost: Cost


class ContextOverflow(Exception):
    """The prompt does not fit the context window; the annotator retries with a shorter text."""

    def __init__(self, tokens: int, limit: int) -> None:
        super().__init__(f"prompt of {tokens} tokens does not fit the context of {limit}")
        self.tokens = tokens
        self.limit = limit

    def __reduce__(self) -> tuple[type[ContextOverflow], tuple[int, int]]:  # crosses processes (Ray workers)
        return ContextOverflow, (self.tokens, self.limit)


@runtime_checkable
class LLM(Protocol):
    """A loaded model. Implementations: LlamaBackend (llama_backend.py) and ScriptedLLM (below)."""

    name: str
    model_sha256: str

    def score(self, prompt: Prompt, candidates: Sequence[str]) -> ScoreResponse: ...

    def generate(self, prompt: Prompt, grammar: str, max_tokens: int) -> GenerateResponse: ...

    def count_tokens(self, prompt: Prompt) -> int: ...


Answer = ScoreResponse | GenerateResponse | ContextOverflow
# How a teacher is made from its settings and the models folder (the llama.cpp loader, or a test's scripted LLM).
TeacherFactory = Callable[["TeacherSettings", Path], LLM]
T = TypeVar("T")


@runtime_checkable
class RequestPool(Protocol):
    """An LLM with several workers: many requests in flight, answers back as each finishes (`ray_engine`)."""

    workers: int

    def run_many(self, items: Iterable[tuple[T, Request, Hashable]]) -> Iterator[tuple[T, Answer]]:
        """Run each (tag, request, affinity) item; requests of one affinity (shared demonstrations) go to the same
        worker when it has room, so its KV cache reuses their prefix. Items are read only as workers free up."""
        ...


def run_many(llm: LLM, items: Iterable[tuple[T, Request, Hashable]]) -> Iterator[tuple[T, Answer]]:
    """Answers to the requests: through the LLM's workers when it has them, else one at a time in order, each
    request read only after the previous answer was taken (so the caller stores it first)."""
    if isinstance(llm, RequestPool):
        yield from llm.run_many(items)
        return
    for tag, request, _ in items:
        yield tag, answer(llm, request)


def answer(llm: LLM, request: Request) -> Answer:
    """The response to one request, or the ContextOverflow it met (as a value: it may cross to another process)."""
    try:
        return request.run(llm)
    except ContextOverflow as overflow:
        return overflow


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, ensure_ascii=False).encode()).hexdigest()


def cache_key(model_sha256: str, request: Request, decoding: dict[str, object]) -> str:
    """What identifies an annotation: the model file, the exact request, and the decoding settings."""
    return _digest([model_sha256, request.key(), decoding])


# --- the test double ---------------------------------------------------------------------------------------------


@dataclass
class ScriptedLLM:
    """A real LLM object for tests: answers come from a queue or a rule, and every call is recorded.

    Tokens are whitespace-separated words; a prompt sharing a word prefix with the previous one counts only the
    rest as evaluated, like the KV-cache reuse of the real backend.
    """

    name: str = "scripted"
    model_sha256: str = "0" * 64
    scorer: Callable[[Prompt, Sequence[str]], Sequence[float]] | None = None
    generator: Callable[[Prompt, str], str] | None = None
    context: int = 100_000
    history: list[tuple[str, Prompt, object]] = field(default_factory=list)
    _queue: deque[Sequence[float] | str] = field(default_factory=deque)
    _previous: list[str] = field(default_factory=list)

    def enqueue(self, *answers: Sequence[float] | str) -> None:
        """Queue answers: a list of log-probs for a score call, a string for a generate call."""
        self._queue.extend(answers)

    def _cost(self, prompt: Prompt, tokens_out: int) -> Cost:
        words = render_plain(prompt).split()
        if len(words) > self.context:
            raise ContextOverflow(len(words), self.context)
        shared = 0
        for a, b in zip(self._previous, words, strict=False):
            if a != b:
                break
            shared += 1
        self._previous = words
        return Cost(len(words), len(words) - shared, tokens_out, 0.001)

    def score(self, prompt: Prompt, candidates: Sequence[str]) -> ScoreResponse:
        self.history.append(("score", prompt, tuple(candidates)))
        logprobs: Sequence[float] | str
        if self._queue:
            logprobs = self._queue.popleft()
        elif self.scorer is not None:
            logprobs = self.scorer(prompt, candidates)
        else:
            logprobs = [-math.log(len(candidates))] * len(candidates)
        assert not isinstance(logprobs, str), "a string was queued for a score call"
        return ScoreResponse(tuple(float(x) for x in logprobs), self._cost(prompt, 0))

    def generate(self, prompt: Prompt, grammar: str, max_tokens: int) -> GenerateResponse:
        self.history.append(("generate", prompt, grammar))
        text: Sequence[float] | str
        if self._queue:
            text = self._queue.popleft()
        elif self.generator is not None:
            text = self.generator(prompt, grammar)
        else:
            text = "[]"
        assert isinstance(text, str), "log-probs were queued for a generate call"
        tokens = text.split() or [text]
        return GenerateResponse(text, tuple(-0.1 for _ in tokens), self._cost(prompt, len(tokens)))

    def count_tokens(self, prompt: Prompt) -> int:
        return len(render_plain(prompt).split())


def render_plain(prompt: Prompt) -> str:
    """The rendering for models without a chat template: instruction, body, then the answer prefix."""
    return f"{prompt.system}\n\n{prompt.user}\n{prompt.answer_prefix}"


def timed() -> Callable[[], float]:
    started = time.perf_counter()
    return lambda: time.perf_counter() - started
