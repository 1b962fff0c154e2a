"""Model loading: placement settings to libllama arguments, GPU residency lease, the load.

:func:`load_model` is the only place that turns ``placement`` into
:class:`sipp.native.LlamaModel` arguments; what cannot take effect on this backend raises
``ConfigurationError`` naming the field before anything loads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sipp.config import ModelPlacementConfig, NativeRuntimeConfig
from sipp.engine._residency import Lease
from sipp.engine._residency import acquire as acquire_residency
from sipp.errors import ConfigurationError
from sipp.native import LlamaModel
from sipp.native.model import Device, list_devices
from sipp.native.rpc import is_rpc_device

__all__ = ["LoadedModel", "gpu_devices", "load_model", "placement_args"]


def gpu_devices(devices: Sequence[Device], chosen: Sequence[str] = ()) -> list[str]:
    """The offload devices libllama will use: ``chosen`` (``["none"]`` = none) or, by
    default, every discrete GPU (the integrated ones only when there is no discrete GPU)."""
    if chosen:
        return [] if list(chosen) == ["none"] else list(chosen)
    gpus = [d.name for d in devices if d.type == "gpu"]
    return gpus or [d.name for d in devices if d.type == "igpu"]


def placement_args(p: ModelPlacementConfig, devices: Sequence[Device]) -> dict[str, Any]:
    """The device arguments of :class:`LlamaModel` for placement ``p`` on a backend that
    sees ``devices``; what cannot take effect raises ``ConfigurationError`` naming the field."""
    names = [d.name for d in devices]
    offload = [d.name for d in devices if d.type != "cpu"]
    chosen = list(p.devices)
    if "none" in chosen and chosen != ["none"]:
        raise ConfigurationError(
            'placement.devices: "none" (no offload device) cannot be combined with device names'
        )
    for index, name in enumerate(chosen):
        if name == "none" or is_rpc_device(name):  # remote workers are checked at load
            continue
        if name not in names:
            raise ConfigurationError(
                f"placement.devices[{index}]: unknown device {name!r}; this backend's offload "
                f"devices are: {', '.join(offload) or 'none (CPU only)'}"
            )
        if name not in offload:
            raise ConfigurationError(
                f"placement.devices[{index}]: {name!r} is the CPU, which holds whatever is not "
                'offloaded; list GPU devices only (or ["none"] to offload nothing)'
            )
    used = gpu_devices(devices, chosen)
    if p.split_mode == "tensor" and not used:
        raise ConfigurationError(
            "placement.split_mode='tensor' splits every tensor across GPU devices, and this "
            "backend has none to use"
        )
    if p.main_gpu is not None and used and p.main_gpu >= len(used):
        raise ConfigurationError(
            f"placement.main_gpu={p.main_gpu} is out of range: {len(used)} offload device(s) "
            f"({', '.join(used)})"
        )
    if p.tensor_split and len(p.tensor_split) > len(used):
        raise ConfigurationError(
            f"placement.tensor_split has {len(p.tensor_split)} entries but the model is "
            f"placed on {len(used)} offload device(s)"
            + (f" ({', '.join(used)})" if used else " (CPU only: nothing to split)")
        )
    return {
        "devices": ([] if chosen == ["none"] else chosen) if chosen else None,
        "split_mode": p.split_mode,
        "main_gpu": p.main_gpu,
        "tensor_split": p.tensor_split or None,
        "no_host": p.no_host,
    }


@dataclass(eq=False)
class LoadedModel:
    """A loaded model, whether it offloads to a GPU, and its residency lease (released by
    :meth:`close` after the model is freed)."""

    model: LlamaModel
    offloads: bool
    lease: Lease | None

    def close(self) -> None:
        try:
            self.model.close()
        finally:
            if self.lease is not None:
                self.lease.release()


def load_model(
    path: str, config: NativeRuntimeConfig, progress: Callable[[float], object] | None = None
) -> LoadedModel:
    """Check placement against this backend's devices, take the residency lease and load;
    ``progress(fraction)`` follows the load (returning False cancels it)."""
    placement = config.placement
    gpu = placement.gpu_layers
    devices = list_devices()
    placed = placement_args(placement, devices)
    used = gpu_devices(devices, placement.devices)
    offloads = bool(used) and gpu != 0
    sampling = config.sampling
    if offloads and sampling.backend_sampling and "backend_sampling" in sampling.fields_set:
        raise ConfigurationError(
            "sampling.backend_sampling=True asks for sampling inside the GPU graph "
            "(experimental in the pinned llama.cpp), which this engine does not do: "
            "samplers run on the host after each decode; leave it unset or set False"
        )
    lease = acquire_residency(config.residency, devices, used, offloads=offloads)
    load_mode = ("mmap_mlock" if placement.use_mlock else "mmap") if placement.use_mmap else (
        "mlock" if placement.use_mlock else "none")
    no_extra = placement.no_extra_bufts
    if config.scheduler.deterministic:
        if no_extra is False:
            raise ConfigurationError(
                "scheduler.deterministic needs unrepacked weights (a repacked matrix has "
                "other kernels by batch size): leave placement.no_extra_bufts unset or True"
            )
        no_extra = True
    try:
        model = LlamaModel(
            path, n_gpu_layers=None if gpu == "auto" else -1 if gpu == "all" else int(gpu),
            load_mode=load_mode, check_tensors=placement.check_tensors,
            # None lets sipp.native decide (off on AMX CPUs, where repacking crashes)
            use_extra_bufts=None if no_extra is None else not no_extra,
            progress=progress,
            **placed,
        )
    except BaseException:
        if lease is not None:
            lease.release()
        raise
    return LoadedModel(model, offloads, lease)
