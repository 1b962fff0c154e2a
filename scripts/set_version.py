"""Set one version on sipppy and every backend package (they are released together).

    python scripts/set_version.py 0.2.0

Rewrites the version in pyproject.toml (and its ==pins on the backends), sipp/_version.py,
build_scripts/build_native.py (PACKAGE_VERSION, written into each manifest) and each
sipp_backend_*/pyproject.toml and __init__.py. tests/packaging/test_versions.py checks the
result; the loader refuses a backend whose manifest carries another version.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("cpu", "cuda", "vulkan", "metal")
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?(?:\.post\d+)?(?:\.dev\d+)?$")


def _edit(path: Path, pattern: str, replacement: str, count: int = 1) -> None:
    text = path.read_text()
    new, n = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    if n < count:
        raise SystemExit(f"{path.relative_to(ROOT)}: expected {count} match(es) of {pattern!r}")
    path.write_text(new)


def set_version(version: str) -> None:
    """Write ``version`` everywhere a sipppy distribution version lives."""
    if not VERSION_RE.match(version):
        raise SystemExit(f"version must look like 1.2.3 (PEP 440, no local part); got {version!r}")
    _edit(ROOT / "pyproject.toml", r'^version = "[^"]+"', f'version = "{version}"')
    _edit(
        ROOT / "pyproject.toml",
        r'"sipppy-backend-(\w+)==[^"]+"',
        rf'"sipppy-backend-\1=={version}"',
        len(BACKENDS),
    )
    _edit(ROOT / "sipp" / "_version.py", r'^__version__ = "[^"]+"', f'__version__ = "{version}"')
    _edit(
        ROOT / "build_scripts" / "build_native.py",
        r'^PACKAGE_VERSION = "[^"]+"',
        f'PACKAGE_VERSION = "{version}"',
    )
    for backend in BACKENDS:
        folder = ROOT / f"sipp_backend_{backend}"
        _edit(folder / "pyproject.toml", r'^version = "[^"]+"', f'version = "{version}"')
        _edit(
            folder / folder.name / "__init__.py",
            r'^__version__ = "[^"]+"',
            f'__version__ = "{version}"',
        )


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    set_version(argv[0])
    print(f"sipppy and its backends are now version {argv[0]}; rebuild the backend packages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
