"""Speculative decoding (``speculative``): a model's default and, as the same class, a
request override (``LocalTextOptions.speculative``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

from sipp.config._context import ContextRuntimeConfig
from sipp.config._group import Group, group, setting
from sipp.config._rules import as_choice, as_int, as_path
from sipp.errors import ConfigurationError

__all__ = ["SpeculativeConfig", "SpeculativeMode"]

SpeculativeMode = Literal["off", "ngram", "draft"]
"""``off``; ``ngram``: drafts from prompt lookup; ``draft``: drafts from a draft model."""

MAX_DRAFT_TOKENS = 64


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class SpeculativeConfig(Group):
    """Speculative decoding: draft tokens checked as extra positions of the same decode step.

    Greedy output is exactly the output without speculation; sampled output keeps the
    target distribution (each position is sampled by the request's own chain and a draft
    token is kept only when it equals the sampled one). Requests with a grammar do not
    speculate. As a request override only ``mode``, ``max_draft_tokens`` and the n-gram
    sizes may be given; ``draft_model`` and ``draft_context`` are load-time settings.
    """

    _PATH: ClassVar[str] = "speculative"

    mode: SpeculativeMode = setting(
        "off",
        as_choice(get_args(SpeculativeMode)),
        "off; ngram: drafts from n-grams of the prompt and the text so far (prompt lookup); "
        "draft: drafts from draft_model.",
    )
    max_draft_tokens: int = setting(
        8,
        as_int(1, MAX_DRAFT_TOKENS),
        "Draft positions a request may add to one step (the scheduler gives fewer when the "
        "step's budget is short, and none while prompts prefill).",
    )
    ngram_min: int = setting(
        2, as_int(1, 16), "ngram: the shortest suffix of the text looked up for a draft."
    )
    ngram_max: int = setting(
        4, as_int(1, 16), "ngram: the longest suffix of the text looked up (tried first)."
    )
    draft_model: str | None = setting(
        None,
        as_path,
        "draft: the draft model GGUF, loaded next to the target; its vocabulary must be "
        "the target's.",
    )
    draft_context: ContextRuntimeConfig = group(
        ContextRuntimeConfig,
        "draft: the draft model's own context options (unset n_ctx / n_parallel: the "
        "target's).",
    )

    if TYPE_CHECKING:  # the generated __init__ also takes a dict for ``draft_context``

        def __init__(
            self,
            *,
            mode: SpeculativeMode | None = None,
            max_draft_tokens: int | None = None,
            ngram_min: int | None = None,
            ngram_max: int | None = None,
            draft_model: str | None = None,
            draft_context: ContextRuntimeConfig | Mapping[str, Any] | None = None,
        ) -> None: ...

    def _check_together(self) -> None:
        if self.ngram_min > self.ngram_max:
            raise ConfigurationError(
                f"speculative.ngram_min ({self.ngram_min}) must not exceed "
                f"speculative.ngram_max ({self.ngram_max})"
            )

    def with_override(self, override: SpeculativeConfig | None) -> SpeculativeConfig:
        """These values with every field a request ``override`` sets replaced."""
        if override is None or not override.fields_set:
            return self
        load_only = override.fields_set & {"draft_model", "draft_context"}
        if load_only:
            raise ConfigurationError(
                f"local.speculative.{sorted(load_only)[0]} is a load-time setting: give it "
                "in the model's runtime config (speculative group)"
            )
        merged = self._updated(override)
        merged._check_together()
        return merged
