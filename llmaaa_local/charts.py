"""Text plots of learning curves for the terminal (CLI status and the TUI); no plotting library needed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MARKS = "o*x+#@"


def line_plot(series: Mapping[str, Sequence[tuple[float, float]]], width: int = 56, height: int = 12,
              y_label: str = "") -> str:
    """Points of each series on a character grid, with y and x ranges and a legend."""
    points = [point for values in series.values() for point in values]
    if not points:
        return "(no points yet)"
    xs, ys = [x for x, _ in points], [y for _, y in points]
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = min(ys), max(ys)
    if y_high - y_low < 1e-9:
        y_low, y_high = y_low - 0.5, y_high + 0.5
    grid = [[" "] * width for _ in range(height)]
    for mark, values in zip(MARKS, series.values(), strict=False):
        for x, y in values:
            column = 0 if x_high == x_low else round((x - x_low) / (x_high - x_low) * (width - 1))
            row = height - 1 - round((y - y_low) / (y_high - y_low) * (height - 1))
            grid[row][column] = mark
    lines = []
    for index, cells in enumerate(grid):
        label = f"{y_high:6.3f}" if index == 0 else f"{y_low:6.3f}" if index == height - 1 else " " * 6
        lines.append(f"{label} |{''.join(cells)}")
    lines.append(" " * 7 + "+" + "-" * width)
    lines.append(" " * 8 + f"{x_low:<10g}{'labeled examples':^{max(width - 20, 0)}}{x_high:>10g}")
    legend = "   ".join(f"{mark} {name}" for mark, name in zip(MARKS, series, strict=False))
    lines.append(" " * 8 + legend + (f"   (y: {y_label})" if y_label else ""))
    return "\n".join(lines)


def learning_curve_text(curve: list[dict[str, Any]]) -> str:
    """The loop's rounds as a table and a terminal plot (LLM label quality and student quality)."""
    if not curve:
        return "  no finished round yet"
    metric = next((key for key in ("f1", "accuracy") if key in curve[-1]["student"]), None)
    lines = [f"  {'round':>5} {'labeled':>7} {'LLM ' + (metric or ''):>12} {'student ' + (metric or ''):>16} "
             f"{'seconds':>8}"]
    for row in curve:
        llm, student = row["llm"].get(metric), row["student"].get(metric)
        lines.append(f"  {row['round']:>5} {row['labeled']:>7} {'-' if llm is None else f'{llm:.4f}':>12} "
                     f"{'-' if student is None else f'{student:.4f}':>16} {row['seconds']:>8.0f}")
    if metric:
        series = {f"student {metric}": [(r["labeled"], r["student"][metric]) for r in curve if metric in r["student"]],
                  f"LLM labels {metric}": [(r["labeled"], r["llm"][metric]) for r in curve if metric in r["llm"]]}
        lines.append(line_plot(series, y_label=metric))
    return "\n".join(lines)
