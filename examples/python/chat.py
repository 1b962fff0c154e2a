"""Chat with a local model: role messages rendered by the model's chat template.

    python chat.py [MODEL] [PROMPT]

MODEL is any model source: a GGUF path (it must carry ``tokenizer.chat_template``), a
packaged model name, ``hf://org/repo/file.gguf`` or an https URL; PROMPT is the user's
message (default: a question about France). The default packaged Gemma 3 270M is a base
model without a chat template, so this example gives it ``transcript.jinja`` through
``LocalModelDescriptor(chat_template=...)`` (any Jinja chat template works the same way;
``sipp --chat-template FILE`` and the gateway TOML ``chat_template`` take the same file).
Prints the reply and its finish reason.
"""

import sys
from pathlib import Path

from sipp import ChatMessage, LocalModelDescriptor, SippClient, SippTextOptions

TRANSCRIPT_TEMPLATE = Path(__file__).with_name("transcript.jinja").read_text()

model = sys.argv[1] if len(sys.argv) > 1 else "gemma"
prompt = sys.argv[2] if len(sys.argv) > 2 else "What is the capital of France?"
template = TRANSCRIPT_TEMPLATE if model == "gemma" else None
descriptor = LocalModelDescriptor(model, chat_template=template)

messages = [
    ChatMessage("system", "Answer in one short sentence."),
    ChatMessage("user", prompt),
]
# Greedy decoding; the reply ends at the end of its line (or at the model's end token).
options = SippTextOptions(max_tokens=48, temperature=0, stop=["\n"])

with SippClient() as client:
    endpoint = client.add("chat", descriptor)
    response = client.chat(messages, endpoint=endpoint, options=options).result()

print(f"reply: {response['text'].strip()!r}")
print(f"finish_reason: {response['finish_reason']}")
