"""The ``sipp`` command: ``doctor`` (text and JSON) and generation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sipp.cli import format_report, main

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sipp.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **env},
        timeout=120,
    )


@pytest.fixture(scope="module")
def info() -> dict[str, Any]:
    from sipp.errors import BackendError
    from sipp.native import backend_info

    try:
        return backend_info()
    except BackendError as exc:
        pytest.skip(f"no native backend: {exc}")


def test_doctor_json_reports_the_loaded_backend(info: dict[str, Any]) -> None:
    proc = _run("doctor", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["backend"] == info["backend"]
    assert report["library_dir"] == info["library_dir"]
    assert any(dev["type"] == "cpu" for dev in report["devices"])
    assert report["llama_cpp"]["version"]
    assert report["cpu"]["variant"]


def test_doctor_text_is_readable(info: dict[str, Any]) -> None:
    proc = _run("doctor")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"backend:        {info['backend']} (selected by ")
    assert "devices:" in proc.stdout and "cpu variant:" in proc.stdout


def test_format_report_lists_skipped_backends() -> None:
    report = format_report(
        {
            "backend": "cpu",
            "selected_by": "auto",
            "library_dir": "/x",
            "package_version": "0.1.0",
            "sipp_version": "0.1.0",
            "llama_cpp": {"version": "b1", "distribution": "llama-cpp-python"},
            "cpu": {"variant": "haswell", "features": ["AVX2"]},
            "devices": [],
            "skipped": ['cuda: not installed (pip install "sipppy[cuda]")'],
            "warnings": [],
        }
    )
    assert "cpu variant:    haswell" in report
    assert 'skipped backends:\n  - cuda: not installed (pip install "sipppy[cuda]")' in report


def test_doctor_with_an_unusable_backend_fails_with_the_reason(tmp_path: Path) -> None:
    proc = _run("doctor", SIPP_PYTHON_NATIVE_LIBRARY_PATH=str(tmp_path / "missing"))
    assert proc.returncode == 1
    assert "is not a directory" in proc.stderr


def test_doctor_json_error_uses_the_wire_shape(tmp_path: Path) -> None:
    proc = _run("doctor", "--json", SIPP_PYTHON_NATIVE_LIBRARY_PATH=str(tmp_path / "missing"))
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["error"]["code"] == "backend_unavailable"


def test_invalid_backend_env_is_rejected() -> None:
    proc = _run("doctor", SIPP_PYTHON_BACKEND="bogus", SIPP_PYTHON_NATIVE_LIBRARY_PATH="")
    assert proc.returncode != 0
    assert "Invalid SIPP_PYTHON_BACKEND=bogus" in proc.stdout + proc.stderr


def test_generation_needs_model_and_prompt(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["only-a-model"])
    assert exc.value.code == 2
    assert "prompt" in capsys.readouterr().err


def test_generation_reports_a_missing_model_clearly() -> None:
    proc = _run("/no/such/model.gguf", "hello")
    assert proc.returncode == 2
    assert "/no/such/model.gguf: file not found" in proc.stderr
    assert "packaged name" in proc.stderr and "hf://" in proc.stderr  # what else works


def test_a_directory_as_model_says_it_is_one(tmp_path: Path) -> None:
    proc = _run(str(tmp_path), "hello")
    assert proc.returncode == 2
    assert "is a directory, expected a .gguf file" in proc.stderr
    assert proc.stderr.count("\n") == 1  # one line, no traceback


def test_generation_streams_text_and_stats(info: dict[str, Any], tiny_llama_path: Path) -> None:
    proc = _run(str(tiny_llama_path), "Hello", "--max-tokens", "8", "--stats", "basic",
                "--temperature", "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()  # tiny random model: some text, whatever it is
    assert "stats:" in proc.stderr and "output_tokens: 8" in proc.stderr


def test_chat_without_template_fails_with_advice(info: dict[str, Any],
                                                  tiny_llama_no_template_path: Path) -> None:
    proc = _run(str(tiny_llama_no_template_path), "Hello", "--chat")
    assert proc.returncode == 1
    assert "template" in proc.stderr and "--chat-template FILE" in proc.stderr


def test_chat_template_flag_gives_a_template(info: dict[str, Any], tmp_path: Path,
                                             tiny_llama_no_template_path: Path) -> None:
    template = tmp_path / "chat.jinja"
    template.write_text("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n"
                        "{% endfor %}[assistant] ")
    proc = _run(str(tiny_llama_no_template_path), "Hello", "--chat", "--chat-template",
                str(template), "--max-tokens", "3", "--stats", "basic", "--temperature", "0")
    assert proc.returncode == 0, proc.stderr
    assert "output_tokens:" in proc.stderr
    proc = _run(str(tiny_llama_no_template_path), "Hello", "--chat", "--chat-template",
                str(tmp_path / "none.jinja"))
    assert proc.returncode == 2 and "--chat-template: cannot read template file" in proc.stderr


@pytest.mark.gemma
def test_generation_with_packaged_gemma(info: dict[str, Any], gemma_path: Path) -> None:
    proc = _run("gemma", "The capital of France is", "--max-tokens", "12", "--temperature", "0")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip()) > 10


def test_doctor_rejects_unknown_flags() -> None:
    with pytest.raises(SystemExit) as info:
        main(["doctor", "--frobnicate"])
    assert info.value.code == 2


def test_a_reader_that_goes_away_ends_output_quietly(info: dict[str, Any]) -> None:
    # `sipp doctor --json | head -1`: the pipe closes before sipp writes.
    proc = subprocess.Popen([sys.executable, "-m", "sipp.cli", "doctor", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    with proc.stderr:
        stderr = proc.stderr.read().decode()
    assert proc.wait(60) == 141
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


def test_chat_renders_the_template_and_streams(info: dict[str, Any],
                                               tiny_llama_path: Path) -> None:
    proc = _run(str(tiny_llama_path), "Hello", "--chat", "--system", "Be brief.",
                "--max-tokens", "6", "--temperature", "0", "--stats", "basic")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    # the rendered template (system + user turn) is longer than the bare prompt
    plain = _run(str(tiny_llama_path), "Hello", "--max-tokens", "6", "--stats", "basic")
    def tokens_in(stderr: str) -> int:
        return int(next(line.split(":")[1] for line in stderr.splitlines()
                        if line.strip().startswith("input_tokens")))
    assert tokens_in(proc.stderr) > tokens_in(plain.stderr) + 3


def test_ctx_size_bounds_the_context(info: dict[str, Any], tiny_llama_path: Path) -> None:
    long_prompt = "hello " * 400  # about 400 tokens
    fits = _run(str(tiny_llama_path), long_prompt, "--max-tokens", "2")
    assert fits.returncode == 0, fits.stderr
    refused = _run(str(tiny_llama_path), long_prompt, "--max-tokens", "2", "--ctx-size", "256")
    assert refused.returncode == 1
    assert "sipp: error:" in refused.stderr and "n_ctx" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_stats_profile_adds_the_detailed_keys(info: dict[str, Any],
                                              tiny_llama_path: Path) -> None:
    basic = _run(str(tiny_llama_path), "Hello", "--max-tokens", "4", "--stats", "basic")
    profile = _run(str(tiny_llama_path), "Hello", "--max-tokens", "4", "--stats", "profile")
    assert basic.returncode == profile.returncode == 0, profile.stderr
    assert "cache_mode:" in profile.stderr and "cache_mode:" not in basic.stderr
    off = _run(str(tiny_llama_path), "Hello", "--max-tokens", "4")
    assert "stats:" not in off.stderr


def test_backend_flag_selects_like_the_environment_variable(info: dict[str, Any],
                                                            tiny_llama_path: Path) -> None:
    if info["backend"] == "vulkan":
        pytest.skip("the Vulkan backend is installed here")
    proc = _run(str(tiny_llama_path), "Hello", "--max-tokens", "2", "--backend", "vulkan",
                SIPP_PYTHON_BACKEND="")
    assert proc.returncode == 1
    assert "vulkan" in proc.stderr and info["backend"] in proc.stderr  # names what is installed
    assert "Traceback" not in proc.stderr
    same = _run(str(tiny_llama_path), "Hello", "--max-tokens", "2",
                "--backend", info["backend"])
    assert same.returncode == 0, same.stderr


def test_ctrl_c_cancels_the_run_cleanly(info: dict[str, Any], tiny_llama_path: Path) -> None:
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "sipp.cli", str(tiny_llama_path), "Once upon a time",
         "--ctx-size", "4096", "--max-tokens", "4000", "--stats", "basic"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    assert proc.stdout is not None
    first = proc.stdout.read(1)  # the first streamed text
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    stderr = err.decode()
    assert first, stderr
    assert proc.returncode == 130, stderr
    assert "sipp: cancelled" in stderr and "Traceback" not in stderr
    output_tokens = int(next(line.split(":")[1] for line in stderr.splitlines()
                             if line.strip().startswith("output_tokens")))
    assert 0 < output_tokens < 4000


@pytest.mark.parametrize("argv", [("doctor",), ("model.gguf", "hello")])
def test_a_bad_backend_name_is_a_one_line_usage_error(argv: tuple[str, ...]) -> None:
    proc = _run(*argv, SIPP_PYTHON_BACKEND="rocm")
    assert proc.returncode == 2
    assert "error: Invalid SIPP_PYTHON_BACKEND=rocm" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
