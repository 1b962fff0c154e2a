"""Generate from a raw prompt with a local GGUF model.

    python query.py [MODEL] [PROMPT]

MODEL is a GGUF path or a packaged model name (default: ``gemma``, Gemma 3 270M from
PyPI). Prints the generated text, then the finish reason and token usage.
"""

import sys

from sipp import LocalModelDescriptor, SippClient, SippTextOptions
from sipp.packaged_models import resolve_model

model = resolve_model(sys.argv[1] if len(sys.argv) > 1 else "gemma")
prompt = sys.argv[2] if len(sys.argv) > 2 else "The three primary colors are"

with SippClient() as client:
    endpoint = client.add("local", LocalModelDescriptor(model))
    response = client.query(
        prompt, endpoint=endpoint, options=SippTextOptions(max_tokens=32, temperature=0)
    ).result()

print(f"text: {response['text']!r}")
print(f"finish_reason: {response['finish_reason']}")
usage = response["usage"]
if usage is not None:
    print(f"usage: {usage['input_tokens']} in, {usage['output_tokens']} out")
