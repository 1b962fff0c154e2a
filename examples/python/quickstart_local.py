"""The Python Local quickstart: query, chat and embed on local GGUF models.

    python quickstart_local.py CHAT_MODEL.gguf EMBED_MODEL.gguf

CHAT_MODEL must carry a chat template (``tokenizer.chat_template``); EMBED_MODEL is an
embedding model (BERT-style, e.g. all-MiniLM-L6-v2). Prints the query text, the chat
text and the embedding length, one per line.
"""

import sys

from sipp import (
    ChatMessage,
    ContextRuntimeConfig,
    LocalEmbedOptions,
    LocalModelDescriptor,
    LocalTextOptions,
    NativeRuntimeConfig,
    SippClient,
    SippTextOptions,
)

if len(sys.argv) != 3:
    sys.exit("usage: python quickstart_local.py CHAT_MODEL.gguf EMBED_MODEL.gguf")
chat_model, embed_model = sys.argv[1], sys.argv[2]

client = SippClient()
messages = [
    ChatMessage("system", "Answer concisely."),
    ChatMessage("user", "Explain local Python inference."),
]
query_prompt = "\n".join(
    [
        "<|system|>",
        "Answer concisely.",
        "<|user|>",
        "Explain local Python inference.",
        "<|assistant|>",
    ]
)
text_options = SippTextOptions(max_tokens=64)

text_endpoint = client.add("text", LocalModelDescriptor(chat_model))

# query: raw prompt; replace markers with the target model's template.
query = client.query(
    query_prompt,
    endpoint=text_endpoint,
    options=text_options,
    local=LocalTextOptions(context_key="python-query"),
).result()

# chat: role messages; local runtime uses tokenizer.chat_template.
chat = client.chat(
    messages,
    endpoint=text_endpoint,
    options=text_options,
    local=LocalTextOptions(context_key="python-chat"),
).result()

embed_endpoint = client.add(
    "embed",
    LocalModelDescriptor(
        embed_model,
        NativeRuntimeConfig(
            context=ContextRuntimeConfig(
                n_ctx=2048,
                embeddings=True,
                pooling="mean",
            ),
        ),
    ),
)

# embed: vector output; local endpoint must be embedding-capable.
embedding = client.embed(
    "Sipp embedding input.",
    endpoint=embed_endpoint,
    local=LocalEmbedOptions(context_key="python-embed", normalize=True),
).result()

print(f"query: {query['text']!r}")
print(f"chat: {chat['text']!r}")
print(f"embedding length: {len(embedding['values'])}")
client.close()
