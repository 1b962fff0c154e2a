"""``NativeRuntimeConfig`` and its two small groups, ``multimodal`` and ``observability``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sipp.config._context import ContextRuntimeConfig
from sipp.config._group import Group, auto, group, setting
from sipp.config._placement import ModelPlacementConfig, ResidencyRuntimeConfig
from sipp.config._rules import as_bool, as_int, as_path
from sipp.config._sampling import SamplingRuntimeConfig
from sipp.config._scheduling import CacheRuntimeConfig, SchedulerRuntimeConfig
from sipp.config._speculative import SpeculativeConfig
from sipp.errors import ConfigurationError

__all__ = ["MultimodalRuntimeConfig", "NativeRuntimeConfig", "ObservabilityRuntimeConfig"]


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class MultimodalRuntimeConfig(Group):
    """Vision: the mmproj file, where it runs and the per-image token bounds."""

    _PATH: ClassVar[str] = "multimodal"

    projector_path: str | None = setting(
        None,
        as_path,
        "The mmproj GGUF (unset: no vision); it loads with the model and needs a "
        "text-generating decoder model.",
    )
    use_gpu: bool = setting(True, as_bool, "Run the projector on the GPU.")
    image_min_tokens: int | None = auto(as_int(0), "Fewest tokens per image (unset: the "
                                        "projector's).")
    image_max_tokens: int | None = auto(as_int(0), "Most tokens per image (unset: the "
                                        "projector's).")

    def _check_together(self) -> None:
        low, high = self.image_min_tokens, self.image_max_tokens
        if low is not None and high is not None and low > high:
            raise ConfigurationError(
                f"multimodal.image_min_tokens ({low}) must not exceed "
                f"multimodal.image_max_tokens ({high})"
            )


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class ObservabilityRuntimeConfig(Group):
    """Engine-level metrics and backend profiling; per-request ``local_stats`` are always
    filled."""

    _PATH: ClassVar[str] = "observability"

    runtime_metrics: bool = setting(
        False, as_bool, "Engine counters, gauges and histograms (client.metrics(ref))."
    )
    backend_profiling: bool = setting(
        False, as_bool, "Also llama.cpp's perf counters (metrics()['backend']); implies metrics."
    )

    @property
    def metrics_enabled(self) -> bool:
        """Whether engine-level aggregate metrics are collected."""
        return self.runtime_metrics or self.backend_profiling


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class NativeRuntimeConfig(Group):
    """Load-time settings of a local model, grouped by responsibility.

    Each group may be given as its class or as a dict (``context={"n_ctx": 2048}``); an
    unset group uses every default. The engine reads the groups directly; the AUTO values
    are decided at load from the model's facts.
    """

    _PATH: ClassVar[str] = ""

    placement: ModelPlacementConfig = group(ModelPlacementConfig, "Devices and weights.")
    context: ContextRuntimeConfig = group(ContextRuntimeConfig, "The llama context.")
    sampling: SamplingRuntimeConfig = group(SamplingRuntimeConfig, "Default sampling.")
    scheduler: SchedulerRuntimeConfig = group(SchedulerRuntimeConfig, "Request scheduling.")
    cache: CacheRuntimeConfig = group(CacheRuntimeConfig, "KV reuse between requests.")
    multimodal: MultimodalRuntimeConfig = group(MultimodalRuntimeConfig, "Vision projector.")
    residency: ResidencyRuntimeConfig = group(ResidencyRuntimeConfig, "GPU residency.")
    observability: ObservabilityRuntimeConfig = group(
        ObservabilityRuntimeConfig, "Metrics and profiling."
    )
    speculative: SpeculativeConfig = group(SpeculativeConfig, "Speculative decoding.")

    if TYPE_CHECKING:  # the generated __init__ also takes a dict for each group

        def __init__(
            self,
            *,
            placement: ModelPlacementConfig | Mapping[str, Any] | None = None,
            context: ContextRuntimeConfig | Mapping[str, Any] | None = None,
            sampling: SamplingRuntimeConfig | Mapping[str, Any] | None = None,
            scheduler: SchedulerRuntimeConfig | Mapping[str, Any] | None = None,
            cache: CacheRuntimeConfig | Mapping[str, Any] | None = None,
            multimodal: MultimodalRuntimeConfig | Mapping[str, Any] | None = None,
            residency: ResidencyRuntimeConfig | Mapping[str, Any] | None = None,
            observability: ObservabilityRuntimeConfig | Mapping[str, Any] | None = None,
            speculative: SpeculativeConfig | Mapping[str, Any] | None = None,
        ) -> None: ...

    def _check_together(self) -> None:
        spec = self.speculative
        if spec.mode == "draft" and spec.draft_model is None:
            raise ConfigurationError(
                "speculative.mode='draft' needs speculative.draft_model (the draft GGUF)"
            )
        running = self.scheduler.max_running_requests
        slots = self.context.n_parallel
        if running is not None and running > slots:
            given = "n_parallel" in self.context.fields_set
            shown = f"{slots}" if given else f"{slots}, the default"
            raise ConfigurationError(
                f"scheduler.max_running_requests ({running}) must not exceed "
                f"context.n_parallel ({shown}); raise context.n_parallel to run more "
                "requests at once"
            )
