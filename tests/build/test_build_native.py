"""The cached CPU build, its installation into a backend package and the manifest."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import cffi  # noqa: TID251  (compares cffi layouts with the C probe)
import pytest

from build_scripts import build_native, struct_probe

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cached_cpu_build() -> build_native.BuildResult:
    plan = build_native.plan_build("cpu", "native")
    if not (plan.root / "result.json").is_file():
        pytest.skip(
            "the cpu/native build is not cached yet: run `bash scripts/setup.sh` or "
            "`python build_scripts/build_native.py --backend cpu`"
        )
    return build_native.build_native("cpu", "native")


def test_second_build_is_a_cache_hit(cached_cpu_build: build_native.BuildResult) -> None:
    again = build_native.build_native("cpu", "native")
    assert again.cached
    assert again.seconds < 30
    assert again.libraries == cached_cpu_build.libraries


def test_build_ships_llama_mtmd_and_ggml(cached_cpu_build: build_native.BuildResult) -> None:
    suffix = {"darwin": ".dylib", "win32": ".dll"}.get(sys.platform, ".so")
    for target in ("llama", "mtmd", "ggml", "ggml-base"):
        name = cached_cpu_build.targets[target]
        assert name.endswith(suffix), name
        assert cached_cpu_build.libraries[name].is_file()


def _load_package(package_dir: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("_test_backend_pkg", package_dir / "__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_install_fills_a_backend_package(
    cached_cpu_build: build_native.BuildResult, tmp_path: Path
) -> None:
    package_dir = tmp_path / "sipp_backend_cpu"
    package_dir.mkdir()
    init = REPO_ROOT / "sipp_backend_cpu" / "sipp_backend_cpu" / "__init__.py"
    (package_dir / "__init__.py").write_text(init.read_text())
    build_native.install(cached_cpu_build, package_dir)
    package = _load_package(package_dir)

    libs = sorted(p.name for p in package.library_dir().iterdir())
    assert libs == sorted(cached_cpu_build.libraries)
    headers = {p.name for p in package.include_dir().iterdir()}
    assert {"llama.h", "mtmd.h", "ggml.h", "ggml-backend.h", "gguf.h"} <= headers

    manifest = package.manifest()
    assert manifest["backend"] == "cpu"
    assert manifest["package_version"] == build_native.PACKAGE_VERSION
    assert manifest["llama_cpp"]["version"] == "0.3.36"
    assert manifest["build"]["mode"] == "native"
    assert manifest["build"]["ggml_backend_dl"] is False
    assert manifest["libraries"] == libs
    assert json.loads((package_dir / "_manifest.json").read_text()) == manifest


def test_manifest_layouts_agree_with_the_real_cdef(
    cached_cpu_build: build_native.BuildResult,
) -> None:
    cdef = struct_probe.load_cdef()
    sha, layouts = build_native.struct_layouts(
        cached_cpu_build, build_native.llama_source.ensure_source()
    )
    assert sha == cdef.sha256
    ffi = cffi.FFI()
    ffi.cdef(cdef.cdef)
    for tag in cdef.by_value_structs:
        assert layouts[tag]["size"] == ffi.sizeof(f"struct {tag}"), tag
        for name, offset in layouts[tag]["offsets"].items():
            assert ffi.offsetof(f"struct {tag}", name) == offset, f"{tag}.{name}"


def test_tool_path_explains_how_to_build_missing_tools() -> None:
    plan = build_native.plan_build("cpu", "native", tools=True)
    if (plan.root / "result.json").is_file():
        assert build_native.tool_path("llama-bench").is_file()
    else:
        with pytest.raises(FileNotFoundError, match="--tools"):
            build_native.tool_path("llama-bench")


def test_unknown_tool_is_rejected() -> None:
    with pytest.raises(ValueError, match="tool must be one of"):
        build_native.tool_path("llama-cli")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF dynamic section check")
def test_libraries_find_each_other_inside_the_package_folder(
    cached_cpu_build: build_native.BuildResult,
) -> None:
    shipped = set(cached_cpu_build.libraries)
    for name, path in cached_cpu_build.libraries.items():
        dynamic = subprocess.run(
            ["readelf", "-d", str(path)], capture_output=True, text=True, check=True
        ).stdout
        assert "[$ORIGIN]" in dynamic, f"{name} lacks RUNPATH $ORIGIN"
        needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic))
        ours = {n for n in needed if n.startswith(("libggml", "libllama", "libmtmd"))}
        assert ours <= shipped, f"{name} needs {ours - shipped}, which is not shipped"
