"""CUDA build inputs: a full toolkit needs nothing extra; a minimal one gets cuBLAS from its
PyPI wheel and GGML_CUDA_NO_VMM when no driver stub can be linked."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from build_scripts import cuda_toolkit


def _nvcc(root: Path, release: str = "13.0") -> Path:
    nvcc = root / "bin" / "nvcc"
    nvcc.parent.mkdir(parents=True)
    nvcc.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, V{release}.88'\n")
    nvcc.chmod(0o755)
    return nvcc


@pytest.fixture(autouse=True)
def no_system_driver(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cuda_toolkit, "SYSTEM_LIBRARY_DIRS", (tmp_path / "no-system",))


def test_nvcc_major_version_is_read_from_its_banner(tmp_path: Path) -> None:
    assert cuda_toolkit.nvcc_major(_nvcc(tmp_path / "cuda", "12.8")) == 12


def test_full_toolkit_needs_no_extra_options(tmp_path: Path) -> None:
    root = tmp_path / "cuda"
    nvcc = _nvcc(root)
    (root / "lib64" / "stubs").mkdir(parents=True)
    (root / "lib64" / "libcublas.so.13").write_bytes(b"")
    (root / "lib64" / "stubs" / "libcuda.so").write_bytes(b"")
    assert cuda_toolkit.extra_cmake_options(nvcc) == {}


def test_minimal_toolkit_takes_cublas_from_the_wheel_and_turns_off_vmm(tmp_path: Path) -> None:
    root = tmp_path / "cuda"
    nvcc = _nvcc(root)
    (root / "lib64").mkdir()
    (root / "lib64" / "libcudart.so.13").write_bytes(b"")
    cache = tmp_path / "cache" / "cuda"
    cache.mkdir(parents=True)
    wheel = cache / "nvidia_cublas-13.1.0-py3-none-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:  # pip finds it "already downloaded"
        for name in ("include/cublas_v2.h", "lib/libcublas.so.13", "lib/libcublasLt.so.13"):
            archive.writestr(f"nvidia/cu13/{name}", "")
    root_dir = cuda_toolkit.cublas_from_pypi(13, cache=tmp_path / "cache")
    assert (root_dir / "include" / "cublas_v2.h").is_file()
    options = cuda_toolkit.extra_cmake_options(nvcc, cache=tmp_path / "cache")
    assert options["CUDA_cublas_LIBRARY"].endswith("nvidia/cu13/lib/libcublas.so.13")
    assert options["CUDA_cublasLt_LIBRARY"].endswith("nvidia/cu13/lib/libcublasLt.so.13")
    assert options["CMAKE_CUDA_FLAGS"] == f"-I{root_dir / 'include'}"
    assert options["GGML_CUDA_NO_VMM"] == "ON"
