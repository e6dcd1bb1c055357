"""`llmaaa-local report`: a project's figures in one self-contained HTML file (or PNGs); never runs a model or writes
to the project."""

from __future__ import annotations

import base64
import html
import io
import math
import re
import textwrap
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .errors import LlmaaaError
from .evaluate import student_split
from .project import Project, ProjectStatus, learning_curve
from .records import Example, Label
from .store import Round
from .tasks import Task, task_for

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

BINS = 10
CURVE_METRICS = ("accuracy", "macro_f1", "f1")  # drawn where the rounds measured them
METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1", "f1": "F1"}
TEACHER_SOURCES = "llm:"  # the local teacher's annotations (imported ones cost nothing here)
EXTRA = "pip install 'llmaaa-local[report]'"

MakeFigure = Callable[[float, float], "Figure"]
T = TypeVar("T")


# --- what the report shows (no matplotlib needed) ------------------------------------------------------------------


@dataclass(frozen=True)
class LoopCurve:
    """One active-learning loop: per finished round, the examples labeled so far and each metric of the LLM labels
    and of the round's student (NaN where the round did not measure it)."""

    name: str
    strategy: str
    labeled: tuple[int, ...]
    llm: Mapping[str, tuple[float, ...]]
    student: Mapping[str, tuple[float, ...]]

    @property
    def title(self) -> str:
        return f"{self.name} ({self.strategy})"


@dataclass(frozen=True)
class Paired:
    """One source's labels beside the gold (or hidden reference) labels of the same examples."""

    source: str  # "LLM" or "student"
    where: str  # which examples, as a caption says it
    ids: tuple[str, ...]
    gold: tuple[Label, ...]
    predicted: tuple[Label, ...]
    confidence: tuple[float | None, ...]


@dataclass(frozen=True, eq=False)
class Reliability:
    """Confidences in BINS equal bins [a, b) (1.0 in the last): examples, accuracy and mean confidence per bin (NaN
    where empty), and the expected calibration error, the example-weighted mean gap between the two."""

    edges: np.ndarray
    counts: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray
    ece: float

    @property
    def n(self) -> int:
        return int(self.counts.sum())


@dataclass(frozen=True, eq=False)
class Confusion:
    """How often each gold label (row) got each label (column) from one source (scikit-learn's confusion matrix)."""

    source: str
    where: str
    labels: tuple[str, ...]
    matrix: np.ndarray


@dataclass(frozen=True)
class LabelF1:
    """One source's F1 per label (NER: per entity type) against gold, from the task's metrics."""

    source: str
    where: str
    n: int
    scores: Mapping[str, float]


@dataclass(frozen=True)
class LabelCounts:
    """How often each label (NER: each entity type) occurs in one source's labels."""

    source: str
    examples: int
    counts: Mapping[str, int]


@dataclass(frozen=True, eq=False)
class CostCurve:
    """The local teacher's cost summed up to each of its stored annotations, in the order they were made."""

    tokens_in: np.ndarray
    tokens_evaluated: np.ndarray
    tokens_out: np.ndarray
    seconds: np.ndarray
    first: str  # when the first and the last were made
    last: str


@dataclass(frozen=True)
class ReportData:
    """Everything the report draws, read from the project."""

    status: ProjectStatus
    tuned: str | None  # the prompt `tune` chose, with its gold score
    scored: bool  # answers are one scored label (classification, relations); else NER's entity lists
    curves: tuple[LoopCurve, ...]
    reliability: Reliability | None
    confusions: tuple[Confusion, ...]  # classification
    f1: tuple[LabelF1, ...]  # NER and relations
    distributions: tuple[LabelCounts, ...]
    cost: CostCurve | None
    made: str


