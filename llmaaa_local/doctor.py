"""What this machine and its llama.cpp build can do: CPU flags, the build's features, and a decode of each GGUF in
a child process, so that a crash in native code becomes one line naming the cause and the fix.

It never imports llama_cpp itself: a broken build may crash whoever loads it, so `probe.py` does that in a child.
"""

from __future__ import annotations

import json
import platform
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"
# llama.cpp's AMX matrix product segfaults at the first decode on AMX CPUs (ggml-org/llama.cpp#20824); the AMX
# code is compiled only when __AMX_INT8__ is defined, which these flags remove even after -march=native.
NO_AMX_CMAKE_ARGS = "-DCMAKE_C_FLAGS=-mno-amx-int8 -DCMAKE_CXX_FLAGS=-mno-amx-int8"
REBUILD = (f'CMAKE_ARGS="{NO_AMX_CMAKE_ARGS}" .venv/bin/pip install --force-reinstall --no-deps --no-cache-dir '
           f"{LLAMA_CPP_PYTHON}")
# A build feature (as llama_print_system_info names it) and the /proc/cpuinfo flag the CPU needs for it.
CPU_FLAG = {
    "SSE3": "pni", "SSSE3": "ssse3", "AVX": "avx", "AVX2": "avx2", "AVX_VNNI": "avx_vnni", "F16C": "f16c",
    "FMA": "fma", "BMI2": "bmi2", "AVX512": "avx512f", "AVX512_VBMI": "avx512vbmi", "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16", "AMX_INT8": "amx_int8",
}
SHOWN_FEATURES = ("AVX2", "AVX512", "AVX512_VNNI", "AMX_INT8", "REPACK", "CUDA", "METAL")
SHOWN_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
PROBE_SECONDS = 300


def build_features(system_info: str) -> dict[str, str]:
    """`llama_print_system_info()` ("CPU : SSE3 = 1 | AVX2 = 1 | REPACK = 1 | ") as {"CPU": "1", "SSE3": "1", ...}."""
    features = {}
    for part in system_info.replace("\n", "|").split("|"):
        name, sep, value = part.rpartition("=")
        backend, colon, name = name.rpartition(":")
        if colon and backend.strip():
            features[backend.strip().upper()] = "1"  # "CUDA : ARCHS = 890": a CUDA build
        if sep and name.strip():
            features[name.strip()] = value.strip()
    return features


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The CPU's feature flags (Linux); None where the system does not list them."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def build_problems(features: dict[str, str], flags: frozenset[str] | None) -> list[str]:
    """What is wrong with this llama.cpp build on this CPU, each with its fix; empty when nothing is."""
    problems = []
    if "AMX_INT8" in features:
        problems.append(
            "this llama-cpp-python build has llama.cpp's AMX kernels, which crash at the first decode on AMX CPUs "
            "(ggml-org/llama.cpp#20824); llmaaa-local loads models without extra buffer types to avoid them, which "
            f"turns weight repacking off too. Rebuild without them: {REBUILD}")
    if flags is not None:
        missing = [name for name in features if name in CPU_FLAG and CPU_FLAG[name] not in flags]
        if missing:
            problems.append(
                f"this llama-cpp-python build uses instructions this CPU lacks ({', '.join(missing)}): it was built "
                "for another machine, for instance a wheel pip reused from its cache (the cache ignores CMAKE_ARGS "
                f"and the CPU). Rebuild it here: {REBUILD}")
    return problems


def build_notes(features: dict[str, str], flags: frozenset[str] | None) -> list[str]:
    """What the build leaves unused on this CPU (AMX aside): a portable build, or a wheel made on a lesser CPU."""
    if flags is None or "CPU" not in features:
        return []
    unused = [name for name, flag in CPU_FLAG.items() if name != "AMX_INT8" and flag in flags and name not in features]
    if not unused:
        return []
    return [f"this llama-cpp-python build does not use {', '.join(unused)}, which this CPU has: a native build "
            f"here would be faster ({REBUILD})"]


@dataclass(frozen=True)
class ChildResult:
    """A probe child's exit: its JSON answer, or why there is none."""

    answer: dict[str, object] | None
    error: str  # "" when the child answered


def run_child(argv: list[str], timeout: float = PROBE_SECONDS) -> ChildResult:
    """Run a probe child that prints one JSON object; a crash, a hang or garbage becomes an error line."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return ChildResult(None, f"did not finish in {timeout:.0f}s")
    if done.returncode == 0:
        try:
            answer = json.loads(done.stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            return ChildResult(None, f"printed no answer ({done.stdout.strip()[-200:]!r})")
        return ChildResult(answer, "")
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        return ChildResult(None, f"crashed with {name} in native code{_where(done.stderr)}")
    last = done.stderr.strip().splitlines()[-1:] or ["no message"]
    return ChildResult(None, f"failed (exit {done.returncode}): {last[0][:300]}")


def _where(stderr: str) -> str:
    """The innermost Python frame faulthandler printed, e.g. ' (in decode, llama_backend.py line 114)'."""
    frames = [line.strip() for line in stderr.splitlines() if line.strip().startswith("File ")]
    if not frames:
        return ""
    frame = frames[0]  # faulthandler prints the most recent call first
    path, _, rest = frame.removeprefix("File ").partition(", line ")
    line, _, function = rest.partition(" in ")
    return f" (in {function or '?'}, {Path(path.strip(chr(34))).name} line {line})"


def explain_crash(error: str, features: dict[str, str], flags: frozenset[str] | None) -> str:
    """The cause and the fix of a probe child's failure, as far as the build and the CPU tell."""
    if "SIGSEGV" in error and "AMX_INT8" in features and (flags is None or "amx_int8" in flags):
        return (f"{error}: the AMX kernels of this llama.cpp build crash on this AMX CPU (ggml-org/llama.cpp#20824). "
                f"Rebuild llama-cpp-python without them: {REBUILD}")
    if "SIGILL" in error:
        return (f"{error}: this llama.cpp build uses instructions this CPU lacks (built for another machine). "
                f"Rebuild it here: {REBUILD}")
    if "crashed" in error:
        return (f"{error}. Rebuild llama-cpp-python from source on this machine ({REBUILD}); if it still crashes, "
                "report it with the output of `llmaaa-local doctor --json`")
    return error


