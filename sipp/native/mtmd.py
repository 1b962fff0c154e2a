"""Vision input through libmtmd: a projector context, RGB bitmaps, tokenized chunks and
image encoding.

:class:`MtmdContext` loads a projector (mmproj GGUF) for a text model. Images become
:class:`Bitmap` objects (from RGB bytes, or decoded from an encoded file with
:meth:`MtmdContext.decode_image`). :meth:`MtmdContext.tokenize` splits a prompt with media
markers into :class:`InputChunks` (text tokens and image chunks); :meth:`MtmdContext.encode`
runs the projector on one image chunk and returns its embeddings, which the caller decodes
into the text model with an embedding batch (``LlamaBatch(embd=...)``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sipp.errors import EngineError, MediaError, ModelLoadError
from sipp.native._lib import get_native, recent_log_errors
from sipp.native._owner import Owner
from sipp.native.context import LlamaContext
from sipp.native.model import LlamaModel, utf8_text

__all__ = [
    "IMAGE_FORMATS",
    "Bitmap",
    "ChunkInfo",
    "InputChunks",
    "MtmdContext",
    "default_marker",
    "image_format",
]

ChunkKind = Literal["text", "image", "audio"]
_KINDS: dict[int, ChunkKind] = {0: "text", 1: "image", 2: "audio"}
# Leading bytes of the still-image formats libmtmd's decoder (stb_image) reads. Anything else
# is refused before libmtmd sees it: its helper would otherwise treat unknown data as audio
# or hand it to an ffprobe subprocess as video.
_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"8BPS", "PSD"),
    (b"#?RADIANCE", "HDR"),
    (b"#?RGBE", "HDR"),
    (b"P5", "PGM"),
    (b"P6", "PPM"),
)
IMAGE_FORMATS = "PNG, JPEG, GIF, BMP, PSD, HDR, PGM or PPM"
"""The encoded image formats :meth:`MtmdContext.decode_image` accepts."""
# Where libmtmd would look for ffmpeg/ffprobe: a path that cannot exist, so corrupt image
# bytes never reach a video decoder subprocess.
_NO_FFMPEG = b"/nonexistent/sipp-no-ffmpeg"


def image_format(data: bytes | bytearray | memoryview) -> str | None:
    """The format name of an encoded image from its first bytes, or None if unknown."""
    head = bytes(data[:16])
    for magic, name in _IMAGE_SIGNATURES:
        if head.startswith(magic):
            return name
    return None


def _free_mtmd(mtmd: Any, ptr: Any, _model: LlamaModel) -> None:
    mtmd.mtmd_free(ptr)


def _free_bitmap(mtmd: Any, ptr: Any) -> None:
    mtmd.mtmd_bitmap_free(ptr)


def _free_chunks(mtmd: Any, ptr: Any) -> None:
    mtmd.mtmd_input_chunks_free(ptr)


def default_marker() -> str:
    """libmtmd's default media marker (``<__media__>``): one per image in a prompt."""
    native = get_native()
    return str(native.ffi.string(native.mtmd.mtmd_default_marker()).decode())


