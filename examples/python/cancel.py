"""Cancel a local generation midway and keep the text produced so far.

    python cancel.py [MODEL]

MODEL is a GGUF path or a packaged model name (default: ``gemma``). The run streams
tokens; after a few batches it is cancelled, the engine frees its slot at the next step,
and the response completes with ``finish_reason == "cancelled"``.
"""

import sys

from sipp import LocalModelDescriptor, SippClient, SippTextOptions
from sipp.packaged_models import resolve_model

model = resolve_model(sys.argv[1] if len(sys.argv) > 1 else "gemma")
STOP_AFTER = 4  # batches

with SippClient() as client:
    endpoint = client.add("local", LocalModelDescriptor(model))
    run = client.query(
        "Write a very long story about a lighthouse keeper.",
        endpoint=endpoint,
        options=SippTextOptions(max_tokens=2000),
        emit_tokens=True,
    )
    seen = tokens = 0
    for batch in run.tokens():  # ends once the cancelled run completes
        seen += 1
        tokens += batch.token_count
        if seen == STOP_AFTER:
            print(f"cancel requested: {run.cancel()}")
    response = run.result()  # a cancelled run completes; it does not raise

print(f"finish_reason: {response['finish_reason']}")
print(f"tokens before the stop: {tokens} (max_tokens was 2000)")
print(f"partial text: {response['text']!r}")
