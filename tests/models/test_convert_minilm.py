"""The MiniLM converter: name and vocabulary mapping, input checks, and the GGUF it writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gguf
import pytest

from build_scripts import convert_minilm as cm


@pytest.mark.parametrize(
    ("token", "stored"),
    [
        ("hello", "\u2581hello"),
        ("##ing", "ing"),
        ("[CLS]", "[CLS]"),
        ("[unused7]", "[unused7]"),
        ("[", "\u2581["),
        ("!", "\u2581!"),
    ],
)
def test_wordpiece_tokens_are_spelled_for_llama_cpp(token: str, stored: str) -> None:
    assert cm.wordpiece_to_gguf(token) == stored


@pytest.mark.parametrize(
    ("hf_name", "gguf_name"),
    [
        ("embeddings.word_embeddings.weight", "token_embd.weight"),
        ("embeddings.LayerNorm.bias", "token_embd_norm.bias"),
        ("encoder.layer.3.attention.self.key.weight", "blk.3.attn_k.weight"),
        ("encoder.layer.0.attention.output.LayerNorm.weight", "blk.0.attn_output_norm.weight"),
        ("encoder.layer.5.intermediate.dense.bias", "blk.5.ffn_up.bias"),
        ("encoder.layer.5.output.dense.weight", "blk.5.ffn_down.weight"),
        ("encoder.layer.2.output.LayerNorm.bias", "blk.2.layer_output_norm.bias"),
        ("pooler.dense.weight", None),
        ("embeddings.position_ids", None),
    ],
)
def test_tensor_names_map_to_llama_cpp_bert(hf_name: str, gguf_name: str | None) -> None:
    assert cm.gguf_tensor_name(hf_name) == gguf_name


def test_unknown_tensor_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"unexpected tensor 'encoder.layer.0.crossattention"):
        cm.gguf_tensor_name("encoder.layer.0.crossattention.self.query.weight")


def test_non_bert_checkpoint_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(ValueError, match=r"model_type must be 'bert', got 'roberta'"):
        cm.convert(tmp_path, tmp_path / "out.gguf")


def test_bad_outtype_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"outtype must be one of f32, f16; got 'q8'"):
        cm.ensure_minilm_gguf(tmp_path, outtype="q8")


def _field(reader: gguf.GGUFReader, key: str) -> Any:
    field = reader.get_field(key)
    assert field is not None, f"missing GGUF key {key}"
    return field.contents()


@pytest.fixture(scope="module")
def reader(minilm_gguf_path: Path) -> gguf.GGUFReader:
    return gguf.GGUFReader(minilm_gguf_path)


def test_converted_metadata(reader: gguf.GGUFReader, minilm_model_dir: Path) -> None:
    config = json.loads((minilm_model_dir / "config.json").read_text())
    assert _field(reader, "general.architecture") == "bert"
    assert _field(reader, "bert.block_count") == config["num_hidden_layers"] == 6
    assert _field(reader, "bert.embedding_length") == 384
    assert _field(reader, "bert.attention.head_count") == 12
    assert _field(reader, "bert.context_length") == 512
    assert _field(reader, "bert.pooling_type") == int(gguf.PoolingType.MEAN)
    assert _field(reader, "bert.attention.causal") is False
    assert _field(reader, "tokenizer.ggml.model") == "bert"
    assert _field(reader, "tokenizer.ggml.normalizer.lowercase") is True


def test_converted_vocabulary(reader: gguf.GGUFReader, minilm_model_dir: Path) -> None:
    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")
    vocab = cm.read_vocab(minilm_model_dir)
    assert len(tokens) == len(vocab) == 30522
    assert tokens[7592] == "\u2581hello"
    assert vocab[7592] == "hello"
    assert tokens[_field(reader, "tokenizer.ggml.cls_token_id")] == "[CLS]"
    assert tokens[_field(reader, "tokenizer.ggml.bos_token_id")] == "[CLS]"
    assert tokens[_field(reader, "tokenizer.ggml.seperator_token_id")] == "[SEP]"
    control = {tokens[i] for i, kind in enumerate(types) if kind == gguf.TokenType.CONTROL}
    assert control == set(cm.SPECIAL_TOKENS)


def test_converted_tensors(reader: gguf.GGUFReader) -> None:
    names = {tensor.name for tensor in reader.tensors}
    assert len(names) == 5 + 6 * 16  # embeddings + 16 tensors per layer, no pooler
    assert not any(name.startswith("pooler") for name in names)
    assert all(t.tensor_type == gguf.GGMLQuantizationType.F32 for t in reader.tensors)
    shapes = {tensor.name: list(tensor.shape) for tensor in reader.tensors}
    assert shapes["token_embd.weight"] == [384, 30522]
    assert shapes["blk.0.ffn_up.weight"] == [384, 1536]
    assert shapes["blk.0.ffn_down.weight"] == [1536, 384]


def test_conversion_is_cached(minilm_gguf_path: Path) -> None:
    stamp = minilm_gguf_path.stat().st_mtime_ns
    assert cm.ensure_minilm_gguf() == minilm_gguf_path
    assert minilm_gguf_path.stat().st_mtime_ns == stamp
    assert minilm_gguf_path.parent.name == cm.converter_key("f32")
