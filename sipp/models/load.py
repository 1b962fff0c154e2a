"""What a local endpoint loads: its descriptor's model and projector sources made local.

Kept apart from the endpoint so the endpoint stays a thin adapter and the gateway, the
CLI and the client all resolve sources the same way.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from sipp.models.resolve import ResolvedModel, ResolveOptions, resolve_model, resolve_projector

__all__ = ["LocalLoad", "resolve_local"]


@dataclasses.dataclass(frozen=True)
class LocalLoad:
    """The model file libllama opens and the config with a local projector path."""

    model: ResolvedModel
    config: Any  # NativeRuntimeConfig | None

    @property
    def path(self) -> Path:
        return self.model.path


def _projector(config: Any) -> str | None:
    multimodal = getattr(config, "multimodal", None)
    value = getattr(multimodal, "projector_path", None)
    return os.fspath(value) if isinstance(value, str | os.PathLike) else None


def resolve_local(
    model_path: str | os.PathLike[str], config: Any, options: ResolveOptions | None = None
) -> LocalLoad:
    """Resolve ``model_path`` (any model source) and ``multimodal.projector_path`` (any
    source, or ``"auto"``), downloading into the model cache when needed."""
    model = resolve_model(model_path, options, field="model_path")
    projector = _projector(config)
    if projector is not None:
        path = resolve_projector(projector, model, options)
        if str(path) != projector:
            multimodal = dataclasses.replace(config.multimodal, projector_path=str(path))
            config = dataclasses.replace(config, multimodal=multimodal)
    return LocalLoad(model, config)
