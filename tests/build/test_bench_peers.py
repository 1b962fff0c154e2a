"""The speculative benchmark's peers: how ``llama-lookup`` is compiled against a tools
build, how its printed timings are read, and which libllama llama-cpp-python gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import _common, _lookup

# The tail llama-lookup prints at exit (format of the pinned examples/lookup/lookup.cpp).
LOOKUP_TAIL = """\
0.01.720.803 I encoded   20 tokens in    0.089 seconds, speed:  631.128 t/s
0.01.720.805 I decoded   36 tokens in    0.414 seconds, speed:   86.992 t/s
0.01.720.805 I
0.01.720.805 I n_draft      = 8
0.01.720.805 I n_predict    = 36
0.01.720.805 I n_drafted    = 32
0.01.720.806 I t_draft_flat = 0.03 ms
0.01.720.807 I t_draft      = 0.13 ms, 3.94 us per token, 253968.25 tokens per second
0.01.720.807 I n_accept     = 29
0.01.720.808 I accept       = 90.625%
"""


def test_lookup_timings_count_tokens_after_the_first() -> None:
    figures = _lookup.parse_lookup(LOOKUP_TAIL)
    assert figures["output_tokens"] == 36
    assert figures["reported_tokens_per_s"] == pytest.approx(86.992)
    assert figures["decode_tokens_per_s"] == pytest.approx(35 / 0.414)
    assert (figures["n_draft"], figures["n_drafted"], figures["n_accept"]) == (8, 32, 29)


def test_lookup_without_timings_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="decoded N tokens"):
        _lookup.parse_lookup("error: failed to load model\n")


def _fake_build(tmp_path: Path) -> Path:
    """A tools build as CMake leaves it: compile_commands.json, bin/ libraries, source."""
    source = tmp_path / "src"
    ref = source / "tools" / "batched-bench" / "main.cpp"
    lookup = source / "examples" / "lookup" / "lookup.cpp"
    for path in (ref, lookup):
        path.parent.mkdir(parents=True)
        path.write_text("int main() { return 0; }\n")
    build = tmp_path / "build"
    (build / "bin").mkdir(parents=True)
    for name in _lookup.LIBRARY_NAMES:
        (build / "bin" / name).write_bytes(b"")
    command = (f"/usr/bin/c++ -DLLAMA_SHARED -I{ref.parent} -I{source}/common/. -O3 "
               f"-mno-amx-tile -DNDEBUG -o tools/x/main.cpp.o -c {ref}")
    (build / "compile_commands.json").write_text(json.dumps(
        [{"directory": str(build), "command": command, "file": str(ref)}]))
    return build / "bin"


def test_lookup_is_compiled_with_the_tools_build_flags_and_libraries(tmp_path: Path) -> None:
    bin_dir = _fake_build(tmp_path)
    plan = _lookup.plan_lookup(bin_dir)
    source = tmp_path / "src"
    assert plan.source == source / "examples" / "lookup" / "lookup.cpp"
    assert plan.compile_args[0] == "/usr/bin/c++"
    assert f"-I{source}/examples/lookup" in plan.compile_args
    assert f"-I{source}/tools/batched-bench" not in plan.compile_args
    assert {"-DLLAMA_SHARED", "-O3", "-mno-amx-tile", f"-I{source}/common/."} <= set(
        plan.compile_args)
    assert not {"-o", "-c"} & set(plan.compile_args)
    assert f"-Wl,-rpath,{bin_dir}" in plan.link_args
    assert str(bin_dir / "libllama.so") in plan.link_args
    # a changed library is a new cache key: the binary is rebuilt against it
    (bin_dir / "libllama.so").write_bytes(b"changed")
    assert _lookup.plan_lookup(bin_dir).key != plan.key


def test_lookup_needs_a_cmake_tools_build(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    with pytest.raises(FileNotFoundError, match="compile_commands.json"):
        _lookup.plan_lookup(tmp_path / "bin")


def test_bindings_only_llama_cpp_python_loads_our_libllama(tmp_path: Path) -> None:
    build = _common.NativeBuild(tmp_path / "native")
    venv = tmp_path / "venv"
    package = venv / "lib" / "python3.12" / "site-packages" / "llama_cpp"
    package.mkdir(parents=True)
    assert _common.lcp_env(venv, build)[_common.LCP_LIB_ENV] == str(build.directory)
    (package / "lib").mkdir()
    (package / "lib" / "libllama.so").write_bytes(b"")
    assert _common.LCP_LIB_ENV not in _common.lcp_env(venv, build)


def test_llama_cpp_python_routes_live_in_separate_venvs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(_common.LCP_VENV_ENV, raising=False)
    monkeypatch.setenv("SIPP_BUILD_CACHE", str(tmp_path))
    bindings, sdist = _common.lcp_venv(None, "bindings"), _common.lcp_venv(None, "sdist")
    assert bindings != sdist
    assert bindings.parent == sdist.parent == tmp_path / "bench"
    with pytest.raises(ValueError, match="route"):
        _common.setup_lcp_venv(tmp_path / "v", _common.NativeBuild(tmp_path), "wheel")
