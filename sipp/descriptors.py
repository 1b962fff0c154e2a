"""Endpoint descriptors: what ``SippClient.add`` registers.

``LocalModelDescriptor`` loads a GGUF in-process; ``GatewayDescriptor`` calls a Sipp
gateway over HTTP; ``ProviderDescriptor`` calls OpenAI, Anthropic or an
OpenAI-compatible API directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sipp.config import NativeRuntimeConfig
from sipp.errors import ConfigurationError

__all__ = ["LocalModelDescriptor"]


@dataclass(frozen=True)
class LocalModelDescriptor:
    """A local GGUF model: ``model_path``, optional ``NativeRuntimeConfig`` and an optional
    Jinja ``chat_template`` that overrides the GGUF's ``tokenizer.chat_template``."""

    model_path: str | os.PathLike[str]
    config: NativeRuntimeConfig | None = None
    chat_template: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model_path, str | os.PathLike) or not str(self.model_path):
            raise ConfigurationError("model_path must be a non-empty path string")
        object.__setattr__(self, "model_path", str(Path(self.model_path).expanduser()))
        if self.config is not None and not isinstance(self.config, NativeRuntimeConfig):
            raise ConfigurationError(
                f"config must be a NativeRuntimeConfig, got {type(self.config).__name__}"
            )
        if self.chat_template is not None and (
            not isinstance(self.chat_template, str) or not self.chat_template.strip()
        ):
            raise ConfigurationError("chat_template must be a non-empty Jinja template string")