def gather(project: Project) -> ReportData:
    """Read what the report shows from the project's store."""
    store, settings = project.store, project.settings
    task = task_for(settings)
    teacher, student = teacher_labels(project), student_labels(project)
    paired = [labels for labels in (teacher, student) if labels is not None]
    confusions: tuple[Confusion, ...] = ()
    f1: tuple[LabelF1, ...] = ()
    if settings.task == "classify":
        confusions = tuple(confusion(labels, settings.label_names) for labels in paired)
    elif paired:
        examples = {e.id: e for e in store.examples(ids=sorted({i for labels in paired for i in labels.ids}))}
        f1 = tuple(label_f1(task, labels, examples) for labels in paired)
    artifact = store.labeled_artifact()
    distributions = [label_counts("gold / reference", store.reference_labels().values()),
                     label_counts("LLM", (label for _, label, _, _ in store.latest_labels())),
                     label_counts("student", (label for label, _, _ in
                                              (store.predictions(artifact).values() if artifact is not None else ())))]
    return ReportData(
        status=project.status(), tuned=tuned_prompt(store.tuning()), scored=task.scored,
        curves=tuple(loop_curve(name, store.rounds(name)) for name in store.loops()),
        reliability=teacher_reliability(teacher) if teacher is not None else None,
        confusions=confusions, f1=f1, distributions=tuple(d for d in distributions if d.examples),
        cost=cost_curve(store.annotation_costs(TEACHER_SOURCES)),
        made=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))


def loop_curve(name: str, rounds: Sequence[Round]) -> LoopCurve:
    """A loop's learning curve (`project.learning_curve`) with its strategy: round 0 is always the random seed
    batch, so the later rounds name it."""
    rows = learning_curve(rounds)
    strategy = next((row.strategy for row in rounds if row.round > 0), "seed round only")

    def series(kind: str) -> dict[str, tuple[float, ...]]:
        return {metric: tuple(float(row[kind].get(metric, math.nan)) for row in rows) for metric in CURVE_METRICS
                if any(metric in row[kind] for row in rows)}

    return LoopCurve(name, strategy, tuple(row["labeled"] for row in rows), series("llm"), series("student"))


def teacher_labels(project: Project) -> Paired | None:
    """The newest LLM label of every example that has a gold or hidden reference label, in any split."""
    references = project.store.reference_labels()
    rows = [(eid, label, confidence) for eid, label, confidence, _ in project.store.latest_labels()
            if eid in references]
    return _paired("LLM", "examples with gold or hidden reference labels", references, rows)


def student_labels(project: Project) -> Paired | None:
    """The newest exported student's labels where `evaluate` scores them: the test split if any, else the pool."""
    artifact = project.store.labeled_artifact()
    if artifact is None:
        return None
    split = student_split(project)
    references = project.store.reference_labels(split)
    rows = [(eid, label, confidence) for eid, (label, confidence, _) in
            project.store.predictions(artifact, split).items() if eid in references]
    return _paired("student", f"the {split} split", references, rows)


def _paired(source: str, where: str, references: Mapping[str, Label],
            rows: Sequence[tuple[str, Label, float | None]]) -> Paired | None:
    if not rows:
        return None
    ids, labels, confidences = zip(*sorted(rows, key=lambda row: row[0]), strict=True)
    return Paired(source, where, ids, tuple(references[i] for i in ids), labels, confidences)


def reliability(confidence: Sequence[float], correct: Sequence[bool], bins: int = BINS) -> Reliability:
    """Bin the confidences: examples, accuracy and mean confidence per bin, and the expected calibration error."""
    values, hits = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(values, edges[1:-1]), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(which, weights=hits, minlength=bins) / counts
        mean = np.bincount(which, weights=values, minlength=bins) / counts
    ece = float(np.nansum(counts * np.abs(accuracy - mean)) / counts.sum()) if counts.sum() else 0.0
    return Reliability(edges, counts, accuracy, mean, ece)


def teacher_reliability(labels: Paired) -> Reliability | None:
    """The teacher's confidence against being right; NER: right means the sentence's entities match exactly."""
    known = [(confidence, predicted == gold) for gold, predicted, confidence
             in zip(labels.gold, labels.predicted, labels.confidence, strict=True) if confidence is not None]
    if not known:
        return None
    confidences, correct = zip(*known, strict=True)
    return reliability(confidences, correct)


def confusion(labels: Paired, names: Sequence[str]) -> Confusion:
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix([str(g) for g in labels.gold], [str(p) for p in labels.predicted], labels=list(names))
    return Confusion(labels.source, labels.where, tuple(names), matrix)


