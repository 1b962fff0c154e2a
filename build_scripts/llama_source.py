"""Fetch, verify and extract the pinned llama.cpp source (see ``native/pin.toml``).

The source travels inside the PyPI sdist of llama-cpp-python; we download it with pip,
check its sha256 and unpack only ``vendor/llama.cpp`` into the user cache directory.
Every later call is served from the cache.

    python build_scripts/llama_source.py        # prints the source directory
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

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


def _download(pin: dict[str, str], dest_dir: Path) -> Path:
    archive = dest_dir / pin["filename"]
    if archive.exists() and sha256_file(archive) == pin["sha256"]:
        return archive
    spec = f"{pin['distribution']}=={pin['version']}"
    log(f"downloading {spec} (sdist) from PyPI with pip")
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--no-build-isolation", "--quiet", "-d", tmp, spec,
        ]
        # pip may try to prepare metadata of the sdist; skip that when pip allows it.
        result = subprocess.run(cmd, capture_output=True, text=True)
        candidate = Path(tmp) / pin["filename"]
        if not candidate.exists():
            cmd = [c for c in cmd if c != "--no-build-isolation"]
            result = subprocess.run(cmd, capture_output=True, text=True)
        if not candidate.exists():
            raise RuntimeError(
                f"pip could not download {spec}:\n{result.stdout}\n{result.stderr}"
            )
        actual = sha256_file(candidate)
        if actual != pin["sha256"]:
            raise RuntimeError(
                f"sha256 mismatch for {pin['filename']}: expected {pin['sha256']}, got {actual}"
            )
        shutil.move(str(candidate), archive)
    log(f"verified sha256 {pin['sha256']}")
    return archive


def ensure_source() -> Path:
    """Return the extracted, verified ``vendor/llama.cpp`` directory (cached)."""
    pin = read_pin()
    root = cache_root() / "src" / pin["sha256"][:16]
    source_dir = root / "llama.cpp"
    marker = root / ".complete"
    if marker.exists() and source_dir.is_dir():
        return source_dir
    root.mkdir(parents=True, exist_ok=True)
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
            member.name = member.name[len(prefix):]
            if member.name:
                members.append(member)
        tar.extractall(staging, members=members, filter="data")
    shutil.rmtree(source_dir, ignore_errors=True)
    staging.rename(source_dir)
    archive.unlink()
    marker.write_text(pin["sha256"] + "\n")
    return source_dir


if __name__ == "__main__":
    print(ensure_source())
