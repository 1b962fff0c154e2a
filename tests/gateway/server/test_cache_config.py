"""``sipp-gateway check`` names the path of every bad ``[[caches]]``, ``[[collections]]``,
``cache`` and ``rag`` field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sipp.gateway.server.config import GatewayConfigError, parse_config
from tests.gateway.server.conftest import BASE_CONFIG


def issues(**top: Any) -> dict[str, str]:
    config = copy.deepcopy(BASE_CONFIG)
    targets = top.pop("target_fields", {})
    config["targets"][0].update(targets)
    config.update(top)
    with pytest.raises(GatewayConfigError) as info:
        parse_config(config)
    return {issue.path: issue.message for issue in info.value.issues}


def test_a_valid_config_parses() -> None:
    config = copy.deepcopy(BASE_CONFIG)
    config["caches"] = [{"name": "c", "mode": "semantic", "embedding_target": "beta",
                         "threshold": 0.9, "scope": "shared", "ttl_seconds": 60,
                         "max_entries": 10, "max_bytes": 1000,
                         "on_hit": {"route_to": "beta", "with_context": False},
                         "on_miss": {"route_to": "alpha"}}]
    config["collections"] = [{"name": "kb", "embedding_target": "beta", "source": "docs",
                              "index_path": "kb.sippvec",
                              "chunking": {"max_chars": 500, "overlap": 50}}]
    config["targets"][0].update(cache="c", rag={"collection": "kb", "top_k": 2,
                                                "min_score": 0.5, "inject": "documents"})
    parsed = parse_config(config).extensions
    assert parsed.caches["c"].on_hit is not None and not parsed.caches["c"].on_hit.with_context
    assert parsed.target_cache == {"alpha": "c"}
    assert parsed.target_rag["alpha"].inject == "documents"
    assert parsed.collections["kb"].chunking.max_chars == 500


def test_every_bad_field_is_named() -> None:
    found = issues(
        caches=[{"name": "c", "mode": "fuzzy", "threshold": 2, "scope": "everyone",
                 "ttl_seconds": 0, "max_entries": 0, "on_hit": {"route_to": "nowhere"},
                 "on_miss": {"route_to": "alpha", "with_context": True}, "colour": 1},
                {"name": "s", "mode": "semantic"},
                {"name": "c"}],
        collections=[{"name": "kb", "embedding_target": "ghost", "source": "d",
                      "index_path": "i", "chunking": {"max_chars": 10, "overlap": 10}}],
        target_fields={"cache": "missing", "rag": {"collection": "nope", "top_k": 100,
                                                   "min_score": 3, "inject": "prompt"}})
    expected = {
        "caches[0].mode": "must be one of: exact, semantic",
        "caches[0].threshold": "must be a number in (0, 1]",
        "caches[0].scope": "must be one of: per_caller, shared",
        "caches[0].ttl_seconds": "must be a number in (0,",
        "caches[0].max_entries": "must be greater than zero",
        "caches[0].on_hit.route_to": "unknown target: nowhere",
        "caches[0].on_miss.with_context": "unknown field",
        "caches[0].colour": "unknown field",
        "caches[1].embedding_target": "is required",
        "caches[2].name": "duplicate cache: c",
        "collections[0].embedding_target": "unknown target: ghost",
        "collections[0].chunking.overlap": "must be smaller than max_chars",
        "targets[0].cache": "unknown cache: missing",
        "targets[0].rag.collection": "unknown collection: nope",
        "targets[0].rag.top_k": "must be at most 64",
        "targets[0].rag.min_score": "must be a number in [-1, 1]",
        "targets[0].rag.inject": "must be one of: system, documents",
    }
    for path, message in expected.items():
        assert path in found, (path, found)
        assert message in found[path], (path, found[path])
    assert "caches[0].threshold" in found  # threshold on an exact cache is refused too
