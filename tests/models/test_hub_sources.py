"""hf:// sources against a local server speaking the hub's download protocol."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipp.errors import ConfigurationError, ModelLoadError
from sipp.models import ResolveOptions, list_cached, resolve_model, resolve_projector
from tests.models.hub_server import HubServer, Repo

REPO_ROOT = Path(__file__).resolve().parents[2]
BLOB = b"GGUF" + bytes(range(256)) * 800  # ~200 KB: a few chunks per transfer


@pytest.fixture
def hub() -> Iterator[HubServer]:
    server = HubServer()
    yield server
    server.close()


def _opts(hub: HubServer, cache: Path, **kw: object) -> ResolveOptions:
    return ResolveOptions(cache_dir=cache, endpoint=hub.url, offline=False, bar=False, **kw)  # type: ignore[arg-type]


def test_first_pull_downloads_with_progress_then_hits_the_cache_offline(
    hub: HubServer, tmp_path: Path
) -> None:
    hub.repos["org/tiny"] = Repo({"tiny-Q4_K_M.gguf": BLOB, "README.md": b"hi"})
    fractions: list[float] = []
    first = resolve_model("hf://org/tiny/tiny-Q4_K_M.gguf",
                          _opts(hub, tmp_path, progress=fractions.append))
    assert first.path.read_bytes() == BLOB
    assert first.path.is_relative_to(tmp_path / "models--org--tiny" / "snapshots")
    assert len(hub.gets("tiny-Q4_K_M.gguf")) == 1
    assert fractions and fractions[-1] == 1.0 and fractions == sorted(fractions)

    hub.requests.clear()
    again = resolve_model("hf://org/tiny/tiny-Q4_K_M.gguf", _opts(hub, tmp_path))
    assert again.path == first.path
    assert hub.requests == []  # a cache hit asks nothing

    hub.close()  # no server at all: offline mode still finds it
    offline = resolve_model("hf://org/tiny/*Q4_K_M.gguf",
                            ResolveOptions(cache_dir=tmp_path, offline=True, bar=False))
    assert offline.path == first.path
    listed = [e.source for e in list_cached(tmp_path)]
    assert listed == ["hf://org/tiny/tiny-Q4_K_M.gguf"]


def test_offline_without_a_cached_copy_says_so(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="offline"):
        resolve_model("hf://org/none/x.gguf",
                      ResolveOptions(cache_dir=tmp_path, offline=True, bar=False))


def test_hf_endpoint_from_the_environment(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.repos["org/tiny"] = Repo({"m.gguf": BLOB})
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    resolved = resolve_model("hf://org/tiny/m.gguf", ResolveOptions(bar=False))
    assert resolved.path.is_relative_to(tmp_path / "hf")
    assert len(hub.gets("m.gguf")) == 1


def test_glob_with_two_matches_is_an_error_naming_both(hub: HubServer, tmp_path: Path) -> None:
    hub.repos["org/two"] = Repo({"a-Q4_K_M.gguf": BLOB, "b-Q4_K_M.gguf": BLOB,
                                 "a-Q8_0.gguf": BLOB})
    with pytest.raises(ConfigurationError) as info:
        resolve_model("hf://org/two/*Q4_K_M.gguf", _opts(hub, tmp_path))
    message = str(info.value)
    assert "a-Q4_K_M.gguf" in message and "b-Q4_K_M.gguf" in message
    assert "exactly one" in message
    assert hub.gets(".gguf") == []  # nothing downloaded
    one = resolve_model("hf://org/two:Q8_0", _opts(hub, tmp_path))
    assert one.repo_file == "a-Q8_0.gguf"
    with pytest.raises(ConfigurationError, match="no files matching"):
        resolve_model("hf://org/two/*Q2_K.gguf", _opts(hub, tmp_path))


def test_revision_is_resolved_to_its_commit(hub: HubServer, tmp_path: Path) -> None:
    commit = "fedcba9876543210fedcba9876543210fedcba98"
    hub.repos["org/rev"] = Repo({"m.gguf": BLOB}, revisions={"v1": commit})
    resolved = resolve_model("hf://org/rev@v1/m.gguf", _opts(hub, tmp_path))
    assert resolved.path.parent.name == commit
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_model("hf://org/missing/m.gguf", _opts(hub, tmp_path))


def test_interrupted_download_resumes_with_a_range_request(
    hub: HubServer, tmp_path: Path
) -> None:
    # huggingface_hub keeps whole 10 MiB chunks of a dropped transfer and asks for the rest
    chunk = 10 * 1024 * 1024
    big = BLOB * 64  # ~13 MB
    hub.repos["org/tiny"] = Repo({"m.gguf": big})
    hub.drop_after["/org/tiny/resolve/main/m.gguf"] = chunk + 65536
    resolved = resolve_model("hf://org/tiny/m.gguf", _opts(hub, tmp_path))
    assert resolved.path.read_bytes() == big
    gets = hub.gets("m.gguf")
    assert [g.range for g in gets] == [None, f"bytes={chunk}-"]
    assert gets[1].sent == len(big) - chunk  # the first 10 MiB were not fetched again


def test_two_processes_pulling_one_file_download_it_once(
    hub: HubServer, tmp_path: Path
) -> None:
    hub.repos["org/tiny"] = Repo({"m.gguf": BLOB})
    hub.delay_s = 0.05
    code = (
        "import sys; from sipp.models import ResolveOptions, resolve_model; "
        "print(resolve_model(sys.argv[1], ResolveOptions(cache_dir=sys.argv[2], "
        "endpoint=sys.argv[3], offline=False, bar=False)).path)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    args = [sys.executable, "-c", code, "hf://org/tiny/m.gguf", str(tmp_path), hub.url]
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs[0] == outs[1] and Path(outs[0]).read_bytes() == BLOB
    assert len(hub.gets("m.gguf")) == 1


def test_projector_auto_finds_the_repos_mmproj(hub: HubServer, tmp_path: Path) -> None:
    hub.repos["org/vision"] = Repo({"model-Q4_K_M.gguf": BLOB, "mmproj-F16.gguf": b"GGUF1"})
    model = resolve_model("hf://org/vision", _opts(hub, tmp_path))
    assert model.repo_file == "model-Q4_K_M.gguf"  # the projector is not a model candidate
    projector = resolve_projector("auto", model, _opts(hub, tmp_path))
    assert projector.name == "mmproj-F16.gguf" and projector.read_bytes() == b"GGUF1"


def test_split_model_fetches_every_shard(hub: HubServer, tmp_path: Path) -> None:
    shards = {f"big-Q4_K_M-0000{i}-of-00003.gguf": BLOB + bytes([i]) for i in (1, 2, 3)}
    hub.repos["org/split"] = Repo(shards)
    resolved = resolve_model("hf://org/split/*Q4_K_M*", _opts(hub, tmp_path))
    assert resolved.path.name == "big-Q4_K_M-00001-of-00003.gguf"
    assert [p.name for p in resolved.files] == sorted(shards)
    assert all(p.parent == resolved.path.parent for p in resolved.files)
