"""Security controls without a server: blocklist, token budgets, [security.token_limit]."""

from __future__ import annotations

import copy

import pytest

from sipp.errors import RateLimitedError
from sipp.gateway.server.blocklist import Blocklist
from sipp.gateway.server.config import GatewayConfigError, parse_config
from sipp.gateway.server.traffic import TokenBudgets
from tests.gateway.server.conftest import BASE_CONFIG


def test_blocklist_addresses_and_networks() -> None:
    blocklist = Blocklist(clock=lambda: 100.0)
    assert blocklist.add(" 2001:DB8::1 ") == "2001:db8::1"
    assert blocklist.add("10.1.2.3/8") == "10.0.0.0/8"
    assert blocklist.blocks("2001:db8::1") and blocklist.blocks("10.200.0.1")
    assert not blocklist.blocks("11.0.0.1") and not blocklist.blocks("unknown")
    assert [e["client"] for e in blocklist.entries()] == ["10.0.0.0/8", "2001:db8::1"]
    assert blocklist.remove("10.0.0.0/8") and not blocklist.remove("10.0.0.0/8")
    assert not blocklist.blocks("10.200.0.1")
    with pytest.raises(ValueError, match="IP address or CIDR network"):
        blocklist.add("example.com")
    for n in range(2100):
        blocklist.add(f"10.{n // 256}.{n % 256}.1")
    assert len(blocklist) == 2048 and not blocklist.blocks("2001:db8::1")  # oldest dropped


def test_token_budgets_refill_and_runtime_changes() -> None:
    now = [0.0]
    budgets = TokenBudgets({"app": 60}, {}, clock=lambda: now[0])
    budgets.check("app", "any")
    budgets.charge("app", "any", 90)  # one request may overdraw the bucket: 60 -> -30
    with pytest.raises(RateLimitedError) as info:
        budgets.check("app", "any")
    assert info.value.retry_after == pytest.approx(31.0)
    now[0] = 31.0
    budgets.check("app", "any")
    budgets.set_limit("target", "any", 10)
    budgets.charge("other", "any", 10)
    with pytest.raises(RateLimitedError, match="target any is over its limit of 10"):
        budgets.check("other", "any")
    budgets.set_limit("target", "any", None)
    budgets.check("other", "any")
    assert budgets.snapshot() == [{"kind": "caller", "name": "app", "tokensPerMinute": 60,
                                   "available": 1}]


def test_token_limit_config() -> None:
    config = copy.deepcopy(BASE_CONFIG)
    config["security"]["token_limit"] = {"callers": {"all": 1000}, "targets": {"beta": 50}}
    parsed = parse_config(config)
    assert parsed.token_limit.callers == {"all": 1000}
    assert parsed.token_limit.targets == {"beta": 50}
    assert parse_config(BASE_CONFIG).token_limit.callers == {}
    config["security"]["token_limit"] = {"callers": {"ghost": 5, "all": 0}, "targets": [],
                                         "extra": 1}
    with pytest.raises(GatewayConfigError) as info:
        parse_config(config)
    text = str(info.value)
    for expected in ("security.token_limit.extra: unknown field",
                     "security.token_limit.targets: must be a table",
                     "security.token_limit.callers.all: must be an integer greater than zero",
                     "security.token_limit.callers.ghost: unknown token caller: ghost"):
        assert expected in text, expected
