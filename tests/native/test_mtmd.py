"""``sipp.native.mtmd`` on the tiny Gemma 3 model and its generated projector: loading,
image decoding, tokenizing around media markers and encoding images."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sipp.errors import MediaError, ModelLoadError
from sipp.native import LlamaContext, LlamaModel, UseAfterCloseError
from sipp.native.mtmd import Bitmap, MtmdContext, default_marker, image_format

TOKENS_PER_IMAGE = 16


def png(image: np.ndarray) -> bytes:
    height, width, _ = image.shape
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data)))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                            0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def bmp(image: np.ndarray) -> bytes:
    """A 24-bit bottom-up BMP (rows padded to 4 bytes, BGR order)."""
    height, width, _ = image.shape
    row = width * 3
    pad = (4 - row % 4) % 4
    pixels = b"".join(image[y, :, ::-1].tobytes() + b"\x00" * pad
                      for y in range(height - 1, -1, -1))
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835,
                       0, 0)
    return header + info + pixels


@pytest.fixture(scope="module")
def model(native: Any, test_models: dict[str, Path]) -> Iterator[LlamaModel]:
    with LlamaModel(test_models["tiny-gemma3"]) as m:
        yield m


@pytest.fixture(scope="module")
def mtmd(model: LlamaModel, test_models: dict[str, Path]) -> Iterator[MtmdContext]:
    with MtmdContext(model, test_models["tiny-gemma3-mmproj"], use_gpu=False) as ctx:
        yield ctx


def image(rgb: tuple[int, int, int], height: int = 12, width: int = 20) -> np.ndarray:
    out = np.zeros((height, width, 3), dtype=np.uint8)
    out[...] = rgb
    return out


def test_projector_facts(mtmd: MtmdContext, model: LlamaModel) -> None:
    assert mtmd.supports_vision
    assert not mtmd.uses_mrope
    assert mtmd.marker == default_marker() == "<__media__>"
    assert mtmd.n_embd == model.n_embd


def test_mismatched_projector_names_both_sizes(model: LlamaModel,
                                              test_models: dict[str, Path]) -> None:
    with pytest.raises(ModelLoadError, match=r"mmproj-mismatch\.gguf.*n_embd = 64.*n_embd = 32"):
        MtmdContext(model, test_models["tiny-gemma3-mmproj-mismatch"], use_gpu=False)


def test_bad_token_bounds_are_refused(model: LlamaModel, test_models: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="image_max_tokens"):
        MtmdContext(model, test_models["tiny-gemma3-mmproj"], image_max_tokens=0)


def test_png_and_bmp_decode_to_the_same_pixels_as_the_array(mtmd: MtmdContext) -> None:
    pixels = image((200, 30, 10))
    pixels[3:6, 4:9] = (0, 0, 255)
    chunks_for: dict[str, np.ndarray] = {}
    for name, bitmap in (
        ("array", Bitmap(20, 12, pixels.tobytes(), image_id="x")),
        ("png", mtmd.decode_image(png(pixels))),
        ("bmp", mtmd.decode_image(bmp(pixels))),
    ):
        with bitmap:
            assert (bitmap.width, bitmap.height) == (20, 12)
            with mtmd.tokenize(f"see {mtmd.marker} here", [bitmap]) as chunks:
                chunks_for[name] = mtmd.encode(chunks, 1)
    np.testing.assert_array_equal(chunks_for["png"], chunks_for["array"])
    np.testing.assert_array_equal(chunks_for["bmp"], chunks_for["array"])


def test_decoded_images_are_named_by_their_sha256(mtmd: MtmdContext) -> None:
    import hashlib

    data = png(image((1, 2, 3)))
    with mtmd.decode_image(data) as bitmap:
        assert bitmap.image_id == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", "not a PNG"),
    (b"\xff\xd8\xff\xe0 not really", "corrupt or truncated JPEG"),
    (png(image((9, 9, 9)))[:-20], "corrupt or truncated PNG"),
])
def test_undecodable_data_is_a_media_error(mtmd: MtmdContext, data: bytes, message: str) -> None:
    with pytest.raises(MediaError, match=message):
        mtmd.decode_image(data)


def test_image_format_reads_the_signature() -> None:
    assert image_format(png(image((0, 0, 0)))) == "PNG"
    assert image_format(b"\xff\xd8\xff\xdb...") == "JPEG"
    assert image_format(b"GIF89a...") == "GIF"
    assert image_format(b"hello") is None


def test_bitmap_checks_its_size(native: Any) -> None:
    with pytest.raises(MediaError, match="positive"):
        Bitmap(0, 4, b"")
    with pytest.raises(MediaError, match=r"width\*height\*3 = 12"):
        Bitmap(2, 2, b"\x00" * 11)


def test_tokenize_splits_text_and_images(mtmd: MtmdContext) -> None:
    with Bitmap(20, 12, image((5, 5, 5)).tobytes(), image_id="img-a") as a, \
            Bitmap(20, 12, image((9, 9, 9)).tobytes(), image_id="img-b") as b:
        prompt = f"one {mtmd.marker} two {mtmd.marker} three"
        with mtmd.tokenize(prompt, [a, b]) as chunks:
            infos = chunks.infos()
            assert [i.kind for i in infos] == ["text", "image", "text", "image", "text"]
            images = [i for i in infos if i.kind == "image"]
            assert [i.chunk_id for i in images] == ["img-a", "img-b"]
            assert all(i.n_tokens == i.n_pos == TOKENS_PER_IMAGE for i in images)
            assert all(i.tokens is not None and i.tokens.shape[0] == i.n_tokens
                       for i in infos if i.kind == "text")
            assert mtmd.non_causal(chunks, 1)  # Gemma 3 attends across a whole image
            embd = mtmd.encode(chunks, 3)
            assert embd.shape == (TOKENS_PER_IMAGE, mtmd.n_embd) and embd.dtype == np.float32
            assert np.isfinite(embd).all()
            assert not np.array_equal(embd, mtmd.encode(chunks, 1))  # different pixels
        with pytest.raises(UseAfterCloseError):
            len(chunks)


def test_marker_count_mismatch_is_a_media_error(mtmd: MtmdContext) -> None:
    with Bitmap(4, 4, bytes(48), image_id="z") as bitmap, \
            pytest.raises(MediaError, match="number of media markers"):
        mtmd.tokenize("no marker here", [bitmap])


def test_libmtmd_helper_eval_reaches_the_same_position(
    model: LlamaModel, mtmd: MtmdContext
) -> None:
    with LlamaContext(model, n_ctx=256, n_batch=64, n_ubatch=64) as ctx, \
            Bitmap(20, 12, image((7, 7, 7)).tobytes(), image_id="e") as bitmap:
        prompt = f"look {mtmd.marker} now"
        with mtmd.tokenize(prompt, [bitmap], add_special=True) as chunks:
            n_pos = sum(i.n_pos for i in chunks.infos())
        assert mtmd.eval(ctx, prompt, [bitmap]) == n_pos
