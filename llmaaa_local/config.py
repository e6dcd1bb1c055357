"""Frozen, validated settings for a project; the CLI and TUI build them, the library never reads argv."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast, get_args

from .errors import LlmaaaError

TaskName = Literal["classify", "ner", "re"]
TASKS: tuple[TaskName, ...] = get_args(TaskName)
Split = Literal["pool", "demo", "dev", "test"]
SPLITS: tuple[Split, ...] = get_args(Split)
GOLD_SPLITS: tuple[Split, ...] = ("demo", "dev", "test")
DemoMode = Literal["balanced", "knn", "fixed", "random", "none"]
ClipMode = Literal["head", "head+tail"]
DataMode = Literal["llm", "gold", "combined"]
EngineName = Literal["local", "ray"]
ENGINES: tuple[EngineName, ...] = get_args(EngineName)
DEMO_MODES: tuple[DemoMode, ...] = get_args(DemoMode)
SEEDED_DEMOS: tuple[DemoMode, ...] = ("fixed", "random")  # chosen by demo_seed: the modes an ensemble can average
CLIP_MODES: tuple[ClipMode, ...] = get_args(ClipMode)

# Names may hold commas and parentheses (SemEval's "Cause-Effect(e1,e2)"), not whitespace.
_LABEL_NAME = re.compile(r"\S+")
_LIST_SEPARATOR = re.compile(r",(?![^()]*\))")


def check_task(task: str) -> TaskName:
    if task not in TASKS:
        raise LlmaaaError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    return cast(TaskName, task)


def check_split(split: str, allowed: tuple[str, ...] = SPLITS) -> Split:
    if split not in allowed:
        raise LlmaaaError(f"unknown split {split!r}: choose one of {', '.join(allowed)}")
    return cast(Split, split)


@dataclass(frozen=True)
class LabelInfo:
    """A class label, entity type or relation label, with the description shown to the LLM."""

    name: str
    description: str = ""

    def __post_init__(self) -> None:
        if not _LABEL_NAME.fullmatch(self.name):  # match() with $ would let a trailing newline through
            raise LlmaaaError(
                f"label name {self.name!r} is not allowed: use a name without spaces"
            )


@dataclass(frozen=True)
class PromptSettings:
    """How annotation prompts are built: instruction, demonstrations, label words, and text length limits."""

    instruction: str = ""
    demos: DemoMode = "balanced"
    k: int = 4
    max_chars: int = 1500  # longer texts are cut (flagged on the annotation): ~400 tokens, 3x faster than 4000
    demo_max_chars: int = 500  # demonstrations are cut shorter: they are repeated in every prompt
    content_free: bool = True  # label scores relative to a content-free input with the same demonstrations
    clip: ClipMode = "head+tail"  # what of a long text is kept: its start, or its start and its end
    verbalizers: tuple[tuple[str, str], ...] = ()  # (label, word): the word is what the model answers and is scored
    instruction_style: str = "list"  # which built-in instruction wording (the task's INSTRUCTIONS)
    demo_seed: int = 0  # which random demonstrations (random mode) or which fixed set (fixed mode)
    # prompt ensembling (scored tasks): the seeds of more fixed or random sets; each example's label scores are
    # the mean over this prompt and those (`tune` adds one where it pays on gold)
    ensemble: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.max_chars < 100 or self.demo_max_chars < 50:
            raise LlmaaaError("max_chars must be at least 100 and demo_max_chars at least 50")
        if self.demos not in DEMO_MODES:
            raise LlmaaaError(f"unknown demo mode {self.demos!r}: choose one of {', '.join(DEMO_MODES)}")
        if not 0 <= self.k <= 32:
            raise LlmaaaError(f"k={self.k} demonstrations is out of range: use 0 to 32")
        if self.clip not in CLIP_MODES:
            raise LlmaaaError(f"unknown clip mode {self.clip!r}: choose one of {', '.join(CLIP_MODES)}")
        object.__setattr__(self, "verbalizers", tuple(tuple(pair) for pair in self.verbalizers))
        object.__setattr__(self, "ensemble", tuple(self.ensemble))
        if self.ensemble and (self.demos not in SEEDED_DEMOS or self.demo_seed in self.ensemble
                              or len(set(self.ensemble)) != len(self.ensemble)):
            raise LlmaaaError(f"ensemble {list(self.ensemble)}: give other seeds than demo_seed {self.demo_seed}, "
                              "each once, with fixed or random demonstrations")
        words = [word for _, word in self.verbalizers]
        for label, word in self.verbalizers:
            if not word.strip() or word != word.strip():
                raise LlmaaaError(f"verbalizer for {label!r}: give a word without surrounding spaces, e.g. "
                                  f"{label}=great")
        if len(set(words)) != len(words):
            raise LlmaaaError(f"verbalizers {words}: two labels have the same word; give each label its own")

    @property
    def uses_embeddings(self) -> bool:
        """Demonstrations chosen by similarity (knn, balanced) need the sentence embedder."""
        return self.demos in ("knn", "balanced")

    def word(self, label: str) -> str:
        """What the model answers for `label`: its verbalizer, else the label name."""
        return dict(self.verbalizers).get(label, label)

    def members(self) -> tuple[PromptSettings, ...]:
        """The single prompts an ensemble averages (this prompt's own set first); empty when it is one prompt."""
        seeds = (self.demo_seed, *self.ensemble) if self.ensemble else ()
        return tuple(replace(self, demo_seed=seed, ensemble=()) for seed in seeds)

    def key_fields(self) -> dict[str, Any]:
        """The fields that identify the prompt; a setting left at a default added later is left out, so the
        projects made before it keep their prompt key (and their calibrations and cached answers)."""
        fields = asdict(self)
        if not self.ensemble:
            del fields["ensemble"]
        return fields


@dataclass(frozen=True)
class ProjectSettings:
    """What a project annotates: the task, its label set and the prompt settings."""

    task: TaskName
    labels: tuple[LabelInfo, ...] = ()
    no_relation: str | None = None
    prompt: PromptSettings = field(default_factory=PromptSettings)

    def __post_init__(self) -> None:
        check_task(self.task)
        names = [label.name for label in self.labels]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise LlmaaaError(f"label {repeated[0]!r} is listed twice: give each label once")
        if self.task == "ner" and any(name.startswith(("B-", "I-")) or name == "O" for name in names):
            raise LlmaaaError("NER labels are entity types such as PER or LOC, not BIO tags: drop the B-/I- prefix")
        if self.no_relation is not None:
            if self.task != "re":
                raise LlmaaaError("a no-relation label only applies to relation extraction (--task re)")
            if names and self.no_relation not in names:
                raise LlmaaaError(
                    f"no-relation label {self.no_relation!r} is not in the label set: add it to --labels"
                )

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(label.name for label in self.labels)

    def with_labels(self, names: list[str]) -> ProjectSettings:
        """Return settings whose label set is extended by `names` (kept in first-seen order)."""
        known = set(self.label_names)
        added = tuple(LabelInfo(name) for name in dict.fromkeys(names) if name not in known)
        return replace(self, labels=self.labels + added)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProjectSettings:
        return cls(
            task=check_task(data["task"]),
            labels=tuple(LabelInfo(**label) for label in data.get("labels", [])),
            no_relation=data.get("no_relation"),
            prompt=PromptSettings(**(LEGACY_PROMPT | data.get("prompt", {}))),
        )


# Projects stored before a prompt setting existed keep the behaviour they had (and their cached answers).
LEGACY_PROMPT: dict[str, Any] = {"clip": "head", "verbalizers": (), "instruction_style": "list", "max_chars": 4000,
                                 "demos": "knn", "demo_seed": 0}


def parse_verbalizers(items: Sequence[str], labels: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """`--verbalizer LABEL=WORD` items, checked against the label set."""
    pairs = []
    for item in items:
        label, sep, word = item.partition("=")
        if not sep or not label.strip() or not word.strip():
            raise LlmaaaError(f"--verbalizer {item!r}: write LABEL=WORD, e.g. positive=great")
        if labels and label.strip() not in labels:
            raise LlmaaaError(f"--verbalizer {item!r}: {label.strip()!r} is not in the label set {list(labels)}")
        pairs.append((label.strip(), word.strip()))
    return tuple(pairs)


def parse_labels(text: str, descriptions: dict[str, str] | None = None) -> tuple[LabelInfo, ...]:
    """Parse a comma-separated label list (`a,b,c`; commas inside parentheses stay) with optional descriptions."""
    descriptions = descriptions or {}
    names = [name.strip() for name in _LIST_SEPARATOR.split(text) if name.strip()]
    unknown = sorted(set(descriptions) - set(names))
    if unknown:
        raise LlmaaaError(f"description given for {unknown[0]!r}, which is not in --labels")
    return tuple(LabelInfo(name, descriptions.get(name, "")) for name in names)


def read_labels_file(path: Path) -> tuple[LabelInfo, ...]:
    """One label per line: the name, then optionally whitespace and its description; '#' starts a comment line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise LlmaaaError(f"{path}: cannot read the labels file ({error})") from None
    labels = []
    for line_no, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, description = line.strip().partition(" ") if "\t" not in line else line.strip().partition("\t")
        try:
            labels.append(LabelInfo(name.strip(), description.strip()))
        except LlmaaaError as error:
            raise LlmaaaError(f"{path}:{line_no}: {error}") from None
    return tuple(labels)


@dataclass(frozen=True)
class TeacherSettings:
    """How the teacher GGUF is loaded: which file, context size, threads, GPU layers, seed, chat template."""

    model: str = "gemma-3-270m"
    n_ctx: int = 2048
    threads: int | None = None
    n_gpu_layers: int = 0
    seed: int = 0
    chat_template: bool | None = None  # None: use the model's template when it has one
    chat_format: str | None = None  # a chat format llama-cpp-python knows (e.g. llama-2), in place of the template

    def __post_init__(self) -> None:
        if not 256 <= self.n_ctx <= 131072:
            raise LlmaaaError(f"--n-ctx {self.n_ctx} is out of range: use 256 to 131072")
        if self.threads is not None and self.threads < 1:
            raise LlmaaaError("--threads must be at least 1")
        if self.n_gpu_layers < -1:
            raise LlmaaaError("--n-gpu-layers must be -1 (all), 0 (CPU only) or a layer count")


@dataclass(frozen=True)
class EngineSettings:
    """Where the teacher and the exported student run: in this process, or on Ray (actors for the teacher, Ray Data
    for labeling). `address`: an existing cluster (else $RAY_ADDRESS, else a Ray started here on loopback)."""

    kind: EngineName = "local"
    address: str | None = None
    workers: int = 2  # teacher actors, and labeling workers

    def __post_init__(self) -> None:
        if self.kind not in ENGINES:
            raise LlmaaaError(f"--engine {self.kind!r}: choose from {', '.join(ENGINES)}")
        if self.workers < 1:
            raise LlmaaaError("--workers must be at least 1")


DATA_MODES: tuple[DataMode, ...] = ("llm", "gold", "combined")
POOLINGS = ("mean", "cls")  # classification: mean of the states and our linear head, or the checkpoint's own head
TRUNCATIONS = ("head+tail", "head")
# auto: bf16 autocast where the hardware runs it fast (a CUDA GPU, a CPU with AMX or AVX512-BF16)
PRECISIONS = ("auto", "fp32")


# The most epochs a student trains when `--epochs` is not given; the learning rate warms up and decays to zero over
# them. A classification head over the mean of a sentence encoder's states starts close to its task: on IMDb, 3
# epochs (BERT's 2-4, transformers' Trainer default) beat 10 by 0.7 to 1.55 points, on Llama-2 and on gold labels
# alike. NER tags and relation markers are heads learned from scratch at single positions (the markers are new
# tokens): on 1,000 gold sentences 3 epochs left them far from trained (MiniLM-L6, CoNLL-2003 entity F1 0.670
# with 3 epochs, 0.768 with 5, 0.780 with 10; SemEval-2010 micro-F1 0.685 with 3, 0.775 with 10).
# benchmarks/bench_llambert.py --epochs 3,10 and bench_epochs.py; README.
TASK_EPOCHS: dict[str, int] = {"classify": 3, "ner": 10, "re": 10}


@dataclass(frozen=True)
class TrainConfig:
    """How a student is trained; `data`: LLM labels, gold labels, or LLM then gold (LlamBERT's combined)."""

    student: str = "minilm-l6"
    data: DataMode = "llm"
    source: str = ""  # LLM labels from one source, or a family ending in ':' ("" = the newest of any source)
    epochs: int | None = None  # the most epochs; None: the task's (TASK_EPOCHS)
    min_steps: int = 100  # small training sets get more epochs, so that the head learns at all
    patience: int = 2  # epochs in a row clearly worse on gold than the best one (a sign test) stop the run
    batch_size: int = 16
    learning_rate: float | None = None  # None: the rule of `default_learning_rate`, by the encoder's width
    max_length: int = 256
    pooling: str = "mean"  # classification head over the mean of the states, or "cls": the checkpoint's own head
    truncation: str = "head+tail"  # a long text keeps its first quarter and its last three quarters, or "head"
    precision: str = "auto"  # see PRECISIONS
    confidence_weights: bool = True
    min_confidence: float = 0.0
    keep_top: float = 1.0  # keep this share of each label's LLM labels, the most confident ones
    balance: bool = True  # classification: every LLM label class carries the same total loss weight
    seed: int = 0
    threads: int | None = None
    examples: tuple[str, ...] | None = None  # restrict LLM-labeled training data to these ids (active learning)
    reweight: bool = False  # learned example weights from a virtual step checked on gold (LLMaAA)
    round_id: int | None = None

    def __post_init__(self) -> None:
        if self.data not in DATA_MODES:
            raise LlmaaaError(f"--data {self.data!r}: choose llm, gold or combined")
        epochs = 1 if self.epochs is None else self.epochs
        if min(epochs, self.batch_size, self.patience) < 1 or self.min_steps < 0:
            raise LlmaaaError("epochs, batch size and patience must be at least 1, and --min-steps at least 0")
        if self.learning_rate is not None and not 0 < self.learning_rate < 1:
            raise LlmaaaError(f"learning rate {self.learning_rate} is out of range")
        if not 16 <= self.max_length <= 4096:
            raise LlmaaaError(f"--max-length {self.max_length} is out of range: use 16 to 4096")
        if not 0 <= self.min_confidence <= 1:
            raise LlmaaaError("--min-confidence must be in 0..1")
        if self.pooling not in POOLINGS:
            raise LlmaaaError(f"--pooling {self.pooling!r}: choose {' or '.join(POOLINGS)}")
        if self.truncation not in TRUNCATIONS:
            raise LlmaaaError(f"--truncation {self.truncation!r}: choose {' or '.join(TRUNCATIONS)}")
        if self.precision not in PRECISIONS:
            raise LlmaaaError(f"--precision {self.precision!r}: choose {' or '.join(PRECISIONS)}")
        if not 0 < self.keep_top <= 1:
            raise LlmaaaError(f"--keep-top {self.keep_top} is outside 0..1: it is the share of labels to keep")


def default_learning_rate(hidden_size: int) -> float:
    """1e-4 for MiniLM-size encoders (hidden 384, where it was measured: benchmarks/bench_llambert.py); wider encoders
    take it scaled by 384 / hidden (5e-5 for base size, inside BERT's fine-tuning range of 2e-5 to 5e-5)."""
    return 1e-4 * min(1.0, 384 / hidden_size)
