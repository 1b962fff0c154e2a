"""Admin API against the real gateway on loopback: sessions, CSRF, login backoff,
blocklist, token budgets, runtime controls and the dashboard views."""

from __future__ import annotations

import http.client
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from sipp.gateway.server.admin.api import API_ROUTES, ApiRoute
from tests.gateway.admin.conftest import (
    ADMIN_PASSWORD,
    CSRF_HEADER,
    TOKEN,
    Admin,
    FakeClock,
    public,
)
from tests.gateway.server.conftest import RunningGateway, Script

StartGateway = Callable[..., RunningGateway]
MakeAdmin = Callable[..., Admin]

# Logging in and out are the only state-changing admin routes without CSRF.
CSRF_EXEMPT = {("POST", "session"), ("DELETE", "session")}
# A valid request for each mutating route: the "*" segment and the JSON body.
SAMPLES: dict[tuple[str, str], tuple[str, Any]] = {
    ("PUT", "security/rate-limit"): ("", {"enabled": True, "requestsPerMinute": 5, "burst": 1}),
    ("POST", "security/blocklist/*"): ("203.0.113.9", None),
    ("DELETE", "security/blocklist/*"): ("203.0.113.9", None),
    ("PUT", "controls/concurrency"): ("", {"limit": 3}),
    ("PUT", "controls/targets/*"): ("alpha", {"enabled": False}),
    ("PUT", "controls/token-limits/caller/*"): ("all", {"tokensPerMinute": 10}),
    ("PUT", "controls/token-limits/target/*"): ("beta", {"tokensPerMinute": 10}),
    ("DELETE", "caches/*"): ("answers", None),
}
# Every mutating route of the admin app's own route table, so none can skip the checks.
MUTATING_ROUTES = [route for route in API_ROUTES
                   if route.method != "GET" and (route.method, route.path) not in CSRF_EXEMPT]


def _concrete(route: ApiRoute) -> tuple[str, str, Any]:
    argument, body = SAMPLES.get((route.method, route.path), ("x", {}))
    return route.method, "/api/" + route.path.replace("*", argument), body


MUTATING = [_concrete(route) for route in MUTATING_ROUTES]
VIEWS = ["/api/overview", "/api/timeseries", "/api/routes", "/api/targets", "/api/clients",
         "/api/security", "/api/caches"]


def test_session_create_get_delete(admin_gateway: StartGateway, admin_client: MakeAdmin
                                   ) -> None:
    gw = admin_gateway()
    admin = admin_client(gw)
    r = admin.get("/api/session")
    assert r.status_code == 401
    assert r.json() == {"error": "unauthorized", "message": "admin session is required"}
    wrong = admin.login("not-the-password")
    assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
    assert "set-cookie" not in wrong.headers
    r = admin.login()
    assert r.status_code == 200
    body = r.json()
    assert body["authenticated"] is True and body["csrfHeader"] == CSRF_HEADER
    assert body["basePath"] == "/admin/"
    assert re.fullmatch(r"[0-9a-f]{64}", body["csrfToken"])
    cookie = r.headers["set-cookie"]
    assert re.match(r"sipp_gateway_admin=[0-9a-f]{64}; ", cookie)
    for flag in ("HttpOnly", "SameSite=Strict", "Max-Age=28800", "Path=/admin"):
        assert flag in cookie, flag
    again = admin.get("/api/session")
    assert again.status_code == 200 and again.json()["csrfToken"] == body["csrfToken"]
    r = admin.request("DELETE", "/api/session")
    assert r.status_code == 200 and r.json() == {"authenticated": False}
    assert "Max-Age=0" in r.headers["set-cookie"]
    assert admin.get("/api/session").status_code == 401


def test_bad_login_bodies_are_refused_clearly(admin_gateway: StartGateway,
                                              admin_client: MakeAdmin) -> None:
    admin = admin_client(admin_gateway())
    r = admin.http.post(admin.url + "/api/session", data=b"{nope", timeout=5)
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
    r = admin.http.post(admin.url + "/api/session", json={"password": 5}, timeout=5)
    assert r.status_code == 400 and "'password' must be a string" in r.json()["message"]


