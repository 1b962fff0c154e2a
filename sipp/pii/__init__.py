"""PII masking before a request leaves the process: built-in pattern detectors, an
optional local-model detector, per-request placeholders and their restoration (streaming
included). See docs/pii-masking.md."""

from __future__ import annotations

from sipp.errors import PiiBlockedError
from sipp.pii._spans import Detector, Span
from sipp.pii.local_model import MODEL_ENTITIES, LocalModelDetector
from sipp.pii.masking import MaskingSession, StreamRestorer
from sipp.pii.patterns import BUILTIN_ENTITIES, NATIONAL_ID_COUNTRIES, PatternDetector
from sipp.pii.policy import PiiPolicy

__all__ = [
    "BUILTIN_ENTITIES",
    "MODEL_ENTITIES",
    "NATIONAL_ID_COUNTRIES",
    "Detector",
    "LocalModelDetector",
    "MaskingSession",
    "PatternDetector",
    "PiiBlockedError",
    "PiiPolicy",
    "Span",
    "StreamRestorer",
]
