"""Parse a model source string: a path, a packaged name, ``hf://`` or an http(s) URL.

Parsing never touches the network or the disk beyond ``exists()``, so descriptors and
configs can validate a source cheaply and resolve it (download, cache look-up) at load.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from sipp.errors import ConfigurationError

__all__ = ["ModelSource", "SourceKind", "is_remote_source", "parse_source"]

SourceKind = Literal["path", "packaged", "hf", "url"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ModelSource:
    """One parsed source. ``kind`` says which fields are set:

    * ``path``: ``path`` (a local file or directory, user-expanded);
    * ``packaged``: ``name`` (a model shipped as a PyPI package, e.g. ``gemma``);
    * ``hf``: ``repo_id``, ``revision`` (None = ``main``), ``pattern`` (a file name or a
      glob inside the repo; None = the repo's one model file);
    * ``url``: ``url`` and an optional ``sha256`` pin (from ``#sha256=<hex>``).
    """

    kind: SourceKind
    text: str
    path: str | None = None
    name: str | None = None
    repo_id: str | None = None
    revision: str | None = None
    pattern: str | None = None
    url: str | None = None
    sha256: str | None = None

    @property
    def is_remote(self) -> bool:
        """Whether resolving may download (``hf`` or ``url``)."""
        return self.kind in ("hf", "url")

    def __str__(self) -> str:
        return self.text


def is_remote_source(text: str) -> bool:
    """Whether ``text`` names a hub file or a URL (cheap prefix test)."""
    return text.startswith(("hf://", "https://", "http://"))


def _check_sha256(value: str, field: str) -> str:
    value = value.strip().lower()
    if not _SHA256.match(value):
        raise ConfigurationError(f"{field} must be 64 hexadecimal digits, got {value!r}")
    return value


def _parse_hf(text: str, field: str) -> ModelSource:
    rest = text[len("hf://"):]
    parts = [p for p in rest.split("/")]
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ConfigurationError(
            f"{field}: {text!r} is not a hub source; expected hf://org/repo/file.gguf, "
            "hf://org/repo@revision/file.gguf, hf://org/repo/*Q4_K_M.gguf or hf://org/repo:TAG"
        )
    org, repo = parts[0], parts[1]
    revision: str | None = None
    tag: str | None = None
    if "@" in repo:
        repo, revision = repo.split("@", 1)
        if not revision:
            raise ConfigurationError(f"{field}: {text!r} has an empty revision after '@'")
    if len(parts) == 2 and ":" in repo:
        repo, tag = repo.split(":", 1)
        if not tag:
            raise ConfigurationError(f"{field}: {text!r} has an empty tag after ':'")
    for part in (org, repo):
        if not _REPO_PART.match(part):
            raise ConfigurationError(f"{field}: {part!r} in {text!r} is not a valid repo name")
    pattern = "/".join(parts[2:]) or None
    if pattern is not None and (
        any(not p or p in (".", "..") for p in parts[2:]) or pattern.startswith("/")
    ):
        raise ConfigurationError(f"{field}: {text!r} has an empty or relative file part")
    if tag is not None:
        pattern = f"*{tag}*.gguf"
    return ModelSource(
        kind="hf", text=text, repo_id=f"{org}/{repo}", revision=revision, pattern=pattern
    )


def _parse_url(text: str, field: str, sha256: str | None) -> ModelSource:
    split = urlsplit(text)
    if not split.netloc or not split.path or split.path.endswith("/"):
        raise ConfigurationError(f"{field}: {text!r} must be a URL of a file (…/model.gguf)")
    pin = sha256
    if split.fragment:
        key, _, value = split.fragment.partition("=")
        if key != "sha256":
            raise ConfigurationError(
                f"{field}: the only URL fragment understood is #sha256=<hex>, got "
                f"#{split.fragment}"
            )
        fragment_pin = _check_sha256(value, f"{field} #sha256")
        if pin is not None and pin != fragment_pin:
            raise ConfigurationError(f"{field}: two different sha256 pins for {text!r}")
        pin = fragment_pin
    url = split._replace(fragment="").geturl()
    if not unquote(split.path.rsplit("/", 1)[-1]):
        raise ConfigurationError(f"{field}: {text!r} has no file name")
    return ModelSource(kind="url", text=text, url=url, sha256=pin)


def parse_source(
    value: str | os.PathLike[str], *, field: str = "model", sha256: str | None = None
) -> ModelSource:
    """Parse ``value`` (raises ``ConfigurationError`` naming ``field`` when malformed).

    An existing path always wins; a bare word that is a packaged model name (``gemma``) and
    no file is a packaged model; ``sha256`` pins a URL's content.
    """
    from sipp.packaged_models import packaged_model_key

    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{field} must be a non-empty path, model name or URL")
    pin = _check_sha256(sha256, f"{field} sha256") if sha256 is not None else None
    if value.startswith("hf://"):
        if pin is not None:
            raise ConfigurationError(
                f"{field}: a sha256 pin applies to https:// URLs; the hub checks its own files"
            )
        return _parse_hf(value, field)
    if value.startswith(("https://", "http://")):
        return _parse_url(value, field, pin)
    if "://" in value:
        scheme = value.split("://", 1)[0]
        raise ConfigurationError(
            f"{field}: unsupported scheme {scheme}:// in {value!r} (use a path, a packaged "
            "name, hf://org/repo/file.gguf or an https:// URL)"
        )
    if pin is not None:
        raise ConfigurationError(f"{field}: a sha256 pin applies to https:// URLs only")
    path = Path(value).expanduser()
    if not path.exists():
        key = packaged_model_key(value)
        if key is not None:
            return ModelSource(kind="packaged", text=value, name=key)
    return ModelSource(kind="path", text=value, path=str(path))
