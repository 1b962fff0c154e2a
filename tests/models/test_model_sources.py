"""Model sources: parsing, local paths and packaged names, split GGUFs, header facts."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from sipp.errors import ConfigurationError, ModelLoadError
from sipp.models import parse_source, read_model_facts, resolve_model, resolve_projector


def test_parse_every_source_kind(tmp_path: Path) -> None:
    hf = parse_source("hf://org/repo@v2/sub/model-Q4_K_M.gguf")
    assert (hf.kind, hf.repo_id, hf.revision, hf.pattern) == (
        "hf", "org/repo", "v2", "sub/model-Q4_K_M.gguf")
    assert parse_source("hf://org/repo:Q8_0").pattern == "*Q8_0*.gguf"
    assert parse_source("hf://org/repo").pattern is None
    url = parse_source(f"https://example.org/m.gguf#sha256={'A' * 64}")
    assert (url.kind, url.url, url.sha256) == ("url", "https://example.org/m.gguf", "a" * 64)
    assert parse_source("gemma").kind == "packaged"
    assert parse_source("Gemma-3-270M").name == "gemma"
    local = tmp_path / "gemma"
    local.write_bytes(b"x")
    assert parse_source(str(local)).kind == "path"  # an existing file wins over a name
    assert parse_source("~/m.gguf").path == str(Path.home() / "m.gguf")


@pytest.mark.parametrize(("text", "needle"), [
    ("hf://org", "expected hf://org/repo"),
    ("hf://org/repo@/m.gguf", "empty revision"),
    ("hf://org/re po/m.gguf", "not a valid repo name"),
    ("hf://org/repo/../m.gguf", "relative"),
    ("ftp://host/m.gguf", "unsupported scheme ftp://"),
    ("https://host/dir/", "URL of a file"),
    ("https://host/m.gguf#md5=00", "#sha256"),
    ("https://host/m.gguf#sha256=xyz", "64 hexadecimal"),
    ("", "non-empty"),
])
def test_malformed_sources_name_the_field(text: str, needle: str) -> None:
    with pytest.raises(ConfigurationError, match="model") as info:
        parse_source(text, field="model")
    assert needle in str(info.value)


def test_local_errors_say_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelLoadError, match=r"is a directory.*a\.gguf"):
        resolve_model(tmp_path)
    with pytest.raises(ModelLoadError, match=r"file not found.*hf://"):
        resolve_model(tmp_path / "none.gguf")
    (tmp_path / "m-00001-of-00002.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelLoadError, match=r"missing m-00002-of-00002\.gguf"):
        resolve_model(tmp_path / "m-00001-of-00002.gguf")


def test_projector_auto_next_to_a_local_model(tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    resolved = resolve_model(model)
    with pytest.raises(ConfigurationError, match="found none"):
        resolve_projector("auto", resolved)
    (tmp_path / "mmproj-model-f16.gguf").write_bytes(b"GGUF")
    assert resolve_projector("auto", resolved).name == "mmproj-model-f16.gguf"
    (tmp_path / "mmproj-other.gguf").write_bytes(b"GGUF")
    with pytest.raises(ConfigurationError, match=r"mmproj-model-f16\.gguf, mmproj-other\.gguf"):
        resolve_projector("auto", resolved)


def test_facts_from_the_header(tiny_llama_path: Path, tiny_qwen2vl_mmproj_path: Path) -> None:
    facts = read_model_facts(tiny_llama_path)
    assert facts.architecture == "llama"
    assert facts.has_chat_template and "[INST]" in (facts.chat_template or "")
    assert facts.context_length and facts.context_length > 0
    assert facts.size == tiny_llama_path.stat().st_size
    assert facts.n_params > 0 and not facts.is_projector
    assert read_model_facts(tiny_qwen2vl_mmproj_path).is_projector
    with pytest.raises(ModelLoadError, match="is a directory"):
        read_model_facts(tiny_llama_path.parent)


def _write_split_llama(directory: Path) -> list[Path]:
    import gguf

    from build_scripts import make_test_models

    writer = gguf.GGUFWriter(directory / "tiny-split.gguf", "llama", split_max_tensors=6)
    make_test_models._write_llama_template(writer, make_test_models.ensure_source())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return sorted(directory.glob("tiny-split-*.gguf"))


def test_split_model_resolves_and_loads(
    tmp_path: Path, tiny_llama_path: Path, native: ModuleType
) -> None:
    shards = _write_split_llama(tmp_path)
    assert len(shards) > 1 and shards[0].name.endswith(f"-00001-of-{len(shards):05d}.gguf")
    resolved = resolve_model(shards[-1])  # any shard names the model
    assert resolved.path == shards[0] and list(resolved.files) == shards
    whole = read_model_facts(tiny_llama_path)
    split = read_model_facts(resolved.path, resolved.files)
    assert split.n_params == whole.n_params and split.shards == len(shards)
    model = native.LlamaModel(resolved.path)
    try:
        reference = native.LlamaModel(tiny_llama_path, vocab_only=True)
        try:
            assert model.n_params == whole.n_params
            assert model.tokenize("Hello world") == reference.tokenize("Hello world")
        finally:
            reference.close()
    finally:
        model.close()
