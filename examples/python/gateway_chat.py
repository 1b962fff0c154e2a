"""Chat through a Sipp gateway (ours, or any server speaking the gateway profile).

    SIPP_GATEWAY_URL=http://127.0.0.1:8080 SIPP_GATEWAY_TARGET=default \\
    SIPP_GATEWAY_TOKEN=... python gateway_chat.py

The application needs only the gateway URL, a bearer token and the public target name;
model paths and provider credentials stay in the gateway process. Prints the reply.
"""

import os

from sipp import ChatMessage, GatewayDescriptor, SippClient, SippTextOptions

client = SippClient()
endpoint = client.add(
    "gateway",
    GatewayDescriptor(
        os.environ["SIPP_GATEWAY_TARGET"],
        os.environ["SIPP_GATEWAY_URL"],
        authentication_kind="bearer",
        authentication_value=os.environ["SIPP_GATEWAY_TOKEN"],
    ),
)
messages = [
    ChatMessage("system", "Answer concisely."),
    ChatMessage("user", "Explain gateway inference."),
]
run = client.chat(
    messages,
    endpoint=endpoint,
    options=SippTextOptions(max_tokens=64),
)
print(run.result()["text"])
client.close()
