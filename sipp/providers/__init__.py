"""Provider adapters (OpenAI, OpenAI-compatible, Anthropic): request mapping and response
and stream parsing, plus the HTTP transport shared with gateway endpoints."""
