"""Crash-resume harness: SIGKILL the command line at random moments, rerun, and check that nothing was lost or doubled.

For each command it first runs the command uninterrupted on its base stage (the reference), then, `--kills` times:
restore the base stage, start the command, SIGKILL it after a seeded random delay within the reference's duration,
check the database, rerun the same command to completion and check again:

- `PRAGMA integrity_check` is ok and `PRAGMA foreign_key_check` finds nothing, right after the kill and after the rerun;
- no duplicate annotations: unique cache keys, one LLM annotation per (example, source, prompt key);
- the rerun asked the LLM nothing already stored: its "N already cached" (`annotate`) or each resumed round's
  `cost.cached` (`run`) equals the annotations stored before the rerun, and those rows did not change (the
  calibration-derived label, calibrated probabilities and confidence excepted: a rerun that completes the gold set
  refits the calibration, exactly as an uninterrupted run does); `label` skips exactly the stored predictions;
- every registered artifact's file exists with its recorded sha256, no student run is left 'running', no staging
  folder is left behind;
- the result equals the reference (see `fingerprint`).

Every stage is built in and restored to one fixed folder (workdir/live/project), because the project stores artifact
paths as they were given. The project: classify, the shipped demo corpus plus (for `import`) a synthetic 20k-record
JSONL, `--demos random`, the real smollm2-135m GGUF on one thread, and a tiny BERT student built in-process.

    python tests/crash_harness.py --kills 20 --commands import,annotate,train,export,label,run --seed 0
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tiny_models, when run as a script

from tiny_models import DEMO_DATA, build_tiny_encoder  # noqa: E402

from llmaaa_local.models import REGISTRY, default_models_dir  # noqa: E402

COMMANDS = ("import", "annotate", "train", "export", "label", "run")
TEACHER = "smollm2-135m"
SYNTHETIC_RECORDS = 20_000
DB = "project.sqlite"
# What each command starts from, and the stage its reference run becomes.
BASE_OF = {"import": "base", "annotate": "corpus", "train": "annotated", "export": "trained", "label": "exported",
           "run": "corpus"}
PRODUCES = {"import": "corpus", "annotate": "annotated", "train": "trained", "export": "exported"}
# Annotation columns that a rerun may rewrite: a calibration refit re-derives them from the stored scores.
RECALIBRATED = ("label", "calibrated", "confidence")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "TOKENIZERS_PARALLELISM": "false"}


@dataclass
class Setup:
    workdir: Path
    models_dir: Path
    log: Callable[[str], None] = print

    @property
    def live(self) -> Path:
        return self.workdir / "live" / "project"

    @property
    def tiny(self) -> Path:
        return self.workdir / "tiny-bert"

    @property
    def synthetic(self) -> Path:
        return self.workdir / "synthetic.jsonl"

    def stage(self, name: str) -> Path:
        return self.workdir / "stages" / name


@dataclass
class Reference:
    fingerprint: dict[str, Any]
    seconds: float
    stdout: str


@dataclass
class Outcome:
    command: str
    kills: int = 0
    mid_run: int = 0  # kills that landed before the command finished on its own
    passes: int = 0
    failures: list[str] = field(default_factory=list)


# --- the project -------------------------------------------------------------------------------------------------

_ADJECTIVES = {
    "positive": ["sturdy", "quiet", "bright", "reliable", "comfortable", "generous", "clever", "friendly", "crisp"],
    "negative": ["flimsy", "noisy", "dull", "unreliable", "cramped", "stingy", "clumsy", "rude", "soggy"],
}
_THINGS = ["kettle", "bicycle", "hotel room", "phone case", "lamp", "backpack", "novel", "coffee grinder", "tent",
           "keyboard", "umbrella", "blender", "desk chair", "train ride", "bakery", "headset", "garden hose"]
_OPENERS = ["I bought the", "We tried the", "My sister lent me her", "After a month with the", "The shop sold me a"]
_ENDINGS = {
    "positive": ["and I would buy it again.", "and it still works every day.", "which made the week easier.",
                 "so I recommend it to friends."],
    "negative": ["and I want my money back.", "and it broke within days.", "which ruined the weekend.",
                 "so I returned it at once."],
}
_FILLER = ["Honestly,", "To be fair,", "Oddly,", "In short,", "Then again,", ""]


def synthetic_record(index: int, rng: random.Random) -> dict[str, Any]:
    """One made-up product review: 1 to 4 sentences, mostly of one polarity (the hidden reference label)."""
    label = rng.choice(("positive", "negative"))
    sentences = []
    for _ in range(rng.randint(1, 4)):
        polarity = label if rng.random() < 0.85 else ("negative" if label == "positive" else "positive")
        words = [rng.choice(_FILLER), rng.choice(_OPENERS), rng.choice(_THINGS), "—", "it was",
                 rng.choice(_ADJECTIVES[polarity]), rng.choice(_ENDINGS[polarity])]
        sentences.append(" ".join(word for word in words if word))
    return {"id": f"syn-{index:05d}", "text": " ".join(sentences), "label": label}


def write_synthetic_corpus(path: Path, count: int = SYNTHETIC_RECORDS, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path.write_text("".join(json.dumps(synthetic_record(i, rng)) + "\n" for i in range(1, count + 1)),
                    encoding="utf-8")
    return path


def command_args(command: str, setup: Setup) -> list[str]:
    teacher = ["--model", TEACHER, "--threads", "1", "--n-ctx", "1024", "--seed", "0"]
    student = ["--student", str(setup.tiny), "--max-length", "64", "--batch-size", "8", "--train-threads", "1"]
    return {
        "import": ["import", "corpus", str(setup.synthetic)],
        "annotate": ["annotate", "--n", "16", *teacher],
        "train": ["train", "--epochs", "2", "--seed", "0", *student],
        "export": ["export"],
        "label": ["label", "--threads", "1"],
        "run": ["run", "--seed-size", "8", "--per-round", "8", "--rounds", "1", "--epochs", "1", "--candidates", "40",
                "--strategy", "least-confidence", *student, *teacher],
    }[command]


def cli(setup: Setup, *args: str) -> list[str]:
    return [sys.executable, "-m", "llmaaa_local", "--project", str(setup.live), "--models-dir",
            str(setup.models_dir), *args]


def environment() -> dict[str, str]:
    return {**os.environ, **ONE_THREAD, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def run_cli(setup: Setup, args: list[str], timeout: float = 900) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    result = subprocess.run(cli(setup, *args), capture_output=True, text=True, timeout=timeout, env=environment(),
                            cwd=setup.workdir)
    return result, time.perf_counter() - started


def prepare(setup: Setup) -> None:
    """The work folder: the tiny student, the synthetic corpus, and the base stage (gold demo/test, demo corpus)."""
    teacher = setup.models_dir / REGISTRY[TEACHER].target
    if not teacher.exists():
        raise SystemExit(f"{teacher} is missing: run `llmaaa-local models pull {TEACHER}` first")
    setup.workdir.mkdir(parents=True, exist_ok=True)
    if not (setup.tiny / "model.safetensors").exists():
        build_tiny_encoder(setup.tiny)
    if not setup.synthetic.exists():
        write_synthetic_corpus(setup.synthetic)
    if setup.stage("base").exists():
        return
    if setup.live.parent.exists():
        shutil.rmtree(setup.live.parent)
    setup.live.parent.mkdir(parents=True)
    gold = setup.workdir / "gold"
    gold.mkdir(exist_ok=True)
    for part, count in (("demo", 8), ("test", 20)):
        lines = (DEMO_DATA / f"classify_{part}.jsonl").read_text(encoding="utf-8").splitlines()[:count]
        (gold / f"{part}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    steps = [["init", str(setup.live), "--task", "classify", "--labels", "positive,negative", "--demos", "random",
              "--k", "2"],
             ["import", "gold", str(gold / "demo.jsonl"), "--split", "demo"],
             ["import", "gold", str(gold / "test.jsonl"), "--split", "test"],
             ["import", "corpus", str(DEMO_DATA / "classify_corpus.jsonl")]]
    for args in steps:
        result, _ = run_cli(setup, args)
        if result.returncode != 0:
            raise SystemExit(f"building the base project failed: {' '.join(args)}\n{result.stderr}")
    save_stage(setup, "base")


def save_stage(setup: Setup, name: str) -> None:
    target = setup.stage(name)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(setup.live, target)


def restore(setup: Setup, name: str) -> None:
    if setup.live.exists():
        shutil.rmtree(setup.live)
    shutil.copytree(setup.stage(name), setup.live)


def ensure_stage(setup: Setup, name: str, references: dict[str, Reference]) -> None:
    """Build a stage by running the reference of the command that produces it (and of the stages before)."""
    if setup.stage(name).exists():
        return
    producer = next(command for command, stage in PRODUCES.items() if stage == name)
    reference_run(setup, producer, references)


def reference_run(setup: Setup, command: str, references: dict[str, Reference]) -> Reference:
    if command in references:
        return references[command]
    ensure_stage(setup, BASE_OF[command], references)
    restore(setup, BASE_OF[command])
    result, seconds = run_cli(setup, command_args(command, setup))
    if result.returncode != 0:
        raise SystemExit(f"the reference `{command}` failed:\n{result.stderr[-3000:]}")
    references[command] = Reference(fingerprint(setup, command), seconds, result.stdout)
    if command in PRODUCES:
        save_stage(setup, PRODUCES[command])
    setup.log(f"reference {command}: {seconds:.1f}s")
    return references[command]


# --- what the database holds -------------------------------------------------------------------------------------


def connect(setup: Setup) -> sqlite3.Connection:
    return sqlite3.connect(setup.live / DB, timeout=30)


def rows(setup: Setup, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = connect(setup)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def integrity(setup: Setup) -> list[str]:
    problems = []
    checked = rows(setup, "PRAGMA integrity_check")
    if checked != [("ok",)]:
        problems.append(f"integrity_check: {checked[:3]}")
    broken = rows(setup, "PRAGMA foreign_key_check")
    if broken:
        problems.append(f"foreign_key_check: {broken[:3]}")
    return problems


def duplicates(setup: Setup) -> list[str]:
    problems = []
    [(doubled,)] = rows(setup, "SELECT COUNT(cache_key) - COUNT(DISTINCT cache_key) FROM annotations")
    if doubled:
        problems.append(f"{doubled} duplicate cache keys")
    repeated = rows(setup, "SELECT example_id, source, prompt_key, COUNT(*) FROM annotations WHERE source LIKE 'llm:%' "
                           "GROUP BY example_id, source, prompt_key HAVING COUNT(*) > 1")
    if repeated:
        problems.append(f"{len(repeated)} examples annotated twice by one LLM prompt, e.g. {repeated[0]}")
    return problems


def stored_annotations(setup: Setup) -> dict[int, tuple[Any, ...]]:
    """id -> every column but the calibration-derived ones."""
    conn = connect(setup)
    try:
        cursor = conn.execute("SELECT * FROM annotations")
        names = [column[0] for column in cursor.description]
        keep = [i for i, name in enumerate(names) if name not in RECALIBRATED]
        return {row[0]: tuple(row[i] for i in keep) for row in cursor.fetchall()}
    finally:
        conn.close()


def artifact_problems(setup: Setup) -> list[str]:
    """Every registered artifact's file is on disk with its recorded sha256; nothing is left half-done."""
    from llmaaa_local.models import sha256_file

    problems = []
    for kind, path, digest, info in rows(setup, "SELECT kind, path, sha256, info FROM artifacts"):
        name = "model.safetensors" if kind == "checkpoint" else json.loads(info)["file"]
        file = Path(path) / name
        if not file.exists():
            problems.append(f"registered {kind} {file} is missing")
        elif sha256_file(file) != digest:
            problems.append(f"registered {kind} {file} does not match its sha256")
    running = rows(setup, "SELECT id FROM student_runs WHERE status = 'running'")
    if running:
        problems.append(f"student runs left 'running': {running}")
    staging = sorted((setup.live / "artifacts").rglob("*.partial"))
    if staging:
        problems.append(f"staging left behind: {[str(p.relative_to(setup.live)) for p in staging]}")
    return problems


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def _test_examples(setup: Setup) -> list[Any]:
    from llmaaa_local.project import Project

    with Project.open(setup.live) as project:
        return list(project.store.examples("test"))


