"""The real app in a real terminal: `llmaaa-local tui` inside tmux, driven with send-keys, read with capture-pane."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmaaa_local.config import LabelInfo, ProjectSettings
from llmaaa_local.project import Project

POOL = [{"id": f"r{i:02d}", "text": f"{'good' if i % 2 else 'bad'} review number {i}"} for i in range(1, 8)]
LLM = [{"id": "r01", "label": "pos", "confidence": 0.55}, {"id": "r02", "label": "neg", "confidence": 0.95}]


def small_project(folder: Path) -> Path:
    """Seven pool records, LLM labels for two (one of them unsure, so the review queue has one item)."""
    with Project.init(folder / "P", ProjectSettings("classify", (LabelInfo("pos"), LabelInfo("neg")))) as project:
        for name, records in (("pool.jsonl", POOL), ("llm.jsonl", LLM)):
            (folder / name).write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
        project.import_corpus(folder / "pool.jsonl")
        project.import_annotations(folder / "llm.jsonl", "teacher")
        return project.root


class Tmux:
    """One tmux server of our own (its own socket), so the test never touches the user's sessions."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=check,
                              timeout=20)

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "app").stdout

    def wait_for(self, *expected: str, gone: str = "", timeout: float = 15.0) -> str:
        """Poll the pane until every `expected` text is on it (and `gone` is not); returns the screen."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if all(text in screen for text in expected) and not (gone and gone in screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {expected} (without {gone!r}) on the screen:\n{screen}")
            time.sleep(0.2)

    def alive(self) -> bool:
        return self("has-session", "-t", "app", check=False).returncode == 0


@pytest.mark.slow
def test_the_app_in_a_real_terminal(tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    project = small_project(tmp_path)
    models = tmp_path / "models"
    command = f"{shlex.quote(sys.executable)} -m llmaaa_local --project {project.name} tui"  # short: fits 80 columns
    tmux = Tmux(f"llmaaa-test-{os.getpid()}")
    try:
        tmux("new-session", "-d", "-s", "app", "-x", "80", "-y", "24", "-c", str(tmp_path),
             "-e", f"LLMAAA_MODELS={models}", command)
        home = tmux.wait_for("1 Home", "pool", "annotations", timeout=60)
        for tab in ("2 Models", "3 Run", "4 Review", "5 Metrics", "6 Export"):
            assert tab in home
        assert "P  task classify  labels pos, neg" in home
        counts = {line.split()[0]: line.split()[1] for line in home.splitlines()
                  if line.split()[:1] in (["pool"], ["annotations"])}
        assert counts == {"pool": "7", "annotations": "2"}

        tmux("send-keys", "-t", "app", "3")
        run = tmux.wait_for("Annotate a", "idle")
        assert "Train t" in run and "Loop o" in run

        tmux("send-keys", "-t", "app", "4")
        # the table's first frame may have its columns still narrow ("uns"): wait for the settled one
        review = tmux.wait_for("1 to review", "r01", "unsure")
        assert "unsure" in review and "pos 0.55" in review and "good review number 1" in review

        tmux("send-keys", "-t", "app", "?")
        help_screen = tmux.wait_for("llmaaa-local keys")
        assert "Annotate (Run)" in help_screen and "Help" in help_screen

        tmux("send-keys", "-t", "app", "Escape")
        tmux.wait_for("1 to review", gone="llmaaa-local keys")

        tmux("send-keys", "-t", "app", "C-q")
        deadline = time.monotonic() + 15
        while tmux.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not tmux.alive(), "ctrl+q did not quit the app"
    finally:
        tmux("kill-server", check=False)
