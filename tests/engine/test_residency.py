"""GPU residency leases (``residency`` group), driven with made-up devices."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sipp.config import ResidencyRuntimeConfig
from sipp.engine import _residency
from sipp.engine._residency import acquire, leases
from sipp.errors import ModelLoadError
from sipp.native.model import Device

GIB = 1024**3
DEVICES = [Device("CPU", "cpu", 64 * GIB, 64 * GIB), Device("CUDA0", "gpu", 8 * GIB, 16 * GIB),
           Device("CUDA1", "gpu", 100, 16 * GIB)]


@pytest.fixture(autouse=True)
def no_leases() -> Iterator[None]:
    saved = dict(_residency._held)
    _residency._held.clear()
    yield
    _residency._held.clear()
    _residency._held.update(saved)


def cfg(**fields: Any) -> Any:
    return ResidencyRuntimeConfig(**fields)


def test_one_model_per_device_by_default_and_the_lease_comes_back() -> None:
    lease = acquire(cfg(), DEVICES, ["CUDA0"], offloads=True)
    assert lease is not None and leases() == {"CUDA0": 1}
    with pytest.raises(ModelLoadError, match=r"device CUDA0 already has 1 loaded model\(s\) "
                       r"\(residency\.max_gpu_models_per_device=1\)"):
        acquire(cfg(), DEVICES, ["CUDA0"], offloads=True)
    lease.release()
    lease.release()  # idempotent
    assert leases() == {}
    assert acquire(cfg(), DEVICES, ["CUDA0"], offloads=True) is not None


def test_max_gpu_models_per_device_raises_the_limit() -> None:
    two = cfg(max_gpu_models_per_device=2)
    acquire(two, DEVICES, ["CUDA0"], offloads=True)
    acquire(two, DEVICES, ["CUDA0"], offloads=True)
    with pytest.raises(ModelLoadError, match="max_gpu_models_per_device=2"):
        acquire(two, DEVICES, ["CUDA0"], offloads=True)


def test_without_require_gpu_lease_there_is_no_lease_and_no_cap() -> None:
    free = cfg(require_gpu_lease=False)
    assert acquire(free, DEVICES, ["CUDA0"], offloads=True) is None
    assert acquire(free, DEVICES, ["CUDA0"], offloads=True) is None
    assert leases() == {}


def test_safety_margin_refuses_a_device_without_enough_free_memory() -> None:
    with pytest.raises(ModelLoadError, match=r"most free memory on CUDA1 is 100 bytes, below "
                       r"residency\.gpu_memory_safety_margin_bytes=536870912"):
        acquire(cfg(), DEVICES, ["CUDA1"], offloads=True)
    assert acquire(cfg(gpu_memory_safety_margin_bytes=0), DEVICES, ["CUDA1"],
                   offloads=True) is not None


def test_cpu_models_beside_gpu_models() -> None:
    assert acquire(cfg(), DEVICES, [], offloads=False) is None  # no GPU model: fine
    acquire(cfg(allow_cpu_models_while_gpu_loaded=False), DEVICES, ["CUDA0"], offloads=True)
    with pytest.raises(ModelLoadError, match=r"CPU-only model may not load while a GPU model "
                       r"is loaded on CUDA0 \(residency\.allow_cpu_models_while_gpu_loaded"):
        acquire(cfg(), DEVICES, [], offloads=False)


def test_a_cpu_model_that_forbids_gpu_neighbours_is_refused(engine_factory: Any,
                                                            tiny_llama_path: Path) -> None:
    gpu = acquire(cfg(), DEVICES, ["CUDA0"], offloads=True)
    assert gpu is not None
    with pytest.raises(ModelLoadError, match="allow_cpu_models_while_gpu_loaded=False"):
        engine_factory(tiny_llama_path, placement={"gpu_layers": 0},
                       residency={"allow_cpu_models_while_gpu_loaded": False})
    gpu.release()
    engine = engine_factory(tiny_llama_path, placement={"gpu_layers": 0},
                            residency={"allow_cpu_models_while_gpu_loaded": False})
    assert engine.offloads is False and leases() == {}
