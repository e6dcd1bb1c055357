"""SVG screenshots of every tab at 80x24, on a project built from the demo data with a scripted teacher.

Usage: python -m llmaaa_local.tui.screenshots OUT_DIR
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from llmaaa_local.config import LabelInfo, ProjectSettings, PromptSettings
from llmaaa_local.demo import demo_file
from llmaaa_local.llm import Prompt, ScriptedLLM
from llmaaa_local.project import Project

from .app import LlmaaaApp

POSITIVE_WORDS = ("love", "great", "lovely", "friendly", "perfect", "excellent", "recommend", "best")


def teacher_scores(prompt: Prompt, candidates: Sequence[str]) -> list[float]:
    """A stand-in teacher: positive when the last text has a positive word."""
    text = prompt.user.rsplit("Text:", 1)[-1].lower()
    positive = any(word in text for word in POSITIVE_WORDS)
    return [-0.3, -1.6] if positive else [-1.6, -0.3]


async def shoot(folder: Path, out: Path) -> list[Path]:
    app = LlmaaaApp(folder, teacher_factory=lambda settings, models: ScriptedLLM(scorer=teacher_scores))
    shots = []
    async with app.run_test(size=(80, 24)) as pilot:
        app.sub_title = "demo-project"
        await pilot.press("3")
        await pilot.press("a")
        for _ in range(200):
            await pilot.pause(0.05)
            if app.control is None and app.job_name:
                break
        for key, name in (("1", "home"), ("2", "models"), ("3", "run"), ("4", "review"), ("5", "metrics"),
                          ("6", "export")):
            await pilot.press(key)
            await pilot.pause(0.2)
            shots.append(Path(app.save_screenshot(f"{name}.svg", str(out))))
        await pilot.press("question_mark")
        await pilot.pause(0.2)
        shots.append(Path(app.save_screenshot("help.svg", str(out))))
    return shots


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        labels = (LabelInfo("positive"), LabelInfo("negative"))
        settings = ProjectSettings("classify", labels, prompt=PromptSettings(demos="random", content_free=False))
        with Project.init(Path(tmp) / "demo-project", settings) as project:
            project.import_corpus(demo_file("classify_corpus.jsonl"))
            project.import_gold(demo_file("classify_demo.jsonl"), "demo")
            project.import_gold(demo_file("classify_test.jsonl"), "test")
        for path in asyncio.run(shoot(Path(tmp) / "demo-project", out)):
            print(path)


if __name__ == "__main__":
    main()
