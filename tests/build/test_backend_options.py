"""The pin and the per-backend CMake option table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from build_scripts import backend_options, llama_source


def test_pin_names_the_llama_cpp_python_sdist() -> None:
    pin = llama_source.read_pin()
    assert pin["distribution"] == "llama-cpp-python"
    assert pin["filename"] == f"llama_cpp_python-{pin['version']}.tar.gz"
    assert re.fullmatch(r"[0-9a-f]{64}", pin["sha256"])
    assert pin["subdir"] == "vendor/llama.cpp"


def test_native_cpu_build_is_shared_tuned_to_host_and_library_only() -> None:
    options = backend_options.resolve_options("cpu", "native", environ={})
    assert options["GGML_NATIVE"] == "ON"
    assert options["GGML_BACKEND_DL"] == "OFF"
    assert options["BUILD_SHARED_LIBS"] == "ON"
    assert options["LLAMA_BUILD_TOOLS"] == "ON"  # libmtmd is configured under tools/
    for off in ("LLAMA_CURL", "LLAMA_OPENSSL", "LLAMA_BUILD_TESTS", "LLAMA_BUILD_SERVER"):
        assert options[off] == "OFF", off
    assert options["CMAKE_INSTALL_RPATH"] == "$ORIGIN"


def test_release_mode_loads_the_best_cpu_variant_at_run_time() -> None:
    options = backend_options.resolve_options("cpu", "release", environ={})
    assert options["GGML_NATIVE"] == "OFF"
    assert options["GGML_BACKEND_DL"] == "ON"
    assert options["GGML_CPU_ALL_VARIANTS"] == "ON"


def test_tools_turn_the_server_on() -> None:
    options = backend_options.resolve_options("cpu", "native", tools=True, environ={})
    assert options["LLAMA_BUILD_SERVER"] == "ON"


def test_gpu_backends_enable_their_ggml_backend() -> None:
    assert backend_options.resolve_options("vulkan", "native")["GGML_VULKAN"] == "ON"
    metal = backend_options.resolve_options("metal", "release", platform="darwin")
    assert metal["GGML_METAL"] == metal["GGML_METAL_EMBED_LIBRARY"] == "ON"
    assert metal["CMAKE_INSTALL_RPATH"] == "@loader_path"


def test_cuda_architectures_default_to_the_portable_list_and_follow_the_env() -> None:
    default = backend_options.resolve_options("cuda", "release", environ={})
    assert default["GGML_CUDA"] == "ON"
    assert default["CMAKE_CUDA_ARCHITECTURES"].split(";")[:2] == ["75-virtual", "80-virtual"]
    narrowed = backend_options.resolve_options(
        "cuda", "release", environ={"SIPP_CUDA_ARCHITECTURES": "90"}
    )
    assert narrowed["CMAKE_CUDA_ARCHITECTURES"] == "90"


def test_vulkan_headers_folder_comes_from_the_env_and_is_checked(tmp_path: Path) -> None:
    assert "Vulkan_INCLUDE_DIR" not in backend_options.resolve_options(
        "vulkan", "release", environ={})
    with pytest.raises(ValueError, match="SIPP_VULKAN_INCLUDE_DIR must be a folder holding"):
        backend_options.resolve_options(
            "vulkan", "release", environ={"SIPP_VULKAN_INCLUDE_DIR": str(tmp_path)})
    (tmp_path / "vulkan").mkdir()
    (tmp_path / "vulkan" / "vulkan.hpp").write_text("// headers\n")
    options = backend_options.resolve_options(
        "vulkan", "release", environ={"SIPP_VULKAN_INCLUDE_DIR": str(tmp_path)})
    assert options["Vulkan_INCLUDE_DIR"] == str(tmp_path.resolve())
    cpu = backend_options.resolve_options(
        "cpu", "release", environ={"SIPP_VULKAN_INCLUDE_DIR": str(tmp_path)})
    assert "Vulkan_INCLUDE_DIR" not in cpu


@pytest.mark.parametrize(
    ("backend", "mode", "message"),
    [("rocm", "native", "backend must be one of"), ("cpu", "debug", "mode must be one of")],
)
def test_unknown_backend_or_mode_is_rejected(backend: str, mode: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        backend_options.resolve_options(backend, mode)


def test_non_scalar_option_value_names_the_section() -> None:
    table: dict[str, Any] = {"common": {"GGML_NATIVE": ["ON"]}}
    with pytest.raises(ValueError, match=r"\[common\] GGML_NATIVE must be a string"):
        backend_options.resolve_options("cpu", "native", table=table)


def test_cmake_args_are_sorted_defines() -> None:
    assert backend_options.cmake_args({"B": "1", "A": "x"}) == ["-DA=x", "-DB=1"]
