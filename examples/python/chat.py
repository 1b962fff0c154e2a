"""Chat with a local GGUF model: role messages rendered by the model's chat template.

    python chat.py [MODEL]

MODEL is a GGUF path (it must carry ``tokenizer.chat_template``) or a packaged model name.
The default packaged Gemma 3 270M is a base model without a template, so this example
passes Gemma's turn format as ``chat_template`` for it (any Jinja chat template works
the same way). Prints the reply and its finish reason.
"""

import sys

from sipp import ChatMessage, LocalModelDescriptor, SippClient, SippTextOptions
from sipp.packaged_models import resolve_model

# Gemma's turn markers; Gemma has no system role, so a system message leads the first turn.
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{% set role = 'model' %}"
    "{% else %}{% set role = 'user' %}{% endif %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

if len(sys.argv) > 1:
    descriptor = LocalModelDescriptor(resolve_model(sys.argv[1]))
else:
    descriptor = LocalModelDescriptor(resolve_model("gemma"), chat_template=GEMMA_TEMPLATE)

messages = [
    ChatMessage("system", "Answer in one short sentence."),
    ChatMessage("user", "What is the capital of France?"),
]

with SippClient() as client:
    endpoint = client.add("chat", descriptor)
    response = client.chat(
        messages, endpoint=endpoint, options=SippTextOptions(max_tokens=48, temperature=0)
    ).result()

print(f"reply: {response['text'].strip()!r}")
print(f"finish_reason: {response['finish_reason']}")
