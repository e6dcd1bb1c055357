"""Modal screens and the NER span editor: help, the import file picker with a preview, typed labels."""

from __future__ import annotations

import gzip
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, DataTable, DirectoryTree, Input, Label, Select, Static

from llmaaa_local.interchange import IMPORT_FORMATS
from llmaaa_local.records import Span

from .fields import field

PREVIEW_LINES = 6
IMPORT_KINDS = [("corpus (pool, labels hidden)", "corpus"), ("gold: demo pool", "demo"), ("gold: dev", "dev"),
                ("gold: test", "test"), ("LLM annotations from elsewhere", "annotations")]


class HelpScreen(ModalScreen[None]):
    """Every key binding, and how the app works, in one screen."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static("[b]llmaaa-local keys[/b]  (ctrl+p: the command palette lists every action)", id="help-title")
            yield DataTable(id="help-keys", cursor_type="row")
            yield Static("Long jobs run in the background; pause (p), resume (u) and cancel (x) keep everything "
                         "stored. Esc closes.", id="help-note")

    def on_mount(self) -> None:
        table = self.query_one("#help-keys", DataTable)
        table.add_columns("key", "action")
        for key, text in self.keys:
            table.add_row(key, text)
        table.focus()


def preview(path: Path, lines: int = PREVIEW_LINES) -> str:
    """The first records of a file, shown before importing it (bad bytes shown, never raised)."""
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as handle:  # type: ignore[operator]
            head = [handle.readline() for _ in range(lines)]
    except OSError as error:
        return f"cannot read {path.name}: {error}"
    text = "".join(raw.decode("utf-8", errors="replace") for raw in head if raw)
    return text[:2000] or "(empty file)"


class ImportScreen(ModalScreen["tuple[Path, str, str, str | None] | None"]):
    """Pick a file, see its first records, choose what it is; returns (path, kind, source name, format or None for
    the one its name implies) or None."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel")]

    def __init__(self, start: Path) -> None:
        super().__init__()
        self.start = start
        self.chosen: Path | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="import-box"):
            yield Label("Import: pick a file (enter), check the preview, choose what it holds")
            with Horizontal(id="import-main"):
                yield DirectoryTree(str(self.start), id="import-tree")
                yield Static("(no file chosen)", id="import-preview")
            with Horizontal(id="import-options"):
                yield field(Select(IMPORT_KINDS, value="corpus", allow_blank=False, id="import-kind"), "what it holds",
                            "corpus: texts to label (any labels stay hidden); gold: a split of checked labels; "
                            "annotations: labels made elsewhere")
                yield field(Select([("from its name", ""), *((name, name) for name in IMPORT_FORMATS)], value="",
                                   allow_blank=False, id="import-format"), "format",
                            "The file's format; by default the one its name implies (.jsonl, .csv, .conll, ...)")
                yield field(Input(placeholder="e.g. llama70b", id="import-source"), "source name",
                            "For annotations: a name for where the labels come from")
                yield Button("Import", variant="primary", id="import-go")
                yield Button("Cancel", id="import-cancel")

    @on(DirectoryTree.FileSelected)
    def _file(self, event: DirectoryTree.FileSelected) -> None:
        self.chosen = Path(event.path)
        self.query_one("#import-preview", Static).update(Text(f"{self.chosen.name}\n\n{preview(self.chosen)}"))

    @on(Button.Pressed, "#import-go")
    def _go(self) -> None:
        if self.chosen is None:
            self.notify("choose a file first", severity="warning")
            return
        kind = str(self.query_one("#import-kind", Select).value)
        fmt = str(self.query_one("#import-format", Select).value) or None
        self.dismiss((self.chosen, kind, self.query_one("#import-source", Input).value.strip(), fmt))

    @on(Button.Pressed, "#import-cancel")
    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class SpanEditor(Widget, can_focus=True):
    """Keyboard span editing for NER review: move with left/right, extend with shift, 1-9 sets a type,
    delete removes the entity under the cursor, enter saves, escape cancels."""

    BINDINGS = [
        Binding("left", "move(-1)", "Left", show=False), Binding("right", "move(1)", "Right", show=False),
        Binding("shift+left", "extend(-1)", "Extend", show=False),
        Binding("shift+right", "extend(1)", "Extend", show=False),
        Binding("delete,backspace", "remove", "Remove entity"), Binding("enter", "save", "Save spans"),
        Binding("escape", "abandon", "Cancel"),
        *[Binding(str(i), f"set_type({i - 1})", f"Type {i}", show=False) for i in range(1, 10)],
    ]

    class Saved(Message):
        def __init__(self, spans: tuple[Span, ...]) -> None:
            super().__init__()
            self.spans = spans

    class Abandoned(Message):
        pass

    def __init__(self, tokens: tuple[str, ...], types: tuple[str, ...], spans: tuple[Span, ...] = (),
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.tokens, self.types = tokens, types
        self.spans = list(spans)
        self.cursor = 0
        self.mark = 0

    def render(self) -> Text:
        text = Text()
        low, high = sorted((self.mark, self.cursor))
        for index, token in enumerate(self.tokens):
            span = next((s for s in self.spans if s.start <= index < s.end), None)
            style = "reverse" if low <= index <= high else ""
            if span is not None:
                style += " bold underline" + (" green" if span.type == self.types[0] else " cyan")
            label = f"[{span.type}]" if span is not None and index == span.end - 1 else ""
            text.append(token + label, style=style.strip())
            text.append(" ")
        keys = "  ".join(f"{i + 1}={kind}" for i, kind in enumerate(self.types[:9]))
        text.append(f"\n\n←/→ move, shift extends, {keys}, del removes, enter saves, esc cancels", style="dim")
        return text

    def action_move(self, step: int) -> None:
        self.cursor = min(max(self.cursor + step, 0), len(self.tokens) - 1)
        self.mark = self.cursor
        self.refresh()

    def action_extend(self, step: int) -> None:
        self.cursor = min(max(self.cursor + step, 0), len(self.tokens) - 1)
        self.refresh()

    def action_set_type(self, index: int) -> None:
        if index >= len(self.types):
            return
        low, high = sorted((self.mark, self.cursor))
        self.spans = [s for s in self.spans if s.end <= low or s.start > high]
        self.spans.append(Span(low, high + 1, self.types[index]))
        self.mark = self.cursor
        self.refresh()

    def action_remove(self) -> None:
        self.spans = [s for s in self.spans if not s.start <= self.cursor < s.end]
        self.refresh()

    def action_save(self) -> None:
        self.post_message(self.Saved(tuple(sorted(self.spans))))

    def action_abandon(self) -> None:
        self.post_message(self.Abandoned())
