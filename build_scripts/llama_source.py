"""Fetch, verify and extract the pinned llama.cpp source (see ``native/pin.toml``).

The source travels inside the PyPI sdist of llama-cpp-python; we download it with pip,
check its sha256 and unpack only ``vendor/llama.cpp`` into the user cache directory.
Every later call is served from the cache.

    python build_scripts/llama_source.py        # prints the source directory
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parent.parent
PIN_FILE = REPO_ROOT / "native" / "pin.toml"


def log(message: str) -> None:
    print(f"[sipp-build] {message}", file=sys.stderr, flush=True)


def read_pin() -> dict[str, str]:
    with PIN_FILE.open("rb") as handle:
        return dict(tomllib.load(handle)["source"])


def cache_root() -> Path:
    """The user cache directory shared by all sipp build steps (override: SIPP_BUILD_CACHE)."""
    override = os.environ.get("SIPP_BUILD_CACHE")
    if override:
        return Path(override).expanduser().resolve()
    try:
        from platformdirs import user_cache_dir
    except ModuleNotFoundError:
        return Path.home() / ".cache" / "sipppy"
    return Path(user_cache_dir("sipppy", appauthor=False))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _pip_commands() -> list[list[str]]:
    """pip invocations to try: this interpreter's, then any ``pip`` on PATH.

    Inside pip's isolated build environment ``sys.executable -m pip`` may be unavailable.
    """
    commands = [[sys.executable, "-m", "pip"]]
    for name in ("pip3", "pip"):
        found = shutil.which(name)
        if found:
            commands.append([found])
    return commands


def _download_with_pip(pin: dict[str, str], tmp: Path) -> Path | None:
    spec = f"{pin['distribution']}=={pin['version']}"
    candidate = tmp / pin["filename"]
    for pip in _pip_commands():
        cmd = [*pip, "download", "--no-deps", "--no-binary", ":all:", "--quiet", "-d", str(tmp)]
        # pip may try to prepare metadata of the sdist; skip that when pip allows it.
        for extra in (["--no-build-isolation"], []):
            result = subprocess.run([*cmd, *extra, spec], capture_output=True, text=True)
            if candidate.exists():
                return candidate
            if "No module named pip" in result.stderr:
                break
    return None


def _file_url(pin: dict[str, str]) -> str:
    """URL of the pinned file from the index's JSON simple API (PEP 691), else PyPI's JSON."""
    index = os.environ.get("PIP_INDEX_URL", "")
    if not index.startswith(("http://", "https://")):
        index = "https://pypi.org/simple"
    simple = f"{index.rstrip('/')}/{pin['distribution']}/"
    request = urllib.request.Request(
        simple, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            files = json.load(response).get("files", [])
    except (OSError, ValueError):
        api = f"https://pypi.org/pypi/{pin['distribution']}/json"
        with urllib.request.urlopen(api, timeout=60) as response:
            files = json.load(response).get("releases", {}).get(pin["version"], [])
    for entry in files:
        if entry.get("filename") == pin["filename"]:
            return str(entry["url"])
    raise RuntimeError(f"the package index lists no file {pin['filename']} ({simple})")


def _download_with_urllib(pin: dict[str, str], tmp: Path) -> Path:
    """Fetch the pinned file over HTTPS without pip (the sha256 is checked by the caller)."""
    candidate = tmp / pin["filename"]
    with urllib.request.urlopen(_file_url(pin), timeout=300) as response:
        with candidate.open("wb") as out:
            shutil.copyfileobj(response, out)
    return candidate


def _download(pin: dict[str, str], dest_dir: Path) -> Path:
    archive = dest_dir / pin["filename"]
    if archive.exists() and sha256_file(archive) == pin["sha256"]:
        return archive
    spec = f"{pin['distribution']}=={pin['version']}"
    log(f"downloading {spec} (sdist) from PyPI")
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp_name:
        tmp = Path(tmp_name)
        candidate = _download_with_pip(pin, tmp)
        if candidate is None:
            log("pip is unavailable here or failed; downloading from PyPI's JSON API")
            candidate = _download_with_urllib(pin, tmp)
        actual = sha256_file(candidate)
        if actual != pin["sha256"]:
            raise RuntimeError(
                f"sha256 mismatch for {pin['filename']}: expected {pin['sha256']}, got {actual}"
            )
        shutil.move(str(candidate), archive)
    log(f"verified sha256 {pin['sha256']}")
    return archive


def download_sdist(dest_dir: Path) -> Path:
    """The pinned sdist itself, sha256-verified, in ``dest_dir`` (kept there; the benchmarks
    install llama-cpp-python's bindings from it)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    return _download(read_pin(), dest_dir)


def _extract(tar: tarfile.TarFile, dest: Path, members: list[tarfile.TarInfo]) -> None:
    """``extractall`` with the safe ``data`` filter where this Python has it (3.10.12+)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, members=members, filter="data")
        return
    for member in members:  # older Pythons: refuse links and paths escaping ``dest``
        target = (dest / member.name).resolve()
        if not target.is_relative_to(dest.resolve()) or member.issym() or member.islnk():
            raise RuntimeError(f"refusing unsafe archive member {member.name!r}")
    tar.extractall(dest, members=members)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """An exclusive lock file (POSIX); on Windows concurrent fetches are not guarded."""
    with path.open("a+") as handle:
        try:
            import fcntl
        except ImportError:
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def ensure_source() -> Path:
    """Return the extracted, verified ``vendor/llama.cpp`` directory (cached)."""
    pin = read_pin()
    root = cache_root() / "src" / pin["sha256"][:16]
    source_dir = root / "llama.cpp"
    marker = root / ".complete"
    if marker.exists() and source_dir.is_dir():
        return source_dir
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root / ".lock"):
        if marker.exists() and source_dir.is_dir():
            return source_dir  # another process finished it while we waited
        return _fetch_and_extract(pin, root, source_dir, marker)


def _fetch_and_extract(pin: dict[str, str], root: Path, source_dir: Path, marker: Path) -> Path:
    archive = _download(pin, root)
    log(f"extracting {pin['subdir']} from {archive.name}")
    prefix = archive.name.removesuffix(".tar.gz") + "/" + pin["subdir"].strip("/") + "/"
    staging = root / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(archive, "r:gz") as tar:
        members = []
        for member in tar.getmembers():
            if not member.name.startswith(prefix):
                continue
            member.name = member.name[len(prefix) :]
            # ``.git`` is a dangling submodule pointer: CMake's git probes would follow it.
            if member.name and member.name != ".git":
                members.append(member)
        _extract(tar, staging, members)
    shutil.rmtree(source_dir, ignore_errors=True)
    staging.rename(source_dir)
    archive.unlink()
    marker.write_text(pin["sha256"] + "\n")
    return source_dir


if __name__ == "__main__":
    print(ensure_source())
