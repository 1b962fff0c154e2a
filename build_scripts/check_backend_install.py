"""Check an installed backend wheel: payload complete, versions agree, libraries load.

    python build_scripts/check_backend_install.py cpu [--mode release|native] [--load]

Without ``--mode`` the mode the wheel was built in (its manifest's ``build.mode``) is taken,
so checking a local ``native`` build works as printed; release pipelines pass ``--mode
release`` to insist on it.

Used as cibuildwheel's ``test-command`` and by ``scripts/build_wheels.sh``. Without ``--load``
it needs only the backend package (GPU wheels are checked on machines without a GPU);
``--load`` also imports ``sipp``, loads that backend and prints ``sipp doctor``'s report.
Exit status 0 when every check passes; each failure is printed on its own line.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

BACKENDS = ("cpu", "cuda", "vulkan", "metal")


def payload_problems(backend: str, mode: str | None = None) -> list[str]:
    """Everything wrong with the installed ``sipppy-backend-<backend>`` (empty when fine);
    ``mode`` None accepts the build mode the manifest records."""
    dist = f"sipppy-backend-{backend}"
    try:
        module = importlib.import_module(f"sipp_backend_{backend}")
        dist_version = metadata.version(dist)
    except (ImportError, metadata.PackageNotFoundError) as exc:
        return [f"{dist} is not installed: {exc}"]
    problems: list[str] = []
    manifest = module.manifest()
    if manifest.get("backend") != backend:
        problems.append(f"manifest backend is {manifest.get('backend')!r}, expected {backend!r}")
    for label, value in (
        ("module __version__", module.__version__),
        ("manifest package_version", manifest.get("package_version")),
    ):
        if value != dist_version:
            problems.append(f"{label} is {value!r} but the distribution is {dist_version!r}")
    built = manifest.get("build", {}).get("mode")
    if not built:
        problems.append("the manifest records no build mode (build.mode)")
    elif mode is not None and built != mode:
        problems.append(f"built in mode {built!r}, expected {mode!r}")
    lib_dir = Path(module.library_dir())
    for name in manifest.get("libraries", []):
        if not (lib_dir / name).is_file():
            problems.append(f"library {name} listed in the manifest is missing from {lib_dir}")
    for header in ("llama.h", "mtmd.h"):
        if not (Path(module.include_dir()) / header).is_file():
            problems.append(f"header {header} is missing")
    return problems


def load_problems(backend: str) -> list[str]:
    """Load ``backend`` through sipp (``select_backend``) and print the doctor report."""
    try:
        import sipp
        from sipp.cli import format_report
        from sipp.native import select_backend

        select_backend(backend)
        info = sipp.backend_info()
    except Exception as exc:  # every failure is reported, not raised
        return [f"sipp could not load the {backend} backend: {exc}"]
    print(format_report(info))
    return [] if info.get("backend") == backend else [f"loaded {info.get('backend')!r}"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("backend", choices=BACKENDS)
    parser.add_argument("--mode", default=None,
                        help="expected build mode (default: the one the wheel was built in)")
    parser.add_argument("--load", action="store_true", help="also load it through sipp")
    args = parser.parse_args(argv)
    problems = payload_problems(args.backend, args.mode)
    if not problems and args.load:
        problems = load_problems(args.backend)
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    if not problems:
        print(f"sipppy-backend-{args.backend}: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
