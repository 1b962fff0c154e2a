"""Embed a text through a Sipp gateway.

    SIPP_GATEWAY_URL=http://127.0.0.1:8080 SIPP_GATEWAY_TARGET=embed \\
    SIPP_GATEWAY_TOKEN=... python gateway_embed.py [TEXT]

The target must name an embedding-capable model or provider on the gateway. Prints the
vector length and its first values.
"""

import os
import sys

from sipp import GatewayDescriptor, SippClient

text = sys.argv[1] if len(sys.argv) > 1 else "Sipp embedding input."

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
    response = client.embed(text, endpoint=endpoint).result()

values = response["values"]
print(f"embedding length: {len(values)}")
print(f"first values: {[round(v, 4) for v in values[:4]]}")
