"""The Ray engine on a real local Ray (loopback, 2 CPUs): the same annotations and predictions as the local engine,
a lost actor or a killed driver costs only the calls in flight, and a missing Ray or cluster is one clear line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmaaa_local.annotate import AnnotateConfig, AnnotateProgress
from llmaaa_local.config import EngineSettings, PromptSettings, TeacherSettings
from llmaaa_local.errors import LlmaaaError
from llmaaa_local.llm import LLM, Prompt, ScriptedLLM
from llmaaa_local.project import Project
from llmaaa_local.session import Session

ray = pytest.importorskip("ray")
RAY = EngineSettings("ray", workers=2)
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the scripted teachers below travel to the actors


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One Ray for the module, as `connect` starts it (loopback, this machine's CPUs, capped at 2 here)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(address="local", num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False,
             log_to_driver=False, object_store_memory=200 * 2**20)
    yield
    ray.shutdown()


def sentiment(prompt: Prompt, candidates: Any) -> list[float]:
    return [-0.1, -2.5] if "good" in prompt.user.rsplit("Text:", 1)[-1] else [-2.5, -0.1]


class PidTeacher:
    """A scripted teacher that notes which process answered (so a test can see both actors work), and can die once
    mid-run like a lost worker."""

    def __init__(self, log: Path, die_after: int | None = None) -> None:
        self.log, self.die_after = log, die_after

    def __call__(self, settings: TeacherSettings, models_dir: Path) -> LLM:
        def scorer(prompt: Prompt, candidates: Any) -> list[float]:
            with self.log.open("a") as handle:
                handle.write(f"{os.getpid()}\n")
            marker = self.log.with_suffix(".died")
            if self.die_after is not None and not marker.exists() and len(self.log.read_text().split()) > \
                    self.die_after:
                marker.touch()
                os._exit(1)  # the worker process is lost mid-run
            time.sleep(0.01)
            return sentiment(prompt, candidates)

        return ScriptedLLM(scorer=scorer)


def pool(count: int) -> list[dict[str, str]]:
    return [{"id": f"p{i:02d}", "text": f"a {'good' if i % 3 else 'bad'} kettle, review {i}"} for i in range(count)]


def project_with_pool(make_project: Callable[..., Project], write_file: Callable[..., Path], count: int = 24,
                      **settings: Any) -> Project:
    project = make_project("classify", labels=["pos", "neg"], prompt=PromptSettings(demos="none"), **settings)
    project.import_corpus(write_file("pool.jsonl", pool(count)))
    return project


def answers(project: Project) -> dict[str, tuple[Any, ...]]:
    rows = project.store.db.query("SELECT example_id, label, scores, cache_key FROM annotations ORDER BY example_id")
    return {row["example_id"]: (row["label"], json.loads(row["scores"] or "null"), row["cache_key"]) for row in rows}


def once_each(project: Project) -> bool:
    counts = [row["n"] for row in project.store.db.query("SELECT COUNT(*) AS n FROM annotations GROUP BY example_id")]
    return len(counts) == project.status().counts.pool and set(counts) == {1}


def integrity(project: Project) -> str:
    with sqlite3.connect(project.root / "project.sqlite") as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def test_two_actors_give_the_local_engine_s_annotations(make_project: Callable[..., Project],
                                                        write_file: Callable[..., Path], tmp_path: Path) -> None:
    here = project_with_pool(make_project, write_file)
    Session(here.root, tmp_path, teacher_factory=lambda s, m: ScriptedLLM(scorer=sentiment)).annotate(
        here, AnnotateConfig(n=24))
    log = tmp_path / "pids.log"
    other = make_project("classify", labels=["pos", "neg"], prompt=PromptSettings(demos="none"),
                         name="on-ray")
    other.import_corpus(write_file("pool2.jsonl", pool(24)))
    seen: list[AnnotateProgress] = []
    report = Session(other.root, tmp_path, teacher_factory=PidTeacher(log), engine=RAY).annotate(
        other, AnnotateConfig(n=24), seen.append)
    assert report.annotated == 24 and seen[-1].done == 24
    assert seen[-1].workers == 2  # rates count the two actors' calls as side by side
    assert answers(other) == answers(here)  # labels, scores and cache keys
    assert len(set(log.read_text().split()) - {str(os.getpid())}) == 2  # both actors answered, not the driver


def test_a_lost_actor_costs_only_its_calls_in_flight(make_project: Callable[..., Project],
                                                     write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = project_with_pool(make_project, write_file)
    log = tmp_path / "pids.log"
    report = Session(project.root, tmp_path, teacher_factory=PidTeacher(log, die_after=8), engine=RAY).annotate(
        project, AnnotateConfig(n=24))
    assert log.with_suffix(".died").exists()  # an actor did die mid-run; Ray restarted it and ran its calls again
    assert report.annotated == 24 and once_each(project) and integrity(project) == "ok"
    again = Session(project.root, tmp_path, teacher_factory=PidTeacher(log), engine=RAY).annotate(
        project, AnnotateConfig(n=24))
    assert (again.annotated, again.cached) == (0, 24)


def test_identical_texts_in_flight_together_are_asked_once(make_project: Callable[..., Project],
                                                           write_file: Callable[..., Path], tmp_path: Path) -> None:
    project = make_project("classify", labels=["pos", "neg"], prompt=PromptSettings(demos="none"))
    project.import_corpus(write_file("pool.jsonl", [{"id": f"d{i}", "text": "a good kettle"} for i in range(6)]))
    log = tmp_path / "pids.log"
    report = Session(project.root, tmp_path, teacher_factory=PidTeacher(log), engine=RAY).annotate(
        project, AnnotateConfig(n=6))
    assert len(log.read_text().split()) == 2  # one request for the six: the text and its content-free baseline
    assert (report.annotated, report.cached) == (1, 5) and once_each(project)


def test_ray_data_labels_like_the_local_labeler(tmp_path: Path, tiny_encoder: Path) -> None:
    from conftest import student_project, train_student

    from llmaaa_local.export import ExportConfig, export_student

    with student_project(tmp_path / "a", "classify") as project:
        train_student(project, tiny_encoder, tmp_path, epochs=1, learning_rate=3e-3)
        export_student(project, ExportConfig(threads=1))
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # the same export, labeled twice
    with Project.open(tmp_path / "a" / "project") as local, Project.open(tmp_path / "b" / "project") as remote:
        here = Session(local.root, tmp_path).label(local, threads=1)
        there = Session(remote.root, tmp_path, engine=RAY).label(remote, threads=1)
        assert (there.artifact_id, there.labeled, there.skipped) == (here.artifact_id, here.labeled, 0)
        expected, found = local.store.predictions(here.artifact_id), remote.store.predictions(there.artifact_id)
        assert found.keys() == expected.keys()
        for example_id, (label, confidence, probabilities) in expected.items():
            assert found[example_id][0] == label
            assert found[example_id][1] == pytest.approx(confidence, abs=1e-4)
            assert found[example_id][2] == pytest.approx(probabilities, abs=1e-4)
        assert Session(remote.root, tmp_path, engine=RAY).label(remote).skipped == there.labeled


def test_doctor_reports_the_cluster(tmp_path: Path) -> None:
    lines = Session(None, tmp_path, engine=RAY).cluster_report()
    assert lines[-1].startswith("ray cluster  1 node(s), 2 CPUs")


def test_without_ray_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(LlmaaaError, match=r"pip install 'llmaaa-local\[ray\]'"):
        Session(None, tmp_path, engine=RAY).cluster_report()


def test_an_unreachable_cluster_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "llmaaa_local", "--models-dir", str(tmp_path), "doctor",
                             "--check-build", "--engine", "ray", "--address", "127.0.0.1:9"],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot reach the Ray cluster at 127.0.0.1:9" in errors[0], result.stderr[-2000:]


@pytest.mark.slow
def test_the_real_teacher_on_two_actors_matches_local(make_project: Callable[..., Project],
                                                      write_file: Callable[..., Path], models_dir: Path) -> None:
    teacher = TeacherSettings(model="smollm2-135m", n_ctx=1024, threads=1)
    here = project_with_pool(make_project, write_file, count=12)
    Session(here.root, models_dir, teacher).annotate(here, AnnotateConfig(n=12, calibrate=False))
    other = make_project("classify", labels=["pos", "neg"], prompt=PromptSettings(demos="none"), name="on-ray")
    other.import_corpus(write_file("pool2.jsonl", pool(12)))
    Session(other.root, models_dir, teacher, engine=RAY).annotate(other, AnnotateConfig(n=12, calibrate=False))
    local, remote = answers(here), answers(other)
    assert remote.keys() == local.keys()
    for example_id, (label, scores, key) in local.items():
        assert remote[example_id][0] == label and remote[example_id][2] == key
        assert remote[example_id][1] == pytest.approx(scores, abs=1e-3)  # KV reuse may differ in the last bits


@pytest.mark.slow
def test_a_killed_driver_loses_only_the_calls_in_flight(make_project: Callable[..., Project],
                                                       write_file: Callable[..., Path], models_dir: Path) -> None:
    project = project_with_pool(make_project, write_file, count=40)
    project.close()
    command = [sys.executable, "-m", "llmaaa_local", "--project", str(project.root), "--models-dir", str(models_dir),
               "annotate", "--n", "40", "--model", "smollm2-135m", "--n-ctx", "1024", "--threads", "1",
               "--engine", "ray", "--workers", "2", "--no-calibrate"]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and stored(project.root) < 5:
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started
    driver.wait()
    killed_at = stored(project.root)
    assert 5 <= killed_at < 40
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    with Project.open(project.root) as reopened:
        assert once_each(reopened) and integrity(reopened) == "ok"


def stored(root: Path) -> int:
    with sqlite3.connect(root / "project.sqlite", timeout=30) as db:
        return int(db.execute("SELECT COUNT(*) FROM annotations").fetchone()[0])


@pytest.mark.slow
def test_the_loop_on_ray_annotates_and_scores_the_pool_there(make_project: Callable[..., Project],
                                                             write_file: Callable[..., Path], tmp_path: Path,
                                                             tiny_encoder: Path) -> None:
    from test_loop import Teacher, loop_config, loop_project

    from llmaaa_local.loop import local_pool_scores
    from llmaaa_local.ray_engine import RayPoolScorer

    ray.cloudpickle.register_pickle_by_value(sys.modules["test_loop"])
    project = loop_project(make_project, write_file)
    session = Session(project.root, tmp_path, teacher_factory=lambda s, m: ScriptedLLM(scorer=Teacher()),
                      engine=RAY)
    rounds = session.loop(project, loop_config(tiny_encoder, strategy="entropy", rounds=1))
    assert [(row.round, row.status, len(row.selected)) for row in rounds] == [(0, "done", 10), (1, "done", 10)]
    assert project.status().counts.annotations == 20 + 8  # both rounds, and the gold demos for calibration
    checkpoint = next(a for a in project.store.artifacts("checkpoint") if a.run_id == rounds[0].student["run_id"])
    examples = list(project.store.examples("pool"))[:30]
    local, there = local_pool_scores(Path(checkpoint.path), examples), RayPoolScorer(RAY)(Path(checkpoint.path),
                                                                                          examples)
    assert len(there[0]) == len(local[0]) == 30
    for mine, theirs in zip(local[0], there[0], strict=True):
        assert theirs == pytest.approx(mine, abs=1e-5)
    assert there[1] == pytest.approx(local[1], abs=1e-5)


async def test_the_tui_annotates_on_ray(make_project: Callable[..., Project], write_file: Callable[..., Path],
                                        tmp_path: Path) -> None:
    from dataclasses import replace

    from test_tui import SIZE, annotate_all, rows

    from llmaaa_local.tui.app import LlmaaaApp

    project = project_with_pool(make_project, write_file, count=8)
    log = tmp_path / "pids.log"
    app = LlmaaaApp(project.root, models_dir=tmp_path, teacher_factory=PidTeacher(log))
    app.session = replace(app.session, engine=RAY)  # as the Models tab's engine choice sets it
    async with app.run_test(size=SIZE) as pilot:
        await annotate_all(pilot, app, 8, timeout=120)
        assert len(rows(app, "#feed")) == 8
    assert project.status().counts.annotations == 8 and once_each(project)
    assert str(os.getpid()) not in log.read_text().split()  # the actors answered, not the app's process
