"""LocalEndpoint tells whether it takes images and which marker places one."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipp import LocalModelDescriptor, NativeRuntimeConfig, SippClient
from sipp.endpoints.local import LocalEndpoint
from sipp.errors import BackendError


@pytest.fixture(scope="module", autouse=True)
def _backend() -> None:
    from sipp.native import get_native

    try:
        get_native()
    except BackendError as exc:
        pytest.skip(f"no native backend: {exc}")


def test_media_support_follows_the_projector(test_models: dict[str, Path]) -> None:
    config = NativeRuntimeConfig(multimodal={
        "projector_path": str(test_models["tiny-gemma3-mmproj"]), "use_gpu": False,
        "image_min_tokens": 4, "image_max_tokens": 64,
    })
    with SippClient() as client:
        vision = client.endpoint(client.add(
            "vision", LocalModelDescriptor(test_models["tiny-gemma3"], config=config)))
        text = client.endpoint(client.add(
            "text", LocalModelDescriptor(test_models["tiny-gemma3"])))
        assert isinstance(vision, LocalEndpoint) and isinstance(text, LocalEndpoint)
        assert vision.supports_media and vision.media_marker == "<__media__>"
        assert not text.supports_media and text.media_marker is None
        assert vision.capability("query") == "supported"
