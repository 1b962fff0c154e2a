"""Quiet aborts: ggml's fatal paths print their message and abort, without forking gdb.

On a failed ``GGML_ASSERT`` or an uncaught C++ exception, the pinned ggml prints a backtrace
by forking a child that execs gdb/lldb and waits for it; in an embedding process that child
can block on its pipe, and the gdb attach is no place for a server. ggml offers two hooks
that need no environment variable (``GGML_NO_BACKTRACE`` is read with ``getenv``, and we
never write ``os.environ``):

* ``ggml_set_abort_callback``: our callback writes the assert message to stderr; ggml then
  calls ``abort()`` itself, without the backtrace.
* the C++ terminate handler ggml installs at load time (``ggml_uncaught_exception``) is put
  back to libstdc++'s verbose handler (prints the exception's ``what()``, then aborts) --
  only when the current handler is ggml's, so an embedding application's own handler stays.

Both use a private ``FFI`` so the backend's cdef (and its manifest hash) is untouched.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from cffi import FFI

__all__ = ["install_quiet_aborts", "quiet_state"]

_CDEF = """
typedef void (*ggml_abort_callback_t)(const char * error_message);
ggml_abort_callback_t ggml_set_abort_callback(ggml_abort_callback_t callback);
"""
_CXX_CDEF = """
typedef void (*sipp_terminate_handler)(void);
sipp_terminate_handler _ZSt13set_terminatePFvvE(sipp_terminate_handler handler);
sipp_terminate_handler _ZSt13get_terminatev(void);
void _ZN9__gnu_cxx27__verbose_terminate_handlerEv(void);
typedef struct { const char * dli_fname; void * dli_fbase; const char * dli_sname;
                 void * dli_saddr; } sipp_dl_info;
int dladdr(const void * addr, sipp_dl_info * info);
"""

_ffi = FFI()
_ffi.cdef(_CDEF)
_cxx_ffi = FFI()
_cxx_ffi.cdef(_CXX_CDEF)
_kept: list[Any] = []  # handles and the callback, alive for the life of the process
_state = {"abort_callback": False, "terminate_handler": "unchanged"}


def _on_abort(message: Any) -> None:
    text = _ffi.string(message).decode("utf-8", "replace") if message else "(no message)"
    try:
        os.write(2, f"llama.cpp fatal error (the process aborts): {text}\n".encode())
    except OSError:
        pass


def install_quiet_aborts(ggml_base: Path) -> dict[str, Any]:
    """Install both hooks for the ggml in ``ggml_base`` (the libggml-base file already
    loaded by the backend); returns :func:`quiet_state`. Never raises: a platform without
    a hook keeps ggml's default for it."""
    try:
        lib = _ffi.dlopen(str(ggml_base))
        callback = _ffi.callback("ggml_abort_callback_t", _on_abort)
        lib.ggml_set_abort_callback(callback)
        _kept.extend([lib, callback])
        _state["abort_callback"] = True
    except (OSError, AttributeError):
        pass
    if sys.platform.startswith("linux"):
        _state["terminate_handler"] = _restore_terminate_handler(ggml_base.name)
    return quiet_state()


def _restore_terminate_handler(ggml_name: str) -> str:
    try:
        cxx = _cxx_ffi.dlopen("libstdc++.so.6")
        libc = _cxx_ffi.dlopen(None)
        current = cxx._ZSt13get_terminatev()
        info = _cxx_ffi.new("sipp_dl_info *")
        if current == _cxx_ffi.NULL or not libc.dladdr(current, info) or not info.dli_fname:
            return "unchanged"
        owner = Path(_cxx_ffi.string(info.dli_fname).decode(errors="replace")).name
        if owner != ggml_name:
            return f"unchanged ({owner})"
        verbose = _cxx_ffi.addressof(cxx, "_ZN9__gnu_cxx27__verbose_terminate_handlerEv")
        cxx._ZSt13set_terminatePFvvE(verbose)
        _kept.append(cxx)
        return "libstdc++ verbose"
    except (OSError, AttributeError):
        return "unchanged"


def quiet_state() -> dict[str, Any]:
    """Which hooks are in place: ``abort_callback`` (bool), ``terminate_handler`` (str)."""
    return dict(_state)
