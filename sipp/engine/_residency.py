"""GPU residency: which loaded models hold which GPU, within this process.

A model that offloads to GPUs (``gpu_layers`` not 0 and at least one offload device) takes
a lease on each device it uses before its weights load, and gives it back when it closes.
:func:`acquire` enforces the ``residency`` group:

- ``gpu_memory_safety_margin_bytes``: the most free memory among the model's devices must
  be at least the margin (0 = no check);
- ``require_gpu_lease`` with ``max_gpu_models_per_device``: at most that many leased models
  per device (without ``require_gpu_lease`` no lease is taken and the limit does not apply);
- ``allow_cpu_models_while_gpu_loaded=False`` (on either the CPU model or a loaded GPU
  model): a CPU-only model is refused while a GPU model holds a lease.

A model that stays on the CPU (the CPU backend, ``gpu_layers=0``, ``devices=["none"]``)
takes no lease; on the CPU backend the whole group therefore has no effect. Remote RPC
workers (``rpc://host:port`` devices) are other hosts' memory: they take no lease and are not
part of the margin check.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from sipp.config import ResidencyRuntimeConfig
from sipp.errors import ModelLoadError
from sipp.native.model import Device
from sipp.native.rpc import is_rpc_device

__all__ = ["Lease", "acquire", "leases"]

_lock = threading.Lock()
_held: dict[str, list[Lease]] = {}  # device name -> leases on it


@dataclass(eq=False)
class Lease:
    """One model's hold on its GPU devices; :meth:`release` is idempotent."""

    devices: tuple[str, ...]
    allow_cpu_models: bool = True
    _released: bool = field(default=False, repr=False)

    def release(self) -> None:
        with _lock:
            if self._released:
                return
            self._released = True
            for name in self.devices:
                holders = _held.get(name, [])
                if self in holders:
                    holders.remove(self)
                if not holders:
                    _held.pop(name, None)


def leases() -> dict[str, int]:
    """How many models hold each device now."""
    with _lock:
        return {name: len(holders) for name, holders in _held.items()}


def acquire(
    cfg: ResidencyRuntimeConfig, devices: Sequence[Device], used: Sequence[str],
    *, offloads: bool,
) -> Lease | None:
    """Take the lease of a model about to load on ``used`` (offload device names, when
    ``offloads``); raises ``ModelLoadError`` naming the residency field that refuses it."""
    used = [name for name in used if not is_rpc_device(name)]
    with _lock:
        if not offloads or not used:
            blockers = [
                name for name, holders in _held.items()
                if holders and (not cfg.allow_cpu_models_while_gpu_loaded
                                or any(not h.allow_cpu_models for h in holders))
            ]
            if blockers:
                raise ModelLoadError(
                    "gpu residency rejected: a CPU-only model may not load while a GPU model "
                    f"is loaded on {', '.join(sorted(blockers))} "
                    "(residency.allow_cpu_models_while_gpu_loaded=False)"
                )
            return None
        margin = cfg.gpu_memory_safety_margin_bytes
        if margin > 0:
            free = {d.name: d.memory_free for d in devices if d.name in used}
            best = max(free.values(), default=0)
            if best < margin:
                raise ModelLoadError(
                    f"gpu residency rejected: the most free memory on {', '.join(used)} is "
                    f"{best} bytes, below residency.gpu_memory_safety_margin_bytes={margin}"
                )
        if not cfg.require_gpu_lease:
            return None
        limit = cfg.max_gpu_models_per_device
        for name in used:
            count = len(_held.get(name, ()))
            if count >= limit:
                raise ModelLoadError(
                    f"gpu residency rejected: device {name} already has {count} loaded "
                    f"model(s) (residency.max_gpu_models_per_device={limit})"
                )
        lease = Lease(tuple(used), cfg.allow_cpu_models_while_gpu_loaded)
        for name in used:
            _held.setdefault(name, []).append(lease)
        return lease