class Bitmap(Owner):
    """An RGB image (``width * height * 3`` bytes, row-major). ``image_id`` names it in
    chunk ids (libmtmd uses it to tell images apart); pass a content hash."""

    _kind = "Bitmap"

    def __init__(
        self,
        width: int,
        height: int,
        rgb: bytes | bytearray | memoryview,
        *,
        image_id: str | None = None,
    ) -> None:
        if (
            not isinstance(width, int) or not isinstance(height, int)
            or isinstance(width, bool) or isinstance(height, bool)
            or width < 1 or height < 1
        ):
            raise MediaError(f"image size must be positive ints, got {width!r}x{height!r}")
        if len(rgb) != width * height * 3:
            raise MediaError(
                f"image data must be width*height*3 = {width * height * 3} RGB bytes, "
                f"got {len(rgb)}"
            )
        native = get_native()
        mtmd = native.mtmd
        ffi = native.ffi
        ptr = mtmd.mtmd_bitmap_init(width, height, ffi.from_buffer("unsigned char[]", rgb))
        if ptr == ffi.NULL:
            raise MediaError("mtmd_bitmap_init failed")
        self._adopt(ptr, mtmd, ffi)
        if image_id is not None:
            self.image_id = image_id

    @classmethod
    def _from_handle(cls, ptr: Any, mtmd: Any, ffi: Any) -> Bitmap:
        bitmap = cls.__new__(cls)
        bitmap._adopt(ptr, mtmd, ffi)
        return bitmap

    def _adopt(self, ptr: Any, mtmd: Any, ffi: Any) -> None:
        self._own(ptr, _free_bitmap, mtmd, ptr)
        self._mtmd, self._ffi = mtmd, ffi
        self.width = int(mtmd.mtmd_bitmap_get_nx(ptr))
        self.height = int(mtmd.mtmd_bitmap_get_ny(ptr))

    @property
    def image_id(self) -> str:
        """The id libmtmd carries into this image's chunk ("" when unset)."""
        raw = self._mtmd.mtmd_bitmap_get_id(self._handle())
        return "" if raw == self._ffi.NULL else self._ffi.string(raw).decode()

    @image_id.setter
    def image_id(self, value: str) -> None:
        self._mtmd.mtmd_bitmap_set_id(self._handle(), value.encode("utf-8"))


@dataclass(frozen=True)
class ChunkInfo:
    """One tokenized chunk: ``kind`` text (``tokens`` set) or image; ``n_tokens`` entries in
    the batch and ``n_pos`` positions in the sequence (they differ only for M-RoPE)."""

    index: int
    kind: ChunkKind
    n_tokens: int
    n_pos: int
    chunk_id: str
    tokens: np.ndarray | None


class InputChunks(Owner):
    """The chunks :meth:`MtmdContext.tokenize` produced (text runs and images, in order)."""

    _kind = "InputChunks"

    def __init__(self, ptr: Any, mtmd: Any, ffi: Any) -> None:
        self._own(ptr, _free_chunks, mtmd, ptr)
        self._mtmd, self._ffi = mtmd, ffi

    def __len__(self) -> int:
        return int(self._mtmd.mtmd_input_chunks_size(self._handle()))

    def _chunk(self, index: int) -> Any:
        if not 0 <= index < len(self):
            raise IndexError(f"chunk index {index} out of range [0, {len(self)})")
        return self._mtmd.mtmd_input_chunks_get(self._handle(), index)

    def info(self, index: int) -> ChunkInfo:
        """What chunk ``index`` holds (text tokens are copied)."""
        mtmd, ffi = self._mtmd, self._ffi
        chunk = self._chunk(index)
        kind = _KINDS.get(int(mtmd.mtmd_input_chunk_get_type(chunk)), "audio")
        tokens = None
        if kind == "text":
            n_out = ffi.new("size_t *")
            ptr = mtmd.mtmd_input_chunk_get_tokens_text(chunk, n_out)
            n = int(n_out[0])
            tokens = (
                np.frombuffer(ffi.buffer(ptr, 4 * n), dtype=np.int32).copy() if n
                else np.zeros(0, dtype=np.int32)
            )
        raw_id = mtmd.mtmd_input_chunk_get_id(chunk)
        return ChunkInfo(
            index=index, kind=kind,
            n_tokens=int(mtmd.mtmd_input_chunk_get_n_tokens(chunk)),
            n_pos=int(mtmd.mtmd_input_chunk_get_n_pos(chunk)),
            chunk_id="" if raw_id == ffi.NULL else ffi.string(raw_id).decode("utf-8", "replace"),
            tokens=tokens,
        )

    def infos(self) -> list[ChunkInfo]:
        return [self.info(i) for i in range(len(self))]


