"""Placement (``llama_model_params``) and RoPE (``llama_context_params``) arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sipp.native import LlamaContext, LlamaModel
from sipp.native.model import list_devices


def test_list_devices_names_the_cpu(native: Any) -> None:
    devices = list_devices()
    assert any(d.type == "cpu" for d in devices)
    assert all(d.memory_total >= d.memory_free >= 0 for d in devices)


def test_unknown_and_cpu_devices_are_refused(native: Any, tiny_llama_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown device 'Nope0'; this backend has: "):
        LlamaModel(tiny_llama_path, devices=["Nope0"])
    cpu = next(d.name for d in list_devices() if d.type == "cpu")
    with pytest.raises(ValueError, match="is the CPU"):
        LlamaModel(tiny_llama_path, devices=[cpu])


def test_empty_device_list_and_placement_flags_load(native: Any, tiny_llama_path: Path) -> None:
    with LlamaModel(tiny_llama_path, devices=[], split_mode="none", main_gpu=0,
                    no_host=True) as model:
        assert model.n_vocab > 0


def test_tensor_split_is_bounded(native: Any, tiny_llama_path: Path) -> None:
    limit = int(native.lib.llama_max_devices())
    with pytest.raises(ValueError, match=f"at most {limit} non-negative"):
        LlamaModel(tiny_llama_path, tensor_split=[1.0] * (limit + 1))
    with pytest.raises(ValueError, match="non-negative"):
        LlamaModel(tiny_llama_path, tensor_split=[-1.0])


def test_rope_parameters_reach_the_context(native: Any, tiny_llama_path: Path) -> None:
    with LlamaModel(tiny_llama_path) as model:
        ctx = LlamaContext(model, n_ctx=64, rope_scaling_type="yarn", rope_freq_base=100.0,
                           rope_freq_scale=0.5, yarn_orig_ctx=32, yarn_ext_factor=1.0,
                           yarn_attn_factor=1.0, yarn_beta_fast=32.0, yarn_beta_slow=1.0)
        ctx.close()
        with pytest.raises(ValueError, match="rope_scaling_type must be one of"):
            LlamaContext(model, rope_scaling_type="cubic")
        with pytest.raises(ValueError, match="rope_freq_base must be a number"):
            LlamaContext(model, rope_freq_base="high")
        with pytest.raises(ValueError, match="yarn_orig_ctx must be an int >= 0"):
            LlamaContext(model, yarn_orig_ctx=-1)
