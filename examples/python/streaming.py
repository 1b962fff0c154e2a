"""Stream tokens from a local GGUF model as they are generated.

    python streaming.py [MODEL] [PROMPT]

MODEL is a GGUF path or a packaged model name (default: ``gemma``). With
``emit_tokens=True`` the run yields token batches while the engine decodes; the text is
printed as it arrives, then a summary line with the batch count and finish reason.
"""

import sys

from sipp import LocalModelDescriptor, SippClient, SippTextOptions
from sipp.packaged_models import resolve_model

model = resolve_model(sys.argv[1] if len(sys.argv) > 1 else "gemma")
prompt = sys.argv[2] if len(sys.argv) > 2 else "Once upon a time, in a small village,"

with SippClient() as client:
    endpoint = client.add("local", LocalModelDescriptor(model))
    run = client.query(
        prompt, endpoint=endpoint, options=SippTextOptions(max_tokens=48), emit_tokens=True
    )
    batches = tokens = 0
    for batch in run.tokens():  # blocks until the next batch (or the end of the run)
        print(batch.text, end="", flush=True)
        batches += 1
        tokens += batch.token_count
    response = run.result()

print()
print(f"[{batches} batches, {tokens} tokens, finish_reason={response['finish_reason']}]")
