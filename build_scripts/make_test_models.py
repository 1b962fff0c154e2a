"""Generate tiny deterministic GGUF models for tests (random weights, real tokenizers).

Every model has tiny dimensions and seeded random weights, and borrows a real tokenizer
vocabulary from the vocab-only GGUFs shipped in the pinned llama.cpp source
(``<source>/models/ggml-vocab-*.gguf``). Output is byte-for-byte reproducible and is cached
under ``cache_root()/test-models/<key>/`` where ``<key>`` hashes this file, the pinned
source and the ``gguf`` writer version, so editing the generator regenerates the models.

    python build_scripts/make_test_models.py            # prints name<TAB>path per model
    python build_scripts/make_test_models.py --json     # the same as a JSON object

Models (see ``MODEL_NAMES``):

* ``tiny-llama.gguf``: llama decoder, llama SPM vocab (32000), Llama-2 style chat template.
* ``tiny-llama-notemplate.gguf``: the same weights without ``tokenizer.chat_template``.
* ``tiny-bert.gguf``: BERT encoder for embeddings, WordPiece vocab (bert-bge), mean pooling.
* ``tiny-t5.gguf``: T5 encoder-decoder, llama SPM vocab, ``decoder_start_token_id`` 0.
* ``tiny-gemma3.gguf``: gemma3 with sliding-window attention (window 32, layers alternate
  SWA / full), llama SPM vocab.
* ``tiny-gemma3-mmproj.gguf``: a Gemma 3 style vision projector (SigLIP tower, one layer,
  64x64 images in 8x8 patches, 2x2 average pooling: 16 embeddings per image) whose output
  size matches ``tiny-gemma3``.
* ``tiny-gemma3-mmproj-mismatch.gguf``: the same projector with a 32-wide output, which
  does not match any text model here (for load-error tests).
* ``tiny-qwen2vl-mmproj.gguf``: a Qwen2-VL style vision projector (ViT with 2D M-RoPE, one
  layer, 16x16 patches, 2x2 patch merger) for ``tiny-llama``. Its image size is dynamic: an
  image is resized (aspect kept) to a multiple of 32 pixels within the projector's token
  bounds, one embedding per 32x32 pixels (8 to 4096 by default; ``image_min_tokens`` /
  ``image_max_tokens`` override them). Paired with llama's plain RoPE, libmtmd gives its
  images ordinary positions.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import struct
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from numpy.typing import NDArray

if __package__ in (None, ""):  # run as a script: make `build_scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from build_scripts.llama_source import cache_root, ensure_source, read_pin

MODEL_NAMES = (
    "tiny-llama",
    "tiny-llama-notemplate",
    "tiny-bert",
    "tiny-t5",
    "tiny-gemma3",
    "tiny-gemma3-mmproj",
    "tiny-gemma3-mmproj-mismatch",
    "tiny-qwen2vl-mmproj",
)
SEED = 20240611
MANIFEST = "manifest.json"

# Decoder dimensions shared by the llama, t5 and gemma3 models.
N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 2
N_FF = 128
N_CTX_TRAIN = 2048
HEAD_DIM = N_EMBD // N_HEAD
# Embedding model dimensions.
BERT_N_CTX_TRAIN = 512
# T5 relative attention buckets and decoder start token (T5's own convention is id 0).
T5_REL_BUCKETS = 32
T5_DECODER_START_TOKEN_ID = 0
# Gemma 3: small window so tests can exceed it with short prompts; layer 0 SWA, layer 1 full.
GEMMA3_SLIDING_WINDOW = 32
GEMMA3_SWA_PATTERN = 2
# Gemma 3 vision projector: image side, patch side, pooling factor, tower dimensions.
VISION_IMAGE_SIZE = 64
VISION_PATCH_SIZE = 8
VISION_MERGE = 2
VISION_N_EMBD = 32
VISION_N_HEAD = 4
VISION_N_FF = 48
VISION_N_LAYER = 1
VISION_TOKENS_PER_IMAGE = (VISION_IMAGE_SIZE // VISION_PATCH_SIZE // VISION_MERGE) ** 2
# Qwen2-VL projector: patch side, merge factor (clip.cpp's graph fixes it at 2), nominal image
# side (its images have dynamic sizes) and libmtmd's default token bounds for this type.
QWEN2VL_PATCH_SIZE = 16
QWEN2VL_MERGE = 2
QWEN2VL_IMAGE_SIZE = 64
QWEN2VL_PIXELS_PER_TOKEN = (QWEN2VL_PATCH_SIZE * QWEN2VL_MERGE) ** 2
QWEN2VL_MIN_TOKENS = 8
QWEN2VL_MAX_TOKENS = 4096

# A Llama-2 chat style template (system prompt folded into the first user turn).
LLAMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system_message = messages[0]['content'] -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set system_message = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- if message['role'] == 'user' -%}"
    "{%- if loop.first and system_message -%}"
    "{%- set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] -%}"
    "{%- else -%}"
    "{%- set content = message['content'] -%}"
    "{%- endif -%}"
    "{%- if not loop.first %}{{ bos_token }}{% endif -%}"
    "{{ '[INST] ' + content | trim + ' [/INST]' }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ ' ' + message['content'] | trim + ' ' + eos_token }}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

# Vocab metadata keys copied verbatim from the vocab-only GGUFs when present.
_VOCAB_KEYS = (
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.token_type_count",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.seperator_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.cls_token_id",
    "tokenizer.ggml.mask_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_eos_token",
)


@dataclass(frozen=True)
class _Field:
    """One metadata value read from a vocab GGUF."""

    value: Any
    vtype: gguf.GGUFValueType
    subtype: gguf.GGUFValueType | None


_SCALARS: dict[gguf.GGUFValueType, str] = {
    gguf.GGUFValueType.UINT8: "B",
    gguf.GGUFValueType.INT8: "b",
    gguf.GGUFValueType.UINT16: "H",
    gguf.GGUFValueType.INT16: "h",
    gguf.GGUFValueType.UINT32: "I",
    gguf.GGUFValueType.INT32: "i",
    gguf.GGUFValueType.FLOAT32: "f",
    gguf.GGUFValueType.BOOL: "?",
    gguf.GGUFValueType.UINT64: "Q",
    gguf.GGUFValueType.INT64: "q",
    gguf.GGUFValueType.FLOAT64: "d",
}


class _KVReader:
    """Minimal little-endian GGUF v3 metadata reader (gguf.GGUFReader is ~2 s per vocab)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.take("Q")
        text = self.data[self.pos : self.pos + n].decode("utf-8")
        self.pos += n
        return text

    def value(self, vtype: gguf.GGUFValueType) -> Any:
        if vtype == gguf.GGUFValueType.STRING:
            return self.string()
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype])
        raise ValueError(f"unsupported GGUF value type {vtype!r} in vocab file")

    def array(self) -> tuple[gguf.GGUFValueType, list[Any]]:
        subtype = gguf.GGUFValueType(self.take("I"))
        n = self.take("Q")
        if subtype in _SCALARS:
            fmt = f"<{n}{_SCALARS[subtype]}"
            values = list(struct.unpack_from(fmt, self.data, self.pos))
            self.pos += struct.calcsize(fmt)
            return subtype, values
        return subtype, [self.value(subtype) for _ in range(n)]


