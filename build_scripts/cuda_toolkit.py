"""Find what a CUDA build of ggml needs beyond ``nvcc``: cuBLAS and the driver stub.

A full CUDA toolkit ships ``libcublas`` and ``lib64/stubs/libcuda.so``; a minimal one
(only the compiler and ``cudart``, as on our build machines) does not. Then:

* cuBLAS comes from its PyPI wheel (``nvidia-cublas``, the same distribution the
  ``sipppy-backend-cuda`` wheel declares as a run-time dependency), downloaded once with
  pip into ``cache_root()/cuda/`` and pointed to with CMake cache variables;
* without any ``libcuda.so`` to link, ggml is built with ``GGML_CUDA_NO_VMM=ON`` (its
  memory pool then uses ``cudaMalloc`` instead of the driver's virtual memory API).

    python build_scripts/cuda_toolkit.py      # prints the extra CMake options as JSON
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from build_scripts import llama_source

CUBLAS_DISTRIBUTION = "nvidia-cublas"
SYSTEM_LIBRARY_DIRS = (Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib64"), Path("/usr/lib"))
log = llama_source.log


def nvcc_path() -> Path:
    """The ``nvcc`` the build uses (``CUDACXX`` first, as CMake does)."""
    found = os.environ.get("CUDACXX") or shutil.which("nvcc")
    if not found:
        raise FileNotFoundError(
            "nvcc not found: install the CUDA toolkit or set CUDACXX to its nvcc"
        )
    return Path(found).resolve()


def nvcc_major(nvcc: Path) -> int:
    """The CUDA major version of ``nvcc`` (``release 13.0`` → 13)."""
    out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"release (\d+)\.(\d+)", out.stdout)
    if not match:
        raise RuntimeError(f"cannot read the CUDA version from `{nvcc} --version`")
    return int(match.group(1))


def toolkit_library_dirs(nvcc: Path) -> list[Path]:
    """Library folders of the toolkit that holds ``nvcc`` (Linux and Windows layouts)."""
    root = nvcc.parent.parent
    candidates = [root / "lib64", root / "lib" / "x64", root / "lib"]
    candidates += sorted((root / "targets").glob("*/lib"))
    return [d for d in candidates if d.is_dir()]


def _has(dirs: Sequence[Path], patterns: Sequence[str]) -> bool:
    return any(next(d.glob(p), None) is not None for d in dirs for p in patterns)


def has_cublas(dirs: Sequence[Path]) -> bool:
    return _has(dirs, ("libcublas.so*", "cublas.lib"))


def has_driver_stub(dirs: Sequence[Path]) -> bool:
    stubs = [d / "stubs" for d in dirs] + list(dirs)
    return _has(stubs, ("libcuda.so", "cuda.lib")) or _has(SYSTEM_LIBRARY_DIRS, ("libcuda.so",))


def cublas_from_pypi(major: int, cache: Path | None = None) -> Path:
    """Download and unpack the ``nvidia-cublas`` wheel for CUDA ``major``; return its root."""
    cache = (cache or llama_source.cache_root()) / "cuda"
    target = cache / f"cublas-{major}"
    marker = target / ".complete"
    if marker.is_file():
        return Path(marker.read_text().strip())
    cache.mkdir(parents=True, exist_ok=True)
    spec = f"{CUBLAS_DISTRIBUTION}>={major},<{major + 1}"
    wheel = max(cache.glob(f"nvidia_cublas-{major}.*.whl"), default=None)
    if wheel is None:
        log(f"toolkit has no cuBLAS: downloading {spec} from PyPI into {cache}")
    for pip in [] if wheel is not None else llama_source._pip_commands():
        cmd = [*pip, "download", "--no-deps", "--only-binary", ":all:", "-d", str(cache), spec]
        if subprocess.run(cmd, check=False).returncode == 0:
            wheel = max(cache.glob(f"nvidia_cublas-{major}.*.whl"), default=None)
            break
    if wheel is None:
        raise RuntimeError(
            f"cuBLAS is missing from the CUDA toolkit and `pip download {spec}` failed; "
            "install the toolkit's cuBLAS or make PyPI reachable"
        )
    shutil.rmtree(target, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    roots = [p.parent.parent for p in target.glob("nvidia/**/include/cublas_v2.h")]
    if not roots:
        raise RuntimeError(f"{wheel.name} holds no include/cublas_v2.h")
    marker.write_text(str(roots[0]))
    return roots[0]


def _library(root: Path, stem: str) -> Path:
    for name in (f"lib{stem}.so", f"lib{stem}.so.*"):
        found = sorted((root / "lib").glob(name))
        if found:
            return found[0]
    raise FileNotFoundError(f"lib{stem}.so not found under {root / 'lib'}")


def extra_cmake_options(nvcc: Path | None = None, cache: Path | None = None) -> dict[str, str]:
    """CMake options that make a CUDA configure succeed with this toolkit (maybe none)."""
    nvcc = nvcc or nvcc_path()
    dirs = toolkit_library_dirs(nvcc)
    options: dict[str, str] = {}
    if not has_cublas(dirs):
        root = cublas_from_pypi(nvcc_major(nvcc), cache)
        options["CUDA_cublas_LIBRARY"] = str(_library(root, "cublas"))
        options["CUDA_cublasLt_LIBRARY"] = str(_library(root, "cublasLt"))
        options["CMAKE_CUDA_FLAGS"] = f"-I{root / 'include'}"
    if not has_driver_stub(dirs):
        log("no libcuda.so (driver stub) to link: building with GGML_CUDA_NO_VMM=ON")
        options["GGML_CUDA_NO_VMM"] = "ON"
    return options


if __name__ == "__main__":
    print(json.dumps(extra_cmake_options(), indent=2))
