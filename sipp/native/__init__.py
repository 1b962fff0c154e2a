"""The native layer: the only package that touches cffi and libllama.

Importing it opens nothing; the backend is selected (:func:`select_backend`, else
``SIPP_PYTHON_BACKEND``, else automatically) and opened on first use (:func:`get_native`, or
any owner object). Owner objects wrap one handle each:
:class:`LlamaModel`, :class:`LlamaContext`, :class:`LlamaBatch`, :class:`SamplerChain`,
:class:`MtmdContext` / :class:`Bitmap`.
"""

from __future__ import annotations

from sipp.native._env import VALID_BACKENDS, requested_backend
from sipp.native._errors import DecodeAbortedError, InvalidBatchError, UseAfterCloseError
from sipp.native._gguf import GgufInfo, check_model_file, read_gguf_info
from sipp.native._info import backend_info
from sipp.native._lib import get_native, select_backend, set_log_level, set_log_quiet
from sipp.native.batch import LlamaBatch
from sipp.native.context import LlamaContext
from sipp.native.model import LlamaModel
from sipp.native.mtmd import Bitmap, MtmdContext
from sipp.native.sampler import STAGES, SamplerChain

__all__ = [
    "STAGES",
    "VALID_BACKENDS",
    "Bitmap",
    "DecodeAbortedError",
    "GgufInfo",
    "InvalidBatchError",
    "LlamaBatch",
    "LlamaContext",
    "LlamaModel",
    "MtmdContext",
    "SamplerChain",
    "UseAfterCloseError",
    "backend_info",
    "check_backend_env",
    "check_model_file",
    "get_native",
    "read_gguf_info",
    "requested_backend",
    "select_backend",
    "set_log_level",
    "set_log_quiet",
]


def check_backend_env() -> None:
    """Validate ``SIPP_PYTHON_BACKEND`` now (raises ``ConfigurationError``: "Invalid
    SIPP_PYTHON_BACKEND=<v>. Expected one of: ..."); opening the backend checks it too."""
    requested_backend()
