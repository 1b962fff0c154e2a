"""``sipp models pull|list|rm|show`` and ``sipp show`` over the model cache."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipp._models_cli import models_main, show_main
from sipp.cli import main
from tests.models.hub_server import HubServer, Repo


@pytest.fixture
def hub(
    tiny_llama_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HubServer]:
    server = HubServer()
    server.repos["org/tiny"] = Repo({"tiny-llama-Q8_0.gguf": tiny_llama_path.read_bytes()})
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield server
    server.close()


def _run(fn: object, argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = fn(argv, out=out, err=err)  # type: ignore[operator]
    return code, out.getvalue(), err.getvalue()


def test_pull_list_show_rm(hub: HubServer, tmp_path: Path) -> None:
    code, out, _ = _run(models_main, ["pull", "hf://org/tiny/*Q8_0.gguf"])
    assert code == 0 and out.strip().endswith("tiny-llama-Q8_0.gguf")
    assert Path(out.strip()).is_relative_to(tmp_path / "cache")

    code, out, _ = _run(models_main, ["list"])
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("hf://"))
    assert row.split()[:1] == ["hf://org/tiny/tiny-llama-Q8_0.gguf"]
    assert "llama" in row.split() and row.split()[-1] == "yes"  # chat template present
    code, out, _ = _run(models_main, ["list", "--json"])
    (entry,) = json.loads(out)
    assert entry["architecture"] == "llama" and entry["size"] > 0

    hub.requests.clear()
    code, out, _ = _run(models_main, ["show", "hf://org/tiny/tiny-llama-Q8_0.gguf", "--json"])
    facts = json.loads(out)
    assert code == 0 and facts["architecture"] == "llama" and facts["has_chat_template"]
    assert hub.requests == []  # show reads the cached copy

    code, out, _ = _run(models_main, ["rm", "hf://org/tiny"])
    assert code == 0 and "removed hf://org/tiny/tiny-llama-Q8_0.gguf" in out
    code, out, err = _run(models_main, ["rm", "hf://org/tiny/tiny-llama-Q8_0.gguf"])
    assert code == 1 and "not in the cache" in err
    assert "no models in" in _run(models_main, ["list"])[1]


def test_pull_errors_are_one_line(hub: HubServer) -> None:
    code, _, err = _run(models_main, ["pull", "hf://org/missing/x.gguf"])
    assert code == 1 and err.count("\n") == 1 and "not found" in err


def test_show_reads_a_local_gguf(tiny_llama_path: Path) -> None:
    code, out, _ = _run(show_main, [str(tiny_llama_path), "--template"])
    assert code == 0
    fields = dict(line.split(":", 1) for line in out.splitlines() if line[:1].isalpha()
                  and ":" in line and not line.startswith("{"))
    assert fields["architecture"].strip() == "llama"
    assert fields["chat template"].strip() == "yes"
    assert "[INST]" in out  # --template prints it
    code, _, err = _run(show_main, [str(tiny_llama_path.parent)])
    assert code == 1 and "is a directory" in err


def test_sipp_without_arguments_prints_clean_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    usage = capsys.readouterr().err
    assert usage.startswith("usage: sipp MODEL PROMPT")
    assert "``" not in usage and "sipp serve MODEL" in usage and "sipp models" in usage
    assert main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage:")


def test_sipp_generates_from_a_hub_source(hub: HubServer, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    args = [sys.executable, "-m", "sipp.cli", "hf://org/tiny/*Q8_0.gguf", "Hello",
            "--max-tokens", "4", "--temperature", "0", "--stats", "basic"]
    first = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "output_tokens:" in first.stderr
    assert len(hub.gets("tiny-llama-Q8_0.gguf")) == 1
    hub.close()  # the second run needs no server: the cache has it
    second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout  # greedy: the same text from the same file
