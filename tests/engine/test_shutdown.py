"""An engine left open when the script ends is closed cleanly at interpreter exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import sys
    from sipp.config import NativeRuntimeConfig
    from sipp.engine.core import Engine
    from sipp.requests import TextRequest
    from sipp.runs import RunSink, SippTextRun
    from sipp.types import EndpointRef, SippTextOptions
    if sys.argv[2] == "unhooked":  # what the exit hook prevents (for checking this test)
        import sipp.engine.core as core
        core.close_at_exit = lambda engine: None
    engine = Engine.load(sys.argv[1], NativeRuntimeConfig(
        context={"n_parallel": 8, "n_ctx": 8 * 512}, cache={"mode": "disabled"}))
    runs = []
    for i in range(16):
        sink = RunSink(EndpointRef.local("exit"), wants_tokens=False)
        engine.submit_text(TextRequest("query", f"story {i} about", None,
                                       SippTextOptions(max_tokens=48, temperature=0.0),
                                       None, None, None, False), sink)
        runs.append(SippTextRun(sink))
    print(sum(len(r.result(120)["text"]) >= 0 for r in runs), flush=True)
    if sys.argv[3] == "raise":
        raise RuntimeError("the script fails without closing the engine")
""")


@pytest.mark.parametrize("ending", ["exit", "raise"])
def test_a_script_that_never_closes_its_engine_exits_cleanly(
        native_backend: None, gemma_path: Path, ending: str) -> None:
    """Concurrent runs, then the script ends (or fails) with the engine open: the process
    exits with the script's own status. Without the exit hook (``unhooked``) Gemma 3 270M
    died with SIGSEGV or a heap-corruption abort here; the tiny models did not show it."""
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(gemma_path), "hooked", ending],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.stdout.strip() == "16", proc.stderr[-2000:]
    assert proc.returncode == (0 if ending == "exit" else 1), proc.stderr[-2000:]
