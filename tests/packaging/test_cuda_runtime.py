"""The CUDA backend finds the CUDA runtime and cuBLAS from the nvidia-* wheels it depends on,
and the loader opens them before the backend's libraries (or says which one failed)."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipp._version import __version__
from sipp.errors import BackendError

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ("libcudart.so.13", "libcublasLt.so.13", "libcublas.so.13")


@pytest.fixture
def cuda_package(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """``sipp_backend_cuda`` imported from the checkout (no native payload needed)."""
    monkeypatch.syspath_prepend(str(ROOT / "sipp_backend_cuda"))
    sys.modules.pop("sipp_backend_cuda", None)
    import sipp_backend_cuda

    yield sipp_backend_cuda
    sys.modules.pop("sipp_backend_cuda", None)


@pytest.fixture
def nvidia_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A site folder holding an ``nvidia/cu13/lib`` tree like the nvidia-* wheels install."""
    lib = tmp_path / "site" / "nvidia" / "cu13" / "lib"
    lib.mkdir(parents=True)
    saved = {k: v for k, v in sys.modules.items() if k == "nvidia" or k.startswith("nvidia.")}
    for name in saved:
        del sys.modules[name]
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield lib
    for name in [k for k in sys.modules if k == "nvidia" or k.startswith("nvidia.")]:
        del sys.modules[name]
    sys.modules.update(saved)


def test_runtime_libraries_come_from_the_nvidia_wheels_in_load_order(
    cuda_package: object, nvidia_site: Path
) -> None:
    for name in reversed(RUNTIME):
        (nvidia_site / name).write_bytes(b"")
    found = cuda_package.runtime_libraries(platform="linux")  # type: ignore[attr-defined]
    assert [p.name for p in found] == list(RUNTIME)
    assert all(p.parent == nvidia_site for p in found)


def test_runtime_libraries_leave_out_what_is_not_installed(
    cuda_package: object, nvidia_site: Path
) -> None:
    (nvidia_site / "libcudart.so.13").write_bytes(b"")
    found = cuda_package.runtime_libraries(platform="linux")  # type: ignore[attr-defined]
    assert [p.name for p in found] == ["libcudart.so.13"]
    assert cuda_package.runtime_libraries(platform="darwin") == []  # type: ignore[attr-defined]


def _fake_backend(site: Path, name: str, library_dir: Path, runtime: list[Path]) -> None:
    """A backend package like the real ones, naming ``runtime`` as its runtime libraries."""
    from tests.native.test_loader import good_manifest

    pkg = site / f"sipp_backend_{name}"
    pkg.mkdir(parents=True)
    (pkg / "manifest.json").write_text(json.dumps(good_manifest(name)))
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            f"""
            import json
            from pathlib import Path
            __version__ = {__version__!r}
            def library_dir():
                return Path({str(library_dir)!r})
            def manifest():
                return json.loads((Path(__file__).parent / "manifest.json").read_text())
            def runtime_libraries():
                return [Path(p) for p in {[str(p) for p in runtime]!r}]
            """
        )
    )
    dist = site / f"sipppy_backend_{name}-{__version__}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: sipppy-backend-{name}\nVersion: {__version__}\n"
    )
    (dist / "entry_points.txt").write_text(f"[sipp.backends]\n{name} = sipp_backend_{name}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "backends"
    root.mkdir()
    forget = [m for m in sys.modules if m.startswith("sipp_backend_")]
    saved = {m: sys.modules.pop(m) for m in forget}
    monkeypatch.syspath_prepend(str(root))
    yield root
    for m in [m for m in sys.modules if m.startswith("sipp_backend_")]:
        del sys.modules[m]
    sys.modules.update(saved)


def test_a_missing_runtime_library_is_a_clear_backend_error(
    native: object, site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sipp.native import _loader
    from sipp.native._lib import get_ffi
    from sipp.native._loader import load_backend

    # As on a machine with the NVIDIA driver, so the loader gets as far as the runtime.
    monkeypatch.setattr(_loader, "missing_driver", lambda backend, platform=None: None)
    lib_dir = Path(native.backend.library_dir)  # type: ignore[attr-defined]
    missing = site / "nvidia" / "cu13" / "lib" / "libcublas.so.13"
    _fake_backend(site, "cuda", lib_dir, [missing])
    with pytest.raises(BackendError, match=r"cannot open the runtime library .*libcublas\.so\.13"):
        load_backend(get_ffi(), lambda lib: None, environ={"SIPP_PYTHON_BACKEND": "cuda"})


def test_runtime_libraries_open_before_the_backend(native: object, site: Path) -> None:
    from sipp.native._lib import get_ffi
    from sipp.native._loader import load_backend

    lib_dir = Path(native.backend.library_dir)  # type: ignore[attr-defined]
    runtime = lib_dir / "libggml-base.so"  # any loadable library stands in for libcudart
    _fake_backend(site, "cpu", lib_dir, [runtime])
    loaded = load_backend(get_ffi(), lambda lib: None, environ={"SIPP_PYTHON_BACKEND": "cpu"})
    plain = load_backend(
        get_ffi(), lambda lib: None, environ={"SIPP_PYTHON_NATIVE_LIBRARY_PATH": str(lib_dir)}
    )
    assert len(loaded.handles) == len(plain.handles) + 1
