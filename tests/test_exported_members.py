"""The public surface of ``sipp`` is exactly what ``__all__`` lists (pinned here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import sipp

SOURCE_ROOT = str(Path(sipp.__file__).resolve().parents[1])  # the sipp under test

EXPECTED = {
    "DEFAULT_CONTEXT_KEY", "DEFAULT_MAX_TOKENS", "AmbiguousEndpointError",
    "AuthenticationError", "AuthorizationError", "BackendError", "CacheRuntimeConfig",
    "CancelledError", "ChatMessage", "ConfigurationError", "ContextRuntimeConfig",
    "EndpointError", "EndpointNotFoundError", "EndpointRef", "EngineClosedError",
    "EngineDeadError", "EngineError", "GatewayDescriptor", "GrammarError",
    "InvalidRequestError", "JsonSchemaError", "LocalEmbedOptions", "LocalModelDescriptor",
    "LocalTextOptions", "ModelLoadError", "ModelPlacementConfig", "MultimodalRuntimeConfig",
    "NativeRuntimeConfig", "ObservabilityRuntimeConfig", "PiiBlockedError", "PiiPolicy",
    "ProviderDescriptor", "ProviderError",
    "QueueFullError", "RateLimitedError", "ResidencyRuntimeConfig", "SamplingRuntimeConfig",
    "SamplingRuntimeOverride", "SchedulerPolicyConfig", "SchedulerRuntimeConfig", "SippClient",
    "SippEmbeddingRun", "SippError", "SippTextOptions", "SippTextRun", "SippTokenIterator",
    "TimeoutPolicy", "TokenBatch", "UnsupportedOperationError", "VectorIndex", "__version__",
    "backend_info",
    "get_active_backend", "set_llama_log_quiet",
}


def test_all_is_pinned() -> None:
    assert set(sipp.__all__) == EXPECTED
    assert len(sipp.__all__) == len(EXPECTED)
    for name in sipp.__all__:
        assert hasattr(sipp, name), name


def test_seed_names_and_identities() -> None:
    assert sipp.SamplingRuntimeOverride is sipp.SamplingRuntimeConfig
    assert sipp.DEFAULT_CONTEXT_KEY == "default"
    assert sipp.DEFAULT_MAX_TOKENS == 64
    assert hasattr(sipp.SippClient, "add")
    assert not hasattr(sipp.SippClient, "add_local")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_import_does_not_open_the_native_library() -> None:
    code = (
        "import sipp, pathlib; maps = pathlib.Path('/proc/self/maps').read_text();"
        "print('libllama' in maps or 'libggml' in maps)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_invalid_backend_environment_fails_at_first_use_not_at_import() -> None:
    code = (
        "import sipp\n"
        "try:\n    sipp.backend_info()\n"
        "except sipp.ConfigurationError as exc:\n    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True,
        env={"SIPP_PYTHON_BACKEND": "bogus", "PATH": "", "PYTHONPATH": SOURCE_ROOT},
    )
    assert result.returncode == 0, result.stderr
    assert "Invalid SIPP_PYTHON_BACKEND=bogus" in result.stdout