def _predictions(results: list[Any]) -> list[Any]:
    return [[label, None if probs is None else {k: round(v, 6) for k, v in sorted(probs.items())}]
            for label, probs, _ in results]


def _llm_annotations(setup: Setup) -> list[list[Any]]:
    """Per LLM annotation: example, label, confidence (3 decimals), the raw label scores and baseline, status."""
    found = rows(setup, "SELECT example_id, label, confidence, scores, baseline, status FROM annotations "
                        "WHERE source LIKE 'llm:%' ORDER BY example_id")
    return [[eid, label, None if conf is None else round(conf, 3), scores, baseline, status]
            for eid, label, conf, scores, baseline, status in found]


def _without_run_id(student: dict[str, Any] | None) -> dict[str, Any] | None:
    """A round's student metrics; the run id differs when a killed training run took the first one."""
    return None if student is None else {key: value for key, value in student.items() if key != "run_id"}


def fingerprint(setup: Setup, command: str) -> dict[str, Any]:
    """What must equal the reference after a crash and a rerun, per command.

    import: every examples row (created_at aside) and what each imported file added; annotate: per LLM annotation
    its example, label, confidence (3 decimals) and raw scores; train: the newest finished run's metrics and its
    checkpoint's predictions on the test split; export: the newest int8 export's predictions on the test split;
    label: the predictions table of the newest export; run: each round's selection, status, LLM-label quality and
    student metrics, and the LLM annotations. Raw llama.cpp scores compare exactly: one thread gives the same floats in
    every process, whether a prompt's prefix came from the KV cache or not (measured: 0 differences in 120 kills).
    """
    if command == "import":
        examples = rows(setup, "SELECT id, seq, split, text, tokens, offsets, head, tail, gold, reference, "
                               "content_hash, source_file, source_line, flags FROM examples ORDER BY seq")
        # per file, what it added: a rerun after an import that had already committed records an import of 0 rows
        imports = rows(setup, "SELECT path, sha256, kind, split, SUM(added) FROM imports "
                              "GROUP BY path, sha256, kind, split ORDER BY MIN(id)")
        return {"examples": len(examples), "examples_sha": _digest(examples), "imports": imports}
    if command == "annotate":
        return {"annotations": _llm_annotations(setup)}
    if command == "train":
        [(run_id, metrics)] = rows(setup, "SELECT id, metrics FROM student_runs WHERE status = 'done' "
                                          "ORDER BY id DESC LIMIT 1")
        [(path,)] = rows(setup, "SELECT path FROM artifacts WHERE run_id = ? AND kind = 'checkpoint'", (run_id,))
        from llmaaa_local.student import load_student, predict

        model, encoder = load_student(Path(path))
        summary = json.loads(metrics)
        return {"test": summary.get("test"), "validation": summary.get("validation"),
                "history": summary.get("history"),
                "predictions": _predictions(predict(model, encoder, _test_examples(setup)))}
    if command == "export":
        [(path, info)] = rows(setup, "SELECT path, info FROM artifacts WHERE kind = 'onnx-int8' "
                                     "ORDER BY id DESC LIMIT 1")
        from llmaaa_local.labeler import OnnxStudent

        student = OnnxStudent(Path(path), json.loads(info)["file"], threads=1)
        return {"predictions": _predictions(student.predict(_test_examples(setup)))}
    if command == "label":
        [(artifact,)] = rows(setup, "SELECT MAX(artifact_id) FROM predictions")
        table = rows(setup, "SELECT example_id, label, probs, confidence FROM predictions WHERE artifact_id = ? "
                            "ORDER BY example_id", (artifact,))
        return {"predictions": len(table), "predictions_sha": _digest(table)}
    if command == "run":
        found = rows(setup, "SELECT round, selected, status, llm, student FROM rounds ORDER BY loop, round")
        return {"rounds": [[number, json.loads(selected), status] for number, selected, status, _, _ in found],
                "quality": [[json.loads(llm or "null"), _without_run_id(json.loads(student or "null"))]
                            for _, _, _, llm, student in found],
                "annotations": _llm_annotations(setup)}
    raise ValueError(command)


