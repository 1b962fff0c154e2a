"""A chat template given as a file path or inline Jinja text (CLI flag, gateway TOML)."""

from __future__ import annotations

import os
from pathlib import Path

from sipp.errors import ConfigurationError

__all__ = ["is_inline_template", "read_chat_template"]


def is_inline_template(value: str) -> bool:
    """Jinja markup means inline text; anything else names a file."""
    return "{{" in value or "{%" in value


def read_chat_template(value: str | os.PathLike[str], field: str = "chat_template") -> str:
    """The template text: ``value`` itself when it is inline Jinja, else the file's text
    (raises ``ConfigurationError`` naming ``field`` when the file cannot be read)."""
    text = os.fspath(value)
    if not text.strip():
        raise ConfigurationError(f"{field} must be a Jinja template or the path of one")
    if is_inline_template(text):
        return text
    path = Path(text).expanduser()
    try:
        content = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ConfigurationError(f"{field}: {path} is a directory, expected a template file") \
            from None
    except OSError as exc:
        raise ConfigurationError(
            f"{field}: cannot read template file {path} ({exc.strerror or exc}); give a file "
            "path or inline Jinja text"
        ) from exc
    if not content.strip():
        raise ConfigurationError(f"{field}: template file {path} is empty")
    return content
