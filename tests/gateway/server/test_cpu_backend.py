"""``backend = "cpu"`` means no GPU at all, even when the process's native backend has GPUs:
no offload device, no layers, no op offload, no KV offload, and no residency lease."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sipp.engine._residency import acquire
from sipp.engine.loading import gpu_devices, placement_args
from sipp.errors import ConfigurationError
from sipp.gateway.server.config import LocalTarget
from sipp.gateway.server.targets import local_runtime
from sipp.native.model import Device

# what a CUDA backend reports on a one-GPU machine
GPU_PROCESS = [Device("CPU", "cpu", 1, 1), Device("CUDA0", "gpu", 2**34, 2**35)]


def _target(backend: str, runtime: dict[str, object] | None = None) -> LocalTarget:
    return LocalTarget("m", "m.gguf", backend, "basic", runtime)  # type: ignore[arg-type]


def test_cpu_target_resolves_to_no_gpu_at_all() -> None:
    cfg = local_runtime(_target("cpu"))
    assert list(cfg.placement.devices) == ["none"]
    assert cfg.context.op_offload is False
    assert cfg.context.offload_kqv is False
    placed = placement_args(cfg.placement, GPU_PROCESS)
    assert placed["devices"] == []  # an empty device list: libllama offloads nothing
    used = gpu_devices(GPU_PROCESS, cfg.placement.devices)
    assert used == []
    residency = replace(cfg.residency, allow_cpu_models_while_gpu_loaded=True)
    assert acquire(residency, GPU_PROCESS, used, offloads=False) is None  # no lease


def test_auto_target_in_the_same_process_would_use_the_gpu() -> None:
    # the contrast: without backend = "cpu" the same defaults pick the GPU and offload ops
    cfg = local_runtime(_target("auto"))
    assert gpu_devices(GPU_PROCESS, cfg.placement.devices) == ["CUDA0"]
    assert cfg.context.op_offload is True


@pytest.mark.parametrize(
    ("runtime", "field"),
    [
        ({"placement": {"devices": ["CUDA0"]}}, "placement.devices"),
        ({"placement": {"gpu_layers": "all"}}, "placement.gpu_layers"),
        ({"context": {"op_offload": True}}, "context.op_offload"),
        ({"context": {"offload_kqv": True}}, "context.offload_kqv"),
    ],
)
def test_cpu_target_refuses_gpu_settings(runtime: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigurationError, match=f"targets.m.runtime.{field}=.*backend = .cpu."):
        local_runtime(_target("cpu", runtime))
