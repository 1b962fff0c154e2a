"""Embedding texts for a :class:`~sipp.vector.VectorIndex` through ``SippClient.embed``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from sipp.errors import InvalidRequestError

if TYPE_CHECKING:
    from sipp.client import SippClient
    from sipp.types import EndpointRef

__all__ = ["embed_texts", "endpoint_model_id"]


def endpoint_model_id(client: SippClient, endpoint: EndpointRef) -> str:
    """A name for the model behind ``endpoint``: the GGUF file name and pooling of a local
    endpoint, ``provider/model`` of a provider, the target of a gateway."""
    found = client.endpoint(endpoint)
    info = getattr(getattr(found, "engine", None), "info", None)
    path = getattr(info, "path", None)
    if isinstance(path, str) and path:
        return f"local:{os.path.basename(path)}:{getattr(info, 'pooling', '')}"
    descriptor = getattr(found, "descriptor", None)
    model = getattr(descriptor, "model", None)
    if isinstance(model, str) and model:
        return f"provider:{getattr(descriptor, 'provider', '')}/{model}"
    target = getattr(descriptor, "target", None)
    if isinstance(target, str) and target:
        return f"gateway:{target}"
    return f"{endpoint.kind}:{endpoint.id}"


def embed_texts(
    client: SippClient,
    endpoint: EndpointRef,
    texts: list[str],
    batch_size: int,
    progress: Callable[[int, int], None] | None,
) -> Iterator[tuple[int, npt.NDArray[np.float32]]]:
    """Yield ``(start, vectors)`` per batch of ``batch_size`` texts, in order."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidRequestError(f"batch_size must be a positive int, got {batch_size!r}")
    total = len(texts)
    for start in range(0, total, batch_size):
        batch = texts[start:start + batch_size]
        result = client.embed(batch, endpoint=endpoint).result()
        vectors = np.asarray(result["values"], dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(batch):
            raise InvalidRequestError(
                f"endpoint returned {vectors.shape} values for {len(batch)} texts"
            )
        yield start, vectors
        if progress is not None:
            progress(min(start + batch_size, total), total)
