"""Struct layouts measured by compiling a probe against the pinned llama.cpp headers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import cffi  # noqa: TID251  (compares cffi layouts with the C probe)
import pytest

from build_scripts import build_native, llama_source, struct_probe

SMALL_CDEF = """
typedef int32_t llama_token;
typedef struct llama_token_data { llama_token id; float logit; float p; } llama_token_data;
typedef struct llama_token_data_array {
    llama_token_data * data; size_t size; int64_t selected; bool sorted;
} llama_token_data_array;
struct llama_sampler_chain_params { bool no_perf; };
typedef struct llama_chat_message { const char * role; const char * content; } llama_chat_message;
"""
SMALL_STRUCTS = ("llama_token_data_array", "llama_sampler_chain_params", "llama_chat_message")


@pytest.fixture(scope="module")
def include_dirs() -> list[Path]:
    return build_native.source_include_dirs(llama_source.ensure_source())


def test_fields_come_from_the_cdef_in_declaration_order() -> None:
    fields = struct_probe.struct_fields(SMALL_CDEF, SMALL_STRUCTS)
    assert fields["llama_token_data_array"] == ["data", "size", "selected", "sorted"]
    assert fields["llama_chat_message"] == ["role", "content"]


def test_probe_matches_cffi_for_a_correct_cdef(include_dirs: list[Path]) -> None:
    fields = struct_probe.struct_fields(SMALL_CDEF, SMALL_STRUCTS)
    layouts = struct_probe.run_probe(fields, include_dirs)
    ffi = cffi.FFI()
    ffi.cdef(SMALL_CDEF)
    for tag, names in fields.items():
        assert layouts[tag]["size"] == ffi.sizeof(f"struct {tag}")
        for name in names:
            assert layouts[tag]["offsets"][name] == ffi.offsetof(f"struct {tag}", name)


def test_probe_exposes_a_drifted_cdef(include_dirs: list[Path]) -> None:
    # A cdef that forgot `selected`: cffi's view differs from what C reports.
    drifted = SMALL_CDEF.replace("int64_t selected;", "")
    layouts = struct_probe.run_probe({"llama_token_data_array": ["sorted"]}, include_dirs)
    ffi = cffi.FFI()
    ffi.cdef(drifted)
    assert layouts["llama_token_data_array"]["offsets"]["sorted"] == 24
    assert ffi.offsetof("struct llama_token_data_array", "sorted") != 24


def test_field_missing_from_headers_fails_to_compile(include_dirs: list[Path]) -> None:
    with pytest.raises(RuntimeError, match="failed to compile"):
        struct_probe.run_probe({"llama_chat_message": ["no_such_field"]}, include_dirs)


def test_struct_missing_from_cdef_is_named() -> None:
    with pytest.raises(ValueError, match="struct llama_batch, which the cdef does not declare"):
        struct_probe.struct_fields(SMALL_CDEF, ("llama_batch",))


def test_bitfields_are_skipped() -> None:
    fields = struct_probe.struct_fields("struct s { int a; int b : 3; int c; };", ("s",))
    assert fields["s"] == ["a", "c"]


def test_load_cdef_by_path(tmp_path: Path) -> None:
    module = tmp_path / "_cdef.py"
    module.write_text(
        textwrap.dedent(
            f"""
            CDEF = {SMALL_CDEF!r}
            BY_VALUE_STRUCTS = ("llama_chat_message",)
            def cdef_sha256():
                return "abc"
            """
        )
    )
    info = struct_probe.load_cdef(module)
    assert info.by_value_structs == ("llama_chat_message",)
    assert info.sha256 == "abc"


def test_missing_cdef_fails_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"cffi declarations .* are missing"):
        struct_probe.load_cdef(tmp_path / "_cdef.py")


def test_malformed_cdef_module_names_the_attribute(tmp_path: Path) -> None:
    module = tmp_path / "_cdef.py"
    module.write_text("CDEF = 'int x;'\nBY_VALUE_STRUCTS = ['s']\n")
    with pytest.raises(ValueError, match="BY_VALUE_STRUCTS must be a tuple"):
        struct_probe.load_cdef(module)
