"""``vision_chat.py`` on the tiny Gemma 3 model and its generated projector."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.examples.helpers import run_example

TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}<start_of_turn>model\n"
)


@pytest.fixture
def vision_args(test_models: dict[str, Path]) -> list[str]:
    return [str(test_models["tiny-gemma3"]), str(test_models["tiny-gemma3-mmproj"]),
            "--template", TEMPLATE, "--max-tokens", "6"]


def test_vision_chat_describes_its_drawn_square_twice_from_the_cache(
    native_backend: None, vision_args: list[str]
) -> None:
    lines = run_example("vision_chat.py", *vision_args).stdout.splitlines()
    assert lines[1] == "finish_reason: length"
    assert lines[2] == "images: 1 (encoded 1, from cache 0)"
    assert lines[5] == "images: 1 (encoded 0, from cache 1)"
    first, again = lines[0].split(": ", 1)[1], lines[3].split(": ", 1)[1]
    assert first == again and re.fullmatch(r"'.+'", first)  # greedy: the same reply


def test_vision_chat_reads_image_files(
    native_backend: None, vision_args: list[str], tmp_path: Path
) -> None:
    from tests.engine.test_vision import RED, png_bytes

    image = tmp_path / "red.png"
    image.write_bytes(png_bytes(RED))
    lines = run_example("vision_chat.py", *vision_args[:2], str(image), str(image),
                        *vision_args[2:]).stdout.splitlines()
    assert lines[2] == "images: 2 (encoded 1, from cache 1)"


def test_vision_chat_reports_a_corrupt_image(
    native_backend: None, vision_args: list[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    proc = run_example("vision_chat.py", *vision_args[:2], str(bad), *vision_args[2:],
                       check=False)
    assert proc.returncode == 1
    assert "MediaError: local.media[0]: cannot decode image data: corrupt or truncated JPEG" \
        in proc.stderr
