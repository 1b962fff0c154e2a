"""Find, check and open a native backend (libllama, libggml*, libmtmd).

Backends are distributions ``sipppy-backend-<name>`` registering their import package under
the entry-point group ``sipp.backends``. :func:`load_backend` picks one (the ``backend``
argument first, then ``SIPP_PYTHON_BACKEND``, else in automatic order), checks its manifest
against our cdef and version, opens its libraries and records why other backends were
skipped.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module, metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from sipp._version import __version__
from sipp.errors import BackendError
from sipp.native._cdef import BY_VALUE_STRUCTS, cdef_sha256
from sipp.native._env import (
    BACKEND_ENV,
    LIBRARY_PATH_ENV,
    auto_order,
    install_hint,
    parse_backend,
    requested_backend,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "LoadedBackend",
    "check_manifest",
    "installed_backends",
    "library_file",
    "load_backend",
]

ENTRY_POINT_GROUP = "sipp.backends"
_GPU_REG_NAMES = {"cuda": ("cuda",), "vulkan": ("vulkan",), "metal": ("metal", "mtl")}
# The system library each GPU backend needs from the driver, per platform. Checked before a
# GPU package's libraries are opened: once opened, its ggml stays mapped (registries keep
# their modules), and a CPU package loaded after it would share that ggml.
_DRIVER_LIBRARIES: dict[str, dict[str, tuple[str, ...]]] = {
    "cuda": {"linux": ("libcuda.so.1",), "win32": ("nvcuda.dll",)},
    "vulkan": {"linux": ("libvulkan.so.1",), "win32": ("vulkan-1.dll",)},
}


class NoDeviceError(BackendError):
    """A GPU backend is installed and intact, but this machine has no driver or device."""


def missing_driver(backend: str, platform: str | None = None) -> str | None:
    """Why ``backend`` cannot reach a GPU here, found without opening its libraries; or None."""
    plat = platform or sys.platform
    names = _DRIVER_LIBRARIES.get(backend, {}).get("linux" if plat.startswith("linux") else plat)
    if not names:
        return None
    for name in names:
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return None
    return f"no {backend} driver on this machine ({' or '.join(names)} cannot be loaded)"


@dataclass
class LoadedBackend:
    """An opened backend: its name, where its libraries are and how it was chosen."""

    name: str
    library_dir: Path
    lib: Any
    handles: list[Any]
    selected_by: str
    package_version: str | None = None
    manifest: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    ggml_backend_dl: bool = False


def library_file(library_dir: Path, stem: str, platform: str | None = None) -> Path:
    """The file of library ``stem`` (``llama``, ``ggml-base``...) in ``library_dir``."""
    plat = sys.platform if platform is None else platform
    if plat == "win32":
        return library_dir / f"{stem}.dll"
    if plat == "darwin":
        return library_dir / f"lib{stem}.dylib"
    return library_dir / f"lib{stem}.so"


def installed_backends() -> dict[str, metadata.EntryPoint]:
    """Backend entry points by name (group ``sipp.backends``)."""
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name.lower(), ep)
    return found


def check_manifest(manifest: dict[str, Any], ffi: Any, *, source: str) -> None:
    """Refuse a backend built for another cdef, struct layout or sipp version."""
    ours = cdef_sha256()
    theirs = manifest.get("cdef_sha256")
    if theirs != ours:
        raise BackendError(
            f"Backend {source} was built for a different cdef (manifest cdef_sha256 "
            f"{theirs!r}, this sipp {ours!r}); install matching versions of sipppy and "
            "the backend package"
        )
    version = manifest.get("package_version")
    if version != __version__:
        raise BackendError(
            f"Backend {source} is version {version!r} but sipp is version {__version__!r}; "
            "install the backend package built for this sipp version"
        )
    structs = manifest.get("structs")
    if not isinstance(structs, dict):
        raise BackendError(f"Backend {source}: manifest has no 'structs' layout table")
    for tag in BY_VALUE_STRUCTS:
        entry = structs.get(tag)
        if not isinstance(entry, dict):
            raise BackendError(f"Backend {source}: manifest has no layout for struct {tag}")
        ctype = f"struct {tag}"
        size = ffi.sizeof(ctype)
        if entry.get("size") != size:
            raise BackendError(
                f"Backend {source}: sizeof(struct {tag}) is {entry.get('size')} in the "
                f"built library but {size} in sipp's cdef (layout drift)"
            )
        for name, offset in dict(entry.get("offsets", {})).items():
            try:
                ours_off = ffi.offsetof(ctype, name)
            except (KeyError, TypeError):
                raise BackendError(
                    f"Backend {source}: struct {tag} has field {name!r} that sipp's cdef "
                    "does not declare (layout drift)"
                ) from None
            if ours_off != offset:
                raise BackendError(
                    f"Backend {source}: offsetof(struct {tag}, {name}) is {offset} in the "
                    f"built library but {ours_off} in sipp's cdef (layout drift)"
                )


def _open_libraries(ffi: Any, library_dir: Path) -> tuple[Any, list[Any]]:
    """dlopen ggml-base, ggml(-cpu), llama from ``library_dir`` (dependencies first)."""
    llama = library_file(library_dir, "llama")
    if not llama.is_file():
        raise BackendError(f"no {llama.name} in {library_dir}")
    handles: list[Any] = []
    try:
        for stem in ("ggml-base", "ggml-cpu", "ggml"):
            path = library_file(library_dir, stem)
            if path.is_file():
                handles.append(ffi.dlopen(str(path)))
        lib = ffi.dlopen(str(llama))
    except OSError as exc:
        _close_handles(ffi, handles)
        raise BackendError(f"cannot open the libraries in {library_dir}: {exc}") from exc
    handles.append(lib)
    return lib, handles


def _close_handles(ffi: Any, handles: list[Any]) -> None:
    for handle in reversed(handles):
        try:
            ffi.dlclose(handle)
        except (OSError, ValueError):
            pass


def _ensure_devices(lib: Any, ffi: Any, library_dir: Path, dl: bool) -> bool:
    """Load dynamic ggml backend modules when needed; return whether we did."""
    if dl or lib.ggml_backend_reg_count() == 0:
        lib.ggml_backend_load_all_from_path(str(library_dir).encode())
        return True
    return False


def _gpu_present(lib: Any, ffi: Any, backend: str) -> bool:
    wanted = _GPU_REG_NAMES.get(backend, (backend,))
    gpu_types = (lib.GGML_BACKEND_DEVICE_TYPE_GPU, lib.GGML_BACKEND_DEVICE_TYPE_IGPU)
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        reg = lib.ggml_backend_dev_backend_reg(dev)
        reg_name = ffi.string(lib.ggml_backend_reg_name(reg)).decode(errors="replace").lower()
        if lib.ggml_backend_dev_type(dev) in gpu_types and any(w in reg_name for w in wanted):
            return True
    return False


def _module_manifest(module: ModuleType) -> dict[str, Any]:
    getter = getattr(module, "manifest", None)
    if not callable(getter):
        raise BackendError(f"{module.__name__} has no manifest() function")
    manifest = getter()
    if not isinstance(manifest, dict):
        raise BackendError(f"{module.__name__}.manifest() did not return a dict")
    return manifest


def _open_runtime(ffi: Any, module: ModuleType) -> list[Any]:
    """Open the runtime libraries a backend package names (CUDA runtime, cuBLAS) globally."""
    getter = getattr(module, "runtime_libraries", None)
    paths = [Path(p) for p in getter()] if callable(getter) else []
    handles: list[Any] = []
    try:
        for path in paths:
            if sys.platform == "win32":
                os.add_dll_directory(str(path.parent))
            handles.append(ffi.dlopen(str(path), ffi.RTLD_GLOBAL | ffi.RTLD_NOW))
    except OSError as exc:
        _close_handles(ffi, handles)
        raise BackendError(f"cannot open the runtime library {path}: {exc}") from exc
    return handles


def _open_package(
    ffi: Any, name: str, ep: metadata.EntryPoint, prepare: Callable[[Any], None]
) -> LoadedBackend:
    """Import, check and open one installed backend package (raises ``BackendError``)."""
    try:
        module = ep.load()
        if not isinstance(module, ModuleType):
            module = import_module(ep.value.split(":")[0])
    except Exception as exc:
        raise BackendError(f"cannot import {ep.value}: {exc}") from exc
    manifest = _module_manifest(module)
    check_manifest(manifest, ffi, source=f"{name} ({module.__name__})")
    reason = missing_driver(name)
    if reason is not None:
        raise NoDeviceError(reason)
    library_dir = Path(module.library_dir())
    runtime = _open_runtime(ffi, module)
    try:
        lib, handles = _open_libraries(ffi, library_dir)
    except BackendError:
        _close_handles(ffi, runtime)
        raise
    handles[:0] = runtime
    build = manifest.get("build") or {}
    prepare(lib)
    dl = _ensure_devices(lib, ffi, library_dir, bool(build.get("ggml_backend_dl")))
    if name != "cpu" and not _gpu_present(lib, ffi, name):
        _close_handles(ffi, handles)
        raise NoDeviceError(
            f"the {name} libraries loaded but found no {name} device (driver or GPU missing)"
        )
    return LoadedBackend(
        name=name,
        library_dir=library_dir,
        lib=lib,
        handles=handles,
        selected_by="",
        package_version=str(getattr(module, "__version__", manifest.get("package_version"))),
        manifest=manifest,
        ggml_backend_dl=dl,
    )


def _open_override(ffi: Any, raw: str, prepare: Callable[[Any], None]) -> LoadedBackend:
    library_dir = Path(raw).expanduser()
    if not library_dir.is_dir():
        raise BackendError(f"{LIBRARY_PATH_ENV}={raw} is not a directory")
    warnings: list[str] = []
    manifest: dict[str, Any] | None = None
    manifest_file = library_dir / "_manifest.json"
    if manifest_file.is_file():
        try:
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot read {manifest_file}: {exc}") from exc
        assert manifest is not None
        check_manifest(manifest, ffi, source=str(library_dir))
    else:
        warnings.append(
            f"{LIBRARY_PATH_ENV}: no _manifest.json in {library_dir}; struct layouts and "
            "versions were not checked"
        )
    lib, handles = _open_libraries(ffi, library_dir)
    prepare(lib)
    build = (manifest or {}).get("build") or {}
    dl = _ensure_devices(lib, ffi, library_dir, bool(build.get("ggml_backend_dl")))
    name = str((manifest or {}).get("backend") or "")
    if not name:
        name = next((b for b in ("cuda", "vulkan", "metal") if _gpu_present(lib, ffi, b)), "cpu")
    return LoadedBackend(
        name=name,
        library_dir=library_dir,
        lib=lib,
        handles=handles,
        selected_by=f"env {LIBRARY_PATH_ENV}",
        package_version=(manifest or {}).get("package_version"),
        manifest=manifest,
        warnings=warnings,
        ggml_backend_dl=dl,
    )


def load_backend(
    ffi: Any,
    prepare: Callable[[Any], None],
    environ: Mapping[str, str] | None = None,
    platform: str | None = None,
    backend: str | None = None,
) -> LoadedBackend:
    """Select and open a backend; ``prepare(lib)`` runs right after dlopen (log callback).

    ``backend`` (an explicit choice, ``None`` or ``"auto"`` for none) is checked before
    ``SIPP_PYTHON_BACKEND`` in ``environ``; a library folder named by
    ``SIPP_PYTHON_NATIVE_LIBRARY_PATH`` overrides both (a developer's own build).
    """
    env = os.environ if environ is None else environ
    override = env.get(LIBRARY_PATH_ENV, "").strip()
    if override:
        return _open_override(ffi, override, prepare)
    chosen = parse_backend(backend) if backend is not None else "auto"
    if chosen != "auto":
        requested = chosen
        selected_by = f"argument backend={chosen}"
        without = "Choose another backend (or auto)"
    else:
        requested = requested_backend(dict(env))
        selected_by = f"env {BACKEND_ENV}={requested}"
        without = f"Unset {BACKEND_ENV} (or choose cpu)"
    installed = installed_backends()
    if requested != "auto":
        ep = installed.get(requested)
        if ep is None:
            names = ", ".join(sorted(installed)) or "none"
            raise BackendError(
                f"{requested} backend is not installed (installed backends: {names}). "
                f"Install it with: {install_hint(requested)}"
            )
        try:
            loaded = _open_package(ffi, requested, ep, prepare)
        except NoDeviceError as exc:
            raise BackendError(
                f"{requested} backend is not usable: {exc}. {without} to run without it"
            ) from exc
        except BackendError as exc:
            raise BackendError(
                f"{requested} backend is not usable: {exc}. "
                f"Reinstall it with: {install_hint(requested)}"
            ) from exc
        loaded.selected_by = selected_by
        return loaded
    warnings: list[str] = []
    for name in auto_order(platform):
        ep = installed.get(name)
        if ep is None:
            warnings.append(f"{name}: not installed ({install_hint(name)})")
            continue
        try:
            loaded = _open_package(ffi, name, ep, prepare)
        except BackendError as exc:
            warnings.append(f"{name}: {exc}")
            continue
        loaded.selected_by = "auto"
        loaded.warnings = warnings
        return loaded
    raise BackendError(
        f"No usable native backend for {sys.platform}. Tried in order:\n  " + "\n  ".join(warnings)
    )
