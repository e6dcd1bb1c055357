"""Form controls with a visible name and a tooltip: every input of every tab and dialog is made through `field`."""

from __future__ import annotations

from typing import TypeVar

from textual.widget import Widget

W = TypeVar("W", bound=Widget)


def field(widget: W, label: str, tooltip: str) -> W:
    """`widget` with its name on its border, always visible, and a tooltip saying what it does."""
    widget.border_title = label
    widget.tooltip = tooltip
    widget.add_class("field")
    return widget
