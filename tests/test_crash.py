"""Crash and resume: the harness SIGKILLs every long command twice at random moments; each rerun must repair the
project (integrity, no duplicates, no repeated LLM calls) and end where an uninterrupted run ends.
`python tests/crash_harness.py --kills 20` runs the full version."""

from __future__ import annotations

from pathlib import Path

import pytest
from crash_harness import COMMANDS, run_harness, summary


@pytest.mark.slow
def test_every_command_survives_sigkill_and_resumes(tmp_path: Path, models_dir: Path) -> None:
    lines: list[str] = []
    outcomes = run_harness(tmp_path / "crash", models_dir, list(COMMANDS), kills=2, seed=1, log=lines.append)
    report = summary(outcomes)
    assert [outcome.command for outcome in outcomes] == list(COMMANDS)
    assert all(outcome.kills == 2 for outcome in outcomes), report
    assert not any(outcome.failures for outcome in outcomes), report + "\n" + "\n".join(lines)
