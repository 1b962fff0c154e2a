"""The build cache key: stable for equal inputs, different when anything that matters changes."""

from __future__ import annotations

import dataclasses

import pytest

from build_scripts import build_native


def test_key_ignores_mapping_order() -> None:
    a = {"backend": "cpu", "mode": "native", "cmake_options": ["-DA=1"]}
    b = {"cmake_options": ["-DA=1"], "mode": "native", "backend": "cpu"}
    assert build_native.cache_key(a) == build_native.cache_key(b)


def test_plan_key_is_stable_between_calls() -> None:
    first = build_native.plan_build("cpu", "native")
    second = build_native.plan_build("cpu", "native")
    assert first.key == second.key
    assert first.root.name == first.key


def test_key_changes_with_each_input() -> None:
    plan = build_native.plan_build("cpu", "native")
    variants = [
        build_native.plan_build("cpu", "release"),
        build_native.plan_build("cpu", "native", tools=True),
        dataclasses.replace(plan, source_sha256="0" * 64),
        dataclasses.replace(plan, options={**plan.options, "GGML_NATIVE": "OFF"}),
        dataclasses.replace(plan, toolchain={**plan.toolchain, "cc": "clang 99"}),
        dataclasses.replace(plan, platform="macosx-14.0-arm64/arm64"),
        dataclasses.replace(plan, backend="vulkan"),
    ]
    keys = {plan.key, *(v.key for v in variants)}
    assert len(keys) == len(variants) + 1


def test_bumping_the_build_script_version_rebuilds(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = build_native.plan_build("cpu", "native")
    before = plan.key
    monkeypatch.setattr(build_native, "BUILD_SCRIPT_VERSION", "bumped")
    assert plan.key != before
