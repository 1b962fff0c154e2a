"""``backend_info()``: what was loaded, from where, why, and which devices it sees."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from sipp._version import __version__
from sipp.native._lib import Native, get_native
from sipp.native._loader import library_file

__all__ = ["backend_info"]

_DEVICE_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel", 4: "meta"}


def _text(ffi: Any, ptr: Any) -> str | None:
    return None if ptr == ffi.NULL else ffi.string(ptr).decode("utf-8", "replace")


def _devices(native: Native) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ffi, lib = native.ffi, native.lib
    props = ffi.new("struct ggml_backend_dev_props *")
    devices: list[dict[str, Any]] = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        lib.ggml_backend_dev_get_props(dev, props)
        reg = lib.ggml_backend_dev_backend_reg(dev)
        devices.append(
            {
                "name": _text(ffi, props.name),
                "description": _text(ffi, props.description),
                "type": _DEVICE_TYPES.get(int(props.type), str(int(props.type))),
                "backend": _text(ffi, lib.ggml_backend_reg_name(reg)),
                "device_id": _text(ffi, props.device_id),
                "memory_free": int(props.memory_free),
                "memory_total": int(props.memory_total),
            }
        )
    backends = []
    for i in range(lib.ggml_backend_reg_count()):
        reg = lib.ggml_backend_reg_get(i)
        backends.append(
            {
                "name": _text(ffi, lib.ggml_backend_reg_name(reg)),
                "devices": int(lib.ggml_backend_reg_dev_count(reg)),
            }
        )
    return backends, devices


def _loaded_cpu_variant() -> str | None:
    """Which ``libggml-cpu-<variant>`` the process mapped (Linux /proc; else None)."""
    maps = Path("/proc/self/maps")
    if not maps.is_file():
        return None
    try:
        text = maps.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        name = line.rsplit("/", 1)[-1]
        if name.startswith("libggml-cpu-") and ".so" in name:
            return name.split(".so", 1)[0].removeprefix("libggml-cpu-")
    return None


def _cpu_features(system_info: str) -> list[str]:
    features: list[str] = []
    for part in system_info.split("|"):
        key, sep, value = part.rpartition(":")[2].partition("=")
        if sep and value.strip() == "1":
            features.append(key.strip())
    return features


def backend_info() -> dict[str, Any]:
    """Describe the native backend, loading it first if needed.

    Keys: ``backend``, ``selected_by``, ``skipped`` (why other backends were not used),
    ``warnings``, ``library_dir``, ``libllama``, ``package_version``, ``sipp_version``,
    ``llama_cpp`` (``version``, ``distribution``, ``sha256`` from the manifest),
    ``ggml_backend_dl``, ``cpu`` (``variant``, ``features``), ``backends``, ``devices``,
    ``gpu_offload``, ``system_info``.
    """
    native = get_native()
    ffi, lib, loaded = native.ffi, native.lib, native.backend
    manifest = loaded.manifest or {}
    llama_cpp = dict(manifest.get("llama_cpp") or {})
    llama_cpp.setdefault("version", _text(ffi, lib.llama_version()))
    system_info = _text(ffi, lib.llama_print_system_info()) or ""
    backends, devices = _devices(native)
    variant = _loaded_cpu_variant() if loaded.ggml_backend_dl else "native"
    return {
        "backend": loaded.name,
        "selected_by": loaded.selected_by,
        "skipped": [w for w in loaded.warnings if not w.startswith("SIPP_")],
        "warnings": list(loaded.warnings),
        "library_dir": str(loaded.library_dir),
        "libllama": str(library_file(loaded.library_dir, "llama")),
        "package_version": loaded.package_version,
        "sipp_version": __version__,
        "llama_cpp": llama_cpp,
        "build": dict(manifest.get("build") or {}),
        "ggml_backend_dl": loaded.ggml_backend_dl,
        "cpu": {"variant": variant, "features": _cpu_features(system_info)},
        "backends": backends,
        "devices": devices,
        "gpu_offload": bool(lib.llama_supports_gpu_offload()),
        "platform": sys.platform,
        "system_info": system_info.strip(),
    }