def label_f1(task: Task, labels: Paired, examples: Mapping[str, Example]) -> LabelF1:
    scores = task.f1_by_label(dict(zip(labels.ids, labels.gold, strict=True)),
                              dict(zip(labels.ids, labels.predicted, strict=True)), examples)
    return LabelF1(labels.source, labels.where, len(labels.ids), scores)


def label_counts(source: str, labels: Iterable[Label]) -> LabelCounts:
    counts: Counter[str] = Counter()
    examples = 0
    for label in labels:
        examples += 1
        counts.update([label] if isinstance(label, str) else [span.type for span in label])
    return LabelCounts(source, examples, dict(counts))


def cost_curve(rows: Sequence[tuple[str, int, int, int, float]]) -> CostCurve | None:
    """Running totals over `Store.annotation_costs` rows."""
    if not rows:
        return None
    made, *columns = zip(*rows, strict=True)
    tokens_in, evaluated, out, seconds = (np.cumsum(np.asarray(column, dtype=float)) for column in columns)
    return CostCurve(tokens_in, evaluated, out, seconds, made[0], made[-1])


def tuned_prompt(record: Mapping[str, Any] | None) -> str | None:
    if not record:
        return None
    chosen = record["chosen"]
    return (f"{chosen['described']}: {METRIC_NAMES.get(record['metric'], record['metric'])} {chosen['score']:.3f} "
            f"on {chosen['n']} gold examples")


# --- drawing -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One part of the report: a figure and its caption, or (no figure) a sentence saying what to run to get it."""

    name: str  # its file name with --png
    title: str
    text: str
    png: bytes | None = None


@dataclass(frozen=True)
class ReportFiles:
    """What `report` wrote, and the sentences of the sections left out for want of data."""

    paths: tuple[Path, ...]
    missing: tuple[str, ...]


def write_html(project: Project, path: Path) -> ReportFiles:
    """The whole report as one HTML file with its figures inside (base64 PNG): nothing else to copy along."""
    make = figure_maker()  # before reading anything: a missing extra says so at once
    data = gather(project)
    parts = draw(data, make)
    _write(path, render_html(data, parts).encode("utf-8"))
    return ReportFiles((path,), tuple(part.text for part in parts if part.png is None))


def write_pngs(project: Project, folder: Path) -> ReportFiles:
    """Each figure as `<folder>/<section>.png`."""
    make = figure_maker()
    parts = draw(gather(project), make)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LlmaaaError(f"{folder}: cannot create the folder for the figures ({error.strerror})") from None
    paths = []
    for part in parts:
        if part.png is not None:
            paths.append(folder / f"{part.name}.png")
            _write(paths[-1], part.png)
    return ReportFiles(tuple(paths), tuple(part.text for part in parts if part.png is None))


def _write(path: Path, content: bytes) -> None:
    try:
        path.write_bytes(content)
    except OSError as error:
        raise LlmaaaError(f"{path}: cannot write the report ({error.strerror})") from None


NO_ROUNDS = "No active-learning rounds yet: run `llmaaa-local run` (each finished round adds a point)."
NO_ROUND_METRICS = ("The loops measured nothing: import a labeled corpus (hidden reference labels for the LLM labels) "
                    "and a gold test split (for the student), then run `llmaaa-local run` again.")
NO_GOLD_CONFIDENCES = ("No LLM labels with a confidence on examples with gold labels yet: import gold "
                       "(`llmaaa-local import gold`) or a labeled corpus, then run `llmaaa-local annotate`.")
NO_ERRORS_YET = ("No LLM or student labels on examples with gold labels yet: import gold or a labeled corpus, then "
                 "run `llmaaa-local annotate` (and `train`, `export`, `label` for the student).")
NO_LABELS = "No labels yet: import gold or a labeled corpus (`llmaaa-local import`), or run `llmaaa-local annotate`."
NO_COST = "No annotations by the local LLM yet: run `llmaaa-local annotate` or `llmaaa-local run`."


