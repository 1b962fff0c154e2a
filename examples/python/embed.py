"""Embed texts with a local GGUF model and compare them by cosine similarity.

    python embed.py [MODEL] [TEXT ...]

MODEL is a GGUF path or a packaged model name (default: ``gemma``; a dedicated embedding
model such as all-MiniLM-L6-v2 gives better vectors). The texts are embedded in one
batched call with mean pooling and L2 normalization, so a dot product is the cosine.
Prints the vector length and each text's similarity to the first.
"""

import sys
from typing import cast

from sipp import (
    ContextRuntimeConfig,
    LocalEmbedOptions,
    LocalModelDescriptor,
    NativeRuntimeConfig,
    SippClient,
)
from sipp.packaged_models import resolve_model

model = resolve_model(sys.argv[1] if len(sys.argv) > 1 else "gemma")
texts = sys.argv[2:] or [
    "A cat sits on the mat.",
    "A kitten is resting on a rug.",
    "Quarterly revenue grew by eight percent.",
]

config = NativeRuntimeConfig(context=ContextRuntimeConfig(embeddings=True, pooling="mean"))
with SippClient() as client:
    endpoint = client.add("embed", LocalModelDescriptor(model, config))
    response = client.embed(
        texts, endpoint=endpoint, local=LocalEmbedOptions(normalize=True)
    ).result()

vectors = cast("list[list[float]]", response["values"])  # a list input: one vector per text
print(f"vectors: {len(vectors)} x {len(vectors[0])}")
for text, vector in zip(texts, vectors, strict=True):
    cosine = sum(a * b for a, b in zip(vectors[0], vector, strict=True))
    print(f"{cosine:+.4f}  {text}")
