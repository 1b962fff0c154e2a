"""Backend selection: env validation, explicit and automatic choice, manifest checks.

Fake backend distributions (a package plus a ``.dist-info`` with an entry point in group
``sipp.backends``) are written to a temporary folder on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

import sipp
from sipp._version import __version__
from sipp.errors import BackendError, ConfigurationError
from sipp.native import _loader
from sipp.native._cdef import BY_VALUE_STRUCTS, cdef_sha256
from sipp.native._env import auto_order, requested_backend
from sipp.native._lib import get_ffi, select_backend
from sipp.native._loader import check_manifest, installed_backends, load_backend

REPO = Path(__file__).resolve().parents[2]


def good_manifest(backend: str = "cpu") -> dict[str, Any]:
    ffi = get_ffi()
    structs = {}
    for tag in BY_VALUE_STRUCTS:
        ctype = ffi.typeof(f"struct {tag}")
        structs[tag] = {
            "size": ffi.sizeof(ctype),
            "offsets": {name: ffi.offsetof(ctype, name) for name, _ in ctype.fields},
        }
    return {
        "backend": backend,
        "package_version": __version__,
        "llama_cpp": {"distribution": "llama-cpp-python", "version": "0.3.36", "sha256": "x"},
        "cdef_sha256": cdef_sha256(),
        "structs": structs,
        "build": {"mode": "test", "ggml_backend_dl": False, "cmake_options": [], "platform": "x"},
        "libraries": [],
    }


def make_backend(root: Path, name: str, library_dir: Path, manifest: dict[str, Any]) -> None:
    pkg = root / f"sipp_backend_{name}"
    pkg.mkdir(parents=True)
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            f"""
            import json
            from pathlib import Path
            NAME = {name!r}
            __version__ = {manifest.get("package_version")!r}
            def library_dir():
                return Path({str(library_dir)!r})
            def include_dir():
                return Path({str(library_dir)!r})
            def manifest():
                return json.loads((Path(__file__).parent / "manifest.json").read_text())
            """
        )
    )
    dist = root / f"sipppy_backend_{name}-{__version__}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: sipppy-backend-{name}\nVersion: {__version__}\n"
    )
    (dist / "entry_points.txt").write_text(f"[sipp.backends]\n{name} = sipp_backend_{name}\n")


def _forget_backend_modules() -> None:
    for name in [m for m in sys.modules if m.startswith("sipp_backend_")]:
        del sys.modules[name]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "site"
    root.mkdir()
    # Fake GPU packages hold CPU libraries: act as if the GPU driver were present, so the
    # loader opens them and finds no device (tests below cover a missing driver).
    monkeypatch.setattr(_loader, "missing_driver", lambda backend, platform=None: None)
    _forget_backend_modules()
    monkeypatch.syspath_prepend(str(root))
    yield root
    _forget_backend_modules()


@pytest.fixture
def lib_dir(native: Any) -> Path:
    return Path(native.backend.library_dir)


def _really_installed(name: str) -> bool:
    return any(ep.name == name for ep in metadata.entry_points(group="sipp.backends"))


# ---------------------------------------------------------------- environment
@pytest.mark.parametrize("value", ["", "auto", "CPU", " cuda ", "metal", "vulkan"])
def test_valid_backend_values_are_accepted(value: str) -> None:
    expected = value.strip().lower() or "auto"
    assert requested_backend({"SIPP_PYTHON_BACKEND": value}) == expected


def test_invalid_backend_value_names_the_choices() -> None:
    with pytest.raises(ConfigurationError) as info:
        requested_backend({"SIPP_PYTHON_BACKEND": "bogus"})
    assert str(info.value) == (
        "Invalid SIPP_PYTHON_BACKEND=bogus. Expected one of: auto, cpu, cuda, metal, vulkan"
    )


def test_invalid_backend_value_fails_the_native_import_check() -> None:
    code = "import sipp.native as n; n.check_backend_env()"
    env = {**os.environ, "SIPP_PYTHON_BACKEND": "bogus"}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode != 0
    assert "Invalid SIPP_PYTHON_BACKEND=bogus" in proc.stderr


def test_auto_order_per_platform() -> None:
    assert auto_order("linux") == ("cuda", "vulkan", "cpu")
    assert auto_order("win32") == ("cuda", "vulkan", "cpu")
    assert auto_order("darwin") == ("metal", "cpu")


# ---------------------------------------------------------------- selection
def test_explicit_missing_backend_names_installed_ones(site: Path, lib_dir: Path) -> None:
    if _really_installed("vulkan"):
        pytest.skip("a real vulkan backend is installed")
    make_backend(site, "cpu", lib_dir, good_manifest())
    with pytest.raises(BackendError) as info:
        load_backend(get_ffi(), lambda lib: None, environ={"SIPP_PYTHON_BACKEND": "vulkan"})
    message = str(info.value)
    assert "vulkan backend is not installed" in message
    assert "installed backends: cpu" in message
    # pinned to this version and built locally: PyPI's sipppy 0.1.x is another project
    assert ('scripts/build_wheels.sh vulkan && pip install --find-links dist '
            f'"sipppy[vulkan]=={sipp.__version__}"') in message
    assert isinstance(info.value, ImportError)


def test_explicit_backend_loads_and_says_how_it_was_chosen(site: Path, lib_dir: Path) -> None:
    make_backend(site, "cpu", lib_dir, good_manifest())
    assert "cpu" in installed_backends()
    loaded = load_backend(get_ffi(), lambda lib: None, environ={"SIPP_PYTHON_BACKEND": "cpu"})
    assert loaded.name == "cpu"
    assert loaded.library_dir == lib_dir
    assert loaded.selected_by == "env SIPP_PYTHON_BACKEND=cpu"
    assert loaded.package_version == __version__
    assert loaded.lib.llama_max_devices() >= 1


def test_backend_argument_comes_before_the_environment(site: Path, lib_dir: Path) -> None:
    make_backend(site, "cpu", lib_dir, good_manifest())
    loaded = load_backend(get_ffi(), lambda lib: None,
                          environ={"SIPP_PYTHON_BACKEND": "bogus"}, backend="CPU")
    assert loaded.name == "cpu"
    assert loaded.selected_by == "argument backend=cpu"


def test_backend_argument_for_a_missing_gpu_backend_says_what_to_do(
    site: Path, lib_dir: Path
) -> None:
    make_backend(site, "cuda", lib_dir, good_manifest("cuda"))
    with pytest.raises(BackendError, match="Choose another backend") as info:
        load_backend(get_ffi(), lambda lib: None, environ={}, backend="cuda")
    assert "SIPP_PYTHON_BACKEND" not in str(info.value)


def test_invalid_backend_argument_names_the_choices() -> None:
    with pytest.raises(ConfigurationError, match=r"Invalid backend 'gpu'\. Expected one of: auto"):
        select_backend("gpu")


def test_select_backend_cannot_switch_an_opened_backend(native: Any) -> None:
    loaded = native.backend.name
    select_backend(loaded)  # the open one: nothing to do
    select_backend("auto")
    other = "vulkan" if loaded != "vulkan" else "cpu"
    with pytest.raises(BackendError, match=f"the {loaded} backend is already loaded"):
        select_backend(other)


def test_explicit_gpu_backend_without_device_is_an_error(site: Path, lib_dir: Path) -> None:
    # CPU-only libraries packaged as "cuda": they load, but no CUDA device appears.
    make_backend(site, "cuda", lib_dir, good_manifest("cuda"))
    with pytest.raises(BackendError, match="found no cuda device"):
        load_backend(get_ffi(), lambda lib: None, environ={"SIPP_PYTHON_BACKEND": "cuda"})


def test_auto_skips_unusable_backends_with_recorded_reasons(site: Path, lib_dir: Path) -> None:
    if _really_installed("vulkan"):
        pytest.skip("a real vulkan backend is installed")
    make_backend(site, "cuda", lib_dir, good_manifest("cuda"))
    make_backend(site, "cpu", lib_dir, good_manifest())
    loaded = load_backend(get_ffi(), lambda lib: None, environ={}, platform="linux")
    assert loaded.name == "cpu"
    assert loaded.selected_by == "auto"
    assert loaded.warnings[0].startswith("cuda: the cuda libraries loaded but found no cuda")
    assert loaded.warnings[1].startswith("vulkan: not installed (scripts/build_wheels.sh vulkan")


def test_auto_with_nothing_usable_lists_every_reason(site: Path, lib_dir: Path) -> None:
    if any(_really_installed(b) for b in ("metal", "cpu")):
        pytest.skip("a real backend is installed")
    make_backend(site, "metal", lib_dir, {**good_manifest("metal"), "package_version": "9.9"})
    with pytest.raises(BackendError) as info:
        load_backend(get_ffi(), lambda lib: None, environ={}, platform="darwin")
    message = str(info.value)
    assert "metal: Backend metal" in message and "'9.9'" in message
    assert f'"sipppy-backend-cpu=={sipp.__version__}" (or: bash scripts/setup.sh)' in message


def test_override_folder_without_manifest_is_a_recorded_warning(lib_dir: Path) -> None:
    loaded = load_backend(
        get_ffi(), lambda lib: None, environ={"SIPP_PYTHON_NATIVE_LIBRARY_PATH": str(lib_dir)}
    )
    if (lib_dir / "_manifest.json").is_file():
        assert loaded.manifest is not None
    else:
        assert "no _manifest.json" in loaded.warnings[0]
    assert loaded.selected_by == "env SIPP_PYTHON_NATIVE_LIBRARY_PATH"


def test_override_that_is_not_a_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="is not a directory"):
        load_backend(
            get_ffi(),
            lambda lib: None,
            environ={"SIPP_PYTHON_NATIVE_LIBRARY_PATH": str(tmp_path / "nope")},
        )


def test_folder_without_libllama_is_an_error(site: Path, tmp_path: Path) -> None:
    make_backend(site, "cpu", tmp_path, good_manifest())
    with pytest.raises(BackendError, match="no libllama"):
        load_backend(get_ffi(), lambda lib: None, environ={"SIPP_PYTHON_BACKEND": "cpu"})


# ---------------------------------------------------------------- manifest
def test_good_manifest_passes() -> None:
    check_manifest(good_manifest(), get_ffi(), source="test")


def test_manifest_with_another_cdef_hash_is_refused() -> None:
    manifest = {**good_manifest(), "cdef_sha256": "0" * 64}
    with pytest.raises(BackendError) as info:
        check_manifest(manifest, get_ffi(), source="cpu")
    assert "0" * 64 in str(info.value) and cdef_sha256() in str(info.value)


def test_manifest_with_another_package_version_is_refused() -> None:
    manifest = {**good_manifest(), "package_version": "0.0.9"}
    with pytest.raises(BackendError) as info:
        check_manifest(manifest, get_ffi(), source="cpu")
    assert "'0.0.9'" in str(info.value) and repr(__version__) in str(info.value)


def test_manifest_with_a_drifted_struct_offset_is_refused() -> None:
    manifest = good_manifest()
    manifest["structs"]["llama_context_params"]["offsets"]["n_batch"] = 8
    with pytest.raises(BackendError, match=r"offsetof\(struct llama_context_params, n_batch\)"):
        check_manifest(manifest, get_ffi(), source="cpu")


def test_manifest_with_a_drifted_struct_size_is_refused() -> None:
    manifest = good_manifest()
    manifest["structs"]["llama_batch"]["size"] = 48
    with pytest.raises(BackendError, match=r"sizeof\(struct llama_batch\) is 48"):
        check_manifest(manifest, get_ffi(), source="cpu")


def test_manifest_missing_a_struct_is_refused() -> None:
    manifest = good_manifest()
    del manifest["structs"]["llama_model_params"]
    with pytest.raises(BackendError, match="no layout for struct llama_model_params"):
        check_manifest(manifest, get_ffi(), source="cpu")


def test_explicit_backend_with_bad_manifest_is_not_loaded(site: Path, lib_dir: Path) -> None:
    make_backend(site, "cpu", lib_dir, {**good_manifest(), "cdef_sha256": "f" * 64})
    with pytest.raises(BackendError, match=r"cpu backend is not usable: .*different cdef"):
        load_backend(get_ffi(), lambda lib: None, environ={"SIPP_PYTHON_BACKEND": "cpu"})


def test_auto_skips_a_gpu_package_without_its_driver_before_opening_it(
    site: Path, lib_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if _really_installed("vulkan"):
        pytest.skip("a real vulkan backend is installed")
    opened: list[str] = []
    real_open = _loader._open_libraries

    def spy(ffi: Any, library_dir: Path) -> Any:
        opened.append(str(library_dir))
        return real_open(ffi, library_dir)

    monkeypatch.setattr(_loader, "_open_libraries", spy)
    monkeypatch.setattr(_loader, "missing_driver", lambda backend, platform=None:
                        "no cuda driver on this machine (libcuda.so.1 cannot be loaded)"
                        if backend == "cuda" else None)
    cuda_dir = site / "cuda-libs"
    cuda_dir.mkdir()
    make_backend(site, "cuda", cuda_dir, good_manifest("cuda"))
    make_backend(site, "cpu", lib_dir, good_manifest())
    loaded = load_backend(get_ffi(), lambda lib: None, environ={}, platform="linux")
    assert loaded.name == "cpu"
    assert loaded.warnings[0] == (
        "cuda: no cuda driver on this machine (libcuda.so.1 cannot be loaded)"
    )
    assert opened == [str(lib_dir)]


def test_explicit_gpu_backend_without_driver_says_how_to_run_without_it(
    site: Path, lib_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_loader, "missing_driver", lambda backend, platform=None:
                        f"no {backend} driver on this machine")
    make_backend(site, "cuda", lib_dir, good_manifest("cuda"))
    with pytest.raises(BackendError, match="no cuda driver on this machine") as info:
        load_backend(get_ffi(), lambda lib: None, environ={"SIPP_PYTHON_BACKEND": "cuda"})
    assert "Reinstall" not in str(info.value) and "SIPP_PYTHON_BACKEND" in str(info.value)


@pytest.mark.parametrize(("backend", "platform", "expect_none"), [
    ("cpu", "linux", True), ("metal", "darwin", True), ("cuda", "darwin", True),
    ("cuda", "linux", False), ("vulkan", "win32", False),
])
def test_missing_driver_checks_only_gpu_backends_with_a_driver_library(
    backend: str, platform: str, expect_none: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(name: str) -> None:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(_loader.ctypes, "CDLL", refuse)
    reason = _loader.missing_driver(backend, platform)
    assert (reason is None) == expect_none
    if reason is not None:
        assert backend in reason and "cannot be loaded" in reason


def test_requesting_an_absent_cuda_backend_in_a_fresh_process_names_the_installed_ones() -> None:
    # The issue's own check: SIPP_PYTHON_BACKEND=cuda python -c "import sipp; sipp.backend_info()"
    if _really_installed("cuda"):
        pytest.skip("a real cuda backend is installed")
    installed = sorted(n for n in ("cpu", "vulkan", "metal") if _really_installed(n))
    if not installed:
        pytest.skip("no real backend package is installed")
    proc = subprocess.run(
        [sys.executable, "-c", "import sipp; sipp.backend_info()"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "SIPP_PYTHON_BACKEND": "cuda"},
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("sipp.errors.BackendError"), proc.stderr
    assert "cuda backend is not installed" in last
    assert f"installed backends: {', '.join(installed)}" in last
