"""Constrain local generation to a JSON Schema and parse the result.

    python json_schema.py [MODEL]

MODEL is a GGUF path or a packaged model name (default: ``gemma``). The schema is
compiled to a grammar, so the sampler can only produce matching JSON; ``json.loads``
then never fails on a finished run. Prints the parsed object.
"""

import json
import sys

from sipp import LocalModelDescriptor, LocalTextOptions, SippClient, SippTextOptions
from sipp.packaged_models import resolve_model

model = resolve_model(sys.argv[1] if len(sys.argv) > 1 else "gemma")

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 24},
        "country": {"type": "string", "maxLength": 24},
        "is_capital": {"type": "boolean"},
    },
    "required": ["city", "country", "is_capital"],
    "additionalProperties": False,
}

with SippClient() as client:
    endpoint = client.add("local", LocalModelDescriptor(model))
    response = client.query(
        "Describe Paris as a JSON object with city, country and is_capital.\nJSON:",
        endpoint=endpoint,
        options=SippTextOptions(max_tokens=96, temperature=0),
        local=LocalTextOptions(json_schema=SCHEMA),
    ).result()

if response["finish_reason"] != "stop":
    sys.exit(f"generation ended early ({response['finish_reason']}): {response['text']!r}")
data = json.loads(response["text"])
print(f"json: {json.dumps(data, sort_keys=True)}")
print(f"keys: {sorted(data)}")