def test_login_backoff_after_failures(admin_gateway: StartGateway, admin_client: MakeAdmin
                                      ) -> None:
    clock = FakeClock()
    admin = admin_client(admin_gateway(clock=clock))
    for _ in range(3):
        assert admin.login("wrong").status_code == 401
    r = admin.login()  # even the right password waits out the backoff
    assert r.status_code == 429 and r.json()["error"] == "login_throttled"
    assert r.headers["retry-after"] == "1"
    clock.advance(1.1)
    assert admin.login("wrong").status_code == 401
    r = admin.login()
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    clock.advance(2.1)
    assert admin.login().status_code == 200
    assert admin.login("wrong").status_code == 401  # success cleared the record


def test_parallel_guesses_wait_for_the_attempt_in_flight(admin_gateway: StartGateway,
                                                         admin_client: MakeAdmin) -> None:
    # the throttle was checked before the body was read and failures recorded after, so
    # 100 parallel guesses were all evaluated (the right one among them got 200)
    gw = admin_gateway()
    admin = admin_client(gw)
    host, port = gw.management_url.removeprefix("http://").split(":")
    body = b'{"password": "wrong"}'
    with socket.create_connection((host, int(port)), timeout=10) as slow:
        slow.sendall(b"POST /admin/api/session HTTP/1.1\r\nHost: gw\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                     % len(body))
        throttle = gw.server.management_app.admin.throttle
        deadline = time.monotonic() + 10  # until the gateway has begun this attempt
        while not throttle._pending and time.monotonic() < deadline:
            time.sleep(0.02)
        r = admin.login()  # the right password, while a guess is being checked
        assert r.status_code == 429 and r.json()["error"] == "login_throttled"
        slow.sendall(body)
        assert slow.recv(4096).startswith(b"HTTP/1.1 401")
    assert admin.login().status_code == 200  # free attempts left: the next one is judged


def test_cookie_is_secure_behind_a_trusted_tls_proxy(admin_gateway: StartGateway) -> None:
    security = {"client_ip": {"source": "x_forwarded_for",
                              "trusted_proxy_cidrs": ["127.0.0.0/8"]},
                "rate_limit": {"enabled": False, "requests_per_minute": 60, "burst": 60}}
    gw = admin_gateway(security=security)
    url = gw.management_url + "/admin/api/session"
    body = {"password": ADMIN_PASSWORD}
    r = requests.post(url, json=body, headers={"X-Forwarded-Proto": "https"}, timeout=5)
    assert r.status_code == 200 and "; Secure" in r.headers["set-cookie"]
    r = requests.post(url, json=body, timeout=5)
    assert "Secure" not in r.headers["set-cookie"]  # plain HTTP: a Secure cookie would vanish
    plain = admin_gateway()  # no trusted proxies: the header is the client's word only
    r = requests.post(plain.management_url + "/admin/api/session", json=body,
                      headers={"X-Forwarded-Proto": "https"}, timeout=5)
    assert r.status_code == 200 and "Secure" not in r.headers["set-cookie"]


def test_admin_limits_refuse_absurd_numbers(admin_gateway: StartGateway,
                                            admin_client: MakeAdmin) -> None:
    admin = admin_client(admin_gateway())
    admin.login()
    for value, words in ((10**400, "integer out of range"), (10**12, "at most 1000000000")):
        r = admin.request("PUT", "/api/security/rate-limit",
                          data=f'{{"enabled": true, "requestsPerMinute": {value}, "burst": 2}}',
                          headers={"content-type": "application/json"})
        assert r.status_code == 400 and words in r.json()["message"], r.text
    r = admin.request("PUT", "/api/security/rate-limit",
                      data='{"enabled": true, "requestsPerMinute": ' + "[" * 50 + "]" * 50 + "}",
                      headers={"content-type": "application/json"})
    assert r.status_code == 400 and "nested deeper" in r.json()["message"]
    view = admin.get("/api/security").json()["security"]["rateLimit"]
    assert view["requestsPerMinute"] == 60  # nothing half-applied


def test_streamed_tokens_are_charged_even_when_the_client_leaves(
        admin_gateway: StartGateway, script: Script) -> None:
    # usage was charged only when a response finished: streams dropped before the end
    # generated tokens against the budget for free (and the output metric missed them)
    clock = FakeClock()
    gw = admin_gateway(clock=clock, token_limit={"callers": {"all": 3}})
    for n in range(3):
        with requests.post(gw.url + "/v1/query", stream=True, timeout=10,
                           json={"model": "alpha", "prompt": "block", "stream": True},
                           headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status_code == 200, r.text
            assert next(r.iter_lines()) == b"event: token"  # one token streamed, then we leave
        deadline = time.monotonic() + 5
        while len(script.cancels) <= n and time.monotonic() < deadline:
            time.sleep(0.02)
    r = public(gw)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    metrics = requests.get(gw.management_url + "/metrics", timeout=5).text
    assert 'sipp_gateway_output_tokens_total{target="alpha"} 3' in metrics


def test_session_expires_after_ttl(admin_gateway: StartGateway, admin_client: MakeAdmin
                                   ) -> None:
    clock = FakeClock()
    gw = admin_gateway(clock=clock)
    admin = admin_client(gw)
    assert admin.login().status_code == 200
    clock.advance(8 * 3600 + 1)
    assert admin.get("/api/overview").status_code == 401
    assert admin.get("/api/session").status_code == 401


def test_route_table_protects_every_mutating_route() -> None:
    assert MUTATING_ROUTES, "the admin route table lists no mutating routes"
    for route in API_ROUTES:
        if route.method == "GET" or (route.method, route.path) in CSRF_EXEMPT:
            assert not route.csrf or route.method != "GET", route
            continue
        assert route.session and route.csrf, f"{route} must need a session and CSRF"
        assert (route.method, route.path) in SAMPLES, f"add a valid sample request for {route}"


@pytest.mark.parametrize("route", MUTATING_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_mutating_routes_need_session_and_csrf(admin_gateway: StartGateway,
                                               admin_client: MakeAdmin,
                                               route: ApiRoute) -> None:
    method, path, body = _concrete(route)
    # the cache flush needs a cache named like the sample argument
    gw = admin_gateway(caches=[{"name": "answers"}]) if route.path == "caches/*" \
        else admin_gateway()
    state = gw.server.state
    anonymous = admin_client(gw)
    r = anonymous.request(method, path, json=body)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    admin = admin_client(gw)
    assert admin.login().status_code == 200
    r = admin.request(method, path, json=body, csrf=False)
    assert r.status_code == 403
    assert r.json() == {"error": "csrf_failed", "message": "admin CSRF token is invalid"}
    r = admin.request(method, path, json=body, csrf=False,
                      headers={CSRF_HEADER: "0" * 64})
    assert r.status_code == 403 and r.json()["error"] == "csrf_failed"
    # nothing changed
    assert state.rate_limit == gw.server.config.rate_limit
    assert len(state.blocklist) == 0 and not state.disabled_targets
    assert state.admission.limit is None and state.budgets.snapshot() == []
    if method == "DELETE":
        admin.request("POST", path)
    r = admin.request(method, path, json=body)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", VIEWS)
def test_views_need_a_session(admin_gateway: StartGateway, admin_client: MakeAdmin,
                              path: str) -> None:
    gw = admin_gateway()
    r = admin_client(gw).get(path)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    admin = admin_client(gw)
    admin.login()
    assert admin.get(path).status_code == 200


def test_every_admin_response_is_no_store(admin_gateway: StartGateway,
                                          admin_client: MakeAdmin) -> None:
    gw = admin_gateway()
    admin = admin_client(gw)
    responses = [admin.http.get(admin.url, allow_redirects=False, timeout=5),
                 admin.get("/"), admin.get("/assets/app.js"), admin.get("/assets/nope.js"),
                 admin.get("/api/nope"), admin.get("/api/overview"), admin.login("wrong"),
                 admin.login(), *(admin.get(path) for path in VIEWS),
                 admin.request("PUT", "/api/controls/concurrency", json={"limit": 0}),
                 *(admin.request(m, p, json=b, csrf=False) for m, p, b in MUTATING),
                 admin.request("DELETE", "/api/session")]
    for r in responses:
        assert r.headers.get("cache-control") == "no-store", (r.url, r.status_code)


def test_static_app_and_spa_fallback(admin_gateway: StartGateway, admin_client: MakeAdmin
                                     ) -> None:
    gw = admin_gateway()
    admin = admin_client(gw)
    r = admin.http.get(admin.url, allow_redirects=False, timeout=5)
    assert r.status_code == 308 and r.headers["location"] == "/admin/"
    page = admin.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert '<base href="/admin/">' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    js = admin.get("/assets/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert admin.get("/assets/style.css").headers["content-type"].startswith("text/css")
    assert admin.get("/assets/missing.js").status_code == 404
    assert admin.get("/targets/alpha").text == page.text  # client-side route
    r = admin.get("/api/nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    conn = http.client.HTTPConnection("127.0.0.1", gw.server.management_port, timeout=5)
    conn.request("GET", "/admin/assets/../../admin/static.py")
    raw = conn.getresponse()
    assert b"StaticFiles" not in raw.read()
    conn.close()
    # the management routes keep working beside the admin app
    assert requests.get(gw.management_url + "/healthz", timeout=5).text == "ok"


def test_blocked_client_gets_403_before_anything_else(admin_gateway: StartGateway,
                                                      admin_client: MakeAdmin) -> None:
    gw = admin_gateway()
    admin = admin_client(gw)
    admin.login()
    assert public(gw).status_code == 200
    r = admin.request("POST", "/api/security/blocklist/127.0.0.1")
    assert r.status_code == 200
    assert [e["client"] for e in r.json()["security"]["blocklist"]] == ["127.0.0.1"]
    for response in (public(gw), public(gw, token="bogus"),
                     requests.post(gw.url + "/v1/query", data=b"x" * 10_000, timeout=5),
                     requests.get(gw.url + "/v1/chat", timeout=5)):
        assert response.status_code == 403
        assert response.json()["error"] == {"code": "blocked",
                                             "message": "client is blocked by the gateway"}
    assert admin.request("DELETE", "/api/security/blocklist/127.0.0.1").status_code == 200
    assert public(gw).status_code == 200
    assert admin.request("POST", "/api/security/blocklist/127.0.0.0/8").status_code == 200
    assert public(gw).status_code == 403
    assert admin.request("DELETE", "/api/security/blocklist/127.0.0.0/8").status_code == 200
    r = admin.request("POST", "/api/security/blocklist/not-an-ip")
    assert r.status_code == 400 and "IP address or CIDR" in r.json()["message"]
    r = admin.request("DELETE", "/api/security/blocklist/10.1.2.3")
    assert r.status_code == 404 and "not on the blocklist" in r.json()["message"]
    clients = admin.get("/api/clients").json()
    local = next(c for c in clients["clients"] if c["client"] == "127.0.0.1")
    assert local["blocklistHits"] == 5
    assert [e["rejection"] for e in clients["recent"][:2]] == ["blocked", None]
    assert admin.get("/api/overview").json()["metrics"]["totals"]["blocklistHits"] == 5
    metrics = requests.get(gw.management_url + "/metrics", timeout=5).text
    assert 'sipp_gateway_rejected_total{reason="blocked"} 5' in metrics


def test_token_per_minute_limits(admin_gateway: StartGateway, admin_client: MakeAdmin
                                 ) -> None:
    clock = FakeClock()  # each fake request uses 3 input + 2 output tokens
    gw = admin_gateway(clock=clock, token_limit={"callers": {"all": 8}})
    assert public(gw).status_code == 200  # 8 -> 3
    assert public(gw, stream=True).status_code == 200  # 3 -> -2
    r = public(gw)
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limited"
    assert "caller all is over its limit of 8 tokens per minute" in r.json()["error"]["message"]
    assert r.headers["retry-after"] == "23"  # (2 + 1) tokens at 8/60 per second
    clock.advance(23)
    assert public(gw).status_code == 200
    admin = admin_client(gw)
    admin.login()
    r = admin.request("PUT", "/api/controls/token-limits/caller/all",
                      json={"tokensPerMinute": None})
    assert r.json()["security"]["tokenLimits"] == []
    r = admin.request("PUT", "/api/controls/token-limits/target/beta",
                      json={"tokensPerMinute": 5})
    assert r.json()["security"]["tokenLimits"] == [
        {"kind": "target", "name": "beta", "tokensPerMinute": 5, "available": 5}]
    assert public(gw, model="beta").status_code == 200
    r = public(gw, model="beta", token="tok-lim-Rb77nQe")
    assert r.status_code in (403, 429)  # limited caller may not use beta at all
    r = public(gw, model="beta")
    assert r.status_code == 429 and "target beta" in r.json()["error"]["message"]
    assert r.json()["error"]["code"] == "rate_limited"
    # beta had 5 tokens, used 5; one more token at 5/60 per second is 12 s away
    assert r.headers["retry-after"] == "12"
    assert public(gw, model="alpha").status_code == 200
    limits = admin.get("/api/security").json()["security"]["tokenLimits"]
    assert limits[0]["available"] == 0
    for path, body, message in (
        ("/api/controls/token-limits/target/beta", {"tokensPerMinute": 0}, "greater than zero"),
        ("/api/controls/token-limits/target/beta", {}, "'tokensPerMinute' is required"),
        ("/api/controls/token-limits/caller/ghost", {"tokensPerMinute": 1}, "caller not found"),
        ("/api/controls/token-limits/target/ghost", {"tokensPerMinute": 1}, "target not found"),
    ):
        r = admin.request("PUT", path, json=body)
        assert r.status_code in (400, 404) and message in r.json()["message"], r.text
    assert admin.get("/api/overview").json()["metrics"]["totals"]["rateLimitHits"] == 2


def test_disabled_target_is_refused_clearly(admin_gateway: StartGateway,
                                            admin_client: MakeAdmin) -> None:
    gw = admin_gateway()
    admin = admin_client(gw)
    admin.login()
    r = admin.request("PUT", "/api/controls/targets/alpha", json={"enabled": False})
    alpha = next(t for t in r.json()["targets"] if t["name"] == "alpha")
    assert alpha["enabled"] is False
    r = public(gw)
    assert r.status_code == 503
    assert r.json()["error"] == {"code": "target_disabled",
                                 "message": "target alpha is disabled by the gateway "
                                            "administrator"}
    assert public(gw, model="beta").status_code == 200
    admin.request("PUT", "/api/controls/targets/alpha", json={"enabled": True})
    assert public(gw).status_code == 200
    assert admin.request("PUT", "/api/controls/targets/ghost",
                         json={"enabled": True}).status_code == 404
    r = admin.request("PUT", "/api/controls/targets/alpha", json={"enabled": "no"})
    assert r.status_code == 400 and "'enabled' must be true or false" in r.json()["message"]


def test_rate_limit_and_concurrency_overrides(admin_gateway: StartGateway,
                                              admin_client: MakeAdmin) -> None:
    clock = FakeClock()
    gw = admin_gateway(clock=clock)
    admin = admin_client(gw)
    admin.login()
    r = admin.request("PUT", "/api/security/rate-limit",
                      json={"enabled": True, "requestsPerMinute": 60, "burst": 2})
    assert r.json()["security"]["rateLimit"] == {"enabled": True, "requestsPerMinute": 60,
                                                 "burst": 2, "trackedClients": 0}
    assert [public(gw).status_code for _ in range(3)] == [200, 200, 429]
    clock.advance(1)
    assert public(gw).status_code == 200
    r = admin.request("PUT", "/api/security/rate-limit",
                      json={"enabled": True, "requestsPerMinute": 0, "burst": 2})
    assert r.status_code == 400
    assert r.json()["message"] == ("field 'requestsPerMinute' must be an integer greater than "
                                   "zero, got 0")
    admin.request("PUT", "/api/security/rate-limit",
                  json={"enabled": False, "requestsPerMinute": 60, "burst": 2})
    assert [public(gw).status_code for _ in range(3)] == [200, 200, 200]
    r = admin.request("PUT", "/api/controls/concurrency", json={"limit": 2})
    assert r.json() == {"concurrency": {"limit": 2, "active": 0}}
    assert gw.server.state.admission.limit == 2
    r = admin.request("PUT", "/api/controls/concurrency", json={"limit": 0})
    assert r.status_code == 400 and "'limit'" in r.json()["message"]
    r = admin.request("PUT", "/api/controls/concurrency", json={"limit": None})
    assert r.json()["concurrency"]["limit"] is None


def test_dashboard_views_show_live_traffic(admin_gateway: StartGateway,
                                           admin_client: MakeAdmin) -> None:
    gw = admin_gateway()
    admin = admin_client(gw)
    admin.login()
    before = admin.get("/api/overview").json()
    assert before["metrics"]["totals"]["requests"] == 0
    public(gw)
    public(gw, stream=True)
    public(gw, token="bogus")
    overview = admin.get("/api/overview").json()
    totals = overview["metrics"]["totals"]
    assert (totals["requests"], totals["errors"], totals["totalTokens"]) == (3, 1, 10)
    assert totals["p99LatencyMs"] >= totals["p50LatencyMs"] > 0
    assert overview["controls"]["concurrency"] == {"limit": None, "active": 0}
    series = admin.get("/api/timeseries").json()["timeseries"]
    assert sum(b["requests"] for b in series) == 3 and series[-1]["totalTokens"] == 10
    clients = admin.get("/api/clients").json()
    assert clients["clients"][0]["client"] == "127.0.0.1"
    assert clients["clients"][0]["caller"] == "all"
    assert clients["clients"][0]["requests"] == 3
    assert [e["status"] for e in clients["recent"]] == [401, 200, 200]
    assert clients["recent"][1]["streaming"] is True
    targets = admin.get("/api/targets").json()
    assert [t["name"] for t in targets["targets"]] == ["alpha", "beta"]
    assert targets["targets"][0]["kind"] == "openai"
    assert targets["metrics"][0]["requests"] == 2
    routes = {r["name"]: r["path"] for r in admin.get("/api/routes").json()["routes"]}
    assert routes["admin"] == "/admin" and routes["query"] == "/v1/query"


def test_admin_route_is_configurable_and_can_be_disabled(
        start_gateway: StartGateway, admin_client: MakeAdmin) -> None:
    from tests.gateway.admin.conftest import SECRET_ENV
    from tests.gateway.server.conftest import BASE_CONFIG

    gw = start_gateway(BASE_CONFIG, env=SECRET_ENV, routes={"admin": "/ops/dash"})
    admin = admin_client(gw, "/ops/dash")
    assert admin.login().status_code == 200
    assert "Path=/ops/dash" in admin.http.post(
        admin.url + "/api/session", json={"password": ADMIN_PASSWORD}, timeout=5
    ).headers["set-cookie"]
    assert requests.get(gw.management_url + "/admin/", timeout=5).status_code == 404
    off = start_gateway(BASE_CONFIG, env=SECRET_ENV, routes={"admin": False})
    assert requests.get(off.management_url + "/admin/", timeout=5).status_code == 404
