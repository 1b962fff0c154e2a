"""Vision input through libmtmd: a projector context, RGB bitmaps and prompt evaluation."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sipp.errors import EngineError, MediaError, ModelLoadError
from sipp.native._lib import get_native, recent_log_errors
from sipp.native._owner import Owner
from sipp.native.context import LlamaContext
from sipp.native.model import LlamaModel

__all__ = ["Bitmap", "MtmdContext"]


def _free_mtmd(mtmd: Any, ptr: Any, _model: LlamaModel) -> None:
    mtmd.mtmd_free(ptr)


def _free_bitmap(mtmd: Any, ptr: Any) -> None:
    mtmd.mtmd_bitmap_free(ptr)


def _free_chunks(mtmd: Any, ptr: Any) -> None:
    mtmd.mtmd_input_chunks_free(ptr)


class Bitmap(Owner):
    """An RGB image (``width * height * 3`` bytes, row-major) for :meth:`MtmdContext.eval`."""

    _kind = "Bitmap"

    def __init__(self, width: int, height: int, rgb: bytes | bytearray | memoryview) -> None:
        if not isinstance(width, int) or not isinstance(height, int) or width < 1 or height < 1:
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
        self._own(ptr, _free_bitmap, mtmd, ptr)
        self.width, self.height = width, height


class MtmdContext(Owner):
    """A multimodal projector (mmproj GGUF) bound to a text ``model``."""

    _kind = "MtmdContext"

    def __init__(
        self,
        model: LlamaModel,
        mmproj_path: str | os.PathLike[str],
        *,
        use_gpu: bool = True,
        n_threads: int | None = None,
    ) -> None:
        path = Path(mmproj_path)
        if not path.is_file():
            raise ModelLoadError(f"Cannot load projector {path}: file not found")
        model_ptr = model._handle()
        native = get_native()
        ffi, mtmd = native.ffi, native.mtmd
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = bool(use_gpu)
        params.print_timings = False
        params.warmup = False
        if n_threads is not None:
            params.n_threads = n_threads
        recent_log_errors(clear=True)
        ptr = mtmd.mtmd_init_from_file(os.fsencode(path), model_ptr, params)
        if ptr == ffi.NULL:
            detail = "; ".join(recent_log_errors(clear=True)[-3:]) or "libmtmd returned NULL"
            raise ModelLoadError(f"Cannot load projector {path}: {detail}")
        self._own(ptr, _free_mtmd, mtmd, ptr, model)
        self._ffi, self._mtmd = ffi, mtmd
        self.model = model
        self.path = path
        model._attach(self)

    @property
    def supports_vision(self) -> bool:
        """Whether the projector accepts images."""
        return bool(self._mtmd.mtmd_support_vision(self._handle()))

    @property
    def marker(self) -> str:
        """The text marker that stands for one image in a prompt."""
        return self._ffi.string(self._mtmd.mtmd_get_marker(self._handle())).decode()

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
        into ``seq_id`` from position ``n_past``; returns the new ``n_past``."""
        ptr = self._handle()
        ffi, mtmd = self._ffi, self._mtmd
        raw = prompt.encode("utf-8")
        keep = ffi.new("char[]", raw)
        text = ffi.new("mtmd_input_text *")
        text.text, text.text_len = keep, len(raw)
        text.add_special, text.parse_special = add_special, parse_special
        handles = [b._handle() for b in images]
        arr = ffi.new("const mtmd_bitmap *[]", handles) if handles else ffi.NULL
        chunks = mtmd.mtmd_input_chunks_init()
        holder = Owner()
        holder._own(chunks, _free_chunks, mtmd, chunks)
        try:
            rc = mtmd.mtmd_tokenize(ptr, chunks, text, arr, len(handles))
            if rc == 1:
                raise MediaError(
                    f"prompt has a different number of markers than {len(handles)} images"
                )
            if rc != 0:
                raise MediaError(f"image preprocessing failed (mtmd_tokenize returned {rc})")
            new_n_past = ffi.new("llama_pos *")
            rc = mtmd.mtmd_helper_eval_chunks(
                ptr, ctx.ptr, chunks, n_past, seq_id, n_batch or ctx.n_batch, True, new_n_past
            )
            if rc != 0:
                raise EngineError(f"mtmd_helper_eval_chunks failed (return code {rc})")
            return int(new_n_past[0])
        finally:
            holder.close()
