"""Source extraction safety and the build cache location."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from build_scripts import llama_source


def _tar_with(tmp_path: Path, name: str) -> Path:
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    return archive


@pytest.mark.parametrize("has_data_filter", [True, False])
def test_extraction_refuses_paths_escaping_the_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, has_data_filter: bool
) -> None:
    if not has_data_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    dest = tmp_path / "dest"
    dest.mkdir()
    with tarfile.open(_tar_with(tmp_path, "../evil.txt")) as tar:
        with pytest.raises((RuntimeError, tarfile.TarError)):
            llama_source._extract(tar, dest, tar.getmembers())
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("has_data_filter", [True, False])
def test_extraction_writes_regular_members(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, has_data_filter: bool
) -> None:
    if not has_data_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    dest = tmp_path / "dest"
    dest.mkdir()
    with tarfile.open(_tar_with(tmp_path, "sub/ok.txt")) as tar:
        llama_source._extract(tar, dest, tar.getmembers())
    assert (dest / "sub" / "ok.txt").read_text() == "hi"


def test_cache_root_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIPP_BUILD_CACHE", str(tmp_path / "c"))
    assert llama_source.cache_root() == (tmp_path / "c").resolve()


def test_a_download_with_the_wrong_sha256_is_refused_and_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin = dict(llama_source.read_pin())
    tampered = tmp_path / "fetched" / pin["filename"]

    def fake_pip(_pin: dict[str, str], tmp: Path) -> Path:
        tampered.parent.mkdir(exist_ok=True)
        tampered.write_bytes(b"not the pinned sdist")
        return tampered

    monkeypatch.setattr(llama_source, "_download_with_pip", fake_pip)
    with pytest.raises(RuntimeError, match=f"sha256 mismatch.*expected {pin['sha256']}"):
        llama_source._download(pin, tmp_path)
    assert not (tmp_path / pin["filename"]).exists()