@functools.lru_cache(maxsize=4)
def _read_vocab(path: Path) -> dict[str, _Field]:
    reader = _KVReader(path.read_bytes())
    if reader.take("I") != gguf.GGUF_MAGIC or reader.take("I") != 3:
        raise ValueError(f"{path}: expected a GGUF version 3 file")
    reader.take("Q")  # tensor count
    fields: dict[str, _Field] = {}
    for _ in range(reader.take("Q")):
        key = reader.string()
        vtype = gguf.GGUFValueType(reader.take("I"))
        if vtype == gguf.GGUFValueType.ARRAY:
            subtype, values = reader.array()
            fields[key] = _Field(values, vtype, subtype)
        else:
            fields[key] = _Field(reader.value(vtype), vtype, None)
    return {key: fields[key] for key in _VOCAB_KEYS if key in fields}


def _add_vocab(writer: gguf.GGUFWriter, vocab: dict[str, _Field]) -> int:
    for key, field in vocab.items():
        writer.add_key_value(key, field.value, field.vtype, sub_type=field.subtype)
    return len(vocab["tokenizer.ggml.tokens"].value)


class _Weights:
    """Seeded tensor factory: every tensor draws from its own name-derived stream."""

    def __init__(self, model: str) -> None:
        self.model = model

    def _rng(self, name: str) -> np.random.Generator:
        digest = hashlib.sha256(f"{SEED}/{self.model}/{name}".encode()).digest()
        return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:8], "little")))

    def normal32(self, name: str, shape: tuple[int, ...], std: float) -> NDArray[np.float32]:
        """F32 matrix, for tables that ggml adds to F32 activations (BERT positions, types)."""
        data: NDArray[np.float32] = self._rng(name).standard_normal(shape, dtype=np.float32)
        scaled: NDArray[np.float32] = data * np.float32(std)
        return scaled

    def normal(self, name: str, shape: tuple[int, ...], std: float) -> NDArray[np.float16]:
        """F16 matrix (numpy shape is ggml's ne reversed: ``(n_out, n_in)``)."""
        return self.normal32(name, shape, std).astype(np.float16)

    def vector(self, name: str, n: int, mean: float, std: float) -> NDArray[np.float32]:
        """F32 vector (norm weights, biases)."""
        shifted: NDArray[np.float32] = self.normal32(name, (n,), std) + np.float32(mean)
        return shifted

    def linear(self, name: str, n_in: int, n_out: int, gain: float = 1.0) -> NDArray[np.float16]:
        return self.normal(name, (n_out, n_in), gain / float(np.sqrt(n_in)))


