"""The active-learning loop with the scripted LLM and the tiny student on real project files: batch schedules,
stored rounds and their learning curve, strategies in the loop, resuming a killed run, several loops per project,
and (slow) the `run` command with a real GGUF."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from llmaaa_local.annotate import Annotator
from llmaaa_local.cli import main
from llmaaa_local.config import PromptSettings, TrainConfig
from llmaaa_local.errors import LlmaaaError
from llmaaa_local.llm import Prompt, ScriptedLLM
from llmaaa_local.loop import ActiveLearningLoop, LoopConfig, RoundEvent
from llmaaa_local.project import DB_NAME, Project, learning_curve
from llmaaa_local.store import Round
from llmaaa_local.strategies import STRATEGIES, Entropy
from llmaaa_local.student import Trainer, load_student, score_pool

DEMO_DATA = Path(str(files("llmaaa_local").joinpath("demo_data")))
LABELS = ["positive", "negative"]

MakeProject = Callable[..., Project]
WriteFile = Callable[..., Path]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # the trainer restores the caller's threads, and the loop scores the pool after it
    yield
    torch.set_num_threads(previous)


def demo_records(part: str, count: int) -> list[dict[str, Any]]:
    lines = (DEMO_DATA / f"classify_{part}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:count]]


def every_record() -> list[dict[str, Any]]:
    return [record for part in ("corpus", "demo", "test") for record in demo_records(part, 10**6)]


LABEL_OF = {record["text"]: record["label"] for record in every_record()}
ID_OF = {record["text"]: record["id"] for record in every_record()}


def noisy(example_id: str) -> bool:
    """The scripted teacher is wrong on every fifth pool text (rev-0005, rev-0010, ...); right on gold."""
    return example_id.startswith("rev-") and int(example_id[4:]) % 5 == 0


def final_text(prompt: Prompt) -> str:
    """The text being annotated: the last "Text: " line of the prompt (demonstrations come before it)."""
    return prompt.user.rsplit("Text: ", 1)[1].split("\n", 1)[0]


class TeacherDied(Exception):
    """Raised by the scripted teacher to kill a run part-way."""


class Teacher:
    """A scoring rule for ScriptedLLM: the text's true label clearly ahead, except on noisy texts; it can be told
    to die on its n-th call (counting from 1)."""

    def __init__(self, die_on_call: int | None = None) -> None:
        self.die_on_call = die_on_call
        self.calls = 0

    def __call__(self, prompt: Prompt, candidates: Sequence[str]) -> list[float]:
        self.calls += 1
        if self.calls == self.die_on_call:
            raise TeacherDied(f"killed on call {self.calls}")
        text = final_text(prompt)
        label = LABEL_OF[text]
        if noisy(ID_OF[text]):
            label = "negative" if label == "positive" else "positive"
        return [-0.1 if candidate == label else -2.5 for candidate in candidates]


def asked_ids(llm: ScriptedLLM) -> list[str]:
    return [ID_OF[final_text(prompt)] for kind, prompt, _ in llm.history if kind == "score"]


def loop_project(make_project: MakeProject, write_file: WriteFile, name: str = "proj", pool: int = 60,
                 demo: int = 8, test: int = 10) -> Project:
    """A sentiment project from the shipped demo data: pool texts with hidden labels, gold demo and test splits;
    random demonstrations and no content-free second call, so each example is exactly one LLM call."""
    project = make_project("classify", labels=LABELS, name=name,
                           prompt=PromptSettings(demos="random", k=2, content_free=False))
    for part, split, count in (("corpus", "pool", pool), ("demo", "demo", demo), ("test", "test", test)):
        if not count:
            continue
        path = write_file(f"{name}-{part}.jsonl", demo_records(part, count))
        if split == "pool":
            project.import_corpus(path)
        else:
            project.import_gold(path, split)
    return project


def loop_config(encoder: Path, train_options: dict[str, Any] | None = None, **options: Any) -> LoopConfig:
    settings: dict[str, Any] = {"seed_size": 10, "per_round": 10, "rounds": 2, "budget": None, "candidates": 40,
                                **options}
    train = TrainConfig(**{"student": str(encoder), "epochs": 1, "min_steps": 0, "threads": 1, "max_length": 64,
                           **(train_options or {})})
    return LoopConfig(train=train, **settings)


def run_loop(project: Project, config: LoopConfig, llm: ScriptedLLM, models_dir: Path,
             events: list[RoundEvent] | None = None) -> list[Round]:
    on_event = events.append if events is not None else None
    return ActiveLearningLoop(project, config, Annotator(project, llm), models_dir, on_event).run()


def round_ids(rounds: Sequence[Round]) -> list[tuple[str, ...]]:
    return [row.selected for row in rounds]


def database_rows(project: Project, sql: str) -> list[tuple[Any, ...]]:
    """Rows read through a separate connection, as another process would see them."""
    conn = sqlite3.connect(project.root / DB_NAME)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# --- the budget schedule -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "sizes"), [
    ({}, [50] * 10),  # the defaults: a budget of 500 in batches of 50
    ({"seed_size": 50, "per_round": 50, "budget": 120}, [50, 50, 20]),  # the last batch is cut to the budget
    ({"seed_size": 10, "per_round": 5, "rounds": 3, "budget": None}, [10, 5, 5, 5]),
    ({"seed_size": 10, "per_round": 5, "rounds": 3, "budget": None, "schedule": "quadratic"}, [10, 5, 15, 25]),
    ({"seed_size": 10, "per_round": 5, "budget": 60, "schedule": "quadratic"}, [10, 5, 15, 25, 5]),
    ({"seed_size": 10, "per_round": 5, "rounds": 2, "budget": 1000}, [10, 5, 5]),  # rounds stop first
    ({"seed_size": 10, "per_round": 5, "rounds": 5, "budget": 30, "schedule": "quadratic"}, [10, 5, 15]),
    ({"seed_size": 10, "per_round": 5, "rounds": 5, "budget": 10}, [10]),  # the seed spends the whole budget
    ({"seed_size": 10, "per_round": 5, "rounds": 0, "budget": None}, [10]),
])
def test_batch_sizes(options: dict[str, Any], sizes: list[int]) -> None:
    config = LoopConfig(**options)
    assert config.batch_sizes() == sizes
    if config.budget is not None:
        assert sum(sizes) <= config.budget


@pytest.mark.parametrize(("options", "message"), [
    ({"seed_size": 50, "budget": 40}, r"--budget 40 is smaller than the seed batch \(50\)"),
    ({"rounds": None, "budget": None}, "give --rounds or --budget"),
    ({"seed_size": 0}, "at least 1"),
    ({"per_round": 0}, "at least 1"),
    ({"strategy": "coreset"}, "unknown strategy 'coreset'"),
    ({"schedule": "linear"}, "fixed or quadratic"),
])
def test_loop_config_is_validated(options: dict[str, Any], message: str) -> None:
    with pytest.raises(LlmaaaError, match=message):
        LoopConfig(**options)


# --- a whole run ---------------------------------------------------------------------------------------------------


def test_a_run_stores_every_round_and_its_learning_curve(make_project: MakeProject, write_file: WriteFile,
                                                         tiny_encoder: Path, tmp_path: Path) -> None:
    project = loop_project(make_project, write_file)
    llm = ScriptedLLM(scorer=Teacher())
    events: list[RoundEvent] = []
    rounds = run_loop(project, loop_config(tiny_encoder), llm, tmp_path, events)

    assert [(row.round, row.status, row.strategy) for row in rounds] == [
        (0, "done", "random"), (1, "done", "entropy"), (2, "done", "entropy")]
    selections = round_ids(rounds)
    pool_ids = set(project.store.example_ids("pool"))
    assert [len(ids) for ids in selections] == [10, 10, 10]
    labeled = [i for ids in selections for i in ids]
    assert len(set(labeled)) == 30 and set(labeled) <= pool_ids  # disjoint, from the pool only

    # the LLM saw the 8 demo texts once (calibration) and each selected text once
    asked = asked_ids(llm)
    gold_ids = project.store.example_ids("demo")
    assert sorted(asked) == sorted(labeled + gold_ids)

    annotations = database_rows(project, "SELECT example_id, round_id FROM annotations")
    round_of = {example_id: row.id for row in rounds for example_id in row.selected}
    round_of.update({gold_id: rounds[0].id for gold_id in gold_ids})
    assert sorted(annotations) == sorted(round_of.items())

    runs = project.store.student_runs()
    assert [(run["round_id"], run["status"]) for run in runs] == [(row.id, "done") for row in rounds]
    configs = [json.loads(config) for (config,) in database_rows(project, "SELECT config FROM student_runs "
                                                                          "ORDER BY id")]
    assert [sorted(config["examples"]) for config in configs] == [sorted(labeled[: 10 * n]) for n in (1, 2, 3)]

    for number, row in enumerate(rounds):
        so_far = labeled[: 10 * (number + 1)]
        wrong = sum(noisy(i) for i in so_far)
        assert row.llm["labeled"] == row.llm["n"] == len(so_far)
        assert row.llm["accuracy"] == pytest.approx(1 - wrong / len(so_far))
        assert row.student["n"] == 10  # scored on the test split
        assert 0.0 <= row.student["accuracy"] <= 1.0 and "macro_f1" in row.student
        assert row.student == {"run_id": runs[number]["id"], **runs[number]["metrics"]["test"]}
        assert row.seconds > 0 and row.finished_at is not None
        assert row.cost["tokens_in"] > 0 and row.cost["cached"] == 0

    assert [(e.round, e.rounds, e.stage) for e in events] == [
        (0, 3, "annotate"), (0, 3, "train"), (0, 3, "select"), (0, 3, "done"),
        (1, 3, "annotate"), (1, 3, "train"), (1, 3, "select"), (1, 3, "done"),
        (2, 3, "annotate"), (2, 3, "train"), (2, 3, "done")]

    curve = learning_curve(rounds)
    assert [(row["round"], row["labeled"]) for row in curve] == [(0, 10), (1, 20), (2, 30)]
    assert [row["llm"] for row in curve] == [row.llm for row in rounds]
    assert [row["student"] for row in curve] == [row.student for row in rounds]
    assert [row["seconds"] for row in curve] == [round(row.seconds, 1) for row in rounds]
    assert project.status_dict()["rounds"] == curve
    assert project.status_dict()["loops"] == {"default": curve}

    # a second run of a finished loop does nothing more
    again = ScriptedLLM(scorer=Teacher())
    assert run_loop(project, loop_config(tiny_encoder), again, tmp_path) == rounds
    assert again.history == [] and len(project.store.student_runs()) == 3

    runner = CliRunner()
    result = runner.invoke(main, ["--project", str(project.root), "status", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rounds"] == json.loads(json.dumps(curve))

    result = runner.invoke(main, ["--project", str(project.root), "status"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "active-learning loop 'default':" in text
    header = next(line for line in text.splitlines() if "labeled" in line and "round" in line)
    assert header.split() == ["round", "labeled", "LLM", "accuracy", "student", "accuracy", "seconds"]
    for row in curve:
        cells = f"{row['round']:>5} {row['labeled']:>7} {row['llm']['accuracy']:>12.4f} " \
                f"{row['student']['accuracy']:>16.4f}"
        assert cells in text
    assert "student accuracy" in text and "LLM labels accuracy" in text and "labeled examples" in text
    assert "\x1b[" not in text  # no terminal colour codes in plain output
    plot = [line for line in text.splitlines() if "┤" in line or line.rstrip().endswith("│")]
    assert len(plot) >= 8 and any(set(line) & set("⠁⠉⠒⠤⣀⡠⢀") for line in plot)  # braille points drawn


# --- strategies in the loop -------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_runs_in_the_loop(strategy: str, make_project: MakeProject, write_file: WriteFile,
                                        tiny_encoder: Path, tmp_path: Path) -> None:
    project = loop_project(make_project, write_file, pool=40)
    config = loop_config(tiny_encoder, strategy=strategy, rounds=1)
    rounds = run_loop(project, config, ScriptedLLM(scorer=Teacher()), tmp_path)
    assert [(row.round, row.status, row.strategy) for row in rounds] == [
        (0, "done", "random"), (1, "done", strategy)]
    first, second = round_ids(rounds)
    assert len(first) == len(second) == 10 and not set(first) & set(second)
    assert set(first + second) <= set(project.store.example_ids("pool"))


@pytest.mark.parametrize("cost_aware", [False, True])
def test_entropy_picks_the_examples_the_rounds_student_is_least_sure_of(cost_aware: bool, make_project: MakeProject,
                                                                        write_file: WriteFile, tiny_encoder: Path,
                                                                        tmp_path: Path) -> None:
    project = loop_project(make_project, write_file, pool=40)
    # a student trained hard enough to be sure of some texts, so the entropies spread out
    config = loop_config(tiny_encoder, rounds=1, candidates=None, cost_aware=cost_aware,
                         train_options={"epochs": 6, "patience": 6, "learning_rate": 3e-2})
    rounds = run_loop(project, config, ScriptedLLM(scorer=Teacher()), tmp_path)
    (checkpoint,) = [a for a in project.store.artifacts("checkpoint") if a.run_id == rounds[0].student["run_id"]]
    model, encoder = load_student(Path(checkpoint.path))
    unlabeled = [e for e in project.store.examples("pool") if e.id not in set(rounds[0].selected)]
    probabilities, _ = score_pool(model, encoder, unlabeled)
    entropy = {e.id: float(Entropy.values(p[None, :])[0]) for e, p in zip(unlabeled, probabilities, strict=True)}
    ranked = sorted(entropy, key=entropy.__getitem__, reverse=True)
    assert entropy[ranked[0]] - entropy[ranked[-1]] > 1e-3, [entropy[i] for i in ranked]  # they do differ
    if not cost_aware:
        # the loop scored the pool in other batches (other padding): equal up to float noise
        selected = set(rounds[1].selected)
        least_sure_picked = min(entropy[i] for i in selected)
        surest_left = max(entropy[i] for i in entropy if i not in selected)
        assert least_sure_picked >= surest_left - 1e-6, [(round(entropy[i], 7), i in selected) for i in ranked]
    else:  # long texts cost more LLM time: the cheaper of the uncertain ones come first
        length = {e.id: len(e.text) for e in unlabeled}
        assert set(rounds[1].selected) != set(ranked[:10])
        mean_length = sum(length[i] for i in rounds[1].selected) / 10
        assert mean_length < sum(length[i] for i in ranked[:10]) / 10
        assert mean_length < sum(length.values()) / len(length)


def test_random_selection_is_the_same_for_the_same_seed(make_project: MakeProject, write_file: WriteFile,
                                                        tiny_encoder: Path, tmp_path: Path) -> None:
    picked = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        project = loop_project(make_project, write_file, name=name)
        config = loop_config(tiny_encoder, strategy="random", rounds=1, seed=seed)
        picked.append(round_ids(run_loop(project, config, ScriptedLLM(scorer=Teacher()), tmp_path)))
    assert picked[0] == picked[1]
    assert picked[0][0] != picked[2][0] and picked[0][1] != picked[2][1]


def test_two_loops_in_one_project_keep_separate_rounds(make_project: MakeProject, write_file: WriteFile,
                                                       tiny_encoder: Path, tmp_path: Path) -> None:
    project = loop_project(make_project, write_file)
    llm = ScriptedLLM(scorer=Teacher())
    first = run_loop(project, loop_config(tiny_encoder, name="first", strategy="random", rounds=1), llm, tmp_path)
    asked_first = len(llm.history)
    second = run_loop(project, loop_config(tiny_encoder, name="second", strategy="random", rounds=1, per_round=5,
                                           seed=1), llm, tmp_path)

    assert project.store.loops() == ["first", "second"]
    assert [row.round for row in first] == [0, 1] and [row.round for row in second] == [0, 1]
    assert not {row.id for row in first} & {row.id for row in second}
    assert project.store.rounds("first") == first and project.store.rounds("second") == second
    assert [len(ids) for ids in round_ids(first)] == [10, 10]
    assert [len(ids) for ids in round_ids(second)] == [10, 5]
    labeled_first = {i for ids in round_ids(first) for i in ids}
    labeled_second = [i for ids in round_ids(second) for i in ids]
    assert len(set(labeled_second)) == 15  # each loop picks from what it has not labeled itself
    assert round_ids(second)[0] != round_ids(first)[0]  # another seed, another seed batch

    # the annotation cache is shared: the second loop asks the LLM only about texts the first did not label
    assert sorted(asked_ids(llm)[asked_first:]) == sorted(set(labeled_second) - labeled_first)
    overlap = len(set(round_ids(second)[0]) & labeled_first)
    assert second[0].cost["cached"] == 8 + overlap  # the calibration gold, and the overlap with the first loop
    assert [row.llm["labeled"] for row in second] == [10, 15]

    status = project.status_dict()
    assert status["loops"] == {"first": learning_curve(first), "second": learning_curve(second)}
    assert [row["labeled"] for row in status["loops"]["second"]] == [10, 15]
    assert status["rounds"] == status["loops"]["second"]  # no loop named default: the last one by name
    runs = project.store.student_runs()
    assert [run["round_id"] for run in runs] == [row.id for row in first + second]


def test_a_loop_stops_when_the_pool_runs_out(make_project: MakeProject, write_file: WriteFile,
                                             tiny_encoder: Path, tmp_path: Path) -> None:
    project = loop_project(make_project, write_file, pool=25)
    config = loop_config(tiny_encoder, rounds=3)
    assert config.batch_sizes() == [10, 10, 10, 10]
    rounds = run_loop(project, config, ScriptedLLM(scorer=Teacher()), tmp_path)
    assert [(row.round, row.status, len(row.selected)) for row in rounds] == [
        (0, "done", 10), (1, "done", 10), (2, "done", 5)]
    assert sorted(i for ids in round_ids(rounds) for i in ids) == sorted(project.store.example_ids("pool"))
    assert run_loop(project, config, ScriptedLLM(scorer=Teacher()), tmp_path) == rounds  # and stays stopped


@pytest.mark.parametrize("candidates", [5, 0])
def test_candidates_fewer_than_a_batch_are_rejected_or_still_fill_it(candidates: int, make_project: MakeProject,
                                                                    write_file: WriteFile, tiny_encoder: Path,
                                                                    tmp_path: Path) -> None:
    try:
        config = loop_config(tiny_encoder, rounds=1, candidates=candidates)
    except LlmaaaError:
        return  # refused up front with a clear message: also a fix
    project = loop_project(make_project, write_file, pool=40)
    rounds = run_loop(project, config, ScriptedLLM(scorer=Teacher()), tmp_path)
    assert [len(ids) for ids in round_ids(rounds)] == [10, 10]


def test_an_empty_pool_is_a_clear_error(make_project: MakeProject, write_file: WriteFile, tiny_encoder: Path,
                                        tmp_path: Path) -> None:
    project = loop_project(make_project, write_file, pool=0)
    with pytest.raises(LlmaaaError, match="the pool is empty: import a corpus first"):
        run_loop(project, loop_config(tiny_encoder), ScriptedLLM(scorer=Teacher()), tmp_path)
    assert project.store.rounds("default") == [] and project.store.student_runs() == []


# --- resuming a killed run ---------------------------------------------------------------------------------------


def annotation_table(project: Project) -> list[tuple[Any, ...]]:
    return database_rows(project, "SELECT * FROM annotations ORDER BY id")


def test_a_run_killed_while_annotating_resumes_in_the_same_round(make_project: MakeProject, write_file: WriteFile,
                                                                 tiny_encoder: Path, tmp_path: Path) -> None:
    project = loop_project(make_project, write_file)
    config = loop_config(tiny_encoder)
    # round 0 asks 8 gold (calibration) + 10 seed texts; the teacher dies on the 5th text of round 1
    dying = ScriptedLLM(scorer=Teacher(die_on_call=18 + 5))
    with pytest.raises(TeacherDied):
        run_loop(project, config, dying, tmp_path)

    killed = project.store.rounds("default")
    assert [(row.round, row.status) for row in killed] == [(0, "done"), (1, "selected")]
    annotated_before = annotation_table(project)
    assert len(annotated_before) == 18 + 4
    runs_before = project.store.student_runs()
    assert len(runs_before) == 1

    fresh = ScriptedLLM(scorer=Teacher())
    rounds = run_loop(project, config, fresh, tmp_path)

    assert [(row.round, row.status) for row in rounds] == [(0, "done"), (1, "done"), (2, "done")]
    assert rounds[0] == killed[0]  # the finished round is untouched
    assert rounds[1].selected == killed[1].selected and rounds[1].id == killed[1].id
    assert annotation_table(project)[: len(annotated_before)] == annotated_before
    assert project.store.student_runs()[0] == runs_before[0]

    # nothing already annotated was asked again: the 6 left of round 1, then round 2
    answered = asked_ids(dying)[18:22]  # the 23rd call died before its answer was stored
    assert set(answered) < set(killed[1].selected)
    asked_again = asked_ids(fresh)
    assert len(asked_again) == 6 + 10
    assert sorted(asked_again[:6]) == sorted(set(killed[1].selected) - set(answered))
    assert sorted(asked_again[6:]) == sorted(rounds[2].selected)
    assert rounds[1].cost["cached"] == 4
    assert [row["labeled"] for row in learning_curve(rounds)] == [10, 20, 30]
    labeled = [i for ids in round_ids(rounds) for i in ids]
    assert len(set(labeled)) == 30
    assert [run["round_id"] for run in project.store.student_runs()] == [row.id for row in rounds]


def test_a_run_killed_while_training_does_not_ask_the_llm_again(make_project: MakeProject, write_file: WriteFile,
                                                                tiny_encoder: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    project = loop_project(make_project, write_file)
    config = loop_config(tiny_encoder)
    real_fit = Trainer._fit
    trained_rounds: set[int | None] = set()

    def dies_in_round_one(self: Trainer, *args: Any) -> Any:
        trained_rounds.add(self.config.round_id)
        if len(trained_rounds) == 2:
            raise TeacherDied("killed while training")
        return real_fit(self, *args)

    monkeypatch.setattr(Trainer, "_fit", dies_in_round_one)
    first = ScriptedLLM(scorer=Teacher())
    with pytest.raises(TeacherDied):
        run_loop(project, config, first, tmp_path)
    killed = project.store.rounds("default")
    assert [(row.round, row.status) for row in killed] == [(0, "done"), (1, "annotated")]
    assert killed[1].llm["labeled"] == 20 and killed[1].student is None
    assert len(first.history) == 8 + 10 + 10
    assert [(run["round_id"], run["status"]) for run in project.store.student_runs()] == [
        (killed[0].id, "done"), (killed[1].id, "failed")]

    monkeypatch.setattr(Trainer, "_fit", real_fit)
    fresh = ScriptedLLM(scorer=Teacher())
    rounds = run_loop(project, config, fresh, tmp_path)
    assert [(row.round, row.status) for row in rounds] == [(0, "done"), (1, "done"), (2, "done")]
    assert rounds[0] == killed[0] and rounds[1].selected == killed[1].selected
    assert rounds[1].llm == killed[1].llm and rounds[1].cost == killed[1].cost
    assert sorted(asked_ids(fresh)) == sorted(rounds[2].selected)  # only the new round's texts
    runs = project.store.student_runs()
    assert [(run["round_id"], run["status"]) for run in runs] == [
        (rounds[0].id, "done"), (rounds[1].id, "failed"), (rounds[1].id, "done"), (rounds[2].id, "done")]
    assert rounds[1].student["run_id"] == runs[2]["id"]  # the run that finished, not the one that failed


# --- the command line with a real GGUF -------------------------------------------------------------------------


@pytest.mark.slow
def test_run_command_with_a_real_gguf(models_dir: Path, tiny_encoder: Path, write_file: WriteFile,
                                      tmp_path: Path) -> None:
    executable = shutil.which("llmaaa-local", path=str(Path(sys.executable).parent))
    assert executable is not None
    project = tmp_path / "P"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([executable, "--models-dir", str(models_dir), "--project", str(project), *args],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        return result

    cli("init", str(project), "--task", "classify", "--labels", "positive,negative", "--demos", "random", "--k", "2")
    cli("import", "corpus", str(write_file("corpus.jsonl", demo_records("corpus", 60))))
    cli("import", "gold", str(write_file("demo.jsonl", demo_records("demo", 6))), "--split", "demo")
    cli("import", "gold", str(write_file("test.jsonl", demo_records("test", 10))), "--split", "test")
    result = cli("run", "--model", "smollm2-135m", "--student", str(tiny_encoder), "--seed-size", "8",
                 "--per-round", "8", "--rounds", "1", "--epochs", "1", "--train-threads", "1", "--threads", "1",
                 "--candidates", "40", "--strategy", "least-confidence", "--max-length", "64")

    lines = result.stdout.splitlines()
    assert lines[0].split() == ["round", "labeled", "LLM", "accuracy", "student", "accuracy", "seconds"]
    assert [line.split()[:2] for line in lines[1:3]] == [["0", "8"], ["1", "16"]]
    assert "round 0/1: annotate 8 examples" in result.stderr and "round 1/1: done" in result.stderr

    info = json.loads(cli("status", "--json").stdout)
    assert [(row["round"], row["labeled"]) for row in info["rounds"]] == [(0, 8), (1, 16)]
    assert all({"accuracy", "macro_f1", "n"} <= set(row["llm"]) for row in info["rounds"])
    assert all(row["student"]["n"] == 10 for row in info["rounds"])
    assert info["counts"]["annotations"] == 8 + 8 + 6


def test_a_finished_loop_continues_when_rerun_with_more_rounds(make_project: MakeProject, write_file: WriteFile,
                                                               tiny_encoder: Path, tmp_path: Path) -> None:
    project = loop_project(make_project, write_file, pool=60)
    first = run_loop(project, loop_config(tiny_encoder, rounds=1), ScriptedLLM(scorer=Teacher()), tmp_path)
    assert [row.status for row in first] == ["done", "done"]
    longer = run_loop(project, loop_config(tiny_encoder, rounds=2), ScriptedLLM(scorer=Teacher()), tmp_path)
    assert longer[:2] == first  # the finished rounds are kept as they were
    assert [(row.round, row.status, len(row.selected)) for row in longer] == [
        (0, "done", 10), (1, "done", 10), (2, "done", 10)]
    assert not set(longer[2].selected) & set(first[0].selected + first[1].selected)
