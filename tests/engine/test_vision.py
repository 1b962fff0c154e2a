"""Local vision end to end on the tiny Gemma 3 model and its generated projector: images as
arrays, files and bytes at the media marker, one and two images, the image cache, image
spans through the scheduler, and clear errors for bad media and bad projectors."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sipp import (
    ChatMessage,
    LocalModelDescriptor,
    LocalTextOptions,
    NativeRuntimeConfig,
    SippClient,
    SippTextOptions,
)
from sipp.errors import (
    InvalidRequestError,
    MediaError,
    ModelLoadError,
    UnsupportedOperationError,
)
from sipp.types import EndpointRef

MARKER = "<__media__>"
TOKENS_PER_IMAGE = 16  # 64x64 image, 8x8 patches, 2x2 pooling (make_test_models)
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def solid(rgb: tuple[int, int, int], size: int = 40) -> np.ndarray:
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[...] = rgb
    return image


RED, BLUE = solid((255, 0, 0)), solid((0, 0, 255))


def png_bytes(image: np.ndarray) -> bytes:
    """A minimal RGB PNG (no external imaging library)."""
    height, width, _ = image.shape
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def paths(test_models: dict[str, Path]) -> dict[str, Path]:
    return test_models


def vision_config(projector: Path, **context: Any) -> NativeRuntimeConfig:
    return NativeRuntimeConfig(
        multimodal={"projector_path": str(projector), "use_gpu": False},
        context={"n_ctx": 1024, **context},
    )


@pytest.fixture
def client(native_backend: None) -> Iterator[SippClient]:
    with SippClient() as c:
        yield c


def add_vision(client: SippClient, paths: dict[str, Path], name: str = "vis",
               **context: Any) -> EndpointRef:
    return client.add(name, LocalModelDescriptor(
        paths["tiny-gemma3"], config=vision_config(paths["tiny-gemma3-mmproj"], **context),
        chat_template=TEMPLATE,
    ))


@pytest.fixture
def vision(client: SippClient, paths: dict[str, Path]) -> EndpointRef:
    return add_vision(client, paths)


def chat(client: SippClient, ref: EndpointRef, media: list[Any], text: str = "What is this?",
         max_tokens: int = 8) -> Any:
    result: Any = client.chat(
        [ChatMessage("user", text)], endpoint=ref,
        options=SippTextOptions(max_tokens=max_tokens, temperature=0.0),
        local=LocalTextOptions(media=media),
    ).result(timeout=60)
    return result


def test_chat_with_one_image_counts_its_tokens(client: SippClient, vision: EndpointRef) -> None:
    plain: Any = client.chat([ChatMessage("user", "What is this?")], endpoint=vision,
                        options=SippTextOptions(max_tokens=8, temperature=0.0)).result()
    with_image = chat(client, vision, [RED])
    assert with_image["finish_reason"] == "length"
    assert with_image["usage"]["output_tokens"] == 8
    # the image adds its embeddings plus the projector's begin/end-of-image text
    extra = with_image["usage"]["input_tokens"] - plain["usage"]["input_tokens"]
    assert extra > TOKENS_PER_IMAGE
    stats = with_image["local_stats"]
    assert (stats["images"], stats["images_encoded"], stats["images_cached"]) == (1, 1, 0)


def test_chat_with_two_images_at_their_markers(client: SippClient, vision: EndpointRef) -> None:
    one = chat(client, vision, [RED], f"First {MARKER} then nothing.")
    two = chat(client, vision, [RED, BLUE], f"First {MARKER} then {MARKER}.")
    stats = two["local_stats"]
    assert (stats["images"], stats["images_encoded"], stats["images_cached"]) == (2, 1, 1)
    assert two["usage"]["input_tokens"] > one["usage"]["input_tokens"] + TOKENS_PER_IMAGE
    swapped = chat(client, vision, [BLUE, RED], f"First {MARKER} then {MARKER}.")
    assert swapped["usage"]["input_tokens"] == two["usage"]["input_tokens"]
    assert swapped["text"] != two["text"]  # the order of the images reaches the model


def test_gemma3_images_have_a_fixed_token_count(
    client: SippClient, vision: EndpointRef, paths: dict[str, Path]
) -> None:
    one = chat(client, vision, [RED])
    two = chat(client, vision, [solid((0, 255, 0), 300), BLUE], f"{MARKER} and {MARKER}")
    assert one["local_stats"]["image_tokens"] == TOKENS_PER_IMAGE  # any size: 64x64 input
    assert two["local_stats"]["image_tokens"] == 2 * TOKENS_PER_IMAGE
    # Gemma 3 has no dynamic resolution: libmtmd ignores the token bounds for it
    bounded = client.add("bounded", LocalModelDescriptor(
        paths["tiny-gemma3"], chat_template=TEMPLATE, config=NativeRuntimeConfig(
            multimodal={"projector_path": str(paths["tiny-gemma3-mmproj"]), "use_gpu": False,
                        "image_min_tokens": 4, "image_max_tokens": 8},
            context={"n_ctx": 1024},
        ),
    ))
    assert chat(client, bounded, [RED])["local_stats"]["image_tokens"] == TOKENS_PER_IMAGE


def test_the_image_content_reaches_the_model(client: SippClient, vision: EndpointRef) -> None:
    assert chat(client, vision, [RED])["text"] != chat(client, vision, [BLUE])["text"]


def test_repeated_image_is_encoded_once(client: SippClient, vision: EndpointRef) -> None:
    first = chat(client, vision, [RED])
    again = chat(client, vision, [RED])
    both = chat(client, vision, [BLUE, BLUE], f"{MARKER} and {MARKER}")
    assert first["local_stats"]["images_encoded"] == 1
    assert (again["local_stats"]["images_encoded"], again["local_stats"]["images_cached"]) == (
        0, 1)
    assert again["text"] == first["text"]
    assert (both["local_stats"]["images_encoded"], both["local_stats"]["images_cached"]) == (
        1, 1)
    metrics = client._endpoints["vis"].engine.metrics()  # type: ignore[attr-defined]
    assert (metrics["images_encoded"], metrics["images_cached"]) == (2, 2)


def test_cached_prefix_with_an_image_gives_the_same_answer(
    client: SippClient, paths: dict[str, Path]
) -> None:
    uncached = client.add("nocache", LocalModelDescriptor(
        paths["tiny-gemma3"], chat_template=TEMPLATE,
        config=NativeRuntimeConfig(
            multimodal={"projector_path": str(paths["tiny-gemma3-mmproj"]), "use_gpu": False},
            context={"n_ctx": 1024}, cache={"mode": "disabled"},
        ),
    ))
    cached = add_vision(client, paths)
    reference = chat(client, uncached, [RED])
    chat(client, cached, [RED])
    reused = chat(client, cached, [RED])
    assert reused["local_stats"]["cached_tokens"] > TOKENS_PER_IMAGE
    assert reused["text"] == reference["text"]


def test_path_bytes_and_array_give_the_same_answer(
    client: SippClient, vision: EndpointRef, tmp_path: Path
) -> None:
    path = tmp_path / "red.png"
    path.write_bytes(png_bytes(RED))
    from_array = chat(client, vision, [RED])["text"]
    assert chat(client, vision, [str(path)])["text"] == from_array
    assert chat(client, vision, [path])["text"] == from_array
    assert chat(client, vision, [png_bytes(RED)])["text"] == from_array


def test_query_places_the_image_at_its_marker(client: SippClient, vision: EndpointRef) -> None:
    options = SippTextOptions(max_tokens=4, temperature=0.0)
    before: Any = client.query(f"{MARKER}A picture.", endpoint=vision, options=options,
                          local=LocalTextOptions(media=[RED])).result()
    after: Any = client.query(f"A picture. {MARKER}", endpoint=vision, options=options,
                         local=LocalTextOptions(media=[RED])).result()
    implicit: Any = client.query("A picture.", endpoint=vision, options=options,
                            local=LocalTextOptions(media=[RED])).result()
    assert implicit["text"] == before["text"]  # no marker: the image goes first
    assert after["local_stats"]["images"] == 1
    assert after["usage"]["input_tokens"] > TOKENS_PER_IMAGE
    assert after["text"] != before["text"]  # where the marker stands reaches the model


def test_parallel_image_requests_match_sequential_ones(
    client: SippClient, paths: dict[str, Path]
) -> None:
    ref = add_vision(client, paths, n_parallel=2)
    sequential = [chat(client, ref, [image])["text"] for image in (RED, BLUE)]
    runs = [
        client.chat([ChatMessage("user", "What is this?")], endpoint=ref,
                    options=SippTextOptions(max_tokens=8, temperature=0.0),
                    local=LocalTextOptions(media=[image]))
        for image in (BLUE, RED)
    ]
    assert [r.result(timeout=60)["text"] for r in runs] == sequential[::-1]


def test_small_batches_split_text_but_never_an_image(
    client: SippClient, paths: dict[str, Path]
) -> None:
    ref = add_vision(client, paths, n_batch=20, n_ubatch=20)
    result = chat(client, ref, [RED, BLUE], f"A {MARKER} and a {MARKER}, please.")
    assert result["usage"]["input_tokens"] > 2 * 20
    assert result["usage"]["output_tokens"] == 8


def test_image_larger_than_a_batch_is_refused(client: SippClient,
                                              paths: dict[str, Path]) -> None:
    ref = add_vision(client, paths, n_batch=12, n_ubatch=12)
    with pytest.raises(InvalidRequestError, match=r"local\.media\[0\].*n_ubatch"):
        chat(client, ref, [RED])


BAD_MEDIA: list[tuple[Any, str]] = [
    (b"definitely not an image", "not a PNG"),
    (b"", "empty"),
    (png_bytes(RED)[:40], "corrupt or truncated PNG"),
    (np.zeros((0, 4, 3), dtype=np.uint8), "positive size"),
    (np.zeros((4, 4, 3), dtype=np.float32), "uint8"),
    (np.zeros((4, 4), dtype=np.uint8), "HxWx3"),
    (np.zeros((4, 4, 4), dtype=np.uint8), "HxWx3"),
    ("/no/such/image.png", "no such image file"),
    (42, "must be an image file path"),
]


@pytest.mark.parametrize(("item", "message"), BAD_MEDIA,
                         ids=[m for _, m in BAD_MEDIA])
def test_bad_media_is_a_clear_error_naming_its_index(
    client: SippClient, vision: EndpointRef, item: Any, message: str
) -> None:
    with pytest.raises(MediaError, match=r"local\.media\[1\]") as info:
        chat(client, vision, [RED, item], f"{MARKER} {MARKER}")
    assert message in str(info.value)
    assert isinstance(info.value, InvalidRequestError)
    assert chat(client, vision, [RED])["finish_reason"] == "length"  # the engine lives on


def test_marker_count_must_match_the_images(client: SippClient, vision: EndpointRef) -> None:
    with pytest.raises(MediaError, match=r"2 image.*1 media marker"):
        chat(client, vision, [RED, BLUE], f"only one {MARKER}")


def test_media_without_a_projector_is_unsupported(
    client: SippClient, paths: dict[str, Path]
) -> None:
    ref = client.add("text", LocalModelDescriptor(paths["tiny-gemma3"], chat_template=TEMPLATE))
    with pytest.raises(UnsupportedOperationError, match=r"multimodal\.projector_path"):
        chat(client, ref, [RED])


def test_mismatched_projector_is_refused_at_load(
    client: SippClient, paths: dict[str, Path]
) -> None:
    with pytest.raises(ModelLoadError, match=r"mismatch.*n_embd = 64.*n_embd = 32"):
        client.add("bad", LocalModelDescriptor(
            paths["tiny-gemma3"], config=vision_config(paths["tiny-gemma3-mmproj-mismatch"])))


def test_missing_projector_file_is_refused_at_load(
    client: SippClient, paths: dict[str, Path], tmp_path: Path
) -> None:
    missing = tmp_path / "mmproj.gguf"
    with pytest.raises(ModelLoadError, match=r"projector .*mmproj\.gguf.*not found"):
        client.add("bad", LocalModelDescriptor(paths["tiny-gemma3"],
                                               config=vision_config(missing)))


def test_projector_on_an_embedding_model_is_refused(
    client: SippClient, paths: dict[str, Path]
) -> None:
    with pytest.raises(ModelLoadError, match="text-generating decoder"):
        client.add("bad", LocalModelDescriptor(
            paths["tiny-bert"], config=vision_config(paths["tiny-gemma3-mmproj"])))
