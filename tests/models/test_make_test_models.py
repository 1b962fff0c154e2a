"""The tiny test-model generator: reproducible bytes, caching, and the metadata llama.cpp reads."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import gguf
import jinja2
import jinja2.sandbox
import pytest

from build_scripts import make_test_models as mtm


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _field(reader: gguf.GGUFReader, key: str) -> Any:
    field = reader.get_field(key)
    assert field is not None, f"missing GGUF key {key}"
    return field.contents()


def _tensor(reader: gguf.GGUFReader, name: str) -> gguf.ReaderTensor:
    for tensor in reader.tensors:
        if tensor.name == name:
            return tensor
    raise AssertionError(f"missing tensor {name}")


class _Readers(dict[str, gguf.GGUFReader]):
    """Opens each model on first use (a GGUFReader takes about a second per 32k vocab)."""

    def __init__(self, paths: dict[str, Path]) -> None:
        super().__init__()
        self.paths = paths

    def __missing__(self, name: str) -> gguf.GGUFReader:
        reader = self[name] = gguf.GGUFReader(self.paths[name])
        return reader


@pytest.fixture(scope="module")
def readers(test_models: dict[str, Path]) -> dict[str, gguf.GGUFReader]:
    return _Readers(test_models)


def test_every_model_is_generated_under_the_generator_key(test_models: dict[str, Path]) -> None:
    assert set(test_models) == set(mtm.MODEL_NAMES)
    for name, path in test_models.items():
        assert path.name == f"{name}.gguf"
        assert path.parent.name == mtm.generator_key()
        assert path.stat().st_size > 0


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The models generated once more into an empty cache directory."""
    return mtm.ensure_test_models(tmp_path_factory.mktemp("fresh-cache"))


def test_generation_is_byte_for_byte_reproducible(
    fresh: dict[str, Path], test_models: dict[str, Path]
) -> None:
    assert fresh.keys() == test_models.keys()
    for name in mtm.MODEL_NAMES:
        assert fresh[name] != test_models[name]
        assert _sha256(fresh[name]) == _sha256(test_models[name]), name


def test_second_call_is_a_cache_hit(fresh: dict[str, Path]) -> None:
    stamps = {name: path.stat().st_mtime_ns for name, path in fresh.items()}
    again = mtm.ensure_test_models(fresh["tiny-llama"].parent.parent)
    assert again == fresh
    assert {name: path.stat().st_mtime_ns for name, path in again.items()} == stamps


def test_damaged_cache_is_regenerated(tmp_path: Path, fresh: dict[str, Path]) -> None:
    key_dir = fresh["tiny-bert"].parent
    shutil.copytree(key_dir, tmp_path / key_dir.name)
    damaged = tmp_path / key_dir.name / "tiny-bert.gguf"
    with damaged.open("r+b") as handle:
        handle.truncate(100)
    again = mtm.ensure_test_models(tmp_path)
    assert again["tiny-bert"] == damaged
    assert _sha256(damaged) == _sha256(fresh["tiny-bert"])


def test_editing_the_generator_changes_the_cache_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    edited = tmp_path / "make_test_models.py"
    shutil.copyfile(mtm.__file__, edited)
    before = mtm.generator_key()
    with edited.open("a") as handle:
        handle.write("\n# an edit\n")
    monkeypatch.setattr(mtm, "__file__", str(edited))
    assert mtm.generator_key() != before


def test_unknown_model_name_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"model name must be one of tiny-llama, .*'tiny-gpt'"):
        mtm.write_model("tiny-gpt", tmp_path / "x.gguf", tmp_path)


