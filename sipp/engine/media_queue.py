"""Requests with images: made on the caller's thread (images decoded, prompt marked), then
tokenized with their images and encoded on the engine thread, which owns the projector."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sipp.engine.media import Vision
from sipp.engine.runstate import EngineRequest, RunState
from sipp.scheduler import Request

__all__ = ["MediaJob"]


@dataclass(eq=False)
class MediaJob:
    """A request with images waiting for the engine thread to tokenize and encode them."""

    run: RunState
    text: str
    bitmaps: list[Any]
    max_tokens: int
    context_key: str | None
    history: int
    request_id: int = 0  # set when the engine accepts it

    def prepare(self, vision: Vision, *, bos: int | None, n_vocab: int) -> EngineRequest:
        """Tokenize the prompt with its images, encode the images not cached, and return
        the scheduler request (engine thread; the bitmaps are freed either way)."""
        run = self.run
        try:
            prepared = vision.prepare(self.text, self.bitmaps, bos=bos)
        finally:
            self.discard()
        run.media = prepared
        run.n_input = int(prepared.tokens.shape[0])
        if self.history:
            hist = prepared.tokens[-self.history:]
            run.history = hist[hist < n_vocab]
        return Request(request_id=self.request_id, prompt_tokens=prepared.tokens,
                       max_tokens=self.max_tokens, context_key=self.context_key,
                       kind="generate", payload=run, media_spans=prepared.bounds)

    def discard(self) -> None:
        """Free the decoded images (idempotent)."""
        bitmaps, self.bitmaps = self.bitmaps, []
        for bitmap in bitmaps:
            bitmap.close()