def draw(data: ReportData, make: MakeFigure) -> list[Section]:
    """The report's five sections, in order."""
    measured = tuple(curve for curve in data.curves if curve.llm or curve.student)
    kind = "relation label" if data.scored else "entity type"
    errors = (_drawn("confusion", "3. Confusion matrix", data.confusions, NO_ERRORS_YET,
                     lambda found: _draw_confusions(found, make)) if data.status.task == "classify" else
              _drawn("f1-by-label", f"3. F1 per {kind}", data.f1, NO_ERRORS_YET,
                     lambda found: _draw_f1(found, kind, data.status.labels, make)))
    return [
        _drawn("learning-curves", "1. Learning curves", measured, NO_ROUND_METRICS if data.curves else NO_ROUNDS,
               lambda found: _draw_curves(found, make)),
        _drawn("reliability", "2. Teacher reliability on gold", data.reliability, NO_GOLD_CONFIDENCES,
               lambda found: _draw_reliability(found, data.scored, make)),
        errors,
        _drawn("label-distribution", "4. Label distributions", data.distributions, NO_LABELS,
               lambda found: _draw_distributions(found, data.scored, data.status.labels, make)),
        _drawn("llm-cost", "5. LLM cost over time", data.cost, NO_COST, lambda found: _draw_cost(found, make)),
    ]


def _drawn(name: str, title: str, found: T | None, missing: str, drawing: Callable[[T], tuple[Figure, str]],
           ) -> Section:
    """A section's figure and caption, or (no data: None or empty) the sentence saying what to run to get it."""
    if found is None or found == ():
        return Section(name, title, missing)
    figure, caption = drawing(found)
    return Section(name, title, caption, _png(figure))


def figure_maker() -> MakeFigure:
    """matplotlib Figures on the Agg canvas (no window, no display), or one line naming the extra to install."""
    try:
        import matplotlib
    except ImportError:
        raise LlmaaaError(f"`report` draws with matplotlib, which is not installed: {EXTRA}") from None
    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def make(width: float, height: float) -> Figure:
        figure = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(figure)
        return figure

    return make


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _draw_curves(curves: Sequence[LoopCurve], make: MakeFigure) -> tuple[Figure, str]:
    metrics = [m for m in CURVE_METRICS if any(m in curve.llm or m in curve.student for curve in curves)]
    figure = make(max(6.0, 5.0 * len(metrics)), 4.4)
    for ax, metric in zip(figure.subplots(1, len(metrics), squeeze=False)[0], metrics, strict=True):
        for index, curve in enumerate(curves):
            for values, style, who in ((curve.student, "o-", "student"), (curve.llm, "s--", "LLM labels")):
                if metric in values:
                    ax.plot(curve.labeled, values[metric], style, color=f"C{index}", label=f"{curve.title}: {who}")
        ax.set(title=f"{METRIC_NAMES[metric]} by labeled examples", xlabel="labeled examples (LLM annotations)",
               ylabel=METRIC_NAMES[metric])
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    loops = ", ".join(curve.title for curve in curves)
    return figure, (f"After each round of each loop ({loops}): the student (solid) on the gold test split (else "
                    "dev), and the LLM labels so far (dashed) against the pool's hidden reference labels.")


def _draw_reliability(found: Reliability, scored: bool, make: MakeFigure) -> tuple[Figure, str]:
    figure = make(6.4, 6.4)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    centres, width = (found.edges[:-1] + found.edges[1:]) / 2, found.edges[1] - found.edges[0]
    top.bar(centres, np.nan_to_num(found.accuracy), width, color="C0", alpha=0.7, edgecolor="black",
            label="share correct in the bin")
    top.plot(found.confidence, found.accuracy, "o", color="C3", label="at the bin's mean confidence")
    top.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    top.set(xlim=(0, 1), ylim=(0, 1.02), ylabel="share correct",
            title=f"Teacher reliability: ECE {found.ece:.3f}\non {found.n} examples with gold or reference labels")
    figure.legend(loc="outside lower center", ncols=3, fontsize="small")
    bars = bottom.bar(centres, found.counts, width, color="C7", edgecolor="black")
    bottom.bar_label(bars, [str(count) if count else "" for count in found.counts], fontsize="small")
    bottom.set(ylabel="examples", xlabel="LLM confidence of the chosen label (calibrated)" if scored else
               "LLM confidence of the sentence's entities (mean token probability)")
    bottom.set_ylim(0, max(1, int(found.counts.max())) * 1.25)
    bottom.locator_params(axis="y", integer=True)
    right = ("the LLM's label equals the gold label" if scored else
             "exact match: the sentence's predicted entities equal its gold entities, span and type")
    return figure, (f"The newest LLM label of every example with a gold or hidden reference label, in {BINS} "
                    f"confidence bins; correct means {right}. ECE is the gap between the share correct and the mean "
                    "confidence, averaged over the bins by their examples. The gold demo and dev examples include "
                    "those a calibration was fitted on.")


