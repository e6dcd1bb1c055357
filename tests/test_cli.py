"""The command line: every command has help, bad input is one clear line, and --help stays light."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from llmaaa_local.cli import main

HEAVY = ("torch", "transformers", "llama_cpp", "onnxruntime", "optimum", "textual", "sklearn", "ray")


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += all_commands(command, prefix + (name,))
        else:
            found.append(prefix + (name,))
    return found


@pytest.mark.parametrize("command", all_commands(main), ids=lambda c: " ".join(c) or "main")
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    assert len(result.output.splitlines()) >= 4


def test_help_does_not_import_heavy_packages() -> None:
    code = (
        "import sys\n"
        "from llmaaa_local.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print([name for name in {HEAVY!r} if name in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_init_import_status_json(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    records = [{"id": f"r{i}", "text": f"text {i}", "label": "pos"} for i in range(5)]
    corpus.write_text("".join(json.dumps(record) + "\n" for record in records))
    gold = tmp_path / "gold.csv"
    gold.write_text("id,text,label\ng1,great,pos\ng2,awful,neg\n")
    runner = CliRunner()
    project = str(tmp_path / "p")
    assert runner.invoke(main, ["init", project, "--task", "classify", "--labels", "pos,neg",
                                "--describe", "pos=the writer likes it"]).exit_code == 0
    result = runner.invoke(main, ["--project", project, "import", "corpus", str(corpus)])
    assert result.exit_code == 0 and "5 added" in result.output
    result = runner.invoke(main, ["--project", project, "import", "gold", str(gold), "--split", "demo"])
    assert result.exit_code == 0 and "2 added" in result.output
    result = runner.invoke(main, ["--project", project, "status", "--json"])
    info = json.loads(result.output)
    assert info["task"] == "classify" and info["labels"] == ["pos", "neg"]
    assert info["counts"] == {"pool": 5, "demo": 2, "dev": 0, "test": 0, "annotations": 0, "parse_errors": 0}


def test_project_from_environment(tmp_path: Path) -> None:
    runner = CliRunner()
    runner.invoke(main, ["init", str(tmp_path / "p"), "--task", "ner", "--labels", "PER,LOC"])
    result = runner.invoke(main, ["status", "--json"], env={"LLMAAA_PROJECT": str(tmp_path / "p")})
    assert json.loads(result.output)["labels"] == ["PER", "LOC"]


def test_bad_input_is_one_line_without_traceback(tmp_path: Path) -> None:
    project = tmp_path / "p"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "fine", "label": "pos"}\n{"id": "b", "text": \n')
    subprocess.run([sys.executable, "-m", "llmaaa_local", "init", str(project), "--task", "classify",
                    "--labels", "pos,neg"], check=True, capture_output=True)
    result = subprocess.run([sys.executable, "-m", "llmaaa_local", "--project", str(project), "import", "corpus",
                             str(bad)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: {bad}:2: invalid JSON (Expecting value: line 1 column 21 (char 20)) " \
                                    "(each line must be one JSON object)"


def test_missing_project_names_the_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--project", str(tmp_path / "nowhere"), "status"])
    assert result.exit_code == 1
    assert "no project database here" in result.output and "nowhere" in result.output


def test_init_rejects_labels_file_with_labels(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("# relation labels\nfounded_by\tthe head organisation was founded by the tail person\nOther\n")
    runner = CliRunner()
    result = runner.invoke(main, ["init", str(tmp_path / "a"), "--task", "re", "--labels-file", str(labels),
                                  "--labels", "x"])
    assert result.exit_code == 1 and "not both" in result.output
    result = runner.invoke(main, ["init", str(tmp_path / "b"), "--task", "re", "--labels-file", str(labels),
                                  "--no-relation", "Other"])
    assert result.exit_code == 0, result.output
    info = json.loads(runner.invoke(main, ["--project", str(tmp_path / "b"), "status", "--json"]).output)
    assert info["labels"] == ["founded_by", "Other"] and info["no_relation"] == "Other"


def test_library_warnings_reach_the_user_as_notes_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The backend's AMX switch is said through logging; the CLI shows it as one "note:" line on stderr."""
    import logging

    for _ in range(2):  # a second command in the same process adds no second handler
        assert CliRunner().invoke(main, ["--models-dir", str(tmp_path), "models", "list"]).exit_code == 0
    logging.getLogger("llmaaa_local.llama_backend").warning("loading models without extra buffer types")
    assert capsys.readouterr().err.count("note: loading models without extra buffer types") == 1


def test_annotate_suggests_tune_until_the_prompt_is_tuned_for_this_teacher() -> None:
    from llmaaa_local.session import tune_hint

    assert "`llmaaa-local tune`" in (tune_hint(None, "abc", gold=100) or "")
    assert "100 gold examples" in (tune_hint(None, "abc", gold=100) or "")
    assert "another teacher" in (tune_hint({"model_sha256": "xyz"}, "abc", gold=100) or "")
    assert tune_hint({"model_sha256": "abc"}, "abc", gold=100) is None  # tuned for this teacher
    assert tune_hint(None, "abc", gold=3) is None  # too little gold to tune on
