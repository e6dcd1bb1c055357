"""The Ray engine: the teacher as a pool of Ray actors (each loads the GGUF once) and full-corpus labeling with Ray
Data. The only module that imports ray; the session uses it when `--engine ray` is chosen.

Workers never open the project: the driver reads examples from SQLite, sends requests or batches, and stores every
answer and prediction itself, in the same transactions and under the same cache keys as the local engine.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from .config import EngineSettings, TeacherSettings
from .errors import LlmaaaError
from .llm import (
    Answer,
    ContextOverflow,
    GenerateRequest,
    GenerateResponse,
    Prompt,
    Request,
    ScoreRequest,
    ScoreResponse,
    TeacherFactory,
    answer,
)
from .records import Example, Label

T = TypeVar("T")
Prediction = tuple[Label, dict[str, float] | None, float]
IN_FLIGHT = 2  # requests queued per actor: one running, one ready, so an actor never waits for the driver
BATCH_ROWS = 64  # examples per Ray Data batch (each worker buckets them by length inside)


def connect(engine: EngineSettings) -> Any:
    """Ray, initialised once per process: the cluster at `engine.address` or $RAY_ADDRESS, else a new one here on
    loopback with this machine's CPUs. One clear error when Ray is missing or the cluster cannot be reached."""
    try:
        import ray
    except ImportError:
        raise LlmaaaError("--engine ray needs Ray: pip install 'llmaaa-local[ray]' (or pip install 'ray[data]')") \
            from None
    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine
    address = engine.address or os.environ.get("RAY_ADDRESS")
    options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is None:
        options |= {"address": "local", "_node_ip_address": "127.0.0.1", "include_dashboard": False}
    else:
        options["address"] = address
        _check_reachable(address)
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise _unreachable(address, str(error)) from None
    return ray


def _unreachable(address: str | None, why: str) -> LlmaaaError:
    return LlmaaaError(f"cannot reach the Ray cluster at {address}: {why} (start it with `ray start --head`, or "
                       "leave out --address to run Ray on this machine)")


def _check_reachable(address: str) -> None:
    """Fail at once on a HOST:PORT nothing answers at (ray.init would wait minutes for it)."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and other forms: Ray resolves them itself
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as error:
        raise _unreachable(address, str(error.strerror or error)) from None


def cluster_report(engine: EngineSettings) -> list[str]:
    """`doctor --engine ray`: the cluster's nodes and their resources, one line each."""
    ray = connect(engine)
    lines = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        resources = node.get("Resources", {})
        memory = resources.get("memory", 0) / 2**30
        lines.append(f"ray node     {node.get('NodeManagerAddress')}: {resources.get('CPU', 0):g} CPUs, "
                     f"{resources.get('GPU', 0):g} GPUs, {memory:.1f} GiB")
    total = ray.cluster_resources()
    lines.append(f"ray cluster  {len(lines)} node(s), {total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs")
    return lines


