"""examples/python/README: `sipp serve MODEL --chat-template transcript.jinja` then
gateway_chat.py against it, as printed (the tiny template-less model stands in for Gemma;
the Gemma run is marked)."""

from __future__ import annotations

from pathlib import Path

from tests.examples.helpers import EXAMPLES, run_example
from tests.serving import sipp_serve

REPO = Path(__file__).resolve().parents[2]


def _serve_and_chat(model: str, target: str) -> str:
    with sipp_serve(model, "--chat-template", "transcript.jinja", "--api-key-env",
                    "SIPP_GATEWAY_TOKEN", env={"SIPP_GATEWAY_TOKEN": "secret"},
                    cwd=EXAMPLES) as served:
        chat = run_example("gateway_chat.py", timeout=120, env={
            "SIPP_GATEWAY_URL": served.url, "SIPP_GATEWAY_TARGET": target,
            "SIPP_GATEWAY_TOKEN": "secret"})
    return chat.stdout


def test_readme_serve_then_gateway_chat(tiny_llama_no_template_path: Path) -> None:
    out = _serve_and_chat(str(tiny_llama_no_template_path), "tiny-llama-notemplate")
    assert out.endswith("\n")  # the reply (sampled text) was printed


def test_readme_serve_gemma_then_gateway_chat(gemma_path: Path) -> None:
    out = _serve_and_chat("gemma", "gemma")
    assert out.strip()
