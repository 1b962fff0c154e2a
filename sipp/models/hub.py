"""Resolve ``hf://`` sources with huggingface_hub: globs, revisions, split shards, projectors.

Files are looked up in the local cache first (a cached file costs no network at all);
only a miss, or ``refresh=True`` (``sipp models pull``), asks the hub. huggingface_hub does
the transfer: its cache layout is shared with every other HF tool on the machine, it
retries a dropped connection with a ``Range`` request, verifies sizes, takes a per-file
lock, honours ``HF_TOKEN`` and works offline from the cache.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

from sipp._version import __version__
from sipp.errors import ConfigurationError, ModelLoadError
from sipp.models.progress import ProgressCallback, bar_factory
from sipp.models.source import ModelSource

__all__ = ["HubSettings", "find_projector", "resolve_hf"]

_log = logging.getLogger("sipp.models")
SPLIT_RE = re.compile(r"^(?P<prefix>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.I)
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


class HubSettings:
    """Where and how to reach the hub for one resolution."""

    def __init__(
        self, cache: Path, *, endpoint: str | None, token: str | None, offline: bool,
        refresh: bool, progress: ProgressCallback | None, bar: bool,
    ) -> None:
        self.cache = cache
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None
        self.token = token
        self.offline = offline
        self.refresh = refresh
        self.progress = progress
        self.bar = bar

    @property
    def shown_endpoint(self) -> str:
        return self.endpoint or "https://huggingface.co"


def is_projector_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1].lower()
    return base.startswith("mmproj") and base.endswith(".gguf")


def shard_names(filename: str) -> list[str]:
    """Every shard of a split GGUF (``-00001-of-00003.gguf``), or just ``filename``."""
    match = SPLIT_RE.match(filename)
    if match is None:
        return [filename]
    count = int(match["count"])
    return [f"{match['prefix']}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]


def _cached_listing(settings: HubSettings, repo_id: str, revision: str | None) -> list[str] | None:
    repo_dir = settings.cache / ("models--" + repo_id.replace("/", "--"))
    rev = revision or "main"
    commit = rev if _COMMIT_RE.match(rev) else None
    if commit is None:
        ref = repo_dir / "refs" / rev
        if not ref.is_file():
            return None
        commit = ref.read_text().strip()
    snap = repo_dir / "snapshots" / commit
    if not snap.is_dir():
        return None
    return sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file())


def _remote_listing(settings: HubSettings, src: ModelSource) -> list[str]:
    from huggingface_hub import HfApi

    assert src.repo_id is not None
    api = HfApi(endpoint=settings.endpoint, token=settings.token,
                library_name="sipp", library_version=__version__)
    try:
        info = api.model_info(src.repo_id, revision=src.revision)
    except Exception as exc:
        raise _hub_error(src, settings, exc) from exc
    return sorted(s.rfilename for s in (info.siblings or []))


def _pick(settings: HubSettings, src: ModelSource, choose: Callable[[list[str]], str]) -> str:
    """Choose a file from the repo listing: the cached snapshot first (no network) when it
    settles the choice, else the hub's listing (a snapshot holds only downloaded files)."""
    assert src.repo_id is not None
    cached = _cached_listing(settings, src.repo_id, src.revision)
    if cached is not None and (not settings.refresh or settings.offline):
        try:
            return choose(cached)
        except ConfigurationError:
            if settings.offline:
                raise
    if settings.offline:
        raise ModelLoadError(
            f"Cannot load model {src}: {src.repo_id} is not in the model cache "
            f"({settings.cache}) and offline mode is on (HF_HUB_OFFLINE)"
        )
    return choose(_remote_listing(settings, src))


