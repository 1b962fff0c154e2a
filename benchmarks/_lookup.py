"""llama.cpp's ``llama-lookup`` (prompt-lookup speculative decoding) for the benchmarks.

The ``--tools`` build is configured without llama.cpp's examples, and a second full build
with ``LLAMA_BUILD_EXAMPLES=ON`` costs about an hour on 2 cores. ``llama-lookup`` is one
source file (``examples/lookup/lookup.cpp``) over ``llama-common`` and ``llama``, both of
which the tools build already has. So it is compiled here from the pinned source that build
was configured from, with the compile flags CMake recorded for ``llama-batched-bench``'s
``main.cpp`` (the tools build's ``compile_commands.json``: same defines, include folders
and optimisation) and linked against that build's own libraries, the same ones Sipp and
the other tools run on. One compile at ``nice 19``, a few seconds; cached under
``<sipp cache>/bench/llama-lookup-<key>/``, the key hashing the source file, the command
lines and the libraries' sizes and times.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REFERENCE = "tools/batched-bench/main.cpp"  # an executable linked to llama-common + llama
LOOKUP_SOURCE = "examples/lookup/lookup.cpp"
LIBRARY_NAMES = ("libllama-common.so", "libllama.so", "libggml.so", "libggml-cpu.so",
                 "libggml-rpc.so", "libggml-base.so")
STATIC_COMMON = "common/libllama-common-base.a"


@dataclass(frozen=True)
class LookupPlan:
    """How to compile and link ``llama-lookup`` against one tools build."""

    compile_args: list[str]
    link_args: list[str]
    source: Path
    key: str


def _reference_entry(build_root: Path) -> dict[str, Any]:
    commands = build_root / "compile_commands.json"
    if not commands.is_file():
        raise FileNotFoundError(f"no compile_commands.json in {build_root}: llama-lookup is "
                                "built against a build_native.py --tools build")
    for entry in json.loads(commands.read_text()):
        if str(entry["file"]).replace("\\", "/").endswith(REFERENCE):
            return dict(entry)
    raise FileNotFoundError(f"{REFERENCE} is not in {commands}")


def plan_lookup(bin_dir: Path) -> LookupPlan:
    """The compile and link command lines for ``llama-lookup`` next to ``bin_dir``'s build
    (``bin_dir`` holds libllama; its parent is the CMake build folder)."""
    build_root = bin_dir.parent
    entry = _reference_entry(build_root)
    reference = Path(entry["file"])
    source_root = reference.parents[2]
    lookup = source_root / LOOKUP_SOURCE
    if not lookup.is_file():
        raise FileNotFoundError(f"{lookup} is missing from the pinned source")
    args = list(entry.get("arguments") or shlex.split(entry["command"]))
    compile_args: list[str] = []
    skip = False
    for arg in args:  # drop -o/-c and the reference's own folder; keep every other flag
        if skip:
            skip = False
            continue
        if arg in ("-o", "-c"):
            skip = True
            continue
        if arg == str(reference) or arg == f"-I{reference.parent}":
            continue
        compile_args.append(arg)
    compile_args.insert(1, f"-I{lookup.parent}")
    libraries = [bin_dir / name for name in LIBRARY_NAMES]
    missing = [p.name for p in libraries if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{bin_dir} lacks {', '.join(missing)}")
    static = build_root / STATIC_COMMON
    flags = [a for a in compile_args[1:] if re.match(r"-(O\d|m|f(?!PIC))", a)]
    link_args = [compile_args[0], *flags, f"-Wl,-rpath,{bin_dir}", str(libraries[0]),
                 *([str(static)] if static.is_file() else []), *map(str, libraries[1:]),
                 "-lpthread"]
    digest = hashlib.sha256(lookup.read_bytes())
    digest.update(json.dumps([compile_args, link_args]).encode())
    for lib in libraries:
        stat = lib.stat()
        digest.update(f"{lib}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return LookupPlan(compile_args, link_args, lookup, digest.hexdigest()[:20])


def _run(cmd: list[str], cwd: Path) -> None:
    nice = ["nice", "-n", "19"] if shutil.which("nice") else []
    proc = subprocess.run([*nice, *cmd], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-15:])
        raise RuntimeError(f"building llama-lookup failed ({cmd[0]}):\n{tail}")


def ensure_lookup(bin_dir: Path, cache: Path) -> Path:
    """The ``llama-lookup`` executable for the build in ``bin_dir`` (compiled once, cached
    under ``cache/llama-lookup-<key>/``)."""
    plan = plan_lookup(bin_dir)
    target_dir = cache / f"llama-lookup-{plan.key}"
    exe = target_dir / "llama-lookup"
    if exe.is_file():
        return exe
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target_dir) as tmp_name:
        tmp = Path(tmp_name)
        obj, linked = tmp / "lookup.o", tmp / "llama-lookup"
        _run([*plan.compile_args, "-o", str(obj), "-c", str(plan.source)], bin_dir.parent)
        _run([plan.link_args[0], str(obj), "-o", str(linked), *plan.link_args[1:]],
             bin_dir.parent)
        (target_dir / "commands.json").write_text(json.dumps(
            {"compile": plan.compile_args, "link": plan.link_args}, indent=2) + "\n")
        linked.rename(exe)
    return exe


_DECODED = re.compile(r"decoded\s+(\d+) tokens in\s+([\d.]+) seconds, speed:\s+([\d.]+) t/s")
_COUNTS = re.compile(r"\b(n_draft|n_predict|n_drafted|n_accept)\s+=\s+(\d+)")


def parse_lookup(stderr: str) -> dict[str, Any]:
    """The figures ``llama-lookup`` prints at exit: tokens decoded, seconds, its own t/s,
    and the draft counters. ``decode_tokens_per_s`` counts the tokens after the first over
    the decode seconds, like Sipp's ``decode_tokens_per_second`` (llama-lookup's own speed
    also counts the first token, sampled from the prompt's logits before its decode clock
    starts)."""
    match = _DECODED.search(stderr)
    if match is None:
        raise RuntimeError("llama-lookup printed no 'decoded N tokens' line:\n"
                           + "\n".join(stderr.splitlines()[-15:]))
    n, seconds, speed = int(match[1]), float(match[2]), float(match[3])
    counts = {k: int(v) for k, v in _COUNTS.findall(stderr)}
    return {"output_tokens": n, "decode_s": seconds, "reported_tokens_per_s": speed,
            "decode_tokens_per_s": (n - 1) / seconds if seconds > 0 else None, **counts}


def run_lookup(exe: Path, model: Path, prompt: str, *, n_predict: int, draft_max: int,
               threads: int, n_ctx: int, flash_attn: bool, repack: bool,
               timeout: float = 900.0) -> dict[str, Any]:
    """One greedy ``llama-lookup`` run on ``prompt`` (raw text: no chat template, BOS
    added); returns :func:`parse_lookup`'s figures plus the generated text."""
    cmd = [str(exe), "-m", str(model), "-p", prompt, "-n", str(n_predict),
           "--spec-draft-n-max", str(draft_max), "--temp", "0", "--top-k", "1",
           "-t", str(threads), "-tb", str(threads), "-c", str(n_ctx), "-b", "2048",
           "-ub", "512", "-fa", "on" if flash_attn else "off", "--seed", "0",
           "--repack" if repack else "--no-repack"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                          errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-15:])
        raise RuntimeError(f"llama-lookup exited with {proc.returncode}:\n{tail}")
    figures = parse_lookup(proc.stderr)
    text = proc.stdout
    start = text.find(prompt)
    figures["text"] = text[start + len(prompt):].rstrip("\n") if start >= 0 else text
    return figures
