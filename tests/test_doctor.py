"""`doctor`: the llama.cpp build read against the CPU, decode probes of every real GGUF in a child process, a
crashing child explained in one line, and the AMX switch of the backend."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmaaa_local import llama_backend
from llmaaa_local.cli import main
from llmaaa_local.doctor import (
    REBUILD,
    build_features,
    build_notes,
    build_problems,
    cpu_flags,
    diagnose,
    explain_crash,
    probe_model,
    run_child,
)
from llmaaa_local.models import resolve

# What llama_print_system_info() says on a Sapphire Rapids Xeon for a default (GGML_NATIVE) build, and for the
# setup's build on this project's CI machines (AVX2, no AVX-512).
AMX_BUILD = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | "
             "AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | OPENMP = 1 | "
             "REPACK = 1 | ")
AVX2_BUILD = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | "
              "OPENMP = 1 | REPACK = 1 | ")
SAPPHIRE_RAPIDS = frozenset("pni ssse3 avx avx2 f16c fma bmi2 avx512f avx512vbmi avx512_vnni avx512_bf16 avx_vnni "
                            "amx_tile amx_int8 amx_bf16".split())
ZEN3 = frozenset("pni ssse3 avx avx2 f16c fma bmi2".split())
SEGFAULT = [sys.executable, "-X", "faulthandler", "-c", "import ctypes\ndef decode():\n    ctypes.memset(0, 0, 1)\n"
            "decode()"]


def test_build_features_read_every_backend_and_flag() -> None:
    features = build_features("CUDA : ARCHS = 890 | USE_GRAPHS = 1 | " + AMX_BUILD)
    assert features["CUDA"] == "1" and features["ARCHS"] == "890" and features["CPU"] == "1"
    assert features["AMX_INT8"] == "1" and features["REPACK"] == "1" and "AVX512_VNNI" in features
    assert "AMX_INT8" not in build_features(AVX2_BUILD)


def test_an_amx_build_is_a_problem_with_its_fix() -> None:
    [problem] = build_problems(build_features(AMX_BUILD), SAPPHIRE_RAPIDS)
    assert "AMX kernels" in problem and "20824" in problem and REBUILD in problem
    assert "-mno-amx-int8" in REBUILD and "--no-cache-dir" in REBUILD


def test_a_build_for_another_cpu_is_a_problem() -> None:
    without_amx = AMX_BUILD.replace("AMX_INT8 = 1 | ", "")
    [problem] = build_problems(build_features(without_amx), ZEN3)
    assert "AVX512, AVX512_VBMI, AVX512_VNNI, AVX512_BF16" in problem and "another machine" in problem
    assert build_problems(build_features(without_amx), SAPPHIRE_RAPIDS) == []
    assert build_problems(build_features(AVX2_BUILD), ZEN3) == []


def test_a_build_that_leaves_instructions_unused_is_a_note_not_a_problem() -> None:
    features = build_features(AVX2_BUILD)
    assert build_problems(features, SAPPHIRE_RAPIDS) == []
    [note] = build_notes(features, SAPPHIRE_RAPIDS)
    assert "AVX_VNNI, AVX512" in note and "AMX" not in note
    assert build_notes(features, ZEN3) == [] and build_notes(features, None) == []


def test_cpu_flags_come_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx2 amx_int8 amx_tile\n\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "amx_int8", "amx_tile"}
    assert cpu_flags(tmp_path / "missing") is None


def test_a_crashing_child_is_one_line_with_where_and_why() -> None:
    result = run_child(SEGFAULT)
    assert result.answer is None
    assert result.error.startswith("crashed with SIGSEGV in native code (in decode, ")
    explained = explain_crash(result.error, build_features(AMX_BUILD), SAPPHIRE_RAPIDS)
    assert "AMX kernels of this llama.cpp build" in explained and REBUILD in explained
    other = explain_crash(result.error, build_features(AVX2_BUILD), ZEN3)
    assert "AMX" not in other and "Rebuild" in other and "doctor --json" in other


def test_other_child_failures_are_named() -> None:
    illegal = run_child([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGILL)"])
    assert "crashed with SIGILL" in illegal.error
    assert "instructions this CPU lacks" in explain_crash(illegal.error, {}, ZEN3)
    failed = run_child([sys.executable, "-c", "raise SystemExit('no model here')"])
    assert failed.error == "failed (exit 1): no model here"
    silent = run_child([sys.executable, "-c", "print('hello')"])
    assert "printed no answer" in silent.error
    slow = run_child([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.5)
    assert slow.error == "did not finish in 0s" or slow.error.startswith("did not finish")


def test_a_model_whose_decode_crashes_is_reported_not_fatal() -> None:
    probe = probe_model("broken.gguf", Path("broken.gguf"), 1, build_features(AMX_BUILD), SAPPHIRE_RAPIDS,
                        command=SEGFAULT)
    assert not probe.ok and "SIGSEGV" in probe.error and "AMX" in probe.error


def test_the_backend_turns_extra_buffers_off_for_an_amx_build(caplog: pytest.LogCaptureFixture,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llama_backend, "_said_amx", False)
    assert llama_backend.extra_buffers_for(AVX2_BUILD) is True
    with caplog.at_level(logging.WARNING):
        assert llama_backend.extra_buffers_for(AMX_BUILD) is False
        assert llama_backend.extra_buffers_for(AMX_BUILD) is False
    notes = [record.message for record in caplog.records if "AMX" in record.message]
    assert len(notes) == 1 and "without extra buffer types" in notes[0] and "doctor" in notes[0]


def test_the_backend_surface_exists_in_the_installed_llama_cpp() -> None:
    """What llama_backend.py calls; a llama-cpp-python release that renames or drops one fails here."""
    import llama_cpp

    missing = [name for name in llama_backend.SURFACE if not hasattr(llama_cpp, name)]
    assert missing == []
    model_fields = {name for name, _ in llama_cpp.llama_model_params._fields_}
    context_fields = {name for name, _ in llama_cpp.llama_context_params._fields_}
    batch_fields = {name for name, _ in llama_cpp.llama_batch._fields_}
    assert set(llama_backend.MODEL_FIELDS) <= model_fields
    assert set(llama_backend.CONTEXT_FIELDS) <= context_fields
    assert {"n_tokens", "token", "pos", "n_seq_id", "seq_id", "logits"} <= batch_fields


# --- real GGUFs --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ggufs(models_dir: Path) -> list[tuple[str, Path]]:
    return [(name, resolve(name, models_dir, "gguf")) for name in ("smollm2-135m", "gemma-3-270m")]


@pytest.mark.slow
def test_every_real_gguf_decodes_through_the_backend_in_a_child(ggufs: list[tuple[str, Path]]) -> None:
    diagnosis = diagnose(ggufs, threads=2)
    assert diagnosis.build_error == "" and diagnosis.problems == ()
    assert "AMX_INT8" not in diagnosis.features, "the setup's build must not have the AMX kernels"
    assert [model.name for model in diagnosis.models] == ["smollm2-135m", "gemma-3-270m"]
    for model in diagnosis.models:
        assert model.ok, model.error
        assert model.prompt_tokens > 200 and model.tokens_per_second > 0
    assert diagnosis.ok


@pytest.mark.slow
def test_doctor_explains_a_build_for_another_cpu(tmp_path: Path) -> None:
    """The real build read against a CPU without AVX2: one problem line with the fix, and not ok."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu sse2\n")
    diagnosis = diagnose([], cpuinfo=cpuinfo)
    assert not diagnosis.ok and "instructions this CPU lacks" in diagnosis.problems[0]
    assert any(line.startswith("problem ") and REBUILD in line for line in diagnosis.lines())


