"""Local vision for the engine: media inputs, image prompts and image embeddings.

Caller thread (at submit): :func:`load_media` turns ``local.media`` items (file paths, encoded
image bytes, ``HxWx3`` uint8 arrays) into bitmaps, and :func:`place_markers` /
:func:`marked_messages` make the prompt hold one media marker per image.

Engine thread: :meth:`Vision.prepare` tokenizes the prompt with libmtmd and encodes each image
once (an LRU keyed by the image's sha256 serves repeated images). The result is a
:class:`MediaPrompt`: scheduler tokens in which every image position holds a placeholder id
above any vocabulary (:data:`IMAGE_TOKEN_BASE` + a serial per distinct image, so KV prefix
reuse works across requests that share an image)
plus the image embeddings by position. The scheduler treats each image as an atomic span;
:meth:`Vision.decode_span` decodes one span's embeddings with an embedding batch, switching
to non-causal attention for projectors that need it (Gemma 3).
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from sipp.config import MultimodalRuntimeConfig
from sipp.errors import MediaError, ModelLoadError, RequestTooLargeError
from sipp.native import LlamaBatch
from sipp.native import LlamaContext as NativeContext
from sipp.native import LlamaModel as NativeModel
from sipp.native.mtmd import Bitmap, InputChunks, MtmdContext
from sipp.types import ChatMessage

__all__ = [
    "IMAGE_CACHE_ENTRIES",
    "IMAGE_TOKEN_BASE",
    "ImageCache",
    "ImageSpan",
    "MediaPrompt",
    "Vision",
    "load_media",
    "marked_messages",
    "place_markers",
]

IMAGE_CACHE_ENTRIES = 16
"""Encoded images kept per engine (least recently used dropped first)."""
IMAGE_TOKEN_BASE = 1 << 30
"""Image positions hold ``IMAGE_TOKEN_BASE + serial`` in scheduler tokens (never sampled)."""


# ----------------------------------------------------------------------------- caller thread
def load_media(items: Sequence[Any], mtmd: MtmdContext) -> list[Bitmap]:
    """Bitmaps for ``local.media``; raises ``MediaError`` naming ``local.media[i]``."""
    bitmaps: list[Bitmap] = []
    try:
        for i, item in enumerate(items):
            bitmaps.append(_load_one(i, item, mtmd))
    except BaseException:
        for bitmap in bitmaps:
            bitmap.close()
        raise
    return bitmaps


def _load_one(i: int, item: Any, mtmd: MtmdContext) -> Bitmap:
    name = f"local.media[{i}]"
    if isinstance(item, np.ndarray):
        return _array_bitmap(name, item)
    if isinstance(item, str | os.PathLike):
        path = os.fspath(item)
        if not os.path.isfile(path):
            raise MediaError(f"{name}: no such image file: {path}")
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise MediaError(f"{name}: cannot read {path}: {exc}") from exc
        return _decode(name, data, mtmd, f" ({path})")
    if isinstance(item, bytes | bytearray | memoryview):
        return _decode(name, item, mtmd, "")
    raise MediaError(
        f"{name} must be an image file path, encoded image bytes or an HxWx3 uint8 NumPy "
        f"array, got {type(item).__name__}"
    )


def _decode(name: str, data: bytes | bytearray | memoryview, mtmd: MtmdContext,
            where: str) -> Bitmap:
    try:
        return mtmd.decode_image(data)
    except MediaError as exc:
        raise MediaError(f"{name}: {exc}{where}") from exc


def _array_bitmap(name: str, array: npt.NDArray[Any]) -> Bitmap:
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise MediaError(
            f"{name} must be an HxWx3 uint8 array (RGB), got dtype {array.dtype} "
            f"shape {array.shape}"
        )
    height, width = int(array.shape[0]), int(array.shape[1])
    if height < 1 or width < 1:
        raise MediaError(f"{name} must have a positive size, got shape {array.shape}")
    rgb = np.ascontiguousarray(array).tobytes()
    digest = hashlib.sha256(f"{width}x{height}:".encode())
    digest.update(rgb)
    return Bitmap(width, height, rgb, image_id="rgb-" + digest.hexdigest())


def place_markers(text: str, n_images: int, marker: str) -> str:
    """``text`` with one marker per image: as given when it already has them, else all
    markers in front. Raises ``MediaError`` when the counts differ."""
    found = text.count(marker)
    if found == 0:
        return marker * n_images + text
    _check_count(found, n_images, marker)
    return text


def marked_messages(messages: Sequence[ChatMessage], n_images: int,
                    marker: str) -> tuple[ChatMessage, ...]:
    """Chat messages with one marker per image: as given when any message has markers,
    else all markers at the start of the last user message."""
    found = sum(m.content.count(marker) for m in messages)
    if found:
        _check_count(found, n_images, marker)
        return tuple(messages)
    users = [i for i, m in enumerate(messages) if m.role == "user"]
    if not users:
        raise MediaError("local.media needs a user message to attach the images to")
    out = list(messages)
    last = users[-1]
    out[last] = ChatMessage(role="user", content=marker * n_images + out[last].content)
    return tuple(out)


def _check_count(found: int, n_images: int, marker: str) -> None:
    if found != n_images:
        raise MediaError(
            f"local.media has {n_images} image(s) but the prompt has {found} media "
            f"marker(s) {marker!r}: write one marker per image where it belongs, or none to "
            "put every image first"
        )


# ----------------------------------------------------------------------------- engine thread
@dataclass(frozen=True)
class ImageSpan:
    """One image in a prompt: positions ``[start, end)`` and their embeddings."""

    start: int
    end: int
    embd: npt.NDArray[np.float32]
    non_causal: bool


@dataclass
class MediaPrompt:
    """A tokenized prompt with images (placeholder ids at image positions)."""

    tokens: npt.NDArray[np.int32]
    spans: tuple[ImageSpan, ...]
    images_encoded: int = 0
    images_cached: int = 0

    @property
    def bounds(self) -> tuple[tuple[int, int], ...]:
        """``(start, end)`` of every image, for the scheduler."""
        return tuple((s.start, s.end) for s in self.spans)

    def segments(self, start: int, end: int) -> list[tuple[int, int, ImageSpan | None]]:
        """Split positions ``[start, end)`` into text runs and whole images, in order."""
        out: list[tuple[int, int, ImageSpan | None]] = []
        pos = start
        for span in self.spans:
            if span.end <= pos or span.start >= end:
                continue
            if span.start < pos or span.end > end:
                raise RuntimeError(
                    f"an image span [{span.start}, {span.end}) was split by a batch "
                    f"boundary [{start}, {end})"
                )
            if span.start > pos:
                out.append((pos, span.start, None))
            out.append((span.start, span.end, span))
            pos = span.end
        if pos < end:
            out.append((pos, end, None))
        return out

    def last_image_end(self, start: int, end: int) -> int:
        """End of the last image inside ``[start, end)``, or ``start`` if none."""
        last = start
        for span in self.spans:
            if start <= span.start and span.end <= end:
                last = max(last, span.end)
        return last


@dataclass
class ImageCache:
    """An LRU of image embeddings keyed by image id (a sha256), with counters."""

    max_entries: int = IMAGE_CACHE_ENTRIES
    images_encoded: int = 0
    images_cached: int = 0
    _entries: OrderedDict[str, npt.NDArray[np.float32]] = field(default_factory=OrderedDict)

    def get(self, key: str) -> npt.NDArray[np.float32] | None:
        embd = self._entries.get(key)
        if embd is not None:
            self._entries.move_to_end(key)
        return embd

    def put(self, key: str, embd: npt.NDArray[np.float32]) -> None:
        self._entries[key] = embd
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class Vision:
    """The projector of one engine, its image cache and its embedding batch.

    Created on the engine thread after the text context; raises ``ModelLoadError`` for a
    projector that does not load, does not match the model, takes no images or uses M-RoPE
    positions (not supported by this engine yet).
    """

    def __init__(self, model: NativeModel, cfg: MultimodalRuntimeConfig, *, n_batch: int,
                 n_ubatch: int, n_threads: int | None = None) -> None:
        path = cfg.projector_path
        if path is None:
            raise ModelLoadError("multimodal.projector_path is not set")
        mtmd = MtmdContext(
            model, path, use_gpu=cfg.use_gpu, n_threads=n_threads,
            image_min_tokens=cfg.image_min_tokens or None,
            image_max_tokens=cfg.image_max_tokens or None,
        )
        try:
            if not mtmd.supports_vision:
                raise ModelLoadError(f"Cannot load projector {path}: it has no vision encoder")
            if mtmd.uses_mrope:
                raise ModelLoadError(
                    f"Cannot load projector {path}: it uses M-RoPE image positions "
                    "(Qwen2-VL family), which sipp's engine does not support yet"
                )
            self.batch = LlamaBatch(n_batch, 1, embd=mtmd.n_embd)
        except BaseException:
            mtmd.close()
            raise
        self.mtmd = mtmd
        self.marker = mtmd.marker
        self.n_batch, self.n_ubatch = n_batch, n_ubatch
        self.cache = ImageCache()
        self._serials: dict[str, int] = {}

    def load(self, items: Sequence[Any]) -> list[Bitmap]:
        """Bitmaps for ``local.media`` (any thread; see :func:`load_media`)."""
        return load_media(items, self.mtmd)

    def prepare(self, text: str, bitmaps: Sequence[Bitmap], *, bos: int | None) -> MediaPrompt:
        """Tokenize ``text`` with its images and encode every image not in the cache
        (engine thread). ``bos`` is prepended unless the text already starts with it."""
        chunks = self.mtmd.tokenize(text, bitmaps, add_special=False, parse_special=True)
        try:
            return self._assemble(chunks, bos)
        finally:
            chunks.close()

    def _assemble(self, chunks: InputChunks, bos: int | None) -> MediaPrompt:
        parts: list[npt.NDArray[np.int32]] = []
        spans: list[ImageSpan] = []
        pos = 0
        encoded = cached = n_image = 0
        for info in chunks.infos():
            if info.kind == "text":
                assert info.tokens is not None
                tokens = info.tokens
                if pos == 0 and bos is not None and (tokens.shape[0] == 0 or tokens[0] != bos):
                    tokens = np.concatenate([np.array([bos], dtype=np.int32), tokens])
                parts.append(tokens)
                pos += int(tokens.shape[0])
                continue
            if info.kind != "image":
                raise MediaError(f"local.media[{n_image}]: only images are supported")
            if pos == 0 and bos is not None:
                parts.append(np.array([bos], dtype=np.int32))
                pos = 1
            non_causal = self.mtmd.non_causal(chunks, info.index)
            limit, what = (self.n_ubatch, "n_ubatch") if non_causal else (self.n_batch, "n_batch")
            if info.n_tokens > limit:
                raise RequestTooLargeError(
                    f"local.media[{n_image}] needs {info.n_tokens} image tokens but one batch "
                    f"holds {limit} (context.{what}); raise it or lower "
                    "multimodal.image_max_tokens"
                )
            if info.n_pos != info.n_tokens:
                raise MediaError(f"local.media[{n_image}]: image positions differ from tokens")
            key = info.chunk_id or f"anon-{id(info)}"
            embd = self.cache.get(key)
            if embd is None:
                embd = self.mtmd.encode(chunks, info.index)
                self.cache.images_encoded += 1
                encoded += 1
                if info.chunk_id:
                    self.cache.put(key, embd)
            else:
                self.cache.images_cached += 1
                cached += 1
            serial = self._serials.setdefault(key, len(self._serials) + 1)
            parts.append(np.full(info.n_tokens, IMAGE_TOKEN_BASE + serial, dtype=np.int32))
            spans.append(ImageSpan(pos, pos + info.n_tokens, embd, non_causal))
            pos += info.n_tokens
            n_image += 1
        tokens = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        if spans and spans[-1].end == tokens.shape[0]:
            raise MediaError(
                "the prompt ends with an image: add text after the last media marker "
                f"{self.marker!r}"
            )
        return MediaPrompt(tokens, tuple(spans), encoded, cached)

    def decode_span(self, ctx: NativeContext, span: ImageSpan, slot: int) -> None:
        """Decode one image's embeddings into sequence ``slot`` at its positions; raises
        like ``LlamaContext.decode`` (``KvCacheFullError`` when there is no room)."""
        batch = self.batch
        n = span.end - span.start
        assert batch.embd is not None
        batch.embd[:n] = span.embd
        batch.pos[:n] = np.arange(span.start, span.end, dtype=np.int32)
        batch.n_seq_id[:n] = 1
        batch.seq_ids[:n, 0] = slot
        batch.logits[:n] = 0
        batch.n_tokens = n
        if span.non_causal:
            ctx.set_causal_attn(False)
        try:
            ctx.decode(batch)
        finally:
            if span.non_causal:
                ctx.set_causal_attn(True)

    def close(self) -> None:
        self.mtmd.close()