def _tensor_name(kind: gguf.MODEL_TENSOR, suffix: str = "weight", bid: int | None = None) -> str:
    base = gguf.TENSOR_NAMES[kind]
    return (base.format(bid=bid) if bid is not None else base) + "." + suffix


T = gguf.MODEL_TENSOR


def _common_hparams(writer: gguf.GGUFWriter, name: str, n_ctx: int, n_embd: int) -> None:
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)


def _write_llama(writer: gguf.GGUFWriter, source: Path, with_template: bool) -> None:
    # Both llama variants share weights: seed by architecture, not by file name.
    w = _Weights("tiny-llama")
    _common_hparams(writer, "sipp-tiny-llama", N_CTX_TRAIN, N_EMBD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_rope_freq_base(10000.0)
    n_vocab = _add_vocab(writer, _read_vocab(source / "models" / "ggml-vocab-llama-spm.gguf"))
    writer.add_vocab_size(n_vocab)
    if with_template:
        writer.add_chat_template(LLAMA_CHAT_TEMPLATE)

    kv = N_HEAD_KV * HEAD_DIM
    writer.add_tensor(_tensor_name(T.TOKEN_EMBD), w.normal("tok", (n_vocab, N_EMBD), 1.0))
    for i in range(N_LAYER):
        writer.add_tensor(_tensor_name(T.ATTN_NORM, bid=i), w.vector(f"an{i}", N_EMBD, 1.0, 0.1))
        writer.add_tensor(_tensor_name(T.ATTN_Q, bid=i), w.linear(f"q{i}", N_EMBD, N_EMBD, 2.0))
        writer.add_tensor(_tensor_name(T.ATTN_K, bid=i), w.linear(f"k{i}", N_EMBD, kv, 2.0))
        writer.add_tensor(_tensor_name(T.ATTN_V, bid=i), w.linear(f"v{i}", N_EMBD, kv))
        writer.add_tensor(_tensor_name(T.ATTN_OUT, bid=i), w.linear(f"o{i}", N_EMBD, N_EMBD))
        writer.add_tensor(_tensor_name(T.FFN_NORM, bid=i), w.vector(f"fn{i}", N_EMBD, 1.0, 0.1))
        writer.add_tensor(_tensor_name(T.FFN_GATE, bid=i), w.linear(f"g{i}", N_EMBD, N_FF))
        writer.add_tensor(_tensor_name(T.FFN_UP, bid=i), w.linear(f"u{i}", N_EMBD, N_FF))
        writer.add_tensor(_tensor_name(T.FFN_DOWN, bid=i), w.linear(f"d{i}", N_FF, N_EMBD))
    writer.add_tensor(_tensor_name(T.OUTPUT_NORM), w.vector("on", N_EMBD, 1.0, 0.1))
    writer.add_tensor(_tensor_name(T.OUTPUT), w.normal("out", (n_vocab, N_EMBD), 0.5))


def _write_llama_template(writer: gguf.GGUFWriter, source: Path) -> None:
    _write_llama(writer, source, with_template=True)


def _write_llama_notemplate(writer: gguf.GGUFWriter, source: Path) -> None:
    _write_llama(writer, source, with_template=False)


def _write_bert(writer: gguf.GGUFWriter, source: Path) -> None:
    w = _Weights("tiny-bert")
    _common_hparams(writer, "sipp-tiny-bert", BERT_N_CTX_TRAIN, N_EMBD)
    writer.add_layer_norm_eps(1e-12)
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    n_vocab = _add_vocab(writer, _read_vocab(source / "models" / "ggml-vocab-bert-bge.gguf"))

    def add_norm(kind: gguf.MODEL_TENSOR, tag: str, bid: int | None = None) -> None:
        writer.add_tensor(_tensor_name(kind, "weight", bid), w.vector(tag + "w", N_EMBD, 1.0, 0.1))
        writer.add_tensor(_tensor_name(kind, "bias", bid), w.vector(tag + "b", N_EMBD, 0.0, 0.1))

    def add_linear(kind: gguf.MODEL_TENSOR, tag: str, bid: int, n_in: int, n_out: int) -> None:
        writer.add_tensor(_tensor_name(kind, "weight", bid), w.linear(tag + "w", n_in, n_out))
        writer.add_tensor(_tensor_name(kind, "bias", bid), w.vector(tag + "b", n_out, 0.0, 0.1))

    writer.add_tensor(_tensor_name(T.TOKEN_EMBD), w.normal("tok", (n_vocab, N_EMBD), 1.0))
    writer.add_tensor(_tensor_name(T.TOKEN_TYPES), w.normal32("types", (2, N_EMBD), 0.1))
    writer.add_tensor(_tensor_name(T.POS_EMBD), w.normal32("pos", (BERT_N_CTX_TRAIN, N_EMBD), 0.1))
    add_norm(T.TOKEN_EMBD_NORM, "en")
    for i in range(N_LAYER):
        add_linear(T.ATTN_Q, f"q{i}", i, N_EMBD, N_EMBD)
        add_linear(T.ATTN_K, f"k{i}", i, N_EMBD, N_EMBD)
        add_linear(T.ATTN_V, f"v{i}", i, N_EMBD, N_EMBD)
        add_linear(T.ATTN_OUT, f"o{i}", i, N_EMBD, N_EMBD)
        add_norm(T.ATTN_OUT_NORM, f"an{i}", i)
        add_linear(T.FFN_UP, f"u{i}", i, N_EMBD, N_FF)
        add_linear(T.FFN_DOWN, f"d{i}", i, N_FF, N_EMBD)
        add_norm(T.LAYER_OUT_NORM, f"ln{i}", i)


def _write_t5(writer: gguf.GGUFWriter, source: Path) -> None:
    w = _Weights("tiny-t5")
    arch = writer.arch
    _common_hparams(writer, "sipp-tiny-t5", N_CTX_TRAIN, N_EMBD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_layer_norm_eps(1e-6)
    writer.add_relative_attn_buckets_count(T5_REL_BUCKETS)
    writer.add_uint32(
        gguf.Keys.LLM.DECODER_START_TOKEN_ID.format(arch=arch), T5_DECODER_START_TOKEN_ID
    )
    n_vocab = _add_vocab(writer, _read_vocab(source / "models" / "ggml-vocab-llama-spm.gguf"))
    writer.add_vocab_size(n_vocab)

    def norm(kind: gguf.MODEL_TENSOR, tag: str, bid: int | None = None) -> None:
        writer.add_tensor(_tensor_name(kind, bid=bid), w.vector(tag, N_EMBD, 1.0, 0.1))

    def lin(kind: gguf.MODEL_TENSOR, tag: str, bid: int, n_in: int, n_out: int) -> None:
        writer.add_tensor(_tensor_name(kind, bid=bid), w.linear(tag, n_in, n_out))

    def rel_bias(kind: gguf.MODEL_TENSOR, tag: str) -> None:
        # ggml shape {n_head, n_buckets}: numpy (n_buckets, n_head).
        writer.add_tensor(_tensor_name(kind, bid=0), w.normal32(tag, (T5_REL_BUCKETS, N_HEAD), 1.0))

    writer.add_tensor(_tensor_name(T.TOKEN_EMBD), w.normal("tok", (n_vocab, N_EMBD), 1.0))
    rel_bias(T.ENC_ATTN_REL_B, "enc_rel")
    for i in range(N_LAYER):
        norm(T.ENC_ATTN_NORM, f"ean{i}", i)
        for kind, tag in (
            (T.ENC_ATTN_Q, "eq"),
            (T.ENC_ATTN_K, "ek"),
            (T.ENC_ATTN_V, "ev"),
            (T.ENC_ATTN_OUT, "eo"),
        ):
            lin(kind, f"{tag}{i}", i, N_EMBD, N_EMBD)
        norm(T.ENC_FFN_NORM, f"efn{i}", i)
        lin(T.ENC_FFN_GATE, f"eg{i}", i, N_EMBD, N_FF)
        lin(T.ENC_FFN_UP, f"eu{i}", i, N_EMBD, N_FF)
        lin(T.ENC_FFN_DOWN, f"ed{i}", i, N_FF, N_EMBD)
    norm(T.ENC_OUTPUT_NORM, "eon")
    rel_bias(T.DEC_ATTN_REL_B, "dec_rel")
    for i in range(N_LAYER):
        norm(T.DEC_ATTN_NORM, f"dan{i}", i)
        for kind, tag in (
            (T.DEC_ATTN_Q, "dq"),
            (T.DEC_ATTN_K, "dk"),
            (T.DEC_ATTN_V, "dv"),
            (T.DEC_ATTN_OUT, "do"),
        ):
            lin(kind, f"{tag}{i}", i, N_EMBD, N_EMBD)
        norm(T.DEC_CROSS_ATTN_NORM, f"dcn{i}", i)
        for kind, tag in (
            (T.DEC_CROSS_ATTN_Q, "cq"),
            (T.DEC_CROSS_ATTN_K, "ck"),
            (T.DEC_CROSS_ATTN_V, "cv"),
            (T.DEC_CROSS_ATTN_OUT, "co"),
        ):
            lin(kind, f"{tag}{i}", i, N_EMBD, N_EMBD)
        norm(T.DEC_FFN_NORM, f"dfn{i}", i)
        lin(T.DEC_FFN_GATE, f"dg{i}", i, N_EMBD, N_FF)
        lin(T.DEC_FFN_UP, f"du{i}", i, N_EMBD, N_FF)
        lin(T.DEC_FFN_DOWN, f"dd{i}", i, N_FF, N_EMBD)
    norm(T.DEC_OUTPUT_NORM, "don")
    writer.add_tensor(_tensor_name(T.OUTPUT), w.normal("out", (n_vocab, N_EMBD), 0.5))


def _write_gemma3(writer: gguf.GGUFWriter, source: Path) -> None:
    w = _Weights("tiny-gemma3")
    _common_hparams(writer, "sipp-tiny-gemma3", N_CTX_TRAIN, N_EMBD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(1000000.0)
    writer.add_sliding_window(GEMMA3_SLIDING_WINDOW)
    writer.add_uint32(
        gguf.Keys.Attention.SLIDING_WINDOW_PATTERN.format(arch=writer.arch), GEMMA3_SWA_PATTERN
    )
    n_vocab = _add_vocab(writer, _read_vocab(source / "models" / "ggml-vocab-llama-spm.gguf"))
    writer.add_vocab_size(n_vocab)

    kv = N_HEAD_KV * HEAD_DIM

    def norm(kind: gguf.MODEL_TENSOR, tag: str, n: int = N_EMBD, bid: int | None = None) -> None:
        writer.add_tensor(_tensor_name(kind, bid=bid), w.vector(tag, n, 1.0, 0.1))

    # Gemma scales the input embeddings by sqrt(n_embd): keep the table small.
    writer.add_tensor(_tensor_name(T.TOKEN_EMBD), w.normal("tok", (n_vocab, N_EMBD), 0.125))
    for i in range(N_LAYER):
        norm(T.ATTN_NORM, f"an{i}", bid=i)
        writer.add_tensor(_tensor_name(T.ATTN_Q, bid=i), w.linear(f"q{i}", N_EMBD, N_EMBD))
        writer.add_tensor(_tensor_name(T.ATTN_K, bid=i), w.linear(f"k{i}", N_EMBD, kv))
        writer.add_tensor(_tensor_name(T.ATTN_V, bid=i), w.linear(f"v{i}", N_EMBD, kv))
        norm(T.ATTN_Q_NORM, f"qn{i}", HEAD_DIM, i)
        norm(T.ATTN_K_NORM, f"kn{i}", HEAD_DIM, i)
        writer.add_tensor(_tensor_name(T.ATTN_OUT, bid=i), w.linear(f"o{i}", N_EMBD, N_EMBD))
        norm(T.ATTN_POST_NORM, f"apn{i}", bid=i)
        norm(T.FFN_NORM, f"fn{i}", bid=i)
        writer.add_tensor(_tensor_name(T.FFN_GATE, bid=i), w.linear(f"g{i}", N_EMBD, N_FF))
        writer.add_tensor(_tensor_name(T.FFN_UP, bid=i), w.linear(f"u{i}", N_EMBD, N_FF))
        writer.add_tensor(_tensor_name(T.FFN_DOWN, bid=i), w.linear(f"d{i}", N_FF, N_EMBD))
        norm(T.FFN_POST_NORM, f"fpn{i}", bid=i)
    norm(T.OUTPUT_NORM, "on")
    writer.add_tensor(_tensor_name(T.OUTPUT), w.normal("out", (n_vocab, N_EMBD), 0.5))


def _write_vision_header(writer: gguf.GGUFWriter, tag: str, projector_type: str,
                         image_size: int, patch_size: int, n_embd_text: int) -> None:
    """The clip metadata both tiny projectors share (a SigLIP-style ViT of the VISION_* size)."""
    writer.add_name(f"sipp-{tag}")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_string(gguf.Keys.Clip.PROJECTOR_TYPE, projector_type)
    writer.add_bool(gguf.Keys.Clip.HAS_VISION_ENCODER, True)
    writer.add_bool(gguf.Keys.ClipVision.USE_GELU, True)
    writer.add_uint32(gguf.Keys.ClipVision.IMAGE_SIZE, image_size)
    writer.add_uint32(gguf.Keys.ClipVision.PATCH_SIZE, patch_size)
    writer.add_uint32(gguf.Keys.ClipVision.EMBEDDING_LENGTH, VISION_N_EMBD)
    writer.add_uint32(gguf.Keys.ClipVision.FEED_FORWARD_LENGTH, VISION_N_FF)
    writer.add_uint32(gguf.Keys.ClipVision.BLOCK_COUNT, VISION_N_LAYER)
    writer.add_uint32(gguf.Keys.ClipVision.PROJECTION_DIM, n_embd_text)
    writer.add_uint32(gguf.Keys.ClipVision.Attention.HEAD_COUNT, VISION_N_HEAD)
    writer.add_float32(gguf.Keys.ClipVision.Attention.LAYERNORM_EPS, 1e-6)
    writer.add_array(gguf.Keys.ClipVision.IMAGE_MEAN, [0.5, 0.5, 0.5])
    writer.add_array(gguf.Keys.ClipVision.IMAGE_STD, [0.5, 0.5, 0.5])


def _write_gemma3_projector(writer: gguf.GGUFWriter, n_embd_text: int, tag: str) -> None:
    """A Gemma 3 mmproj: SigLIP ViT, average pooling, RMS norm, projection to the text width."""
    w = _Weights(tag)
    v, ff = VISION_N_EMBD, VISION_N_FF
    n_patches = (VISION_IMAGE_SIZE // VISION_PATCH_SIZE) ** 2
    _write_vision_header(writer, tag, "gemma3", VISION_IMAGE_SIZE, VISION_PATCH_SIZE,
                         n_embd_text)
    writer.add_uint32(gguf.Keys.ClipVision.Projector.SCALE_FACTOR, VISION_MERGE)

    def norm(name: str, n: int = v) -> None:
        writer.add_tensor(f"{name}.weight", w.vector(name + "w", n, 1.0, 0.1))
        writer.add_tensor(f"{name}.bias", w.vector(name + "b", n, 0.0, 0.1))

    def linear(name: str, n_in: int, n_out: int) -> None:
        writer.add_tensor(f"{name}.weight", w.linear(name + "w", n_in, n_out))
        writer.add_tensor(f"{name}.bias", w.vector(name + "b", n_out, 0.0, 0.1))

    p = VISION_PATCH_SIZE
    writer.add_tensor("v.patch_embd.weight", w.normal("patch", (v, 3, p, p), 0.1))
    writer.add_tensor("v.patch_embd.bias", w.vector("patchb", v, 0.0, 0.1))
    writer.add_tensor("v.position_embd.weight", w.normal32("pos", (n_patches, v), 0.1))
    for i in range(VISION_N_LAYER):
        norm(f"v.blk.{i}.ln1")
        for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
            linear(f"v.blk.{i}.{part}", v, v)
        norm(f"v.blk.{i}.ln2")
        linear(f"v.blk.{i}.ffn_up", v, ff)
        linear(f"v.blk.{i}.ffn_down", ff, v)
    norm("v.post_ln")
    # ggml shape {n_embd_text, v}: the projector multiplies by its transpose.
    writer.add_tensor("mm.input_projection.weight", w.normal("proj", (v, n_embd_text), 0.5))
    writer.add_tensor("mm.soft_emb_norm.weight", w.vector("softnorm", v, 1.0, 0.1))


def _write_gemma3_mmproj(writer: gguf.GGUFWriter, source: Path) -> None:
    _write_gemma3_projector(writer, N_EMBD, "tiny-gemma3-mmproj")


def _write_gemma3_mmproj_mismatch(writer: gguf.GGUFWriter, source: Path) -> None:
    _write_gemma3_projector(writer, N_EMBD // 2, "tiny-gemma3-mmproj-mismatch")


def _write_qwen2vl_mmproj(writer: gguf.GGUFWriter, source: Path) -> None:
    """A Qwen2-VL mmproj: ViT (two patch convolutions, 2D M-RoPE, layer norms, GELU MLP),
    2x2 patch merger MLP to the width of ``tiny-llama``."""
    w = _Weights("tiny-qwen2vl-mmproj")
    v, ff, p = VISION_N_EMBD, VISION_N_FF, QWEN2VL_PATCH_SIZE
    merged = v * QWEN2VL_MERGE**2
    _write_vision_header(writer, "tiny-qwen2vl-mmproj", "qwen2vl_merger", QWEN2VL_IMAGE_SIZE, p,
                         N_EMBD)
    writer.add_uint32(gguf.Keys.ClipVision.SPATIAL_MERGE_SIZE, QWEN2VL_MERGE)

    def add(name: str, n_in: int | None, n_out: int) -> None:
        """``name.weight`` (a linear map, or a norm scale when ``n_in`` is None) and its bias."""
        if n_in is None:
            writer.add_tensor(f"{name}.weight", w.vector(name + "w", n_out, 1.0, 0.1))
        else:
            writer.add_tensor(f"{name}.weight", w.linear(name + "w", n_in, n_out))
        writer.add_tensor(f"{name}.bias", w.vector(name + "b", n_out, 0.0, 0.1))

    # two patch convolutions (Qwen2-VL's temporal pair; a still image goes through both)
    writer.add_tensor("v.patch_embd.weight", w.normal("patch0", (v, 3, p, p), 0.05))
    writer.add_tensor("v.patch_embd.weight.1", w.normal("patch1", (v, 3, p, p), 0.05))
    for i in range(VISION_N_LAYER):
        add(f"v.blk.{i}.ln1", None, v)
        for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
            add(f"v.blk.{i}.{part}", v, v)
        add(f"v.blk.{i}.ln2", None, v)
        add(f"v.blk.{i}.ffn_up", v, ff)
        add(f"v.blk.{i}.ffn_down", ff, v)
    add("v.post_ln", None, v)
    add("mm.0", merged, merged)
    add("mm.2", merged, N_EMBD)


_Writer = Callable[[gguf.GGUFWriter, Path], None]
_GENERATORS: dict[str, tuple[gguf.MODEL_ARCH, _Writer]] = {
    "tiny-llama": (gguf.MODEL_ARCH.LLAMA, _write_llama_template),
    "tiny-llama-notemplate": (gguf.MODEL_ARCH.LLAMA, _write_llama_notemplate),
    "tiny-bert": (gguf.MODEL_ARCH.BERT, _write_bert),
    "tiny-t5": (gguf.MODEL_ARCH.T5, _write_t5),
    "tiny-gemma3": (gguf.MODEL_ARCH.GEMMA3, _write_gemma3),
    "tiny-gemma3-mmproj": (gguf.MODEL_ARCH.MMPROJ, _write_gemma3_mmproj),
    "tiny-gemma3-mmproj-mismatch": (gguf.MODEL_ARCH.MMPROJ, _write_gemma3_mmproj_mismatch),
    "tiny-qwen2vl-mmproj": (gguf.MODEL_ARCH.MMPROJ, _write_qwen2vl_mmproj),
}


def generator_key() -> str:
    """Hash of everything that determines the output bytes (this file, pin, writer)."""
    digest = hashlib.sha256()
    digest.update(Path(__file__).read_bytes())
    digest.update(read_pin()["sha256"].encode())
    digest.update(_gguf_version().encode())
    digest.update(np.__version__.split(".")[0].encode())
    return digest.hexdigest()[:16]


def _gguf_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gguf")
    except PackageNotFoundError:
        return "unknown"


def write_model(name: str, path: Path, source: Path) -> None:
    """Write one model ``name`` (one of ``MODEL_NAMES``) to ``path`` atomically."""
    if name not in _GENERATORS:
        raise ValueError(f"model name must be one of {', '.join(MODEL_NAMES)}; got {name!r}")
    arch, write = _GENERATORS[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[arch])
        write(writer, source)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cached(directory: Path) -> dict[str, Path] | None:
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return None
    try:
        entries = json.loads(manifest.read_text())["models"]
    except (ValueError, KeyError):
        return None
    paths: dict[str, Path] = {}
    for name in MODEL_NAMES:
        entry = entries.get(name)
        path = directory / f"{name}.gguf"
        if entry is None or not path.is_file() or path.stat().st_size != entry["size"]:
            return None
        paths[name] = path
    return paths


def ensure_test_models(cache_dir: Path | str | None = None) -> dict[str, Path]:
    """Return ``{name: path}`` for every test model, generating them on a cache miss.

    ``cache_dir`` replaces ``cache_root()/test-models``; models live in ``<cache_dir>/<key>/``.
    """
    base = Path(cache_dir) if cache_dir is not None else cache_root() / "test-models"
    directory = base / generator_key()
    cached = _cached(directory)
    if cached is not None:
        return cached
    source = ensure_source()
    paths: dict[str, Path] = {}
    entries: dict[str, dict[str, Any]] = {}
    for name in MODEL_NAMES:
        path = directory / f"{name}.gguf"
        write_model(name, path, source)
        paths[name] = path
        entries[name] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    manifest_tmp = directory / f".{MANIFEST}.{os.getpid()}.tmp"
    manifest_tmp.write_text(json.dumps({"key": directory.name, "models": entries}, indent=2))
    os.replace(manifest_tmp, directory / MANIFEST)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="base directory (default: <sipp build cache>/test-models)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object")
    args = parser.parse_args(argv)
    paths = ensure_test_models(args.cache_dir)
    if args.json:
        print(json.dumps({name: str(path) for name, path in paths.items()}, indent=2))
    else:
        for name, path in paths.items():
            print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