def cpus_per_worker(ray: Any, workers: int) -> int:
    """The cluster's CPUs shared out over `workers`, rather than every worker taking them all."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)) // workers)


class _TeacherWorker:
    """A Ray actor: one loaded teacher, answering one request at a time."""

    def __init__(self, factory: TeacherFactory, settings: TeacherSettings, models_dir: Path) -> None:
        self.llm = factory(settings, models_dir)

    def identity(self) -> tuple[str, str]:
        return self.llm.name, self.llm.model_sha256

    def run(self, request: Request) -> Answer:
        return answer(self.llm, request)

    def count_tokens(self, prompt: Prompt) -> int:
        return self.llm.count_tokens(prompt)


class RayTeacher:
    """The teacher on Ray: `workers` actors, each with `settings.threads` CPUs (and a GPU when layers are offloaded).

    It is an LLM (one call at a time, for the tuner) and a RequestPool: `run_many` keeps IN_FLIGHT requests queued
    on every actor and yields answers as they finish. A lost actor is restarted and its requests run again."""

    def __init__(self, settings: TeacherSettings, models_dir: Path, engine: EngineSettings,
                 factory: TeacherFactory) -> None:
        self.ray = connect(engine)
        threads = settings.threads or cpus_per_worker(self.ray, engine.workers)
        settings = replace(settings, threads=threads)
        worker = self.ray.remote(_TeacherWorker).options(
            num_cpus=threads, num_gpus=1 if settings.n_gpu_layers else 0, max_restarts=3, max_task_retries=3)
        self.actors = [worker.remote(factory, settings, models_dir) for _ in range(engine.workers)]
        identities = set(self.ray.get([actor.identity.remote() for actor in self.actors]))
        if len(identities) != 1:
            raise LlmaaaError(f"the Ray workers loaded different teachers: {sorted(identities)}; give every node "
                              "the same model file")
        ((self.name, self.model_sha256),) = identities
        self.workers = len(self.actors)  # progress: calls on different actors overlap in time

    # --- the LLM protocol, one call at a time --------------------------------------------------------------------

    def _one(self, request: Request) -> ScoreResponse | GenerateResponse:
        ((_, response),) = self.run_many([(None, request, ())])
        if isinstance(response, ContextOverflow):
            raise response
        return response

    def score(self, prompt: Prompt, candidates: Sequence[str]) -> ScoreResponse:
        response = self._one(ScoreRequest(prompt, tuple(candidates)))
        assert isinstance(response, ScoreResponse)
        return response

    def generate(self, prompt: Prompt, grammar: str, max_tokens: int) -> GenerateResponse:
        response = self._one(GenerateRequest(prompt, grammar, max_tokens))
        assert isinstance(response, GenerateResponse)
        return response

    def count_tokens(self, prompt: Prompt) -> int:
        return int(self.ray.get(self.actors[0].count_tokens.remote(prompt)))

    # --- many at once ------------------------------------------------------------------------------------------

    def run_many(self, items: Iterable[tuple[T, Request, Hashable]]) -> Iterator[tuple[T, Answer]]:
        pending = iter(items)
        load = [0] * len(self.actors)
        home: dict[Hashable, int] = {}  # affinity -> the actor whose KV cache holds that prefix
        in_flight: dict[Any, tuple[T, int]] = {}

        def submit() -> bool:
            item = next(pending, None)
            if item is None:
                return False
            tag, request, affinity = item
            actor = home.get(affinity)
            if actor is None or load[actor] >= IN_FLIGHT:
                actor = min(range(len(load)), key=load.__getitem__)
                home[affinity] = actor
            in_flight[self.actors[actor].run.remote(request)] = (tag, actor)
            load[actor] += 1
            return True

        try:
            while sum(load) < IN_FLIGHT * len(self.actors) and submit():
                pass
            while in_flight:
                (ready,), _ = self.ray.wait(list(in_flight), num_returns=1)
                tag, actor = in_flight.pop(ready)
                load[actor] -= 1
                yield tag, self.ray.get(ready)  # the caller stores it before the next request is read
                while sum(load) < IN_FLIGHT * len(self.actors) and submit():
                    pass
        finally:
            for ref in in_flight:  # the caller stopped (cancel, error): drop the queued calls
                self.ray.cancel(ref)


def _score_shard(folder: str, examples: Sequence[Example], threads: int) -> tuple[list[Any], Any]:
    import torch

    from .student import load_student, score_pool

    torch.set_num_threads(threads)
    model, encoder = load_student(Path(folder))
    return score_pool(model, encoder, examples)


class RayPoolScorer:
    """The active-learning loop's pool scoring on Ray: the round's student checkpoint scores one shard of the
    candidates in each of `engine.workers` tasks."""

    def __init__(self, engine: EngineSettings) -> None:
        self.ray = connect(engine)
        self.workers = engine.workers
        self.score = self.ray.remote(_score_shard)

    def __call__(self, folder: Path, examples: Sequence[Example]) -> tuple[list[Any], Any]:
        import numpy as np

        size = -(-len(examples) // self.workers)
        shards = [examples[start : start + size] for start in range(0, len(examples), size)]
        threads = cpus_per_worker(self.ray, self.workers)
        # The loop's teacher actors keep their CPUs reserved between annotation phases, and scoring runs while they
        # idle: the shards reserve none (or they would wait for those CPUs forever) and are spread over the nodes.
        score = self.score.options(num_cpus=0, scheduling_strategy="SPREAD")
        results = self.ray.get([score.remote(str(folder), list(shard), threads) for shard in shards])
        probabilities = [row for shard_probabilities, _ in results for row in shard_probabilities]
        return probabilities, np.concatenate([embeddings for _, embeddings in results])


class _Predictor:
    """A Ray Data worker: the exported student loaded once, predicting pickled examples."""

    def __init__(self, folder: str, file_name: str, threads: int, batch_tokens: int) -> None:
        from .labeler import OnnxStudent

        self.student = OnnxStudent(Path(folder), file_name, threads)
        self.batch_tokens = batch_tokens

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        examples = [pickle.loads(item) for item in batch["example"]]
        predictions = self.student.predict(examples, self.batch_tokens)
        return {"id": [example.id for example in examples],
                "prediction": [pickle.dumps(prediction) for prediction in predictions]}


class RayLabeler:
    """Predictions for chunks of examples through Ray Data `map_batches`, over `engine.workers` student copies."""

    chunk = 16384  # examples per dataset: each starts its workers (and loads the student) once

    def __init__(self, folder: Path, file_name: str, threads: int | None, batch_tokens: int,
                 engine: EngineSettings) -> None:
        self.ray = connect(engine)
        threads = threads or cpus_per_worker(self.ray, engine.workers)
        self.args = (str(folder), file_name, threads, batch_tokens)
        self.workers = engine.workers

    def __call__(self, examples: Sequence[Example]) -> list[Prediction]:
        data = self.ray.data
        ordered = sorted(examples, key=lambda example: len(example.text))  # similar lengths share a batch
        dataset = data.from_items([{"example": pickle.dumps(example)} for example in ordered])
        predicted = dataset.map_batches(_Predictor, fn_constructor_args=self.args, batch_size=BATCH_ROWS,
                                        compute=data.ActorPoolStrategy(size=self.workers), num_cpus=self.args[2],
                                        batch_format="numpy")
        found: dict[str, Prediction] = {}
        for batch in predicted.iter_batches(batch_size=None, batch_format="numpy"):
            for example_id, prediction in zip(batch["id"], batch["prediction"], strict=True):
                found[str(example_id)] = pickle.loads(prediction)
        return [found[example.id] for example in examples]
