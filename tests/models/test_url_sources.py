"""https:// (plain URL) sources against a local file server: cache, resume, pins, locks."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipp.errors import ModelLoadError
from sipp.models import ResolveOptions, list_cached, remove_cached, resolve_model
from sipp.models.cache import url_entry_dir
from sipp.models.url import fetch_url
from tests.models.hub_server import HubServer

REPO_ROOT = Path(__file__).resolve().parents[2]
BLOB = b"GGUF" + bytes(range(256)) * 800
SHA = hashlib.sha256(BLOB).hexdigest()


@pytest.fixture
def files() -> Iterator[HubServer]:
    server = HubServer()
    server.files["m.gguf"] = BLOB
    yield server
    server.close()


def _opts(cache: Path, **kw: object) -> ResolveOptions:
    return ResolveOptions(cache_dir=cache, offline=False, bar=False, **kw)  # type: ignore[arg-type]


def test_first_download_reports_progress_second_is_a_cache_hit(
    files: HubServer, tmp_path: Path
) -> None:
    url = f"{files.url}/files/m.gguf"
    seen: list[float] = []
    first = resolve_model(url, _opts(tmp_path, progress=seen.append))
    assert first.path.read_bytes() == BLOB and first.path.name == "m.gguf"
    assert seen[-1] == 1.0 and seen == sorted(seen)
    files.requests.clear()
    assert resolve_model(url, _opts(tmp_path)).path == first.path
    assert files.requests == []
    # offline: still found
    assert resolve_model(url, ResolveOptions(cache_dir=tmp_path, offline=True)).path == first.path
    assert [(e.source, e.size) for e in list_cached(tmp_path)] == [(url, len(BLOB))]
    assert [e.source for e in remove_cached(url, tmp_path)] == [url]
    assert list_cached(tmp_path) == [] and not first.path.exists()


def test_interrupted_download_resumes_in_a_later_call(files: HubServer, tmp_path: Path) -> None:
    url = f"{files.url}/files/m.gguf"
    files.drop_after["/files/m.gguf"] = 50000
    with pytest.raises(ModelLoadError, match="interrupted"):
        fetch_url(url, tmp_path, retries=0, bar=False)
    part = url_entry_dir(tmp_path, url) / "m.gguf.part"
    assert part.stat().st_size == 50000
    assert not (url_entry_dir(tmp_path, url) / "m.gguf").exists()  # no final name yet
    path = fetch_url(url, tmp_path, sha256=SHA, bar=False)
    assert path.read_bytes() == BLOB and not part.exists()
    gets = files.gets("m.gguf")
    assert [g.range for g in gets] == [None, "bytes=50000-"]
    assert gets[1].sent == len(BLOB) - 50000


def test_retries_resume_within_one_call(files: HubServer, tmp_path: Path) -> None:
    files.drop_after["/files/m.gguf"] = 70000
    path = resolve_model(f"{files.url}/files/m.gguf#sha256={SHA}", _opts(tmp_path)).path
    assert path.read_bytes() == BLOB
    assert [g.range for g in files.gets("m.gguf")] == [None, "bytes=70000-"]


def test_wrong_sha256_is_refused_and_nothing_partial_is_left(
    files: HubServer, tmp_path: Path
) -> None:
    url = f"{files.url}/files/m.gguf"
    with pytest.raises(ModelLoadError, match="sha256 mismatch"):
        resolve_model(url, _opts(tmp_path), sha256="0" * 64)
    entry = url_entry_dir(tmp_path, url)
    assert sorted(p.name for p in entry.iterdir() if p.name != ".lock") == []
    assert list_cached(tmp_path) == []
    # the right pin downloads; a different pin on the cached file is refused
    assert resolve_model(url, _opts(tmp_path), sha256=SHA).path.read_bytes() == BLOB
    with pytest.raises(ModelLoadError, match="not the pinned"):
        resolve_model(f"{url}#sha256={'1' * 64}", _opts(tmp_path))


def test_two_processes_pulling_one_url_download_it_once(
    files: HubServer, tmp_path: Path
) -> None:
    files.delay_s = 0.05
    code = (
        "import sys; from sipp.models import ResolveOptions, resolve_model; "
        "print(resolve_model(sys.argv[1], ResolveOptions(cache_dir=sys.argv[2], "
        "offline=False, bar=False)).path)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    args = [sys.executable, "-c", code, f"{files.url}/files/m.gguf", str(tmp_path)]
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs[0] == outs[1] and Path(outs[0]).read_bytes() == BLOB
    assert len(files.gets("m.gguf")) == 1


def test_missing_url_is_a_clear_error(files: HubServer, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="HTTP 404"):
        resolve_model(f"{files.url}/files/none.gguf", _opts(tmp_path))
