"""Every cffi declaration matches the pinned headers (functions, structs, enum values)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import cffi
import pytest

from sipp.native._cdef import BY_VALUE_STRUCTS, CDEF, MTMD_CDEF, cdef_sha256

HEADERS = (
    "include/llama.h",
    "ggml/include/ggml.h",
    "ggml/include/ggml-backend.h",
    "ggml/include/ggml-cpu.h",
    "tools/mtmd/mtmd.h",
    "tools/mtmd/mtmd-helper.h",
)


def _source_dir() -> Path:
    try:
        from build_scripts.llama_source import cache_root, read_pin
    except ImportError as exc:  # pragma: no cover - repository layout
        pytest.skip(f"build_scripts not importable: {exc}")
    pin = read_pin()
    src = cache_root() / "src" / pin["sha256"][:16] / "llama.cpp"
    if not (src / "include" / "llama.h").is_file():
        pytest.skip(f"pinned llama.cpp source not extracted at {src} (run llama_source.py)")
    return src


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def _normalize(decl: str) -> str:
    decl = re.sub(r"\b(LLAMA_API|MTMD_API|GGML_API|GGML_BACKEND_API)\b", " ", decl)
    decl = re.sub(r"\s+", " ", decl)
    decl = re.sub(r"\s*([(),*;\[\]{}])\s*", r"\1", decl)
    return decl.strip()


@pytest.fixture(scope="module")
def header_text() -> str:
    src = _source_dir()
    return "\n".join(_strip_comments((src / h).read_text()) for h in HEADERS)


def _function_decls(text: str) -> dict[str, str]:
    """name -> normalized prototype for every function declaration in ``text``."""
    out: dict[str, str] = {}
    text = re.sub(
        r"DEPRECATED\((.*?),\s*\"[^\"]*\"\)\s*;", r"\1;", _strip_comments(text), flags=re.S
    )
    for stmt in text.split(";"):
        stmt = stmt.strip()
        if "(" not in stmt or stmt.startswith(("typedef", "#")) or "{" in stmt:
            stmt = stmt.rsplit("}", 1)[-1].strip() if "}" in stmt else stmt
            if stmt.startswith("typedef") or "(" not in stmt:
                continue
        stmt = stmt.rsplit("\n#", 1)[0] if stmt.startswith("#") else stmt
        stmt = "\n".join(line for line in stmt.splitlines() if not line.strip().startswith("#"))
        match = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", stmt)
        if match is None or "(*" in stmt.replace(" ", "")[: match.end()]:
            continue
        out.setdefault(match.group(1), _normalize(stmt + ";"))  # C API before C++ helpers
    return out


def _struct_bodies(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for match in re.finditer(r"struct\s+([A-Za-z_0-9]+)\s*\{(.*?)\}", _strip_comments(text), re.S):
        out[match.group(1)] = _normalize(match.group(2))
    return out


def _enum_values(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for body in re.findall(r"enum\s+[A-Za-z_0-9]+\s*\{(.*?)\}", _strip_comments(text), re.S):
        for item in body.split(","):
            name, sep, value = item.partition("=")
            if sep:
                out[name.strip()] = value.strip()
    return out


def test_every_function_matches_the_pinned_header(header_text: str) -> None:
    ours = _function_decls(CDEF)
    theirs = _function_decls(header_text)
    assert len(ours) > 150
    missing = sorted(set(ours) - set(theirs))
    assert not missing, f"declared but not in the pinned headers: {missing}"
    different = {name: (ours[name], theirs[name]) for name in ours if ours[name] != theirs[name]}
    assert not different, different


def test_every_struct_matches_the_pinned_header(header_text: str) -> None:
    ours = _struct_bodies(CDEF)
    theirs = _struct_bodies(header_text)
    assert "llama_context_params" in ours
    different = {
        tag: (body, theirs.get(tag)) for tag, body in ours.items() if theirs.get(tag) != body
    }
    assert not different, different


def test_numeric_enum_values_match_the_pinned_header(header_text: str) -> None:
    theirs = _enum_values(header_text)
    for name, value in _enum_values(CDEF).items():
        if name in theirs and re.fullmatch(r"-?\d+", theirs[name]):
            assert theirs[name] == value, name


def test_by_value_structs_cover_every_struct_passed_or_returned_by_value() -> None:
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    by_value = set(re.findall(r"struct (\w+) (?!\*)\w+\s*[(,)]", CDEF))
    by_value |= set(re.findall(r"^struct (\w+) \w+\(", CDEF, re.M))
    by_value |= set(re.findall(r"const struct (\w+) ctx_params", MTMD_CDEF))
    assert by_value <= set(BY_VALUE_STRUCTS), by_value - set(BY_VALUE_STRUCTS)
    for tag in BY_VALUE_STRUCTS:
        assert ffi.typeof(f"struct {tag}").fields, f"struct {tag} must not be opaque"


def test_cdef_hash_is_the_sha256_of_the_text() -> None:
    assert cdef_sha256() == hashlib.sha256(CDEF.encode()).hexdigest()


def test_cdef_module_imports_only_the_standard_library() -> None:
    source = Path(__file__).resolve().parents[2] / "sipp" / "native" / "_cdef.py"
    imports = re.findall(r"^(?:from|import) (\S+)", source.read_text(), re.M)
    assert set(imports) <= {"__future__", "hashlib"}