def differences(got: dict[str, Any], want: dict[str, Any]) -> str:
    keys = [key for key in sorted(set(got) | set(want)) if got.get(key) != want.get(key)]
    if not keys:
        return ""
    key = keys[0]
    a, b = got.get(key), want.get(key)
    if isinstance(a, list) and isinstance(b, list):
        index = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        detail = f"first difference at [{index}]: {a[index] if index < len(a) else '-'} != " \
                 f"{b[index] if index < len(b) else '-'} (lengths {len(a)}, {len(b)})"
    else:
        detail = f"{str(a)[:200]} != {str(b)[:200]}"
    return f"result differs from the reference in {keys}: {detail}"


# --- one kill ----------------------------------------------------------------------------------------------------


@dataclass
class BeforeRerun:
    annotations: dict[int, tuple[Any, ...]]
    llm_by_example: dict[str, int]
    rounds: dict[int, tuple[str, list[str]]]
    predictions: int
    gold: list[str]
    runs: list[str]  # student run statuses
    artifacts: list[str]  # artifact kinds


def before_rerun(setup: Setup) -> BeforeRerun:
    llm = rows(setup, "SELECT example_id, COUNT(*) FROM annotations WHERE source LIKE 'llm:%' GROUP BY example_id")
    rounds = {number: (status, json.loads(selected))
              for number, status, selected in rows(setup, "SELECT round, status, selected FROM rounds")}
    [(artifact,)] = rows(setup, "SELECT MAX(id) FROM artifacts WHERE kind IN ('onnx-int8', 'onnx')")
    [(predicted,)] = rows(setup, "SELECT COUNT(*) FROM predictions WHERE artifact_id = ?", (artifact,))
    gold = [eid for (eid,) in rows(setup, "SELECT id FROM examples WHERE split IN ('demo', 'dev')")]
    runs = [status for (status,) in rows(setup, "SELECT status FROM student_runs ORDER BY id")]
    kinds = [kind for (kind,) in rows(setup, "SELECT kind FROM artifacts ORDER BY id")]
    return BeforeRerun(stored_annotations(setup), dict(llm), rounds, predicted, gold, runs, kinds)


