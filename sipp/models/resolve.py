"""Turn any model source into local files: the one entry point loaders call.

``resolve_model`` handles every source kind (path, packaged name, ``hf://``, URL) and
split GGUFs; ``resolve_projector`` does the same for a vision projector, with ``"auto"``
finding the ``mmproj*.gguf`` next to the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sipp.errors import ConfigurationError, ModelLoadError
from sipp.models.cache import hub_cache_dir, offline_default
from sipp.models.hub import SPLIT_RE, HubSettings, find_projector, is_projector_name, resolve_hf
from sipp.models.progress import ProgressCallback
from sipp.models.source import ModelSource, parse_source
from sipp.models.url import fetch_url

__all__ = ["ResolveOptions", "ResolvedModel", "resolve_model", "resolve_projector"]


@dataclass(frozen=True)
class ResolveOptions:
    """How to reach remote sources. ``None`` fields read the environment at call time:
    ``cache_dir`` (``HF_HUB_CACHE`` / ``HF_HOME``), ``offline`` (``HF_HUB_OFFLINE``),
    ``endpoint`` (``HF_ENDPOINT``), ``token`` (``HF_TOKEN`` or a stored ``hf auth`` login).
    ``refresh`` asks the hub / server even when the file is cached (``sipp models pull``);
    ``progress`` receives each download's completed fraction; ``bar`` allows a tqdm bar
    (drawn only when stderr is a terminal)."""

    cache_dir: str | os.PathLike[str] | None = None
    offline: bool | None = None
    endpoint: str | None = None
    token: str | None = field(default=None, repr=False)
    refresh: bool = False
    progress: ProgressCallback | None = None
    bar: bool = True

    def hub(self) -> HubSettings:
        return HubSettings(
            hub_cache_dir(self.cache_dir), endpoint=self.endpoint, token=self.token,
            offline=offline_default() if self.offline is None else self.offline,
            refresh=self.refresh, progress=self.progress, bar=self.bar,
        )


@dataclass(frozen=True)
class ResolvedModel:
    """Local files of a model: ``path`` is what libllama opens (the first shard of a split
    model), ``files`` every shard; ``repo_file`` is the name inside a hub repo."""

    source: ModelSource
    path: Path
    files: tuple[Path, ...]
    repo_file: str | None = None


def _local_shards(path: Path) -> tuple[Path, ...]:
    """Every shard of a split GGUF (first shard first: what libllama opens), or ``path``."""
    match = SPLIT_RE.match(path.name)
    if match is None:
        return (path,)
    count = int(match["count"])
    shards = tuple(path.with_name(f"{match['prefix']}-{i:05d}-of-{count:05d}.gguf")
                   for i in range(1, count + 1))
    missing = [s.name for s in shards if not s.exists()]
    if missing:
        raise ModelLoadError(
            f"Cannot load model {path}: split model is missing {', '.join(missing)} "
            f"(all {count} shards must sit in {path.parent})"
        )
    return shards


def _local(path: Path, field_name: str) -> tuple[Path, ...]:
    if path.is_dir():
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        hint = f"; it holds {', '.join(ggufs[:10])}" if ggufs else "; it holds no .gguf file"
        raise ModelLoadError(
            f"Cannot load model {path}: {field_name} is a directory, expected a .gguf file{hint}"
        )
    if not path.exists():
        raise ModelLoadError(
            f"Cannot load model {path}: file not found ({field_name} takes a GGUF path, a "
            "packaged name such as 'gemma', hf://org/repo/file.gguf or an https:// URL)"
        )
    return _local_shards(path)


def resolve_model(
    source: str | os.PathLike[str] | ModelSource,
    options: ResolveOptions | None = None,
    *,
    sha256: str | None = None,
    field: str = "model",
) -> ResolvedModel:
    """Local files for ``source``, downloading into the cache when needed.

    Raises ``ConfigurationError`` for a malformed source or an ambiguous glob (naming the
    matches) and ``ModelLoadError`` when the model cannot be found or fetched.
    """
    src = source if isinstance(source, ModelSource) else parse_source(
        source, field=field, sha256=sha256
    )
    opts = options or ResolveOptions()
    if src.kind == "path":
        assert src.path is not None
        files = _local(Path(src.path), field)
        return ResolvedModel(src, files[0], files)
    if src.kind == "packaged":
        from sipp.packaged_models import resolve_model as resolve_packaged

        assert src.name is not None
        path = resolve_packaged(src.name)
        return ResolvedModel(src, path, (path,))
    settings = opts.hub()
    if src.kind == "url":
        assert src.url is not None
        path = fetch_url(
            src.url, settings.cache, sha256=src.sha256, offline=settings.offline,
            refresh=settings.refresh, progress=settings.progress, bar=settings.bar,
        )
        if SPLIT_RE.match(path.name):
            raise ConfigurationError(
                f"{field}: {src} is one shard of a split GGUF; download the shards into one "
                "folder and give the first one's path"
            )
        return ResolvedModel(src, path, (path,))
    repo_file, paths = resolve_hf(src, settings)
    if is_projector_name(repo_file):
        raise ConfigurationError(f"{field}: {src} is a multimodal projector, not a model")
    return ResolvedModel(src, paths[0], tuple(paths), repo_file)


def resolve_projector(
    projector: str | os.PathLike[str],
    model: ResolvedModel | None,
    options: ResolveOptions | None = None,
    *,
    field: str = "multimodal.projector_path",
) -> Path:
    """The projector file: any model source, or ``"auto"`` for the one ``mmproj*.gguf``
    next to ``model`` (same hub repo, or same folder)."""
    opts = options or ResolveOptions()
    if projector != "auto":
        src = parse_source(projector, field=field)
        if src.kind == "path":
            assert src.path is not None
            path = Path(src.path)
            if path.is_dir():
                raise ModelLoadError(f"Cannot load projector {path}: {field} is a directory")
            return path
        return resolve_model(src, opts, field=field).path
    if model is None:
        raise ConfigurationError(f"{field} 'auto' needs a model to look next to")
    if model.source.kind == "hf":
        assert model.repo_file is not None
        return find_projector(model.source, model.repo_file, opts.hub())
    folder = model.path.parent
    found = sorted(p for p in folder.glob("*.gguf") if is_projector_name(p.name))
    if len(found) != 1:
        listing = ", ".join(p.name for p in found) or "none"
        raise ConfigurationError(
            f"{field} 'auto': expected one mmproj*.gguf next to {model.path.name} in {folder}, "
            f"found {listing}; name the projector instead"
        )
    return found[0]
