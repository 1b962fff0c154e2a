"""Query a Sipp gateway, finite and streamed over server-sent events.

    SIPP_GATEWAY_URL=http://127.0.0.1:8080 SIPP_GATEWAY_TARGET=default \\
    SIPP_GATEWAY_TOKEN=... python gateway_query.py [PROMPT]

The same ``client.query`` call as for a local model; only the endpoint differs. Prints
the finite response, then the streamed text as it arrives and a summary line.
"""

import os
import sys

from sipp import GatewayDescriptor, SippClient, SippTextOptions

prompt = sys.argv[1] if len(sys.argv) > 1 else "Explain gateway inference in one sentence."

with SippClient() as client:
    endpoint = client.add(
        "gateway",
        GatewayDescriptor(
            os.environ["SIPP_GATEWAY_TARGET"],
            os.environ["SIPP_GATEWAY_URL"],
            authentication_kind="bearer",
            authentication_value=os.environ["SIPP_GATEWAY_TOKEN"],
        ),
    )
    options = SippTextOptions(max_tokens=32)

    finite = client.query(prompt, endpoint=endpoint, options=options).result()
    print(f"finite: {finite['text']!r} ({finite['finish_reason']})")

    run = client.query(prompt, endpoint=endpoint, options=options, emit_tokens=True)
    print("streamed: ", end="", flush=True)
    batches = 0
    for batch in run.tokens():  # one batch per SSE token event, as it arrives
        print(batch.text, end="", flush=True)
        batches += 1
    streamed = run.result()
    print()
    print(f"[{batches} batches, finish_reason={streamed['finish_reason']}, "
          f"usage={streamed['usage']}]")
