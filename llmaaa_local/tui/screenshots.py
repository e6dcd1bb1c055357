"""SVG screenshots of every tab at 80x24, from a real run: the demo project with the default GGUF teacher and student.

The project is what `llmaaa-local demo` builds (prompt tuned, 120 reviews annotated, a student trained, exported
and labeling the corpus), plus two short active-learning loops (entropy and random) so the Metrics tab has curves;
then the app annotates a few more reviews live on the Run tab before the shots are taken. It takes about 15 minutes
on 2 cores and pulls the default models if they are missing.

Usage: python -m llmaaa_local.tui.screenshots [OUT_DIR] [--project DIR]  (OUT_DIR: docs/screenshots)
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from textual.widgets import Input

from llmaaa_local.config import TrainConfig
from llmaaa_local.demo import DEMO_EPOCHS, run_demo
from llmaaa_local.loop import LoopConfig
from llmaaa_local.models import DEFAULT_STUDENT, default_models_dir
from llmaaa_local.project import Project
from llmaaa_local.session import Session

from .app import LlmaaaApp

TABS = (("1", "home"), ("2", "models"), ("3", "run"), ("4", "review"), ("5", "metrics"), ("6", "export"))
LIVE_ANNOTATIONS = 8


def build(folder: Path, models_dir: Path) -> None:
    """The demo project, then two short loops (seed 20, two rounds of 20) with the same teacher and student."""
    run_demo(folder, models_dir)
    session = Session(folder, models_dir)
    train = TrainConfig(student=DEFAULT_STUDENT, epochs=DEMO_EPOCHS)
    with Project.open(folder) as project:
        for strategy in ("entropy", "random"):
            config = LoopConfig(name=strategy, strategy=strategy, seed_size=20, per_round=20, rounds=2, budget=None,
                                train=train)
            rounds = session.loop(project, config)
            print(f"loop {strategy}: {len(rounds)} rounds")


async def shoot(folder: Path, models_dir: Path, out: Path) -> list[Path]:
    app = LlmaaaApp(folder, models_dir=models_dir)
    shots = []
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        with Project.open(folder) as project:  # annotate asks in a seeded order: reach past the answered ones
            answered = sum(1 for _ in project.store.latest_labels(split="pool"))
        app.query_one("#annotate-n", Input).value = str(answered + LIVE_ANNOTATIONS)
        await pilot.press("a")
        for _ in range(6000):  # the real teacher: up to 5 minutes
            await pilot.pause(0.05)
            if app.control is None and app.job_name:
                break
        for key, name in TABS:
            await pilot.press(key)
            await pilot.pause(0.5)
            shots.append(Path(app.save_screenshot(f"{name}.svg", str(out))))
        await pilot.press("question_mark")
        await pilot.pause(0.3)
        shots.append(Path(app.save_screenshot("help.svg", str(out))))
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--project", type=Path, default=Path("llmaaa-screenshots"),
                        help="where the project is built (an earlier screenshot project there is reused)")
    args = parser.parse_args()
    models_dir = default_models_dir()
    args.out.mkdir(parents=True, exist_ok=True)
    if not (args.project / "project.sqlite").exists():
        build(args.project, models_dir)
    for path in asyncio.run(shoot(args.project, models_dir, args.out)):
        print(path)


if __name__ == "__main__":
    main()