def resume_problems(setup: Setup, command: str, before: BeforeRerun, output: str, reference: Reference,
                    ) -> tuple[list[str], str]:
    """The rerun asked the LLM (or the student) nothing already stored, and left stored rows as they were; also
    returns a note of what the kill left stored."""
    problems = []
    note = ""
    after = stored_annotations(setup)
    changed = [aid for aid, row in before.annotations.items() if after.get(aid) != row]
    if changed:
        problems.append(f"{len(changed)} annotations stored before the rerun changed or vanished (ids {changed[:5]})")
    stored = sum(before.llm_by_example.values())
    if command == "annotate":
        found, wanted = _cache_line(output), _cache_line(reference.stdout)
        if found is None or wanted is None:
            problems.append(f"no 'N annotated, M already cached' line in the rerun's output: {output[-300:]!r}")
            return problems, note
        note = f"{stored} annotations stored before the rerun, {found[1]} cached by it"
        if found[1] != stored or sum(found) != sum(wanted):
            problems.append(f"rerun: {found[0]} annotated, {found[1]} cached; {stored} were stored before it "
                            f"(the reference did {sum(wanted)} in all)")
    elif command == "run":
        note = f"rounds before the rerun {[(n, status) for n, (status, _) in sorted(before.rounds.items())]}, " \
               f"{stored} annotations stored"
        for number, status, cost in rows(setup, "SELECT round, status, cost FROM rounds ORDER BY round"):
            earlier = before.rounds.get(number)
            if earlier is not None and earlier[0] != "selected":
                continue  # annotated before the kill: the rerun does not annotate it again
            targets = set(earlier[1] if earlier else []) | (set(before.gold) if number == 0 else set())
            expected = sum(count for eid, count in before.llm_by_example.items() if eid in targets)
            cached = json.loads(cost)["cached"] if cost else None
            if status != "done" or cached != expected:
                problems.append(f"round {number}: status {status}, {cached} cached by the rerun, {expected} stored "
                                "before it")
    elif command in ("train", "export"):
        note = f"student runs {before.runs} and artifacts {before.artifacts} before the rerun"
    elif command == "label":
        match = re.search(r"(\d+) examples labeled, (\d+) already labeled", output)
        note = f"{before.predictions} predictions stored before the rerun"
        if match is None or int(match.group(2)) != before.predictions:
            problems.append(f"label rerun skipped {match and match.group(2)} examples; {before.predictions} "
                            "predictions were stored before it")
    return problems, note


