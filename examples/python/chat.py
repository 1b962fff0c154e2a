"""Chat with a local GGUF model: role messages rendered by the model's chat template.

    python chat.py [MODEL]

MODEL is a GGUF path (it must carry ``tokenizer.chat_template``) or a packaged model name.
The default packaged Gemma 3 270M is a base model without a chat template, so this
example gives it one through ``LocalModelDescriptor(chat_template=...)``: a plain
question/answer transcript that a base model continues well (any Jinja chat template
works the same way). Prints the reply and its finish reason.
"""

import sys

from sipp import ChatMessage, LocalModelDescriptor, SippClient, SippTextOptions
from sipp.packaged_models import resolve_model

# Hugging Face conventions: `messages` and `add_generation_prompt` are provided.
TRANSCRIPT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message.role == 'system' %}{{ message.content }}\n\n"
    "{% elif message.role == 'user' %}Question: {{ message.content }}\n"
    "{% else %}Answer: {{ message.content }}\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Answer:{% endif %}"
)

if len(sys.argv) > 1:
    descriptor = LocalModelDescriptor(resolve_model(sys.argv[1]))
else:
    descriptor = LocalModelDescriptor(resolve_model("gemma"), chat_template=TRANSCRIPT_TEMPLATE)

messages = [
    ChatMessage("system", "Answer in one short sentence."),
    ChatMessage("user", "What is the capital of France?"),
]
# Greedy decoding; the reply ends at the end of its line (or at the model's end token).
options = SippTextOptions(max_tokens=48, temperature=0, stop=["\n"])

with SippClient() as client:
    endpoint = client.add("chat", descriptor)
    response = client.chat(messages, endpoint=endpoint, options=options).result()

print(f"reply: {response['text'].strip()!r}")
print(f"finish_reason: {response['finish_reason']}")
