"""Where downloaded models live: the Hugging Face hub cache, shared with every HF tool.

``hf://`` files use huggingface_hub's own layout (``models--org--repo/blobs``,
``snapshots/<commit>/``). Plain URLs go into the same directory under ``sipp-urls/<key>/``
(``key`` = the first 16 hex digits of the URL's sha256) with a ``source.json`` recording
the URL, size and sha256, so one cache directory holds every model a machine pulled.

The directory is read from the environment at each call (``HF_HUB_CACHE``, then
``HF_HOME/hub``, then ``XDG_CACHE_HOME/huggingface/hub``, then ``~/.cache/huggingface/hub``),
not frozen at import the way huggingface_hub's own constant is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "URL_DIR",
    "CachedFile",
    "hub_cache_dir",
    "list_cached",
    "offline_default",
    "remove_cached",
    "url_entry_dir",
]

URL_DIR = "sipp-urls"
_TRUE = {"1", "true", "yes", "on"}


def hub_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The model cache directory: ``cache_dir`` if given, else the HF hub cache."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ
    if env.get("HF_HUB_CACHE"):
        return Path(os.path.expandvars(env["HF_HUB_CACHE"])).expanduser()
    if env.get("HF_HOME"):
        return Path(os.path.expandvars(env["HF_HOME"])).expanduser() / "hub"
    base = env.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "huggingface" / "hub"


def offline_default() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) as set now."""
    env = os.environ
    value = env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE


def url_entry_dir(cache: Path, url: str) -> Path:
    """The folder that holds the file downloaded from ``url``."""
    return cache / URL_DIR / hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class CachedFile:
    """One model file in the cache: ``source`` is how to name it again (``hf://`` or URL)."""

    source: str
    path: Path
    size: int
    kind: str  # "hf" or "url"
    repo_id: str | None = None
    revision: str | None = None
    filename: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "path": str(self.path), "size": self.size,
            "kind": self.kind, "repo_id": self.repo_id, "revision": self.revision,
            "filename": self.filename,
        }


def _hf_files(cache: Path) -> list[CachedFile]:
    out: list[CachedFile] = []
    for repo_dir in sorted(cache.glob("models--*")):
        parts = repo_dir.name.split("--")
        if len(parts) < 3 or not (repo_dir / "snapshots").is_dir():
            continue
        repo_id = "/".join(parts[1:])
        refs: dict[str, str] = {}
        refs_dir = repo_dir / "refs"
        for ref_file in refs_dir.glob("**/*") if refs_dir.is_dir() else []:
            if ref_file.is_file():
                refs[ref_file.read_text().strip()] = ref_file.relative_to(refs_dir).as_posix()
        for snap in sorted((repo_dir / "snapshots").iterdir()):
            for file in sorted(snap.rglob("*.gguf")):
                if not file.exists():  # dangling link: the blob was removed
                    continue
                name = file.relative_to(snap).as_posix()
                ref = refs.get(snap.name)
                rev = "" if ref == "main" else f"@{ref or snap.name}"
                org, _, repo = repo_id.partition("/")
                out.append(CachedFile(
                    source=f"hf://{org}/{repo}{rev}/{name}", path=file,
                    size=file.stat().st_size, kind="hf", repo_id=repo_id,
                    revision=ref or snap.name, filename=name,
                ))
    return out


def _url_files(cache: Path) -> list[CachedFile]:
    out: list[CachedFile] = []
    for meta_path in sorted((cache / URL_DIR).glob("*/source.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        file = meta_path.parent / str(meta.get("filename", ""))
        if not file.is_file():
            continue
        out.append(CachedFile(
            source=str(meta.get("url")), path=file, size=file.stat().st_size, kind="url",
            filename=file.name,
        ))
    return out


def list_cached(cache_dir: str | os.PathLike[str] | None = None) -> list[CachedFile]:
    """Every GGUF file in the cache (hub snapshots and URL downloads)."""
    cache = hub_cache_dir(cache_dir)
    if not cache.is_dir():
        return []
    return _hf_files(cache) + _url_files(cache)


def _remove_hf_file(entry: CachedFile) -> None:
    """Delete the snapshot link and its blob unless another snapshot still links to it."""
    target = entry.path.resolve()
    entry.path.unlink(missing_ok=True)
    repo_dir = target.parent.parent if target.parent.name == "blobs" else None
    if repo_dir is None:
        return
    still_used = any(
        link.is_symlink() and link.resolve() == target
        for link in (repo_dir / "snapshots").rglob("*")
    )
    if not still_used:
        target.unlink(missing_ok=True)


def remove_cached(
    name: str, cache_dir: str | os.PathLike[str] | None = None
) -> list[CachedFile]:
    """Remove the cached files that ``name`` names: a source listed by :func:`list_cached`,
    an ``hf://org/repo`` prefix (every file of that repo) or a cached path. Returns them."""
    entries = list_cached(cache_dir)
    chosen = [e for e in entries if name in (e.source, str(e.path))]
    if not chosen and name.startswith("hf://"):
        prefix = name.rstrip("/") + "/"
        chosen = [e for e in entries if e.source.startswith(prefix)
                  or (e.repo_id and f"hf://{e.repo_id}/" == prefix)]
    for entry in chosen:
        if entry.kind == "hf":
            _remove_hf_file(entry)
        else:
            shutil.rmtree(entry.path.parent, ignore_errors=True)
    return chosen