def _cache_line(output: str) -> tuple[int, int] | None:
    match = re.search(r"(\d+) annotated, (\d+) already cached", output)
    return (int(match.group(1)), int(match.group(2))) if match else None


def kill_once(setup: Setup, command: str, reference: Reference, delay: float, outcome: Outcome) -> None:
    restore(setup, BASE_OF[command])
    log_path = setup.workdir / "killed.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(cli(setup, *command_args(command, setup)), stdout=log, stderr=subprocess.STDOUT,
                                   env=environment(), cwd=setup.workdir, start_new_session=True)
        try:
            process.wait(timeout=delay)
            finished = True
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the group of the process started just above
            process.wait()
            finished = False
    outcome.kills += 1
    outcome.mid_run += not finished
    problems = [f"after the kill: {problem}" for problem in integrity(setup) + duplicates(setup)]
    note = ""
    before = before_rerun(setup)
    result, _ = run_cli(setup, command_args(command, setup))
    if result.returncode != 0 or "Traceback" in result.stderr:
        problems.append(f"rerun exit {result.returncode}: {result.stderr.strip()[-400:]}")
    else:
        problems += integrity(setup) + duplicates(setup) + artifact_problems(setup)
        resumed, note = resume_problems(setup, command, before, result.stdout, reference)
        problems += resumed
        difference = differences(fingerprint(setup, command), reference.fingerprint)
        if difference:
            problems.append(difference)
    where = f"kill at {delay:.2f}s{' (after it finished)' if finished else ''}"
    if problems:
        outcome.failures.append(f"{where}: " + "; ".join(problems))
        setup.log(f"  {command}: FAIL {where}: {problems}")
        failed = setup.workdir / "failed" / f"{command}-{outcome.kills:02d}"
        if failed.exists():
            shutil.rmtree(failed)
        shutil.copytree(setup.live, failed)
        shutil.copy(log_path, failed / "killed.log")
    else:
        outcome.passes += 1
        setup.log(f"  {command}: ok   {where}{': ' + note if note else ''}")


