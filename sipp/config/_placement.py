"""Where a model's weights live (``placement``) and how models share GPUs (``residency``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, get_args

from sipp.config._enums import MIB, GpuLayers, SplitMode
from sipp.config._group import Group, auto, setting
from sipp.config._rules import (
    INT64_MAX,
    as_bool,
    as_choice,
    as_float,
    as_gpu_layers,
    as_int,
    as_list,
    as_text,
)
from sipp.errors import ConfigurationError

__all__ = ["ModelPlacementConfig", "ResidencyRuntimeConfig"]


def _fit_params(value: object, path: str) -> bool:
    """``False`` only: fitting needs ``llama_params_fit``, which lives in llama.cpp's
    ``common`` library, not in the pinned libllama."""
    if as_bool(value, path):
        raise ConfigurationError(
            f"{path} is not supported: fitting settings to device memory needs "
            "llama_params_fit, which the pinned llama.cpp library does not provide; set "
            "gpu_layers and context.n_ctx instead"
        )
    return False


def _gpu_layers_dump(value: object) -> object:
    return {"count": value} if isinstance(value, int) else value


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class ModelPlacementConfig(Group):
    """Where the model's weights live: devices, GPU offload, splitting, mmap and mlock.

    Every field maps to libllama's ``llama_model_params``; "offload devices" are the GPUs the
    model uses (``devices``, or by default every discrete GPU the backend sees).
    """

    _PATH: ClassVar[str] = "placement"

    devices: Sequence[str] = setting(
        (),
        as_list(as_text, "device names", unique=True),
        'Offload devices by ggml name (sipp.backend_info()["devices"], e.g. "CUDA0"); '
        '["none"] offloads nothing; empty: every discrete GPU the backend sees. An unknown '
        "name, or the CPU (it holds whatever is not offloaded), is refused at load.",
    )
    gpu_layers: GpuLayers = setting(
        "auto",
        as_gpu_layers,
        'Layers to offload: "auto" (libllama\'s default), "all", or a count >= 0 (also '
        '{"count": n}; 0 keeps the model on the CPU).',
        dump=_gpu_layers_dump,
    )
    split_mode: SplitMode = setting(
        "layer",
        as_choice(get_args(SplitMode)),
        "How the model spreads over the offload devices: none (all on main_gpu), layer, "
        "row, tensor (every tensor across the devices; refused at load without a GPU).",
    )
    main_gpu: int | None = auto(
        as_int(0),
        'Index into the offload devices of the one holding the model with split_mode="none" '
        "(unset: libllama's 0); out of range is refused at load; no effect otherwise.",
    )
    tensor_split: Sequence[float] = setting(
        (),
        as_list(as_float(0.0), "non-negative numbers"),
        "Each offload device's share of the model (e.g. [3, 1]); more entries than offload "
        "devices (any entry on the CPU backend) is refused at load.",
    )
    use_mmap: bool = setting(True, as_bool, "Memory-map the weights file.")
    use_mlock: bool = setting(False, as_bool, "Lock the weights in RAM.")
    fit_params: bool = setting(
        False,
        _fit_params,
        "Fit settings to device memory: True is refused, since it needs llama_params_fit, "
        "which the pinned llama.cpp library does not provide; set gpu_layers and "
        "context.n_ctx yourself.",
    )
    check_tensors: bool = setting(False, as_bool, "Validate tensor data while loading.")
    no_extra_bufts: bool | None = auto(
        as_bool,
        "No weight-repacking buffer types (unset: repack, except on AMX CPUs where the "
        "pinned ggml crashes).",
    )
    no_host: bool = setting(
        False,
        as_bool,
        "Keep CPU-resident weights out of the GPU's pinned host buffer (so extra buffer "
        "types can be used); no effect without an offload device.",
    )


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class ResidencyRuntimeConfig(Group):
    """GPU residency within this process: models per device, leases, free-memory margin.

    A model that offloads to GPUs takes a lease on each device it uses before its weights
    load and returns it when it closes; a refusal is a ``ModelLoadError`` naming the field.
    A model kept on the CPU (the CPU backend, ``gpu_layers=0``, ``devices=["none"]``) takes
    no lease, so on the CPU backend only ``allow_cpu_models_while_gpu_loaded`` can apply.
    """

    _PATH: ClassVar[str] = "residency"

    max_gpu_models_per_device: int = setting(
        1,
        as_int(1),
        "With require_gpu_lease, the most models in this process holding one GPU.",
    )
    allow_cpu_models_while_gpu_loaded: bool = setting(
        True,
        as_bool,
        "False refuses a CPU-only model while a GPU model holds a lease.",
    )
    require_gpu_lease: bool = setting(
        True,
        as_bool,
        "A model that offloads takes a lease on each of its devices; False: no lease and "
        "no per-device cap.",
    )
    gpu_memory_safety_margin_bytes: int = setting(
        512 * MIB,
        as_int(0, INT64_MAX),
        "The most free memory among the model's devices must be at least this before "
        "loading (0: no check).",
    )
