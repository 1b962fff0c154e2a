"""Run several local generations concurrently from asyncio.

    python asyncio_app.py [MODEL]

MODEL is a GGUF path or a packaged model name (default: ``gemma``). Three prompts are
awaited together (the engine batches them into the same decode steps) while a fourth is
streamed with ``async for``; the event loop is never blocked. Prints each result.
"""

import asyncio
import sys

from sipp import LocalModelDescriptor, SippClient, SippTextOptions
from sipp.packaged_models import resolve_model

PROMPTS = ["The sky is", "Water boils at", "The first planet from the sun is"]


async def main(model: str) -> None:
    async with SippClient() as client:
        # add() loads the model (blocking), so run it in a worker thread.
        endpoint = await asyncio.to_thread(client.add, "local", LocalModelDescriptor(model))
        options = SippTextOptions(max_tokens=16, temperature=0)

        streamed = client.query(
            "Here is a short poem about the sea:",
            endpoint=endpoint,
            options=options,
            emit_tokens=True,
        )
        runs = [client.query(p, endpoint=endpoint, options=options) for p in PROMPTS]

        async def consume_stream() -> str:
            pieces = []
            async for batch in streamed.atokens():
                pieces.append(batch.text)
            return "".join(pieces)

        stream_task = asyncio.create_task(consume_stream())
        responses = await asyncio.gather(*runs)  # a run is awaitable
        stream_text = await stream_task
        for prompt, response in zip(PROMPTS, responses, strict=True):
            print(f"{prompt!r} -> {response['text']!r} ({response['finish_reason']})")
        final = await streamed
        print(f"streamed: {stream_text!r} ({final['finish_reason']})")
        print(f"stream matches result: {stream_text == final['text']}")


asyncio.run(main(str(resolve_model(sys.argv[1] if len(sys.argv) > 1 else "gemma"))))
