"""Image token counts follow the image size and ``multimodal.image_min_tokens`` /
``image_max_tokens``, on the tiny llama with the generated Qwen2-VL style projector (dynamic
resolution: one image token per 32x32 pixels after an aspect-keeping resize, 8 to 4096 tokens
by default). ``local_stats["image_tokens"]`` reports them and ``usage.input_tokens`` counts
them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from build_scripts import make_test_models as mtm
from sipp import (
    ChatMessage,
    LocalModelDescriptor,
    LocalTextOptions,
    NativeRuntimeConfig,
    SippClient,
    SippTextOptions,
)
from sipp.errors import ModelLoadError, RequestTooLargeError
from sipp.types import EndpointRef

_RNG = np.random.default_rng(7)
SMALL = _RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
LARGE = _RNG.integers(0, 256, (512, 512, 3), dtype=np.uint8)
WIDE = _RNG.integers(0, 256, (256, 512, 3), dtype=np.uint8)
SIDE = mtm.QWEN2VL_PATCH_SIZE * mtm.QWEN2VL_MERGE  # pixels per token side (32)


@pytest.fixture
def client(native_backend: None) -> Iterator[SippClient]:
    with SippClient() as c:
        yield c


def add(client: SippClient, tiny_llama_path: Path, projector: Path, name: str = "qvl",
        context: dict[str, Any] | None = None, **multimodal: Any) -> EndpointRef:
    return client.add(name, LocalModelDescriptor(tiny_llama_path, config=NativeRuntimeConfig(
        multimodal={"projector_path": str(projector), "use_gpu": False, **multimodal},
        context={"n_ctx": 2048, **(context or {})},
    )))


@pytest.fixture
def qwen2vl(client: SippClient, tiny_llama_path: Path,
            tiny_qwen2vl_mmproj_path: Path) -> EndpointRef:
    return add(client, tiny_llama_path, tiny_qwen2vl_mmproj_path)


def chat(client: SippClient, ref: EndpointRef, media: list[Any] | None = None) -> Any:
    local = LocalTextOptions(media=media) if media is not None else None
    result: Any = client.chat(
        [ChatMessage("user", "Describe the picture.")], endpoint=ref,
        options=SippTextOptions(max_tokens=6, temperature=0.0), local=local,
    ).result(timeout=120)
    return result


def image_tokens(client: SippClient, ref: EndpointRef, image: np.ndarray) -> int:
    result = chat(client, ref, [image])
    assert result["finish_reason"] in ("length", "stop")
    assert result["usage"]["output_tokens"] >= 1
    stats = result["local_stats"]
    assert stats["images"] == 1
    count: int = stats["image_tokens"]
    return count


def test_token_count_follows_the_image_size_by_default(
    client: SippClient, qwen2vl: EndpointRef
) -> None:
    small, large, wide = (image_tokens(client, qwen2vl, image) for image in (SMALL, LARGE, WIDE))
    assert large == (512 // SIDE) ** 2 == 256
    assert wide == (512 // SIDE) * (256 // SIDE) == 128
    # 64x64 is 4 tokens, below the projector's default minimum of 8: scaled up to 96x96
    assert small == 9
    assert mtm.QWEN2VL_MIN_TOKENS <= small < wide < large


def test_usage_input_tokens_include_the_image_tokens(
    client: SippClient, qwen2vl: EndpointRef
) -> None:
    plain = chat(client, qwen2vl)["usage"]["input_tokens"]
    framing = set()
    for image in (SMALL, LARGE):
        result = chat(client, qwen2vl, [image])
        n_image = result["local_stats"]["image_tokens"]
        assert result["local_stats"]["input_tokens"] == result["usage"]["input_tokens"]
        # the rest is the projector's begin/end-of-image text, the same for every image
        framing.add(result["usage"]["input_tokens"] - plain - n_image)
    assert len(framing) == 1 and framing.pop() > 0


def test_image_max_tokens_caps_a_large_image(
    client: SippClient, tiny_llama_path: Path, tiny_qwen2vl_mmproj_path: Path
) -> None:
    ref = add(client, tiny_llama_path, tiny_qwen2vl_mmproj_path, image_max_tokens=64)
    large = image_tokens(client, ref, LARGE)
    assert large <= 64
    assert large == 64  # 512x512 scaled down to 256x256
    assert image_tokens(client, ref, WIDE) <= 64
    assert image_tokens(client, ref, SMALL) == 9  # below the cap: unchanged


def test_image_min_tokens_raises_a_small_image(
    client: SippClient, tiny_llama_path: Path, tiny_qwen2vl_mmproj_path: Path
) -> None:
    ref = add(client, tiny_llama_path, tiny_qwen2vl_mmproj_path, image_min_tokens=36)
    small = image_tokens(client, ref, SMALL)
    assert small >= 36
    assert small == 36  # 64x64 scaled up to 192x192
    assert image_tokens(client, ref, LARGE) == 256  # above the floor: unchanged


def test_both_bounds_together(
    client: SippClient, tiny_llama_path: Path, tiny_qwen2vl_mmproj_path: Path
) -> None:
    ref = add(client, tiny_llama_path, tiny_qwen2vl_mmproj_path,
              image_min_tokens=16, image_max_tokens=16)
    for image in (SMALL, LARGE, WIDE):
        assert image_tokens(client, ref, image) <= 16
    assert image_tokens(client, ref, SMALL) >= 16


def test_bounded_images_change_what_the_model_sees(
    client: SippClient, qwen2vl: EndpointRef, tiny_llama_path: Path,
    tiny_qwen2vl_mmproj_path: Path
) -> None:
    capped = add(client, tiny_llama_path, tiny_qwen2vl_mmproj_path, "capped",
                 image_max_tokens=64)
    assert chat(client, capped, [LARGE])["text"] != chat(client, qwen2vl, [LARGE])["text"]


def test_image_max_tokens_fits_an_image_into_a_small_batch(
    client: SippClient, tiny_llama_path: Path, tiny_qwen2vl_mmproj_path: Path
) -> None:
    batch = {"n_batch": 128, "n_ubatch": 128}
    unbounded = add(client, tiny_llama_path, tiny_qwen2vl_mmproj_path, "unbounded", batch)
    with pytest.raises(RequestTooLargeError,
                       match=r"local\.media\[0\] needs 256 image tokens.*image_max_tokens"):
        chat(client, unbounded, [LARGE])
    bounded = add(client, tiny_llama_path, tiny_qwen2vl_mmproj_path, "bounded", batch,
                  image_max_tokens=100)
    assert image_tokens(client, bounded, LARGE) <= 100


def test_image_max_tokens_below_the_projector_minimum_is_refused_at_load(
    client: SippClient, tiny_llama_path: Path, tiny_qwen2vl_mmproj_path: Path
) -> None:
    # only the cap set: libmtmd keeps the projector's own floor (8 tokens) and refuses
    with pytest.raises(ModelLoadError, match=r"image_max_pixels \(4096\) is less than "
                                             r"image_min_pixels \(8192\)"):
        add(client, tiny_llama_path, tiny_qwen2vl_mmproj_path, image_max_tokens=4)
    # lowering the floor with it works
    ref = add(client, tiny_llama_path, tiny_qwen2vl_mmproj_path, "tight",
              image_min_tokens=1, image_max_tokens=4)
    assert image_tokens(client, ref, LARGE) <= 4
