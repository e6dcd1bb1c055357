"""The main job (README command 1): `llmaaa-local demo` runs the whole pipeline on the shipped demo corpus."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmaaa_local.cli import main
from llmaaa_local.project import Project


@pytest.mark.slow
def test_demo_runs_every_step_and_leaves_a_labeled_project(tmp_path: Path, models_dir: Path) -> None:
    """`make demo` as written: the default teacher (gemma-3-270m) and student, in a process of its own, so that a
    crash in native code (the AMX kernels of a llama.cpp build) fails here with its faulthandler trace."""
    folder = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "llmaaa_local", "--models-dir", str(models_dir), "demo",
                             "--dir", str(folder), "--threads", "2"], capture_output=True, text=True, check=False)
    output = result.stdout
    assert result.returncode == 0, output + result.stderr[-3000:]
    assert "mpnet-base: " in output  # a default model: the calibration's probe may read it
    assert "3. tuned the prompt on the gold demos" in output
    assert "4. the teacher (gemma-3-270m) labels 120 reviews with that prompt" in output
    steps = [line.split(".")[0] for line in output.splitlines() if line[:1].isdigit()]
    assert steps == [str(step) for step in range(1, 11)], output
    counts = json.loads(output.split("10. status: ")[1].splitlines()[0])
    assert counts["pool"] == 300 and counts["demo"] == 40 and counts["test"] == 100
    assert counts["annotations"] >= 120  # the 120 pool reviews, plus the gold demos scored for calibration
    with Project.open(folder) as project:
        assert {row.kind for row in project.store.artifacts()} >= {"checkpoint", "onnx", "onnx-int8"}
        predicted = project.store.db.execute("SELECT COUNT(DISTINCT example_id) FROM predictions").fetchone()[0]
        assert predicted == 440  # every review of the project, gold ones included

    # a second run starts over in the same folder; a folder that is not a demo is refused, untouched
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    refused = CliRunner().invoke(main, ["--models-dir", str(models_dir), "demo", "--dir", str(other)])
    assert refused.exit_code != 0 and "is not a demo project" in refused.output
    assert (other / "notes.txt").read_text() == "keep me"
