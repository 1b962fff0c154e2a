"""``scheduler.deterministic``: a request's answer does not depend on what runs beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sipp.errors import ConfigurationError
from tests.engine.engine_helpers import query

WORDS = "cats dogs birds fish trees stars rivers hills apples pears boats cars".split()
PROMPTS = [f"Prompt {i}: a story of {w} and {v}" for i, w in enumerate(WORDS) for v in WORDS[:1]]


def test_concurrent_answers_equal_the_answers_alone(engine_factory: Any,
                                                    tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path, context={"n_parallel": 8},
                            scheduler={"deterministic": True})
    assert engine.info.kv_unified is False and engine.info.n_ubatch == engine.info.n_batch
    alone = [query(engine, p, max_tokens=24).result(60)["text"] for p in PROMPTS]
    for _ in range(2):
        runs = [query(engine, p, max_tokens=24) for p in PROMPTS]
        assert [r.result(120)["text"] for r in runs] == alone
    # the extra verification positions are not speculation: none is reported
    assert engine.metrics()["speculative"]["draft_tokens"] == 0
    result = query(engine, PROMPTS[0], max_tokens=5).result(60)
    assert result["usage"]["output_tokens"] == 5  # type: ignore[index]
    assert "draft_tokens" not in result["local_stats"]  # type: ignore[operator]


@pytest.mark.parametrize(("config", "message"), [
    ({"context": {"kv_unified": True}}, "context.kv_unified"),
    ({"context": {"flash_attention": "enabled"}}, "context.flash_attention"),
    ({"placement": {"no_extra_bufts": False}}, "placement.no_extra_bufts"),
])
def test_settings_that_break_it_are_refused(engine_factory: Any, tiny_llama_path: Path,
                                            config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        engine_factory(tiny_llama_path, scheduler={"deterministic": True}, **config)
