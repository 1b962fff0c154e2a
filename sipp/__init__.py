"""Sipp for Python: one client model for LLM inference, wherever it runs.

    client = SippClient()
    ref = client.add("local", LocalModelDescriptor("model.gguf"))
    print(client.query("Hello", endpoint=ref).result()["text"])

Local endpoints run GGUF models in-process through llama.cpp (the native backend is chosen
and opened on first local use, from :func:`sipp.native.select_backend`, else
``SIPP_PYTHON_BACKEND``, else automatically; importing ``sipp`` never fails on it); gateway
and provider endpoints call HTTP APIs with the same calls.
"""

from __future__ import annotations

from typing import Any

from sipp._version import __version__
from sipp.client import SippClient
from sipp.config import (
    DEFAULT_CONTEXT_KEY,
    DEFAULT_MAX_TOKENS,
    CacheRuntimeConfig,
    ContextRuntimeConfig,
    ModelPlacementConfig,
    MultimodalRuntimeConfig,
    NativeRuntimeConfig,
    ObservabilityRuntimeConfig,
    ResidencyRuntimeConfig,
    SamplingRuntimeConfig,
    SamplingRuntimeOverride,
    SchedulerPolicyConfig,
    SchedulerRuntimeConfig,
)
from sipp.descriptors import (
    GatewayDescriptor,
    LocalModelDescriptor,
    ProviderDescriptor,
    TimeoutPolicy,
)
from sipp.errors import (
    AmbiguousEndpointError,
    AuthenticationError,
    AuthorizationError,
    BackendError,
    CancelledError,
    ConfigurationError,
    EndpointError,
    EndpointNotFoundError,
    EngineClosedError,
    EngineDeadError,
    EngineError,
    GrammarError,
    InvalidRequestError,
    JsonSchemaError,
    ModelLoadError,
    PiiBlockedError,
    ProviderError,
    QueueFullError,
    RateLimitedError,
    SippError,
    UnsupportedOperationError,
)
from sipp.pii import PiiPolicy
from sipp.runs import SippEmbeddingRun, SippTextRun, SippTokenIterator
from sipp.types import (
    ChatMessage,
    EndpointRef,
    LocalEmbedOptions,
    LocalTextOptions,
    SippTextOptions,
    TokenBatch,
)
from sipp.vector import VectorIndex

__all__ = [
    "DEFAULT_CONTEXT_KEY",
    "DEFAULT_MAX_TOKENS",
    "AmbiguousEndpointError",
    "AuthenticationError",
    "AuthorizationError",
    "BackendError",
    "CacheRuntimeConfig",
    "CancelledError",
    "ChatMessage",
    "ConfigurationError",
    "ContextRuntimeConfig",
    "EndpointError",
    "EndpointNotFoundError",
    "EndpointRef",
    "EngineClosedError",
    "EngineDeadError",
    "EngineError",
    "GatewayDescriptor",
    "GrammarError",
    "InvalidRequestError",
    "JsonSchemaError",
    "LocalEmbedOptions",
    "LocalModelDescriptor",
    "LocalTextOptions",
    "ModelLoadError",
    "ModelPlacementConfig",
    "MultimodalRuntimeConfig",
    "NativeRuntimeConfig",
    "ObservabilityRuntimeConfig",
    "PiiBlockedError",
    "PiiPolicy",
    "ProviderDescriptor",
    "ProviderError",
    "QueueFullError",
    "RateLimitedError",
    "ResidencyRuntimeConfig",
    "SamplingRuntimeConfig",
    "SamplingRuntimeOverride",
    "SchedulerPolicyConfig",
    "SchedulerRuntimeConfig",
    "SippClient",
    "SippEmbeddingRun",
    "SippError",
    "SippTextOptions",
    "SippTextRun",
    "SippTokenIterator",
    "TimeoutPolicy",
    "TokenBatch",
    "UnsupportedOperationError",
    "VectorIndex",
    "__version__",
    "backend_info",
    "get_active_backend",
    "set_llama_log_quiet",
]

def backend_info() -> dict[str, Any]:
    """Which native backend is loaded (loading it now if needed), from where, and why."""
    from sipp.native import backend_info as _backend_info

    return _backend_info()


def get_active_backend() -> str:
    """The loaded backend's name (cpu, cuda, metal, vulkan), loading it if needed."""
    return str(backend_info()["backend"])


def set_llama_log_quiet(quiet: bool) -> None:
    """Silence (default) or show llama.cpp's own log output."""
    from sipp.native import set_log_quiet

    set_log_quiet(quiet)