@dataclass(frozen=True)
class ModelProbe:
    """One GGUF decoded once through the backend in a child process."""

    name: str
    path: str
    ok: bool
    prompt_tokens: int = 0
    tokens_per_second: float = 0.0
    extra_buffers: bool | None = None
    weight_buffers: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class Diagnosis:
    """What `llmaaa-local doctor` reports."""

    python: str
    machine: str
    cpu_flags: tuple[str, ...] | None
    llama_cpp_version: str
    system_info: str
    features: dict[str, str]
    gpu_offload: bool
    problems: tuple[str, ...]
    notes: tuple[str, ...] = ()
    build_error: str = ""
    models: tuple[ModelProbe, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems and not self.build_error and all(model.ok for model in self.models)

    def to_dict(self) -> dict[str, object]:
        return asdict(self) | {"ok": self.ok}

    def lines(self) -> list[str]:
        flags = self.cpu_flags
        shown_flags = "unknown" if flags is None else " ".join(f for f in SHOWN_CPU_FLAGS if f in flags) or "none"
        features = " ".join(f"{name}={self.features.get(name, '0')}" for name in SHOWN_FEATURES)
        out = [f"python         {self.python} on {self.machine}",
               f"CPU flags      {shown_flags} (of {' '.join(SHOWN_CPU_FLAGS)})"]
        if self.build_error:
            out.append(f"llama.cpp      cannot load the build: {self.build_error}")
        else:
            out += [f"llama.cpp      llama-cpp-python {self.llama_cpp_version}; {features}; "
                    f"GPU offload {'yes' if self.gpu_offload else 'no'}",
                    f"system info    {self.system_info.strip()}"]
        out += [f"problem        {problem}" for problem in self.problems]
        out += [f"note           {note}" for note in self.notes]
        for model in self.models:
            if model.ok:
                buffers = "on" if model.extra_buffers else "off"
                out.append(f"decode         {model.name}: ok, {model.prompt_tokens} prompt tokens at "
                           f"{model.tokens_per_second:.0f} tok/s (extra buffer types {buffers}; weights in "
                           f"{', '.join(model.weight_buffers) or '?'})")
            else:
                out.append(f"decode         {model.name}: {model.error}")
        out.append("verdict        " + ("ok" if self.ok else "NOT OK: see the lines above"))
        return out


def _probe_command(*args: str) -> list[str]:
    return [sys.executable, "-X", "faulthandler", "-m", "llmaaa_local.probe", *args]


def diagnose(gguf_files: Sequence[tuple[str, Path]] = (), threads: int | None = None,
             cpuinfo: Path = Path("/proc/cpuinfo")) -> Diagnosis:
    """Probe the llama.cpp build in a child process, then decode each GGUF in a child of its own."""
    flags = cpu_flags(cpuinfo)
    build = run_child(_probe_command("info"), timeout=120)
    info = build.answer or {}
    system_info = str(info.get("system_info", ""))
    features = build_features(system_info)
    models = tuple(probe_model(name, path, threads, features, flags) for name, path in gguf_files)
    return Diagnosis(
        python=platform.python_version(), machine=f"{platform.system()} {platform.machine()}",
        cpu_flags=None if flags is None else tuple(sorted(flags)), llama_cpp_version=str(info.get("version", "?")),
        system_info=system_info, features=features, gpu_offload=bool(info.get("gpu_offload", False)),
        problems=tuple(build_problems(features, flags)) if build.answer else (),
        notes=tuple(build_notes(features, flags)) if build.answer else (),
        build_error=explain_crash(build.error, features, flags) if build.error else "", models=models)


def probe_model(name: str, path: Path, threads: int | None, features: dict[str, str],
                flags: frozenset[str] | None, command: list[str] | None = None) -> ModelProbe:
    """Decode one prompt with the GGUF through the backend in a child process (`command` replaces that child)."""
    argv = command or _probe_command("decode", str(path), *(["--threads", str(threads)] if threads else []))
    result = run_child(argv)
    if result.answer is None:
        return ModelProbe(name, str(path), False, error=explain_crash(result.error, features, flags))
    answer = result.answer
    return ModelProbe(name, str(path), True, int(answer["prompt_tokens"]),  # type: ignore[call-overload]
                      float(answer["tokens_per_second"]), bool(answer["extra_buffers"]),  # type: ignore[arg-type]
                      tuple(answer.get("weight_buffers", ())))  # type: ignore[arg-type]
