"""Our patches to the pinned llama.cpp (``native/patches``): each says why, each is applied
to the source the build uses, the build cache key follows the patch set, and the installed
backend was built from the patched source."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from build_scripts import build_native, llama_source

PATCHES = llama_source.patch_files()


def test_there_is_a_patch_set() -> None:
    assert [p.name for p in PATCHES] == ["0001-batch-invariant-cpu-kernels.patch"]


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.name)
def test_each_patch_says_what_and_why_before_its_diff(patch: Path) -> None:
    text = patch.read_text()
    header = text[: text.index("diff --git ")]
    assert header.startswith(f"Sipp patch {patch.name[:4]}: ")
    assert "Why:" in header and "What:" in header


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.name)
def test_each_patch_is_applied_to_the_source_the_build_uses(patch: Path) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    source = llama_source.ensure_source()
    env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(source.parent))
    # applied: it reverses cleanly, and it does not apply a second time
    reverse = subprocess.run([git, "apply", "--check", "--reverse", str(patch)], cwd=source,
                             env=env, capture_output=True, text=True, check=False)
    assert reverse.returncode == 0, reverse.stderr
    again = subprocess.run([git, "apply", "--check", str(patch)], cwd=source, env=env,
                           capture_output=True, text=True, check=False)
    assert again.returncode != 0


def test_the_build_key_follows_the_patch_set(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    patched = build_native.plan_build("cpu")
    assert patched.key_inputs()["patches"] == llama_source.patches_digest() != "none"
    monkeypatch.setattr(llama_source, "PATCH_DIR", tmp_path)  # no patches
    unpatched = build_native.plan_build("cpu")
    assert "patches" not in unpatched.key_inputs() and unpatched.key != patched.key
    (tmp_path / "0001-x.patch").write_text("Sipp patch 0001: x\n")
    assert build_native.plan_build("cpu").key not in {patched.key, unpatched.key}


def test_a_patch_that_does_not_apply_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\n")
    bad = tmp_path / "0009-bad.patch"
    bad.write_text("diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n"
                   "-two\n+three\n")
    with pytest.raises(RuntimeError, match="0009-bad.patch does not apply"):
        llama_source.apply_patch(tmp_path, bad)
    assert (tmp_path / "a.txt").read_text() == "one\n"


def test_the_installed_backend_was_built_with_the_patches() -> None:
    from sipp.errors import BackendError
    from sipp.native import backend_info, get_native

    try:
        info = backend_info()
    except BackendError as exc:
        pytest.skip(f"no native backend: {exc}")
    if info["backend"] != "cpu" or "patches_digest" not in info["llama_cpp"]:
        pytest.skip(f"not the CPU backend built by build_scripts ({info['backend']})")
    assert info["llama_cpp"]["patches_digest"] == llama_source.patches_digest()
    assert info["llama_cpp"]["patches"] == [p.name for p in PATCHES]
    assert callable(get_native().lib.llama_set_batch_invariant)  # exported by libllama
