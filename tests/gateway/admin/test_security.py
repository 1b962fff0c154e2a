"""No admin response, page or log line carries a bearer token, API key or password."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import requests

from sipp.gateway.server.logging import JsonFormatter
from tests.gateway.admin.conftest import SECRET_ENV, Admin, public
from tests.gateway.admin.test_api import MUTATING, VIEWS
from tests.gateway.server.conftest import RunningGateway

WRONG_PASSWORD = "guess-Vt63pXa"


def _dump(response: requests.Response) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    return f"{response.status_code}\n{headers}\n{response.text}"


def test_no_secret_in_admin_responses_pages_or_logs(
        admin_gateway: Callable[..., RunningGateway], admin_client: Callable[..., Admin],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    gw = admin_gateway(token_limit={"callers": {"all": 1000}, "targets": {"alpha": 1000}})
    admin = admin_client(gw)
    seen: list[requests.Response] = [admin.login(WRONG_PASSWORD), admin.get("/api/session")]
    seen.append(admin.login())
    public(gw)
    public(gw, stream=True)
    public(gw, token=SECRET_ENV["KEY_A"])  # a secret sent as the wrong credential
    seen += [admin.http.get(admin.url, allow_redirects=False, timeout=5), admin.get("/"),
             admin.get("/assets/app.js"), admin.get("/assets/api.js"),
             admin.get("/assets/charts.js"), admin.get("/assets/style.css"),
             admin.get("/api/nope")]
    seen += [admin.get(path) for path in VIEWS]
    seen += [admin.request(method, path, json=body) for method, path, body in MUTATING]
    seen += [admin.request(method, path, json=body, csrf=False)
             for method, path, body in MUTATING]
    seen.append(admin.request("DELETE", "/api/session"))
    seen.append(requests.get(gw.management_url + "/", timeout=5))
    seen.append(requests.get(gw.management_url + "/metrics", timeout=5))
    assert [(r.url, r.text) for r in seen if r.status_code >= 500] == []
    formatter = JsonFormatter()
    logs = [formatter.format(record) for record in caplog.records]
    assert any("admin login failed" in line for line in logs)
    assert any("admin blocked client" in line for line in logs)
    texts = [_dump(r) for r in seen] + logs
    for secret in (*SECRET_ENV.values(), WRONG_PASSWORD):
        leaks = [text[:200] for text in texts if secret in text]
        assert not leaks, f"{secret!r} leaked in {leaks}"
