"""Build the pinned llama.cpp shared libraries for one backend, cached, and install them.

    python build_scripts/build_native.py --backend cpu [--mode native|release] [--tools]
        [--jobs N] [--install-into sipp_backend_cpu/sipp_backend_cpu]

Steps: fetch + verify the source (``llama_source.ensure_source``), configure with the options
of ``native/backends.toml``, build only the library targets (``llama``, ``mtmd``, ggml and
its backend / CPU-variant modules; with ``--tools`` also ``llama-bench``,
``llama-batched-bench`` and ``llama-server``), then copy the libraries, the public headers
and a manifest (``_manifest.json``) into a backend package folder. Builds are cached in
``cache_root()/build/<key>/``; the key hashes every input that changes the binaries, so a
repeated build returns in seconds. Tools stay in the cache: ``tool_path("llama-bench")``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if not __package__:  # run as a script or loaded by path (the backend packages' build hooks)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from build_scripts import backend_options, cuda_toolkit, llama_source, struct_probe

BUILD_SCRIPT_VERSION = "1"
PACKAGE_VERSION = "0.2.0"
LIBRARY_TARGETS = ("llama", "mtmd", "ggml", "ggml-base")
TOOL_TARGETS = ("llama-bench", "llama-batched-bench", "llama-server")
PUBLIC_HEADERS = ("llama.h", "mtmd.h")
LIBRARY_TYPES = ("SHARED_LIBRARY", "MODULE_LIBRARY")
log = llama_source.log


@dataclass(frozen=True)
class BuildPlan:
    """Everything that determines one build's binaries, and where it lives in the cache."""

    backend: str
    mode: str
    tools: bool
    options: dict[str, str]
    generator: str | None
    source_sha256: str
    toolchain: dict[str, str]
    platform: str
    patches: str = "none"

    def key_inputs(self) -> dict[str, Any]:
        inputs: dict[str, Any] = {
            "build_script_version": BUILD_SCRIPT_VERSION,
            "source_sha256": self.source_sha256,
            "backend": self.backend,
            "mode": self.mode,
            "tools": self.tools,
            "cmake_options": backend_options.cmake_args(self.options),
            "generator": self.generator,
            "toolchain": self.toolchain,
            "platform": self.platform,
        }
        if self.patches != "none":  # unpatched keys stay what they were
            inputs["patches"] = self.patches
        return inputs

    @property
    def key(self) -> str:
        return cache_key(self.key_inputs())

    @property
    def root(self) -> Path:
        return llama_source.cache_root() / "build" / self.key


@dataclass(frozen=True)
class BuildResult:
    """A finished build: shipped library names mapped to files in the cache."""

    plan: BuildPlan
    libraries: dict[str, Path]
    targets: dict[str, str]
    tools: dict[str, Path] = field(default_factory=dict)
    cached: bool = False
    seconds: float = 0.0

    @property
    def build_dir(self) -> Path:
        return self.plan.root / "build"


def cache_key(inputs: Mapping[str, Any]) -> str:
    """A short stable hash of the build inputs (order of keys does not matter)."""
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def _first_line(cmd: Sequence[str]) -> str | None:
    try:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0].strip() if lines else None


def toolchain_identity(backend: str) -> dict[str, str]:
    """Version lines of the compilers the build will use (part of the cache key)."""
    found: dict[str, str] = {}
    c = os.environ.get("CC") or shutil.which("cc") or "cc"
    cxx = os.environ.get("CXX") or shutil.which("c++") or "c++"
    for name, exe in (("cc", c), ("cxx", cxx)):
        found[name] = _first_line([*exe.split(), "--version"]) or "unknown"
    if backend == "cuda":
        nvcc = os.environ.get("CUDACXX") or shutil.which("nvcc") or "nvcc"
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=False)
        found["nvcc"] = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "unknown"
    cmake = find_cmake()
    found["cmake"] = _first_line([cmake, "--version"]) or "unknown"
    return found


def platform_id() -> str:
    return f"{sysconfig.get_platform()}/{platform.machine()}"


def find_cmake() -> str:
    found = shutil.which("cmake")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import cmake  # type: ignore[import-not-found]

        return str(Path(cmake.CMAKE_BIN_DIR) / "cmake")
    raise FileNotFoundError("cmake >= 3.14 is required to build llama.cpp: pip install cmake")


