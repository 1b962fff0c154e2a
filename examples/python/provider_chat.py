"""Chat with an OpenAI or OpenAI-compatible provider API directly (trusted server code).

    OPENAI_API_KEY=... [OPENAI_BASE_URL=http://127.0.0.1:8000/v1] \\
    [OPENAI_MODEL=gpt-5-mini] python provider_chat.py

With ``OPENAI_BASE_URL`` set, any OpenAI-compatible server is called (vLLM, llama.cpp's
server, a proxy); without it, the OpenAI API. Keep the key in the server environment.
Prints the reply, the finish reason and the token usage.
"""

import os

from sipp import ChatMessage, ProviderDescriptor, SippClient, SippTextOptions

base_url = os.environ.get("OPENAI_BASE_URL")
descriptor = ProviderDescriptor(
    "openai_compatible" if base_url else "openai",
    os.environ.get("OPENAI_MODEL", "gpt-5-mini"),
    api_key=os.environ["OPENAI_API_KEY"],
    base_url=base_url,
)
messages = [
    ChatMessage("system", "Answer concisely."),
    ChatMessage("user", "Explain provider inference."),
]

with SippClient() as client:
    endpoint = client.add("provider", descriptor)
    response = client.chat(
        messages, endpoint=endpoint, options=SippTextOptions(max_tokens=64)
    ).result()

print(f"reply: {response['text']!r}")
print(f"finish_reason: {response['finish_reason']}")
print(f"usage: {response['usage']}")