def test_cli_prints_every_model(fresh: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert mtm.main(["--cache-dir", str(fresh["tiny-llama"].parent.parent)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [tuple(line.split("\t")) for line in lines] == [
        (name, str(path)) for name, path in fresh.items()
    ]


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-llama-notemplate"])
def test_llama_metadata(readers: dict[str, gguf.GGUFReader], name: str) -> None:
    r = readers[name]
    assert _field(r, "general.architecture") == "llama"
    assert _field(r, "llama.block_count") == mtm.N_LAYER
    assert _field(r, "llama.embedding_length") == mtm.N_EMBD
    assert _field(r, "llama.attention.head_count") == mtm.N_HEAD
    assert _field(r, "llama.attention.head_count_kv") == mtm.N_HEAD_KV
    assert _field(r, "llama.feed_forward_length") == mtm.N_FF
    assert _field(r, "llama.context_length") == mtm.N_CTX_TRAIN
    assert _field(r, "tokenizer.ggml.model") == "llama"
    tokens = _field(r, "tokenizer.ggml.tokens")
    assert len(tokens) == 32000 == _field(r, "llama.vocab_size")
    assert tokens[_field(r, "tokenizer.ggml.bos_token_id")] == "<s>"
    assert tokens[_field(r, "tokenizer.ggml.eos_token_id")] == "</s>"
    embd = _tensor(r, "token_embd.weight")
    assert list(embd.shape) == [mtm.N_EMBD, 32000]
    assert embd.tensor_type == gguf.GGMLQuantizationType.F16
    assert list(_tensor(r, "blk.1.attn_k.weight").shape) == [mtm.N_EMBD, mtm.N_HEAD_KV * 16]


def test_only_the_template_variant_has_a_chat_template(
    readers: dict[str, gguf.GGUFReader],
) -> None:
    assert _field(readers["tiny-llama"], "tokenizer.chat_template") == mtm.LLAMA_CHAT_TEMPLATE
    assert readers["tiny-llama-notemplate"].get_field("tokenizer.chat_template") is None


def test_both_llama_variants_share_weights(readers: dict[str, gguf.GGUFReader]) -> None:
    with_template, without = readers["tiny-llama"], readers["tiny-llama-notemplate"]
    for name in ("token_embd.weight", "blk.0.attn_q.weight", "output.weight"):
        assert bytes(_tensor(with_template, name).data) == bytes(_tensor(without, name).data)


def _render(messages: list[dict[str, str]]) -> str:
    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment()
    env.globals["raise_exception"] = raise_exception
    template = env.from_string(mtm.LLAMA_CHAT_TEMPLATE)
    return template.render(messages=messages, bos_token="<s>", eos_token="</s>")


def test_chat_template_renders_a_llama2_conversation() -> None:
    text = _render([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
    ])
    assert text == (
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s>"
        "<s>[INST] Bye [/INST]"
    )


def test_chat_template_rejects_roles_out_of_order() -> None:
    with pytest.raises(jinja2.TemplateError, match="roles must alternate"):
        _render([{"role": "assistant", "content": "first"}])


def test_bert_metadata(readers: dict[str, gguf.GGUFReader]) -> None:
    r = readers["tiny-bert"]
    assert _field(r, "general.architecture") == "bert"
    assert _field(r, "bert.pooling_type") == int(gguf.PoolingType.MEAN)
    assert _field(r, "bert.attention.causal") is False
    assert _field(r, "tokenizer.ggml.model") == "bert"
    assert _field(r, "tokenizer.ggml.token_type_count") == 2
    tokens = _field(r, "tokenizer.ggml.tokens")
    assert tokens[_field(r, "tokenizer.ggml.cls_token_id")] == "[CLS]"
    assert tokens[_field(r, "tokenizer.ggml.seperator_token_id")] == "[SEP]"
    assert list(_tensor(r, "position_embd.weight").shape) == [mtm.N_EMBD, mtm.BERT_N_CTX_TRAIN]
    # ggml adds these tables to F32 activations: they must stay F32
    for name in ("position_embd.weight", "token_types.weight"):
        assert _tensor(r, name).tensor_type == gguf.GGMLQuantizationType.F32
    assert not any(t.name.startswith("output") for t in r.tensors)


def test_t5_metadata(readers: dict[str, gguf.GGUFReader]) -> None:
    r = readers["tiny-t5"]
    assert _field(r, "general.architecture") == "t5"
    assert _field(r, "t5.decoder_start_token_id") == mtm.T5_DECODER_START_TOKEN_ID
    assert _field(r, "t5.attention.relative_buckets_count") == mtm.T5_REL_BUCKETS
    assert list(_tensor(r, "enc.blk.0.attn_rel_b.weight").shape) == [mtm.N_HEAD, mtm.T5_REL_BUCKETS]
    names = {t.name for t in r.tensors}
    for block in range(mtm.N_LAYER):
        assert f"enc.blk.{block}.attn_q.weight" in names
        assert f"dec.blk.{block}.cross_attn_k.weight" in names
    assert {"enc.output_norm.weight", "dec.output_norm.weight", "output.weight"} <= names


def test_gemma3_metadata(readers: dict[str, gguf.GGUFReader]) -> None:
    r = readers["tiny-gemma3"]
    assert _field(r, "general.architecture") == "gemma3"
    assert _field(r, "gemma3.attention.sliding_window") == mtm.GEMMA3_SLIDING_WINDOW
    assert _field(r, "gemma3.attention.sliding_window_pattern") == mtm.GEMMA3_SWA_PATTERN
    names = {t.name for t in r.tensors}
    for block in range(mtm.N_LAYER):
        for part in ("attn_q_norm", "attn_k_norm", "post_attention_norm", "post_ffw_norm"):
            assert f"blk.{block}.{part}.weight" in names


def test_qwen2vl_mmproj_metadata(readers: dict[str, gguf.GGUFReader]) -> None:
    r = readers["tiny-qwen2vl-mmproj"]
    assert _field(r, "general.architecture") == "clip"
    assert _field(r, "clip.projector_type") == "qwen2vl_merger"
    assert _field(r, "clip.has_vision_encoder") is True
    assert _field(r, "clip.vision.patch_size") == mtm.QWEN2VL_PATCH_SIZE
    assert _field(r, "clip.vision.spatial_merge_size") == mtm.QWEN2VL_MERGE == 2
    assert _field(r, "clip.vision.embedding_length") == mtm.VISION_N_EMBD
    # two patch convolutions, both (n_embd, 3, p, p) in numpy order
    p = mtm.QWEN2VL_PATCH_SIZE
    for name in ("v.patch_embd.weight", "v.patch_embd.weight.1"):
        assert list(_tensor(r, name).shape) == [p, p, 3, mtm.VISION_N_EMBD]
    # the merger sees 2x2 patches at once and projects to tiny-llama's width
    merged = mtm.VISION_N_EMBD * mtm.QWEN2VL_MERGE**2
    assert list(_tensor(r, "mm.0.weight").shape) == [merged, merged]
    assert list(_tensor(r, "mm.2.weight").shape) == [merged, mtm.N_EMBD]
    names = {t.name for t in r.tensors}
    for part in ("attn_q", "attn_k", "attn_v", "attn_out", "ffn_up", "ffn_down", "ln1", "ln2"):
        assert {f"v.blk.0.{part}.weight", f"v.blk.0.{part}.bias"} <= names
    # clip.cpp swaps ffn up/down when ffn_down's input width equals n_embd: keep them apart
    assert mtm.VISION_N_FF != mtm.VISION_N_EMBD