def plan_build(backend: str, mode: str = "native", *, tools: bool = False) -> BuildPlan:
    """Resolve options and toolchain for one build, without building anything."""
    options = backend_options.resolve_options(backend, mode, tools=tools)
    if backend == "cuda":
        options = dict(sorted({**options, **cuda_toolkit.extra_cmake_options()}.items()))
    return BuildPlan(
        backend=backend,
        mode=mode,
        tools=tools,
        options=options,
        generator="Ninja" if shutil.which("ninja") else None,
        source_sha256=llama_source.read_pin()["sha256"],
        patches=llama_source.patches_digest(),
        toolchain=toolchain_identity(backend),
        platform=platform_id(),
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock file so two processes never build the same key at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: builds of one key are not run concurrently there
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _run_logged(cmd: Sequence[str], logfile: Path, *, stream: bool) -> None:
    """Run ``cmd``, append its output to ``logfile``; echo it when ``stream``."""
    log("$ " + " ".join(cmd))
    with logfile.open("a") as out:
        proc = subprocess.Popen(
            list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            out.write(line)
            tail = [*tail[-59:], line]
            if stream:
                sys.stderr.write(line)
                sys.stderr.flush()
        code = proc.wait()
    if code != 0:
        sys.stderr.write("".join(tail))
        raise RuntimeError(f"command failed with exit code {code} (full log: {logfile})")


def _codemodel_targets(build_dir: Path) -> dict[str, dict[str, Any]]:
    """All targets CMake configured, via the CMake file API (name → target json)."""
    reply = build_dir / ".cmake" / "api" / "v1" / "reply"
    index_files = sorted(reply.glob("index-*.json"))
    if not index_files:
        raise RuntimeError(f"CMake wrote no file-API reply under {reply}")
    index = json.loads(index_files[-1].read_text())
    model_file = next(o["jsonFile"] for o in index["objects"] if o["kind"] == "codemodel")
    model = json.loads((reply / model_file).read_text())
    config = model["configurations"][0]
    return {t["name"]: json.loads((reply / t["jsonFile"]).read_text()) for t in config["targets"]}


def select_targets(targets: Mapping[str, Mapping[str, Any]], tools: bool) -> list[str]:
    """The library targets we ship (plus tool executables with ``tools``)."""
    wanted = [
        name
        for name, info in sorted(targets.items())
        if info.get("type") in LIBRARY_TYPES
        and (name in LIBRARY_TARGETS or name.startswith("ggml-"))
    ]
    missing = [name for name in LIBRARY_TARGETS if name not in wanted]
    if missing:
        raise RuntimeError(f"CMake did not configure the library targets {missing}")
    if tools:
        absent = [name for name in TOOL_TARGETS if name not in targets]
        if absent:
            raise RuntimeError(f"CMake did not configure the tool targets {absent}")
        wanted += list(TOOL_TARGETS)
    return wanted


def shipped_name(path: Path) -> str:
    """The file name the dynamic linker looks for (ELF SONAME / Mach-O install name)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True)
            match = re.search(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", out.stdout)
            if match:
                return match.group(1)
    elif sys.platform == "darwin":
        with contextlib.suppress(OSError):
            out = subprocess.run(["otool", "-D", str(path)], capture_output=True, text=True)
            lines = out.stdout.strip().splitlines()
            if len(lines) >= 2:
                return Path(lines[1].strip()).name
    return path.name


def _artifacts(info: Mapping[str, Any], build_dir: Path) -> list[Path]:
    paths = [build_dir / a["path"] for a in info.get("artifacts", [])]
    if sys.platform == "win32":  # skip import libraries
        paths = [p for p in paths if p.suffix.lower() == ".dll"]
    return paths


def _configure(plan: BuildPlan, source: Path, build_dir: Path) -> None:
    query = build_dir / ".cmake" / "api" / "v1" / "query"
    query.mkdir(parents=True, exist_ok=True)
    (query / "codemodel-v2").touch()
    cmd = [find_cmake(), "-S", str(source), "-B", str(build_dir)]
    if plan.generator and not (build_dir / "CMakeCache.txt").exists():
        cmd += ["-G", plan.generator]
    cmd += backend_options.cmake_args(plan.options)
    log(f"configuring {plan.backend}/{plan.mode} in {build_dir}")
    _run_logged(cmd, plan.root / "configure.log", stream=False)


def _load_result(plan: BuildPlan) -> BuildResult | None:
    record = plan.root / "result.json"
    if not record.is_file():
        return None
    data = json.loads(record.read_text())
    libraries = {name: plan.root / rel for name, rel in data["libraries"].items()}
    tools = {name: plan.root / rel for name, rel in data["tools"].items()}
    if not all(p.is_file() for p in [*libraries.values(), *tools.values()]):
        return None
    return BuildResult(plan, libraries, dict(data["targets"]), tools, cached=True)


def build_native(
    backend: str = "cpu",
    mode: str = "native",
    *,
    tools: bool = False,
    jobs: int | None = None,
    install_into: Path | None = None,
) -> BuildResult:
    """Build (or fetch from the cache) one backend's libraries; optionally install them."""
    started = time.monotonic()
    plan = plan_build(backend, mode, tools=tools)
    with _locked(plan.root.with_suffix(".lock")):
        result = _load_result(plan)
        if result is not None:
            log(f"{backend}/{mode} libraries come from the cache: {plan.root}")
        else:
            result = _build(plan, jobs)
    if install_into is not None:
        install(result, Path(install_into))
    result = dataclasses.replace(result, seconds=time.monotonic() - started)
    log(f"done in {result.seconds:.1f}s ({'cache hit' if result.cached else 'built'})")
    return result


def configure_only(backend: str, mode: str = "native", *, tools: bool = False) -> list[str]:
    """Run the CMake configure step alone (a check for GPU toolchains); return the targets."""
    plan = plan_build(backend, mode, tools=tools)
    with _locked(plan.root.with_suffix(".lock")):
        build_dir = plan.root / "build"
        build_dir.mkdir(parents=True, exist_ok=True)
        _configure(plan, llama_source.ensure_source(), build_dir)
        wanted = select_targets(_codemodel_targets(build_dir), plan.tools)
    log(f"configured {backend}/{mode}; targets to build: {' '.join(wanted)}")
    return wanted


def _build(plan: BuildPlan, jobs: int | None) -> BuildResult:
    source = llama_source.ensure_source()
    build_dir = plan.root / "build"
    build_dir.mkdir(parents=True, exist_ok=True)
    (plan.root / "inputs.json").write_text(json.dumps(plan.key_inputs(), indent=2) + "\n")
    _configure(plan, source, build_dir)
    targets = _codemodel_targets(build_dir)
    wanted = select_targets(targets, plan.tools)
    jobs = jobs or os.cpu_count() or 1
    log(f"compiling {len(wanted)} targets with {jobs} jobs: {' '.join(wanted)}")
    cmd = [find_cmake(), "--build", str(build_dir), "--config", "Release", "-j", str(jobs)]
    cmd += ["--target", *wanted]
    _run_logged(cmd, plan.root / "build.log", stream=True)
    libraries: dict[str, Path] = {}
    shipped_targets: dict[str, str] = {}
    tool_files: dict[str, Path] = {}
    for name in wanted:
        info = targets[name]
        if name in TOOL_TARGETS:
            tool_files[name] = _artifacts(info, build_dir)[0]
            continue
        for artifact in _artifacts(info, build_dir):
            real = artifact.resolve()
            ship = shipped_name(real)
            libraries[ship] = real
            shipped_targets[name] = ship
    record = {
        "inputs": plan.key_inputs(),
        "libraries": {n: str(p.relative_to(plan.root)) for n, p in libraries.items()},
        "targets": shipped_targets,
        "tools": {n: str(p.relative_to(plan.root)) for n, p in tool_files.items()},
    }
    (plan.root / "result.json").write_text(json.dumps(record, indent=2) + "\n")
    return BuildResult(plan, libraries, shipped_targets, tool_files)


def header_closure(
    include_dirs: Sequence[Path], roots: Sequence[str] = PUBLIC_HEADERS
) -> dict[str, Path]:
    """The public headers and every quoted header they include, found in ``include_dirs``."""
    found: dict[str, Path] = {}
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        path = next((d / name for d in include_dirs if (d / name).is_file()), None)
        if path is None:
            if name in roots:
                raise FileNotFoundError(f"public header {name} not found in {include_dirs}")
            continue  # a private header behind #ifdef; not part of the public surface
        found[name] = path
        pending += re.findall(r'^\s*#\s*include\s+"([^"]+)"', path.read_text(), re.MULTILINE)
    return found


def source_include_dirs(source: Path) -> list[Path]:
    return [source / "include", source / "ggml" / "include", source / "tools" / "mtmd"]


def _cmake_c_compiler(build_dir: Path) -> str | None:
    cache = build_dir / "CMakeCache.txt"
    if cache.is_file():
        match = re.search(r"^CMAKE_C_COMPILER:\w+=(.+)$", cache.read_text(), re.MULTILINE)
        if match:
            return match.group(1).strip()
    return None


def struct_layouts(result: BuildResult, source: Path) -> tuple[str, dict[str, Any]]:
    """``(cdef_sha256, layouts)`` for the cdef's by-value structs (cached per cdef hash)."""
    cdef = struct_probe.load_cdef()
    cached = result.plan.root / f"structs-{cdef.sha256[:16]}.json"
    if cached.is_file():
        return cdef.sha256, json.loads(cached.read_text())
    log(f"probing layouts of {len(cdef.by_value_structs)} structs against the pinned headers")
    fields = struct_probe.struct_fields(cdef.cdef, cdef.by_value_structs)
    layouts = struct_probe.run_probe(
        fields, source_include_dirs(source), compiler=_cmake_c_compiler(result.build_dir)
    )
    cached.write_text(json.dumps(layouts, indent=2) + "\n")
    return cdef.sha256, layouts


def llama_cpp_version(source: Path) -> str:
    text = (source / "CMakeLists.txt").read_text()
    parts = [
        re.search(rf"set\(LLAMA_VERSION_{p}\s+(\d+)\)", text) for p in ("MAJOR", "MINOR", "PATCH")
    ]
    return ".".join(m.group(1) for m in parts if m) or "unknown"


def make_manifest(result: BuildResult, source: Path) -> dict[str, Any]:
    """The ``_manifest.json`` content for a backend package."""
    pin = llama_source.read_pin()
    cdef_sha, layouts = struct_layouts(result, source)
    plan = result.plan
    return {
        "backend": plan.backend,
        "package_version": PACKAGE_VERSION,
        "llama_cpp": {
            "distribution": pin["distribution"],
            "version": pin["version"],
            "sha256": pin["sha256"],
            "upstream_version": llama_cpp_version(source),
            "patches": [p.name for p in llama_source.patch_files()],
            "patches_digest": plan.patches,
        },
        "cdef_sha256": cdef_sha,
        "structs": layouts,
        "build": {
            "mode": plan.mode,
            "ggml_backend_dl": plan.options.get("GGML_BACKEND_DL") == "ON",
            "cmake_options": backend_options.cmake_args(plan.options),
            "platform": plan.platform,
            "toolchain": plan.toolchain,
            "cache_key": plan.key,
        },
        "libraries": sorted(result.libraries),
        "targets": dict(sorted(result.targets.items())),
    }


def install(result: BuildResult, package_dir: Path) -> Path:
    """Copy libraries, headers and the manifest into ``package_dir``; return the manifest."""
    source = llama_source.ensure_source()
    manifest = make_manifest(result, source)
    package_dir.mkdir(parents=True, exist_ok=True)
    lib_dir, include_dir = package_dir / "lib", package_dir / "include"
    for folder in (lib_dir, include_dir):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
    for name, path in sorted(result.libraries.items()):
        shutil.copy2(path, lib_dir / name)
    headers = header_closure(source_include_dirs(source))
    for name, path in sorted(headers.items()):
        shutil.copy2(path, include_dir / name)
    licenses = package_dir / "licenses"
    shutil.rmtree(licenses, ignore_errors=True)
    licenses.mkdir()
    shutil.copy2(source / "LICENSE", licenses / "LICENSE-llama.cpp")
    for extra in sorted((source / "licenses").glob("*")):
        shutil.copy2(extra, licenses / extra.name)
    manifest_path = package_dir / "_manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    size = sum(p.stat().st_size for p in lib_dir.iterdir()) / 1e6
    log(
        f"installed {len(result.libraries)} libraries ({size:.1f} MB), {len(headers)} headers "
        f"and _manifest.json into {package_dir}"
    )
    return manifest_path


def tool_path(name: str, backend: str = "cpu", mode: str = "native") -> Path:
    """Path of a benchmark tool built with ``--tools`` (raises if that build is not cached)."""
    if name not in TOOL_TARGETS:
        raise ValueError(f"tool must be one of {', '.join(TOOL_TARGETS)}; got {name!r}")
    plan = plan_build(backend, mode, tools=True)
    result = _load_result(plan)
    if result is None or name not in result.tools:
        raise FileNotFoundError(
            f"{name} is not built for {backend}/{mode}; run: python build_scripts/"
            f"build_native.py --backend {backend} --mode {mode} --tools"
        )
    return result.tools[name]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=backend_options.BACKENDS, default="cpu")
    parser.add_argument("--mode", choices=backend_options.MODES, default="native")
    parser.add_argument("--tools", action="store_true", help="also build the benchmark tools")
    parser.add_argument("--jobs", type=int, default=None, help="parallel compile jobs")
    parser.add_argument(
        "--install-into",
        type=Path,
        default=None,
        metavar="DIR",
        help="backend import package folder to receive lib/, include/, manifest",
    )
    parser.add_argument("--print-key", action="store_true", help="print the cache key and exit")
    parser.add_argument(
        "--configure-only", action="store_true", help="run the CMake configure step and exit"
    )
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs must be a positive integer")
    if args.print_key:
        plan = plan_build(args.backend, args.mode, tools=args.tools)
        print(plan.key, plan.root)
        return 0
    if args.configure_only:
        configure_only(args.backend, args.mode, tools=args.tools)
        return 0
    result = build_native(
        args.backend, args.mode, tools=args.tools, jobs=args.jobs, install_into=args.install_into
    )
    for name, path in sorted(result.tools.items()):
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
