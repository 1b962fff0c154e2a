"""JSON logs on stderr; verbosity from ``SIPP_GATEWAY_LOG`` (``RUST_LOG`` style:
``info``, ``debug``, ``warn,sipp.gateway.server=debug``).

Never log bearer tokens, API keys, passwords or the TOML text; :func:`redact` masks
``Authorization``-like values if a message happens to carry one.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

__all__ = ["LOG_ENV", "JsonFormatter", "configure_logging", "logger", "redact"]

LOG_ENV = "SIPP_GATEWAY_LOG"
logger = logging.getLogger("sipp.gateway.server")

_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
           "warn": logging.WARNING, "warning": logging.WARNING, "error": logging.ERROR,
           "off": logging.CRITICAL + 10}
_SECRET = re.compile(r"(?i)(bearer\s+|(?:api[_-]?key|password|token)[\"']?\s*[=:]\s*[\"']?)"
                     r"[^\s\"',;]+")
# uvicorn adds ``color_message`` (the message with ANSI colour codes) to its records
_STD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"color_message"}


def redact(text: str) -> str:
    """Mask anything that looks like a bearer token, API key or password value."""
    return _SECRET.sub(lambda m: m.group(1) + "[redacted]", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg and the record's ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


def parse_filter(spec: str) -> tuple[int, dict[str, int]]:
    """``"warn,sipp.gateway.server=debug"`` → (default level, {logger: level})."""
    default = logging.INFO
    per_logger: dict[str, int] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, level = part.rpartition("=")
        value = _LEVELS.get(level.strip().lower())
        if value is None:
            raise ValueError(f"{LOG_ENV}: unknown log level {level!r} (expected one of: "
                             f"{', '.join(_LEVELS)})")
        if name:
            per_logger[name.strip().replace("::", ".")] = value
        else:
            default = value
    return default, per_logger


def configure_logging(spec: str | None) -> None:
    """Install the JSON handler on the root logger with the levels of ``spec``."""
    default, per_logger = parse_filter(spec or "info")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(default)
    for name, level in per_logger.items():
        logging.getLogger(name).setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Both listeners are uvicorn servers, each announcing "Started server process": the
    # gateway's own "gateway listening" line says it once, with both addresses.
    if "uvicorn.error" not in per_logger and "uvicorn" not in per_logger:
        logging.getLogger("uvicorn.error").setLevel(max(default, logging.WARNING))
    # the gateway writes one "request" line per request itself
    logging.getLogger("uvicorn.access").disabled = True
