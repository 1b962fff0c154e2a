"""``LocalModelDetector``: a small local model finds names, addresses and free-form
identifiers that patterns cannot.

The model runs on a local Sipp endpoint (the text never leaves the process) with a
JSON-schema constrained answer, so its output always parses: a list of
``{"type": ..., "text": ...}`` objects whose ``type`` is one of the requested entity
types. Every occurrence of each returned text in the input becomes a span; texts the model
made up (not found verbatim) are ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sipp.errors import ConfigurationError, InvalidRequestError
from sipp.pii._spans import Span
from sipp.types import ChatMessage, LocalTextOptions, SippTextOptions

if TYPE_CHECKING:
    from sipp.client import SippClient
    from sipp.types import EndpointRef

__all__ = ["MODEL_ENTITIES", "LocalModelDetector"]

MODEL_ENTITIES = ("PERSON", "ADDRESS", "IDENTIFIER")

_INSTRUCTIONS = (
    "You find personal data in the user's text. List every person name (PERSON), postal "
    "address (ADDRESS) and personal identifier such as an account, customer, passport or "
    "licence number (IDENTIFIER), copying each one exactly as written. Answer with JSON "
    "only: {\"entities\": [{\"type\": ..., \"text\": ...}]}. List nothing else."
)


class LocalModelDetector:
    """Detects ``entities`` with a chat model on the local ``endpoint`` of ``client``.

    ``max_entities`` / ``max_chars`` bound the schema (and so the answer's length);
    ``max_tokens`` must leave room for them.
    """

    def __init__(
        self,
        client: SippClient,
        endpoint: EndpointRef,
        *,
        entities: Sequence[str] = MODEL_ENTITIES,
        max_entities: int = 16,
        max_chars: int = 80,
        max_tokens: int = 512,
        timeout: float | None = 120.0,
    ) -> None:
        if getattr(endpoint, "kind", None) != "local":
            raise ConfigurationError(
                "LocalModelDetector needs a local endpoint (the text must not leave the process)"
            )
        if isinstance(entities, str) or not entities:
            raise ConfigurationError("LocalModelDetector entities must be a non-empty list")
        for name in entities:
            if not isinstance(name, str) or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
                raise ConfigurationError(
                    f"LocalModelDetector entities: {name!r} must be an UPPER_CASE name"
                )
        self._client = client
        self._endpoint = endpoint
        self._entities = tuple(entities)
        self._max_tokens = max_tokens
        self._timeout = timeout
        self.schema: dict[str, Any] = {
            "type": "object",
            "properties": {
                "entities": {
                    "type": "array",
                    "maxItems": max_entities,
                    "items": {
                        "type": "object",
                        "properties": {
                            "type": {"enum": list(self._entities)},
                            "text": {"type": "string", "minLength": 1, "maxLength": max_chars},
                        },
                        "required": ["type", "text"],
                        "additionalProperties": False,
                    },
                }
            },
            "required": ["entities"],
            "additionalProperties": False,
        }

    @property
    def entities(self) -> Sequence[str]:
        return self._entities

    def extract(self, text: str) -> list[dict[str, str]]:
        """The model's raw findings: ``[{"type", "text"}]`` (schema-valid by construction)."""
        run = self._client.chat(
            [ChatMessage("system", _INSTRUCTIONS), ChatMessage("user", text)],
            endpoint=self._endpoint,
            options=SippTextOptions(max_tokens=self._max_tokens, temperature=0.0),
            local=LocalTextOptions(json_schema=self.schema, context_key="sipp-pii-detector"),
        )
        response = run.result(self._timeout)
        return self.parse(response["text"], response["finish_reason"])

    def parse(self, answer: str, finish_reason: str = "stop") -> list[dict[str, str]]:
        """Validate the model's JSON answer; a cut-off answer is an error (fail closed)."""
        if finish_reason == "length":
            raise InvalidRequestError(
                "LocalModelDetector: the model's answer was cut off at max_tokens; raise "
                "max_tokens or lower max_entities / max_chars"
            )
        try:
            data = json.loads(answer)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"LocalModelDetector: answer is not JSON: {exc}") from exc
        items = data.get("entities") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise InvalidRequestError("LocalModelDetector: answer has no entities list")
        found: list[dict[str, str]] = []
        for item in items:
            if (
                isinstance(item, dict)
                and item.get("type") in self._entities
                and isinstance(item.get("text"), str)
            ):
                found.append({"type": item["type"], "text": item["text"]})
        return found

    def detect(self, text: str) -> list[Span]:
        return self.spans(text, self.extract(text))

    @staticmethod
    def spans(text: str, findings: Sequence[dict[str, str]]) -> list[Span]:
        """Every verbatim occurrence of each finding (blank findings ignored)."""
        result: list[Span] = []
        for item in findings:
            needle = item["text"].strip()
            if not needle:
                continue
            start = text.find(needle)
            while start >= 0:
                result.append(Span(start, start + len(needle), item["type"]))
                start = text.find(needle, start + len(needle))
        return result