class MtmdContext(Owner):
    """A multimodal projector (mmproj GGUF) bound to a text ``model``.

    ``image_min_tokens`` / ``image_max_tokens`` bound the tokens per image for projectors
    with dynamic resolution (``None`` keeps the projector's own limits). Loading fails with
    ``ModelLoadError`` naming the path and libmtmd's reason (for example a projector whose
    embedding size does not match the text model).
    """

    _kind = "MtmdContext"

    def __init__(
        self,
        model: LlamaModel,
        mmproj_path: str | os.PathLike[str],
        *,
        use_gpu: bool = True,
        n_threads: int | None = None,
        image_min_tokens: int | None = None,
        image_max_tokens: int | None = None,
    ) -> None:
        path = Path(mmproj_path)
        if not path.is_file():
            raise ModelLoadError(f"Cannot load projector {path}: file not found")
        for name, value in (("image_min_tokens", image_min_tokens),
                            ("image_max_tokens", image_max_tokens),
                            ("n_threads", n_threads)):
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ValueError(f"{name} must be an int >= 1 or None, got {value!r}")
        model_ptr = model._handle()
        native = get_native()
        ffi, mtmd = native.ffi, native.mtmd
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = bool(use_gpu)
        params.print_timings = False
        params.warmup = False
        if n_threads is not None:
            params.n_threads = n_threads
        if image_min_tokens is not None:
            params.image_min_tokens = image_min_tokens
        if image_max_tokens is not None:
            params.image_max_tokens = image_max_tokens
        recent_log_errors(clear=True)
        ptr = mtmd.mtmd_init_from_file(os.fsencode(path), model_ptr, params)
        if ptr == ffi.NULL:
            detail = "; ".join(recent_log_errors(clear=True)[-3:]) or "libmtmd returned NULL"
            raise ModelLoadError(f"Cannot load projector {path}: {detail}")
        self._own(ptr, _free_mtmd, mtmd, ptr, model)
        self._ffi, self._mtmd = ffi, mtmd
        self.model = model
        self.path = path
        self.n_embd = int(native.lib.llama_model_n_embd_inp(model_ptr))
        model._attach(self)

    @property
    def supports_vision(self) -> bool:
        """Whether the projector accepts images."""
        return bool(self._mtmd.mtmd_support_vision(self._handle()))

    @property
    def uses_mrope(self) -> bool:
        """Whether image positions are M-RoPE (2-D) positions."""
        return bool(self._mtmd.mtmd_decode_use_mrope(self._handle()))

    @property
    def marker(self) -> str:
        """The text marker that stands for one image in a prompt."""
        return self._ffi.string(self._mtmd.mtmd_get_marker(self._handle())).decode()

    def decode_image(self, data: bytes | bytearray | memoryview) -> Bitmap:
        """Decode an encoded image file (PNG, JPEG, BMP, GIF...) into a :class:`Bitmap`
        whose id is the sha256 of ``data``; raises ``MediaError`` when it is not an image."""
        ptr = self._handle()
        ffi, mtmd = self._ffi, self._mtmd
        if len(data) == 0:
            raise MediaError("image data is empty")
        if image_format(data) is None:
            raise MediaError(f"image data is not a {IMAGE_FORMATS} file")
        buf = ffi.from_buffer("unsigned char[]", data)
        opt = mtmd.mtmd_helper_init_opt_default()
        no_ffmpeg = ffi.new("char[]", _NO_FFMPEG)
        opt.video_params.ffmpeg_bin_dir = no_ffmpeg
        recent_log_errors(clear=True)
        wrapper = mtmd.mtmd_helper_bitmap_init_from_buf(ptr, buf, len(data), False, opt)
        if wrapper.video_ctx != ffi.NULL:
            mtmd.mtmd_helper_video_free(wrapper.video_ctx)
            if wrapper.bitmap != ffi.NULL:
                mtmd.mtmd_bitmap_free(wrapper.bitmap)
            raise MediaError("video input is not supported; pass still images")
        if wrapper.bitmap == ffi.NULL:
            raise MediaError(
                f"cannot decode image data: corrupt or truncated {image_format(data)} file"
            )
        bitmap = Bitmap._from_handle(wrapper.bitmap, mtmd, ffi)
        if mtmd.mtmd_bitmap_is_audio(wrapper.bitmap):
            bitmap.close()
            raise MediaError("audio input is not supported; pass images")
        return bitmap

    def tokenize(
        self,
        prompt: str,
        images: Sequence[Bitmap],
        *,
        add_special: bool = False,
        parse_special: bool = True,
    ) -> InputChunks:
        """Split ``prompt`` at its markers (one per image, in order) into text and image
        chunks; raises ``MediaError`` on a marker/image count mismatch or a failed
        image preprocessing."""
        ptr = self._handle()
        ffi, mtmd = self._ffi, self._mtmd
        raw = utf8_text(prompt)
        keep = ffi.new("char[]", raw)
        text = ffi.new("mtmd_input_text *")
        text.text, text.text_len = keep, len(raw)
        text.add_special, text.parse_special = add_special, parse_special
        handles = [b._handle() for b in images]
        arr = ffi.new("const mtmd_bitmap *[]", handles) if handles else ffi.NULL
        chunks = InputChunks(mtmd.mtmd_input_chunks_init(), mtmd, ffi)
        recent_log_errors(clear=True)
        rc = mtmd.mtmd_tokenize(ptr, chunks._handle(), text, arr, len(handles))
        if rc != 0:
            chunks.close()
            if rc == 1:
                raise MediaError(
                    f"the prompt has a different number of media markers ({self.marker}) "
                    f"than the {len(handles)} images"
                )
            detail = "; ".join(recent_log_errors(clear=True)[-2:])
            raise MediaError(
                f"image preprocessing failed (mtmd_tokenize returned {rc})"
                + (f": {detail}" if detail else "")
            )
        return chunks

    def non_causal(self, chunks: InputChunks, index: int) -> bool:
        """Whether chunk ``index`` must be decoded with non-causal attention, whole."""
        return bool(self._mtmd.mtmd_decode_use_non_causal(self._handle(), chunks._chunk(index)))

    def encode(self, chunks: InputChunks, index: int) -> np.ndarray:
        """Run the projector on image chunk ``index``; returns a float32 copy of its
        embeddings, shape ``(n_tokens, n_embd)``."""
        ptr = self._handle()
        ffi, mtmd = self._ffi, self._mtmd
        chunk = chunks._chunk(index)
        n_tokens = int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
        recent_log_errors(clear=True)
        rc = mtmd.mtmd_encode_chunk(ptr, chunk)
        if rc != 0:
            detail = "; ".join(recent_log_errors(clear=True)[-2:])
            raise EngineError(
                f"image encoding failed (mtmd_encode_chunk returned {rc})"
                + (f": {detail}" if detail else "")
            )
        out = mtmd.mtmd_get_output_embd(ptr)
        size = n_tokens * self.n_embd
        data = np.frombuffer(ffi.buffer(out, 4 * size), dtype=np.float32)
        return data.reshape(n_tokens, self.n_embd).copy()

    def eval(
        self,
        ctx: LlamaContext,
        prompt: str,
        images: Sequence[Bitmap],
        *,
        n_past: int = 0,
        seq_id: int = 0,
        n_batch: int | None = None,
        add_special: bool = True,
        parse_special: bool = True,
    ) -> int:
        """Tokenize ``prompt`` (one marker per image), encode images and decode everything
        into ``seq_id`` from position ``n_past`` with libmtmd's own helper; returns the new
        ``n_past``. (The engine does not use this: it decodes through its scheduler.)"""
        ptr = self._handle()
        chunks = self.tokenize(prompt, images, add_special=add_special,
                               parse_special=parse_special)
        try:
            new_n_past = self._ffi.new("llama_pos *")
            rc = self._mtmd.mtmd_helper_eval_chunks(
                ptr, ctx.ptr, chunks._handle(), n_past, seq_id, n_batch or ctx.n_batch, True,
                new_n_past,
            )
            if rc != 0:
                raise EngineError(f"mtmd_helper_eval_chunks failed (return code {rc})")
            return int(new_n_past[0])
        finally:
            chunks.close()