@pytest.mark.slow
def test_cli_doctor_json_and_check_build(models_dir: Path) -> None:
    result = CliRunner().invoke(main, ["--models-dir", str(models_dir), "doctor", "--json", "--threads", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["features"]["CPU"] == "1"
    assert {Path(model["path"]).name for model in report["models"]} >= {"SmolLM2-135M-Instruct.Q4_1.gguf",
                                                                        "gemma-3-270m-q4_k_m.gguf"}
    check = subprocess.run([sys.executable, "-m", "llmaaa_local", "doctor", "--check-build"], capture_output=True,
                           text=True, check=False)
    assert check.returncode == 0 and "verdict        ok" in check.stdout and "decode" not in check.stdout


@pytest.mark.slow
def test_extra_buffers_off_loads_without_repacking_and_scores_alike(ggufs: list[tuple[str, Path]]) -> None:
    from llmaaa_local.llm import Prompt

    path = dict(ggufs)["gemma-3-270m"]
    prompt = Prompt("Is the review positive or negative?", "Review: a warm, funny and moving film.", "Answer:")
    scores = {}
    for extra in (True, False):
        backend = llama_backend.LlamaBackend(path, n_ctx=512, n_threads=2, extra_buffers=extra, model_sha256="x")
        assert backend.extra_buffers is extra
        scores[extra] = backend.score(prompt, ["positive", "negative"]).logprobs
        buffers = backend.weight_buffers
        backend.close()
        assert ("CPU_REPACK" in buffers) is extra, buffers  # gemma's Q4_K weights are repacked when allowed
    # repacked weights run other kernels (other rounding and summation order): close, not equal, same answer
    assert scores[False] == pytest.approx(scores[True], abs=0.5)
    assert scores[False] != scores[True]
    assert (scores[False][0] > scores[False][1]) == (scores[True][0] > scores[True][1])
