"""Provider adapters (OpenAI, OpenAI-compatible, Anthropic): request mapping and response
and stream parsing. The HTTP transport they run on is :mod:`sipp.transports`."""
