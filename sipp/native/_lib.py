"""The process-wide native state: the cffi ``FFI``, the opened backend, logging.

Nothing is opened at import time. :func:`get_native` opens the backend on first use (under a
lock), installs the log callback and quiet aborts (no gdb fork, see ``_quiet``) once, calls
``llama_backend_init()`` once and keeps it all for the life of the process.
:func:`select_backend` names the backend to open before that (an argument, so no caller has
to write ``SIPP_PYTHON_BACKEND`` into the environment).
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from typing import Any

from cffi import FFI

from sipp.errors import BackendError
from sipp.native._cdef import CDEF, PATCH_CDEF
from sipp.native._env import parse_backend
from sipp.native._loader import LoadedBackend, library_file, load_backend
from sipp.native._quiet import install_quiet_aborts

__all__ = [
    "LOG_LEVELS",
    "Native",
    "get_ffi",
    "get_native",
    "recent_log_errors",
    "select_backend",
    "set_log_level",
    "set_log_quiet",
]

LOG_LEVELS: dict[str, int] = {"none": 99, "error": 4, "warn": 3, "info": 2, "debug": 1}
"""Names accepted by :func:`set_log_level` and the minimum ggml level each prints."""

_lock = threading.Lock()
_ffi: FFI | None = None
_native: Native | None = None
_choice: str | None = None  # select_backend(); None: SIPP_PYTHON_BACKEND or automatic
_threshold = [LOG_LEVELS["none"]]  # mutable cell read by the callback
_last_level = [0]
_errors: deque[str] = deque(maxlen=16)  # recent error/warning lines, for error messages


def get_ffi() -> FFI:
    """The shared ``FFI`` with our declarations (parsed once, no library opened)."""
    global _ffi
    if _ffi is None:
        with _lock:
            if _ffi is None:
                ffi = FFI()
                ffi.cdef(CDEF)
                ffi.cdef(PATCH_CDEF)
                _ffi = ffi
    return _ffi


def _log_callback(level: int, text: Any, _user: Any) -> None:
    # Trivial by design: it runs on llama.cpp's threads for every log line.
    if level == 5:  # GGML_LOG_LEVEL_CONT continues the previous line
        level = _last_level[0]
    else:
        _last_level[0] = level
    if level >= 3 or level >= _threshold[0]:
        line = _ffi.string(text).decode("utf-8", "replace") if _ffi is not None else ""
        if level >= 3:
            _errors.append(line)
        if level >= _threshold[0]:
            sys.stderr.write(line)


class Native:
    """The opened backend: ``ffi``, ``lib`` (libllama handle) and lazily ``mtmd``."""

    def __init__(self, ffi: FFI, backend: LoadedBackend, callback: Any) -> None:
        self.ffi = ffi
        self.backend = backend
        self.lib: Any = backend.lib
        self._callback = callback  # kept alive for the process
        self._mtmd: Any = None

    @property
    def mtmd(self) -> Any:
        """The libmtmd handle (vision), opened on first use."""
        if self._mtmd is None:
            with _lock:
                if self._mtmd is None:
                    path = library_file(self.backend.library_dir, "mtmd")
                    if not path.is_file():
                        raise BackendError(
                            f"the {self.backend.name} backend has no {path.name} "
                            f"in {self.backend.library_dir}: vision input is unavailable"
                        )
                    try:
                        handle = self.ffi.dlopen(str(path))
                    except OSError as exc:
                        raise BackendError(f"cannot open {path}: {exc}") from exc
                    handle.mtmd_log_set(self._callback, self.ffi.NULL)
                    self.backend.handles.append(handle)
                    self._mtmd = handle
        return self._mtmd


def select_backend(name: str) -> None:
    """Open backend ``name`` (cpu, cuda, metal, vulkan; auto: undo a choice) on first use,
    instead of what ``SIPP_PYTHON_BACKEND`` says.

    One process opens one backend: once it is open, asking for another raises
    ``BackendError`` (asking for the open one, or auto, is a no-op). An invalid name raises
    ``ConfigurationError``.
    """
    global _choice
    value = parse_backend(name)
    with _lock:
        if _native is not None:
            loaded = _native.backend.name
            if value not in ("auto", loaded):
                raise BackendError(
                    f"the {loaded} backend is already loaded in this process, so the {value} "
                    "backend cannot be used: one process loads one native backend"
                )
            return
        _choice = None if value == "auto" else value


def get_native() -> Native:
    """Open the backend if needed and return the process-wide :class:`Native`."""
    native = _native
    if native is not None:
        return native
    return _open()


def _open() -> Native:
    global _native
    ffi = get_ffi()
    with _lock:
        if _native is not None:
            return _native
        callback = ffi.callback("ggml_log_callback", _log_callback, onerror=_ignore_error)

        def prepare(lib: Any) -> None:
            lib.llama_log_set(callback, ffi.NULL)

        backend = load_backend(ffi, prepare, backend=_choice)
        install_quiet_aborts(library_file(backend.library_dir, "ggml-base"))
        backend.lib.llama_backend_init()
        _native = Native(ffi, backend, callback)
        return _native


def _ignore_error(*_args: Any) -> bool:
    return True


def set_log_level(level: str) -> None:
    """Show llama.cpp log lines at ``level`` or above: none (default), error, warn, info, debug."""
    key = level.strip().lower() if isinstance(level, str) else level
    if key not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    _threshold[0] = LOG_LEVELS[key]


def set_log_quiet(quiet: bool) -> None:
    """Silence llama.cpp logging (``True``, the default) or show warnings and errors."""
    set_log_level("none" if quiet else "warn")


def recent_log_errors(clear: bool = False) -> list[str]:
    """The last warning/error lines llama.cpp logged (used to explain NULL returns)."""
    lines = [line.strip() for line in _errors if line.strip()]
    if clear:
        _errors.clear()
    return lines
