"""The TOML config readers (gateway file and a target's runtime tables) turn any input into a
config or a ConfigurationError naming the field; nothing else escapes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sipp.config import NativeRuntimeConfig
from sipp.errors import ConfigurationError
from sipp.gateway.server.config import load_config, parse_config
from tests.gateway.server.conftest import BASE_CONFIG

TOML_VALUES = st.recursive(
    st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=10,
)
RUNTIME_GROUPS = ["context", "sampling", "placement", "scheduling", "cache", "residency",
                  "observability", "multimodal", "x"]  # fmt: skip


@st.composite
def mutated_gateway(draw: st.DrawFn) -> dict[str, Any]:
    cfg = copy.deepcopy(BASE_CONFIG)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from([
            ("public_bind",), ("max_request_bytes",), ("max_concurrent_requests",),
            ("security", "client_ip", "source"), ("security", "client_ip", "trusted_proxy_cidrs"),
            ("security", "rate_limit", "requests_per_minute"), ("security", "rate_limit", "burst"),
            ("tokens",), ("targets",), ("routes",), ("admin_password_env",), ("x",),
        ]))  # fmt: skip
        node: Any = cfg
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node[path[-1]] = draw(TOML_VALUES)
    return cfg


@given(mutated_gateway())
def test_gateway_config_parses_or_names_the_field(data: dict[str, Any]) -> None:
    try:
        parse_config(data)
    except ConfigurationError as exc:
        assert exc.message


@given(st.dictionaries(st.sampled_from(RUNTIME_GROUPS),
                       st.dictionaries(st.text(max_size=12), TOML_VALUES, max_size=4)
                       | TOML_VALUES, max_size=3))  # fmt: skip
def test_runtime_tables_parse_or_name_the_field(data: dict[str, Any]) -> None:
    try:
        NativeRuntimeConfig.from_dict(data)
    except ConfigurationError as exc:
        assert exc.message


@given(st.text(max_size=200))
def test_any_toml_text_loads_or_names_the_problem(tmp_path_factory: Any, text: str) -> None:
    path = Path(tmp_path_factory.mktemp("toml")) / "gw.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(path)
    except ConfigurationError as exc:
        assert exc.message
