"""Chat about images with a local vision model: a model GGUF plus its projector (mmproj) GGUF.

    python vision_chat.py MODEL.gguf MMPROJ.gguf [IMAGE ...] [--template JINJA] [--question Q]

Each IMAGE is a file path (PNG, JPEG, GIF, BMP...). Without images the example draws a red
square with NumPy and sends it as an ``HxWx3`` uint8 array. Images go where the message
holds the media marker ``<__media__>`` (one per image); a message without markers gets
every image in front. ``--template`` overrides the model's chat template (for GGUFs that
have none). Prints the reply, its finish reason and the image statistics: how many images
were encoded, and how many came from the engine's image cache (ask twice to see a hit).
"""

import argparse

import numpy as np

from sipp import (
    ChatMessage,
    LocalModelDescriptor,
    LocalTextOptions,
    NativeRuntimeConfig,
    SippClient,
    SippTextOptions,
)

parser = argparse.ArgumentParser(description="Chat about images with a local vision model.")
parser.add_argument("model", help="text model GGUF")
parser.add_argument("projector", help="its multimodal projector (mmproj) GGUF")
parser.add_argument("images", nargs="*", help="image files (default: a drawn red square)")
parser.add_argument("--template", default=None, help="Jinja chat template override")
parser.add_argument("--question", default="What colour is the square in this picture?")
parser.add_argument("--max-tokens", type=int, default=32)
args = parser.parse_args()

config = NativeRuntimeConfig(
    multimodal={"projector_path": args.projector},
    context={"n_ctx": 4096},
)
if args.images:
    media: list[object] = list(args.images)
else:
    square = np.full((224, 224, 3), 255, dtype=np.uint8)  # white background
    square[48:176, 48:176] = (220, 20, 20)  # a red square
    media = [square]

with SippClient() as client:
    vision = client.add("vision", LocalModelDescriptor(
        args.model, config=config, chat_template=args.template))
    messages = [ChatMessage("user", args.question)]
    for attempt in ("first", "again"):
        result = client.chat(
            messages, endpoint=vision,
            options=SippTextOptions(max_tokens=args.max_tokens, temperature=0.0),
            local=LocalTextOptions(media=media),
        ).result()
        stats = result["local_stats"] or {}
        print(f"{attempt}: {result['text'].strip()!r}")
        print(f"finish_reason: {result['finish_reason']}")
        print(f"images: {stats.get('images')} (encoded {stats.get('images_encoded')}, "
              f"from cache {stats.get('images_cached')})")
