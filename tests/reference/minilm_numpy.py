"""NumPy reference forward pass of all-MiniLM-L6-v2 (BERT encoder + mean pooling).

Reads the same ``model.safetensors`` that ``build_scripts/convert_minilm.py`` converts and
takes token ids as input (tokenize with llama.cpp so that a comparison isolates the
forward pass). Float64 throughout, exact (erf) GELU as Hugging Face's ``gelu``.

    weights = load_weights(model_dir)
    vector = embed(weights, [101, 7592, 2088, 102])     # L2-normalised, shape (384,)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


@dataclass(frozen=True)
class MiniLMWeights:
    """All tensors of a Hugging Face ``BertModel`` checkpoint plus its shape parameters."""

    tensors: dict[str, Array]
    n_layer: int
    n_head: int
    eps: float

    def __getitem__(self, name: str) -> Array:
        return self.tensors[name]


def load_weights(model_dir: Path) -> MiniLMWeights:
    """Load ``model.safetensors`` and ``config.json`` from a Hugging Face BERT folder."""
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    raw = load_file(str(model_dir / "model.safetensors"))
    tensors = {name: value.astype(np.float64) for name, value in raw.items()
               if np.issubdtype(value.dtype, np.floating)}
    return MiniLMWeights(tensors, int(config["num_hidden_layers"]),
                         int(config["num_attention_heads"]), float(config["layer_norm_eps"]))


def _layer_norm(x: Array, weight: Array, bias: Array, eps: float) -> Array:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    out: Array = (x - mean) / np.sqrt(var + eps) * weight + bias
    return out


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(x: Array) -> Array:
    out: Array = 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))
    return out


def _linear(w: MiniLMWeights, prefix: str, x: Array) -> Array:
    out: Array = x @ w[prefix + ".weight"].T + w[prefix + ".bias"]
    return out


def hidden_states(w: MiniLMWeights, token_ids: Sequence[int]) -> Array:
    """Last-layer hidden states, shape ``(len(token_ids), hidden)`` (token type 0 everywhere)."""
    ids = np.asarray(token_ids, dtype=np.int64)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError("token_ids must be a non-empty sequence of ints")
    n = ids.size
    x = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][:n]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], w.eps)
    hidden = x.shape[1]
    head_dim = hidden // w.n_head
    for i in range(w.n_layer):
        p = f"encoder.layer.{i}."
        q, k, v = (_linear(w, p + f"attention.self.{name}", x).reshape(n, w.n_head, head_dim)
                   .transpose(1, 0, 2) for name in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(head_dim)
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        context = (probs @ v).transpose(1, 0, 2).reshape(n, hidden)
        attn = _linear(w, p + "attention.output.dense", context)
        x = _layer_norm(x + attn, w[p + "attention.output.LayerNorm.weight"],
                        w[p + "attention.output.LayerNorm.bias"], w.eps)
        ffn = _linear(w, p + "output.dense", _gelu(_linear(w, p + "intermediate.dense", x)))
        x = _layer_norm(x + ffn, w[p + "output.LayerNorm.weight"],
                        w[p + "output.LayerNorm.bias"], w.eps)
    return x


def embed(w: MiniLMWeights, token_ids: Sequence[int], normalize: bool = True) -> Array:
    """Mean-pooled sentence embedding, L2-normalised unless ``normalize`` is false."""
    pooled: Array = hidden_states(w, token_ids).mean(axis=0)
    if normalize:
        pooled = pooled / np.linalg.norm(pooled)
    return pooled


def cosine(a: Sequence[float] | NDArray[np.floating], b: Sequence[float] | Array) -> float:
    """Cosine similarity of two vectors."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))
