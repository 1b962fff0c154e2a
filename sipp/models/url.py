"""Download a model from a plain http(s) URL into the model cache.

Guarantees (the same ones the hub path gives): a file appears under its final name only
complete and verified (written to ``<name>.part``, hashed while streaming, renamed
atomically); an interrupted download resumes from the ``.part`` file with a ``Range``
request (also in a later process); a ``sha256`` pin that does not match deletes the
partial data and raises; a file lock makes a second process wait for the first instead of
downloading the same file again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sipp._version import __version__
from sipp.errors import ModelLoadError
from sipp.models.cache import url_entry_dir
from sipp.models.progress import ProgressCallback, bar_factory

__all__ = ["fetch_url"]

_log = logging.getLogger("sipp.models")
_CHUNK = 1 << 20
_LOCK_TIMEOUT_S = 24 * 3600.0


def _filename(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_cached(final: Path, meta: dict[str, object], pin: str | None, url: str) -> Path:
    if pin is not None and meta.get("sha256") != pin:
        raise ModelLoadError(
            f"Cannot load model {url}: the cached file {final} has sha256 {meta.get('sha256')}, "
            f"not the pinned {pin} (remove it with `sipp models rm {url}` to download again)"
        )
    return final


def _read_meta(entry: Path) -> dict[str, object] | None:
    try:
        value = json.loads((entry / "source.json").read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _total_size(headers: Message, status: int, offset: int) -> int | None:
    if status == 206:
        content_range = headers.get("Content-Range") or ""
        total = content_range.rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _download_once(
    url: str, part: Path, timeout: float, progress: ProgressCallback | None, bar: bool
) -> None:
    """One GET into ``part`` (resuming from its size); raises ``OSError`` if cut short."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": f"sipp/{__version__}"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left past the end: the part is complete
            return
        raise
    with response:
        status = int(response.status)
        if status == 200 and offset:
            offset = 0  # the server ignored the Range: start over
        total = _total_size(response.headers, status, offset)
        make_bar = bar_factory(progress, bar=bar)
        with part.open("r+b" if offset else "wb") as out, make_bar(
            total=total, initial=offset, unit="B", unit_scale=True, desc=part.name[:-5]
        ) as shown:
            out.seek(offset)
            out.truncate()
            received = offset
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                shown.update(len(chunk))
        if total is not None and received != total:
            raise OSError(f"connection closed after {received} of {total} bytes")


def fetch_url(
    url: str,
    cache: Path,
    *,
    sha256: str | None = None,
    offline: bool = False,
    refresh: bool = False,
    progress: ProgressCallback | None = None,
    bar: bool = True,
    retries: int = 3,
    timeout: float = 60.0,
) -> Path:
    """The cached file for ``url``, downloading it first when absent (see module doc)."""
    entry = url_entry_dir(cache, url)
    name = _filename(url)
    final = entry / name
    meta = _read_meta(entry)
    if final.is_file() and meta is not None and not refresh:
        return _check_cached(final, meta, sha256, url)
    if offline:
        raise ModelLoadError(
            f"Cannot load model {url}: not in the model cache ({cache}) and offline mode is on "
            "(HF_HUB_OFFLINE)"
        )
    from filelock import FileLock, Timeout

    entry.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(entry / ".lock"))
    try:
        lock.acquire(timeout=_LOCK_TIMEOUT_S)
    except Timeout as exc:
        raise ModelLoadError(
            f"Cannot load model {url}: another download holds {lock.lock_file}"
        ) from exc
    try:
        meta = _read_meta(entry)
        if final.is_file() and meta is not None and not refresh:
            return _check_cached(final, meta, sha256, url)  # another process finished it
        part = entry / f"{name}.part"
        _log.info("downloading %s", url)
        attempt = 0
        while True:
            try:
                _download_once(url, part, timeout, progress, bar)
                break
            except urllib.error.HTTPError as exc:
                raise ModelLoadError(
                    f"Cannot load model {url}: HTTP {exc.code} {exc.reason}"
                ) from exc
            except OSError as exc:
                attempt += 1
                if attempt > retries:
                    kept = part.stat().st_size if part.exists() else 0
                    raise ModelLoadError(
                        f"Cannot load model {url}: download interrupted ({exc}); {kept} bytes "
                        "kept, the next attempt resumes from there"
                    ) from exc
                _log.warning("download of %s interrupted (%s), resuming", url, exc)
                time.sleep(min(2.0, 0.25 * attempt))
        digest = _sha256_of(part)
        if sha256 is not None and digest != sha256:
            part.unlink(missing_ok=True)
            raise ModelLoadError(
                f"Cannot load model {url}: sha256 mismatch (expected {sha256}, downloaded "
                f"{digest}); the download was deleted"
            )
        os.replace(part, final)
        record = {"url": url, "filename": name, "sha256": digest, "size": final.stat().st_size}
        tmp = entry / "source.json.tmp"
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, entry / "source.json")
        _log.info("downloaded %s (%d bytes) to %s", url, record["size"], final)
        return final
    finally:
        lock.release()
