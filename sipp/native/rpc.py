"""ggml's RPC backend: offload a model's layers to ``sipp rpc-server`` workers on other hosts.

A worker (:func:`serve_rpc`) exposes its local devices over TCP; a model whose
``placement.devices`` lists ``rpc://host:port`` entries gets one offload device per remote
device (:func:`rpc_devices`), and libllama splits the layers across them like GPUs.

The pinned ggml aborts the process when an endpoint does not parse or cannot be reached, so
both are checked here first and refused with a Python error. The protocol has no
authentication and no encryption: workers bind to loopback unless told otherwise.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from sipp.native._lib import get_native

__all__ = [
    "RPC_SCHEME",
    "is_loopback_host",
    "is_rpc_device",
    "parse_rpc_endpoint",
    "rpc_available",
    "rpc_devices",
    "serve_rpc",
]

RPC_SCHEME = "rpc://"
_CONNECT_TIMEOUT_S = 5.0


def is_rpc_device(name: object) -> bool:
    """True for a ``placement.devices`` entry naming a remote worker (``rpc://host:port``)."""
    return isinstance(name, str) and name.startswith(RPC_SCHEME)


def parse_rpc_endpoint(name: str) -> tuple[str, int]:
    """``(host, port)`` of ``rpc://host:port`` (or a bare ``host:port``); ``ValueError``
    naming what is wrong otherwise. IPv6 hosts are written in brackets: ``rpc://[::1]:50052``.
    """
    text = name[len(RPC_SCHEME):] if name.startswith(RPC_SCHEME) else name
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text:
        raise ValueError(f"{name!r} is not an RPC endpoint: expected rpc://host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{name!r}: the port must be a number from 1 to 65535")
    if any(ch.isspace() or ch in "/?#@" for ch in host):
        raise ValueError(f"{name!r}: {host!r} is not a host name or address")
    return host, int(port_text)


def _endpoint_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback_host(host: str) -> bool:
    """True when ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _rpc_reg(native: Any) -> Any:
    reg = native.lib.ggml_backend_reg_by_name(b"RPC")
    if reg == native.ffi.NULL:
        raise ValueError(
            f"the loaded backend ({native.backend.name}) was built without ggml's RPC backend; "
            "install a sipppy backend package built with GGML_RPC=ON (0.2.0 or later)"
        )
    return reg


def _proc(native: Any, name: str, signature: str) -> Any:
    reg = _rpc_reg(native)
    address = native.lib.ggml_backend_reg_get_proc_address(reg, name.encode())
    if address == native.ffi.NULL:
        raise ValueError(f"the loaded RPC backend does not export {name}")
    return native.ffi.cast(signature, address)


def rpc_available() -> bool:
    """True when the loaded backend carries ggml's RPC backend (opens the backend)."""
    native = get_native()
    return bool(native.lib.ggml_backend_reg_by_name(b"RPC") != native.ffi.NULL)


def _check_reachable(name: str, host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ValueError(
            f"cannot reach the RPC worker {name!r}: {exc.strerror or exc} "
            "(start one with `sipp rpc-server --port N` on that host)"
        ) from None


def rpc_devices(name: str) -> list[Any]:
    """The ``ggml_backend_dev_t`` handles of the worker at ``rpc://host:port``.

    The worker is registered once per process (ggml keeps it for the process's life).
    """
    host, port = parse_rpc_endpoint(name)
    _check_reachable(name, host, port)
    native = get_native()
    ffi, lib = native.ffi, native.lib
    add_server = _proc(
        native, "ggml_backend_rpc_add_server", "ggml_backend_reg_t (*)(const char *)"
    )
    reg = add_server(_endpoint_text(host, port).encode())
    if reg == ffi.NULL:
        raise ValueError(f"the RPC worker {name!r} reports no devices")
    count = int(lib.ggml_backend_reg_dev_count(reg))
    return [lib.ggml_backend_reg_dev_get(reg, i) for i in range(count)]


def _local_devices(native: Any, names: list[str] | None) -> list[Any]:
    ffi, lib = native.ffi, native.lib
    found: dict[str, Any] = {}
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        reg = lib.ggml_backend_dev_backend_reg(dev)
        if reg != ffi.NULL and ffi.string(lib.ggml_backend_reg_name(reg)) == b"RPC":
            continue
        found[ffi.string(lib.ggml_backend_dev_name(dev)).decode("utf-8", "replace")] = dev
    if names:
        missing = [n for n in names if n not in found]
        if missing:
            raise ValueError(
                f"unknown device {missing[0]!r}; this backend has: {', '.join(found) or 'none'}"
            )
        return [found[n] for n in names]
    gpus = [d for d in found.values() if int(lib.ggml_backend_dev_type(d)) in (1, 2)]
    cpus = [d for d in found.values() if int(lib.ggml_backend_dev_type(d)) == 0]
    return gpus or cpus[:1]


def serve_rpc(
    host: str,
    port: int,
    *,
    n_threads: int,
    devices: list[str] | None = None,
    cache_dir: str | None = None,
) -> None:
    """Serve this host's devices to remote models until the process is killed.

    Blocks in ggml's accept loop (it never returns on success); run it in a process of its
    own. ``devices`` picks local devices by ggml name (default: the GPUs, else the CPU).
    """
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be from 1 to 65535, got {port}")
    if n_threads < 1:
        raise ValueError(f"threads must be >= 1, got {n_threads}")
    native = get_native()
    ffi = native.ffi
    start = _proc(
        native,
        "ggml_backend_rpc_start_server",
        "void (*)(const char *, const char *, size_t, size_t, ggml_backend_dev_t *)",
    )
    handles = _local_devices(native, devices)
    array = ffi.new("ggml_backend_dev_t[]", handles)
    cache = ffi.new("char[]", cache_dir.encode()) if cache_dir else ffi.NULL
    start(_endpoint_text(host, port).encode(), cache, n_threads, len(handles), array)
    raise RuntimeError(f"the RPC server on {_endpoint_text(host, port)} stopped (bind failed?)")
