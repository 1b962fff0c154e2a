"""A fatal error inside ggml prints one line and aborts: no gdb fork, no backtrace dump."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

_PROGRAM = """
import sys
from cffi import FFI
from sipp.native import get_native
from sipp.native._loader import library_file
native = get_native()
ffi = FFI()
ffi.cdef("void ggml_abort(const char * file, int line, const char * fmt, ...);"
         "void _ZSt9terminatev(void);")
if sys.argv[1] == "assert":
    lib = ffi.dlopen(str(library_file(native.backend.library_dir, "ggml-base")))
    lib.ggml_abort(b"model.cpp", 12, b"GGML_ASSERT(n_layer > %d) failed", ffi.cast("int", 0))
else:
    ffi.dlopen("libstdc++.so.6")._ZSt9terminatev()
"""


def _run(kind: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _PROGRAM, kind],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip


def test_failed_assert_prints_its_message_and_aborts_without_a_backtrace(native: Any) -> None:
    proc = _run("assert")
    assert proc.returncode == -signal.SIGABRT
    # ggml's default handler forks gdb (or dumps backtrace_symbols) after the message
    assert proc.stderr.strip().splitlines() == [
        "llama.cpp fatal error (the process aborts): model.cpp:12: GGML_ASSERT(n_layer > 0) failed"
    ]


def test_uncaught_cxx_exception_aborts_without_a_backtrace(native: Any) -> None:
    if not sys.platform.startswith("linux"):
        return
    from sipp.native._quiet import quiet_state

    assert quiet_state()["terminate_handler"] == "libstdc++ verbose"
    proc = _run("terminate")
    assert proc.returncode == -signal.SIGABRT
    assert proc.stderr.strip().splitlines() == ["terminate called without an active exception"]
