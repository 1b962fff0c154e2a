"""Gateway JSON logs: no ANSI colour copies of uvicorn messages, one startup line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from sipp.gateway.server.logging import JsonFormatter, configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    error = logging.getLogger("uvicorn.error")
    error_level = error.level
    yield
    root.handlers[:], root.level = handlers, level
    error.setLevel(error_level)


def test_uvicorn_color_message_is_dropped() -> None:
    record = logging.makeLogRecord({
        "name": "uvicorn.error", "levelname": "INFO", "msg": "Started server process [%d]",
        "args": (7,), "color_message": "Started server process [\x1b[36m%d\x1b[0m]",
    })
    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "Started server process [7]" and "color_message" not in entry


def test_uvicorn_info_is_quiet_unless_asked(restore_logging: None) -> None:
    configure_logging("info")
    assert not logging.getLogger("uvicorn.error").isEnabledFor(logging.INFO)
    assert logging.getLogger("uvicorn.error").isEnabledFor(logging.WARNING)
    configure_logging("info,uvicorn.error=debug")
    assert logging.getLogger("uvicorn.error").isEnabledFor(logging.DEBUG)
