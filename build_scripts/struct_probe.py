"""Measure ``sizeof``/``offsetof`` of the structs our cdef passes by value, in real C.

ABI-mode cffi trusts the cdef for struct layouts. At build time we ask the C compiler what
the pinned headers really say: enumerate each struct's fields with cffi, generate a small C
program that prints their sizes and offsets as JSON, compile it against the source include
directories and run it. The result goes into the backend manifest, where the loader compares
it with cffi's own view.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
CDEF_FILE = REPO_ROOT / "sipp" / "native" / "_cdef.py"
PROBE_HEADERS = ("llama.h", "mtmd.h", "mtmd-helper.h")


@dataclass(frozen=True)
class CdefInfo:
    """What the probe needs from ``sipp/native/_cdef.py``."""

    cdef: str
    by_value_structs: tuple[str, ...]
    sha256: str


def load_cdef(path: Path = CDEF_FILE) -> CdefInfo:
    """Load the cdef module by path (never ``import sipp``: it may not be importable here)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"the cffi declarations {path} are missing: the manifest records struct layouts "
            "of the structs listed in its BY_VALUE_STRUCTS, so it must exist before a backend "
            "is built (owned by the native layer, sipp/native/)"
        )
    spec = importlib.util.spec_from_file_location("_sipp_build_cdef", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cdef = getattr(module, "CDEF", None)
    structs = getattr(module, "BY_VALUE_STRUCTS", None)
    if not isinstance(cdef, str) or not cdef.strip():
        raise ValueError(f"{path}: CDEF must be a non-empty str")
    if not isinstance(structs, tuple) or not all(isinstance(s, str) for s in structs):
        raise ValueError(f"{path}: BY_VALUE_STRUCTS must be a tuple of struct tags (str)")
    hasher = getattr(module, "cdef_sha256", None)
    digest = hasher() if callable(hasher) else hashlib.sha256(cdef.encode()).hexdigest()
    if not isinstance(digest, str):
        raise ValueError(f"{path}: cdef_sha256() must return a str")
    return CdefInfo(cdef=cdef, by_value_structs=structs, sha256=digest)


def struct_fields(cdef: str, tags: Sequence[str]) -> dict[str, list[str]]:
    """Top-level field names of each ``struct <tag>`` as cffi parses them (bit-fields skipped)."""
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(cdef)
    out: dict[str, list[str]] = {}
    for tag in tags:
        try:
            ctype = ffi.typeof(f"struct {tag}")
        except ffi.error as exc:
            raise ValueError(f"BY_VALUE_STRUCTS names struct {tag!r}, not in the cdef") from exc
        fields = ctype.fields
        if fields is None:
            raise ValueError(
                f"BY_VALUE_STRUCTS names struct {tag}, which the cdef does not declare with "
                "fields (missing or opaque); a struct passed by value needs its fields"
            )
        out[tag] = [name for name, field in fields if field.bitsize < 0 and name]
    return out


def probe_source(fields: dict[str, list[str]], headers: Sequence[str] = PROBE_HEADERS) -> str:
    """C source printing ``{"<tag>": {"size": N, "offsets": {...}}, ...}``."""
    lines = ["#include <stddef.h>", "#include <stdio.h>"]
    lines += [f'#include "{header}"' for header in headers]
    lines += ["int main(void) {", '    printf("{");']
    for i, (tag, names) in enumerate(fields.items()):
        sep = "," if i else ""
        lines.append(
            f'    printf("{sep}\\"{tag}\\": {{\\"size\\": %zu, \\"offsets\\": {{", '
            f"sizeof(struct {tag}));"
        )
        for j, name in enumerate(names):
            fsep = ", " if j else ""
            lines.append(f'    printf("{fsep}\\"{name}\\": %zu", offsetof(struct {tag}, {name}));')
        lines.append('    printf("}}");')
    lines += ['    printf("}\\n");', "    return 0;", "}", ""]
    return "\n".join(lines)


def c_compiler(preferred: str | None = None) -> list[str]:
    """The C compiler command: ``preferred`` (CMake's), else ``$CC``, else cc/gcc/clang."""
    for candidate in (preferred, os.environ.get("CC")):
        if candidate:
            return shlex.split(candidate)
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return [found]
    raise FileNotFoundError("no C compiler found (set CC) for the struct layout probe")


def run_probe(
    fields: dict[str, list[str]],
    include_dirs: Sequence[Path],
    *,
    compiler: str | None = None,
    headers: Sequence[str] = PROBE_HEADERS,
) -> dict[str, Any]:
    """Compile and run the probe; return ``{tag: {"size": int, "offsets": {field: int}}}``."""
    with tempfile.TemporaryDirectory(prefix="sipp-probe-") as tmp:
        src = Path(tmp) / "probe.c"
        exe = Path(tmp) / "probe"
        src.write_text(probe_source(fields, headers))
        cmd = [*c_compiler(compiler), "-std=c11", "-o", str(exe), str(src)]
        cmd += [f"-I{d}" for d in include_dirs]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                "struct layout probe failed to compile (does the cdef name fields the "
                f"pinned headers lack?):\n{shlex.join(cmd)}\n{result.stderr[-4000:]}"
            )
        run = subprocess.run([str(exe)], capture_output=True, text=True, check=True)
    layouts: dict[str, Any] = json.loads(run.stdout)
    return layouts