def _draw_f1(scores: Sequence[LabelF1], kind: str, labels: Sequence[str], make: MakeFigure) -> tuple[Figure, str]:
    names = _names(labels, (label for found in scores for label in found.scores))
    figure = make(max(6.0, 0.7 * len(names) * len(scores) + 2), 4.2)
    ax = figure.subplots()
    _grouped_bars(ax, names, {f"{found.source} on {found.where} (n={found.n})": [
        found.scores.get(label, math.nan) for label in names] for found in scores}, "F1", "{:.2f}")
    ax.set(ylim=(0, 1.08), title=f"F1 per {kind} against gold", xlabel=kind)
    return figure, (f"F1 of each {kind} from the task's own metrics (seqeval entities for NER, scikit-learn for "
                    "relations), the no-relation label left out. No bar: the label occurs in neither the gold nor "
                    "the given labels of that source's examples.")


def _draw_confusions(confusions: Sequence[Confusion], make: MakeFigure) -> tuple[Figure, str]:
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(4.4, 0.55 * len(confusions[0].labels) + 2.4)
    figure = make(size * len(confusions), size)
    for ax, found in zip(figure.subplots(1, len(confusions), squeeze=False)[0], confusions, strict=True):
        ConfusionMatrixDisplay(found.matrix, display_labels=list(found.labels)).plot(
            ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45 if len(found.labels) > 4 else "horizontal")
        title = textwrap.fill(f"{found.source} labels on {found.where}", width=int(8 * size))  # fits the panel
        ax.set(title=f"{title}\n(n={int(found.matrix.sum())})",
               xlabel=f"{found.source} label", ylabel="gold label")
    where = "; ".join(f"{found.source}: {found.where}" for found in confusions)
    return figure, f"Rows: the gold (or hidden reference) label; columns: the label given ({where})."


def _draw_distributions(distributions: Sequence[LabelCounts], scored: bool, labels: Sequence[str],
                        make: MakeFigure) -> tuple[Figure, str]:
    unit = "labels" if scored else "entities"
    names = _names(labels, (label for found in distributions for label in found.counts))
    figure = make(max(6.0, 0.6 * len(names) * len(distributions) + 2), 4.2)
    ax = figure.subplots()
    series = {f"{found.source} ({found.examples} {'labels' if scored else 'sentences'}"
              f"{'' if scored else f', {sum(found.counts.values())} entities'})":
              [found.counts.get(label, 0) / max(1, sum(found.counts.values())) for label in names]
              for found in distributions}
    _grouped_bars(ax, names, series, f"share of {unit}", "{:.0%}")
    ax.yaxis.set_major_formatter("{x:.0%}")
    ax.set(title=f"{unit.capitalize()} by source", xlabel="label" if scored else "entity type")
    return figure, (f"Each source's {unit} as shares of its own total, so sources of different sizes compare: gold "
                    "(and the hidden reference labels of an imported corpus), the newest LLM label of each example, "
                    "and the newest exported student's labels.")