def _hub_error(src: ModelSource, settings: HubSettings, exc: BaseException) -> ModelLoadError:
    from huggingface_hub import errors

    where = settings.shown_endpoint
    if isinstance(exc, errors.GatedRepoError):
        reason = f"{src.repo_id} is gated on {where}: accept its terms and set HF_TOKEN"
    elif isinstance(exc, errors.RepositoryNotFoundError):
        reason = f"repository {src.repo_id} not found on {where} (private? set HF_TOKEN)"
    elif isinstance(exc, errors.RevisionNotFoundError):
        reason = f"revision {src.revision!r} not found in {src.repo_id}"
    elif isinstance(exc, errors.LocalEntryNotFoundError):
        reason = (f"{where} could not be reached and the file is not in the model cache "
                  f"({settings.cache})")
    elif isinstance(exc, errors.EntryNotFoundError):
        reason = f"no such file in {src.repo_id}"
    elif isinstance(exc, errors.OfflineModeIsEnabled):
        reason = f"not in the model cache ({settings.cache}) and offline mode is on"
    else:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return ModelLoadError(f"Cannot load model {src}: {reason}")



def _model_candidates(files: list[str]) -> list[str]:
    """Model files of a listing: GGUFs minus projectors, split models by their first shard."""
    out = []
    for name in files:
        if not name.lower().endswith(".gguf") or is_projector_name(name):
            continue
        match = SPLIT_RE.match(name)
        if match is not None and int(match["index"]) != 1:
            continue
        out.append(name)
    return out


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def _select(src: ModelSource, files: list[str]) -> str:
    candidates = _model_candidates(files)
    pattern = src.pattern
    if pattern is None:
        matches = candidates
        asked = "a .gguf model file"
    else:
        low = pattern.lower()
        matches = [f for f in candidates if fnmatch.fnmatchcase(f.lower(), low)]
        asked = f"files matching {pattern!r}"
    if len(matches) == 1:
        return matches[0]
    shown = ", ".join(candidates[:20]) or "none"
    if not matches:
        raise ConfigurationError(
            f"model {src}: {src.repo_id} has no {asked}; its GGUF files: {shown}"
        )
    raise ConfigurationError(
        f"model {src}: {len(matches)} {asked} in {src.repo_id}, expected exactly one: "
        f"{', '.join(matches)}; name one file or narrow the pattern"
    )


def _download(settings: HubSettings, src: ModelSource, filename: str) -> Path:
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    assert src.repo_id is not None
    if not settings.refresh or settings.offline:
        hit = try_to_load_from_cache(
            src.repo_id, filename, cache_dir=settings.cache, revision=src.revision
        )
        if isinstance(hit, str):
            return Path(hit)
    if settings.offline:
        raise ModelLoadError(
            f"Cannot load model {src}: {filename} is not in the model cache ({settings.cache}) "
            "and offline mode is on (HF_HUB_OFFLINE)"
        )
    _log.info("fetching %s from %s", f"hf://{src.repo_id}/{filename}", settings.shown_endpoint)
    try:
        path = hf_hub_download(  # type: ignore[call-overload]
            src.repo_id, filename, revision=src.revision, cache_dir=settings.cache,
            endpoint=settings.endpoint, token=settings.token,
            library_name="sipp", library_version=__version__,
            tqdm_class=bar_factory(settings.progress, bar=settings.bar),
        )
    except Exception as exc:
        raise _hub_error(src, settings, exc) from exc
    return Path(str(path))


def resolve_hf(src: ModelSource, settings: HubSettings) -> tuple[str, list[Path]]:
    """Download (or find in the cache) the model file ``src`` names and all its shards;
    returns the file's name in the repo and the local paths (first shard first)."""
    pattern = src.pattern
    filename = pattern if pattern is not None and not _is_glob(pattern) else None
    if filename is None:
        filename = _pick(settings, src, lambda files: _select(src, files))
    return filename, [_download(settings, src, name) for name in shard_names(filename)]


def find_projector(src: ModelSource, model_file: str, settings: HubSettings) -> Path:
    """The one ``mmproj*.gguf`` of the repo (preferring the model's folder), downloaded."""
    def choose(files: list[str]) -> str:
        found = [f for f in files if is_projector_name(f)]
        folder = model_file.rpartition("/")[0]
        near = [f for f in found if f.rpartition("/")[0] == folder]
        chosen = near if near else found
        if len(chosen) != 1:
            listing = ", ".join(chosen) if chosen else "none"
            raise ConfigurationError(
                f"multimodal.projector_path 'auto': expected one mmproj*.gguf in "
                f"{src.repo_id}, found {listing}; name the projector instead"
            )
        return chosen[0]

    return _download(settings, src, _pick(settings, src, choose))
