"""Learning curves as plotext charts: the series, the round table and the drawing the CLI and the TUI share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Curve = list[dict[str, Any]]
Series = dict[str, list[tuple[float, float]]]


def curve_metric(curves: Mapping[str, Curve]) -> str | None:
    """The metric the rounds report: F1 for NER and relations, else accuracy."""
    last = [curve[-1]["student"] for curve in curves.values() if curve]
    return next((key for key in ("f1", "accuracy") if any(key in scores for scores in last)), None)


def curve_series(curves: Mapping[str, Curve], metric: str) -> Series:
    """Student and LLM-label quality against labeled examples, per loop (named by loop when there are several)."""
    series: Series = {}
    for loop, curve in curves.items():
        prefix = f"{loop}: " if len(curves) > 1 else ""
        for who, name in (("student", "student"), ("llm", "LLM labels")):
            points = [(float(row["labeled"]), float(row[who][metric])) for row in curve if metric in row[who]]
            if points:
                series[f"{prefix}{name} {metric}"] = points
    return series


def draw_curves(plt: Any, series: Mapping[str, Sequence[tuple[float, float]]], metric: str) -> None:
    """Draw on plotext's module or a textual-plotext widget's `plt` (the same API)."""
    plt.clear_data()
    for name, points in series.items():
        plt.plot([x for x, _ in points], [y for _, y in points], label=name, marker="braille")
    plt.xlabel("labeled examples")
    plt.ylabel(metric)


def curve_rows(curve: Curve, metric: str | None) -> list[tuple[str, ...]]:
    """One row per finished round: round, labeled, LLM metric, student metric, seconds."""
    def score(scores: dict[str, float]) -> str:
        return "-" if metric is None or metric not in scores else f"{scores[metric]:.4f}"

    return [(str(row["round"]), str(row["labeled"]), score(row["llm"]), score(row["student"]),
             f"{row['seconds']:.0f}") for row in curve]


def learning_curve_text(curve: Curve, width: int = 72, height: int = 14) -> str:
    """A loop's rounds as a table and a plotext chart, for the terminal."""
    if not curve:
        return "  no finished round yet"
    metric = curve_metric({"": curve})
    label = metric or ""
    lines = [f"  {'round':>5} {'labeled':>7} {'LLM ' + label:>12} {'student ' + label:>16} {'seconds':>8}"]
    lines += [f"  {r:>5} {n:>7} {llm:>12} {student:>16} {s:>8}" for r, n, llm, student, s in curve_rows(curve, metric)]
    if metric:
        import plotext

        plotext.clear_figure()
        plotext.plotsize(width, height)
        plotext.theme("clear")
        draw_curves(plotext, curve_series({"": curve}, metric), metric)
        lines.append(plotext.uncolorize(plotext.build()))  # plain text: output may go to a file or a pipe
    return "\n".join(lines)