def run_harness(workdir: Path, models_dir: Path, commands: list[str], kills: int, seed: int = 0,
                log: Callable[[str], None] = print) -> list[Outcome]:
    """Reference runs and `kills` crash-and-resume cycles per command; returns one outcome per command."""
    unknown = [command for command in commands if command not in COMMANDS]
    if unknown:
        raise SystemExit(f"unknown commands {unknown}: choose from {', '.join(COMMANDS)}")
    setup = Setup(workdir, models_dir, log)
    prepare(setup)
    references: dict[str, Reference] = {}
    outcomes = []
    for command in commands:
        reference = reference_run(setup, command, references)
        rng = random.Random(f"{seed}:{command}")
        outcome = Outcome(command)
        for _ in range(kills):
            kill_once(setup, command, reference, rng.uniform(0.05, reference.seconds), outcome)
        outcomes.append(outcome)
    return outcomes


def summary(outcomes: list[Outcome]) -> str:
    lines = [f"{'command':10} {'kills':>5} {'mid-run':>7} {'passes':>6} {'failures':>8}"]
    for outcome in outcomes:
        lines.append(f"{outcome.command:10} {outcome.kills:5d} {outcome.mid_run:7d} {outcome.passes:6d} "
                     f"{len(outcome.failures):8d}")
    for outcome in outcomes:
        lines += [f"  {outcome.command}: {failure}" for failure in outcome.failures]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs per command")
    parser.add_argument("--commands", default=",".join(COMMANDS), help="comma-separated, from: " + ", ".join(COMMANDS))
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill delays")
    parser.add_argument("--workdir", type=Path, default=None, help="work folder (kept) [default: a temporary one]")
    parser.add_argument("--models-dir", type=Path, default=None, help="where smollm2-135m was pulled")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="llmaaa-crash-"))
    commands = [command.strip() for command in args.commands.split(",") if command.strip()]
    outcomes = run_harness(workdir, args.models_dir or default_models_dir(), commands, args.kills, args.seed)
    print(summary(outcomes))
    if args.workdir is None and not any(outcome.failures for outcome in outcomes):
        shutil.rmtree(workdir)
    return 1 if any(outcome.failures for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
