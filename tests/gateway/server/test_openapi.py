"""docs/openapi.yaml describes the public listener: schemathesis generates requests for
every operation (valid ones and, mixed in, bodies that break the schema) against a live
gateway; no answer is a 5xx, every status is documented and every JSON body matches the
document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.gateway.server.conftest import RunningGateway, auth

DOC = Path(__file__).resolve().parents[3] / "docs" / "openapi.yaml"
SCHEMA = schemathesis.openapi.from_path(DOC)
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


def test_the_document_covers_the_default_public_routes() -> None:
    paths = set(SCHEMA.raw_schema["paths"])
    openai = ("/chat/completions", "/completions", "/embeddings", "/models", "/models/{model}")
    assert paths == {"/v1/query", "/v1/chat", "/v1/embed", *("/v1" + p for p in openai)}


def _checker(gateway: RunningGateway, operation: Any, mode: GenerationMode) -> Any:
    @given(operation.as_strategy(mode))
    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        if mode is GenerationMode.POSITIVE:  # a real target, so 200s get checked too
            if isinstance(case.body, dict) and "model" in case.body:
                case.body["model"] = "alpha"
            if case.path_parameters and "model" in case.path_parameters:
                case.path_parameters["model"] = "alpha"
        response = case.call(base_url=gateway.url, headers=auth(), timeout=30)
        assert response.status_code < 500, (case.path, case.body, response.text[:300])
        case.validate_response(response, checks=CHECKS)

    return check


def test_public_listener_matches_its_openapi_document(gateway: RunningGateway) -> None:
    for result in SCHEMA.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _checker(gateway, operation, mode)()