def _draw_cost(found: CostCurve, make: MakeFigure) -> tuple[Figure, str]:
    figure = make(11.0, 4.2)
    tokens, seconds = figure.subplots(1, 2)
    number = np.arange(1, len(found.seconds) + 1)
    for values, label in ((found.tokens_in, "prompt tokens"),
                          (found.tokens_evaluated, "evaluated tokens (not from the KV cache)"),
                          (found.tokens_out, "generated tokens")):
        tokens.plot(number, values, label=label)
    tokens.set(title="Tokens, cumulative", xlabel="annotation (in the order made)", ylabel="tokens")
    tokens.legend(fontsize="small")
    seconds.plot(number, found.seconds, color="C3")
    seconds.set(title="LLM time, cumulative", xlabel="annotation (in the order made)", ylabel="seconds")
    for ax in (tokens, seconds):
        ax.grid(alpha=0.3)
    return figure, (f"{len(number)} annotations by the local LLM, made {found.first} to {found.last} (UTC): "
                    f"{int(found.tokens_in[-1])} prompt tokens, {int(found.tokens_evaluated[-1])} evaluated, "
                    f"{int(found.tokens_out[-1])} generated, {found.seconds[-1]:.1f}s. A cached answer (the same "
                    "text again) costs nothing.")


def _names(known: Sequence[str], found: Iterable[str]) -> list[str]:
    """The project's labels in their order, then any other found, skipping project labels never found."""
    seen = set(found)
    return [name for name in known if name in seen] + sorted(seen - set(known))


def _grouped_bars(ax: Axes, names: Sequence[str], series: Mapping[str, Sequence[float]], ylabel: str,
                  value_format: str) -> None:
    """One group of bars per name, one bar per series, each with its value; the legend below the axes."""
    width = 0.8 / len(series)
    positions = np.arange(len(names))
    for index, (label, values) in enumerate(series.items()):
        bars = ax.bar(positions + (index - (len(series) - 1) / 2) * width, values, width, label=label)
        ax.bar_label(bars, ["" if math.isnan(v) else value_format.format(v) for v in values], fontsize="x-small")
    ax.set_xticks(positions, names, rotation=30 if len(names) > 5 else 0, ha="right" if len(names) > 5 else "center")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.figure.legend(loc="outside lower center", ncols=min(3, len(series)), fontsize="small")


# --- the page ------------------------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; } th { text-align: left; padding-right: 1.5em; vertical-align: top; }
td, th { padding: 0.15em 0.5em 0.15em 0; } img { max-width: 100%; } p.missing { color: #8a5a00; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def render_html(data: ReportData, parts: Sequence[Section]) -> str:
    status = data.status
    counts, cost = status.counts, status.cost
    calibration = status.calibration or {}
    facts = [
        ("project", str(Path(status.project).resolve())),
        ("task", status.task + (f" (no-relation label: {status.no_relation})" if status.no_relation else "")),
        ("labels", ", ".join(status.labels) or "not set yet"),
        ("examples", f"pool {counts.pool}, demo {counts.demo}, dev {counts.dev}, test {counts.test}"),
        ("LLM", f"{counts.annotations} annotations, {counts.parse_errors} parse errors, {cost.tokens_in} prompt "
                f"tokens ({cost.tokens_evaluated} evaluated), {cost.tokens_out} generated, {cost.seconds:.1f}s"),
        ("calibration", f"{calibration['method']}: {calibration['summary']}" if "summary" in calibration else
         "none fitted yet: `llmaaa-local annotate` fits one on the gold demo and dev examples"),
        ("tuned prompt", data.tuned or "not tuned: `llmaaa-local tune` chooses the prompt on gold examples"),
        ("made", data.made),
    ]
    rows = "".join(f"<tr><th>{html.escape(name)}</th><td>{_text(value)}</td></tr>" for name, value in facts)
    name = html.escape(Path(status.project).resolve().name)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>llmaaa-local report: {name}'
            f"</title><style>{STYLE}</style></head>\n<body><h1>llmaaa-local report: {name}</h1>\n<table>{rows}"
            f"</table>\n{''.join(_section(part) for part in parts)}</body></html>\n")


def _section(part: Section) -> str:
    if part.png is None:
        body = f'<p class="missing">{_text(part.text)}</p>'
    else:
        image = base64.b64encode(part.png).decode("ascii")
        body = f'<img alt="{html.escape(part.title)}" src="data:image/png;base64,{image}">\n<p>{_text(part.text)}</p>'
    return f'<section id="{part.name}"><h2>{html.escape(part.title)}</h2>\n{body}</section>\n'


def _text(text: str) -> str:
    """Escaped, with `commands` as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
