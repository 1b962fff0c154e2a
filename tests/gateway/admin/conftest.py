"""Admin dashboard tests: the real gateway on loopback (fake endpoints behind its targets,
see ``tests/gateway/server/conftest.py``) and an admin HTTP client."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.gateway.server import conftest as server_conftest
from tests.gateway.server.conftest import BASE_CONFIG, RunningGateway

# The gateway fixtures of tests/gateway/server, shared here.
script = server_conftest.script
start_gateway = server_conftest.start_gateway

ADMIN_PASSWORD = "admin-pass-Qz81xL"
TOKEN = "tok-all-Jw42mPc"
LIMITED_TOKEN = "tok-lim-Rb77nQe"
SECRET_ENV = {"ADMIN_PW": ADMIN_PASSWORD, "TOKEN_ALL": TOKEN, "TOKEN_LIMITED": LIMITED_TOKEN,
              "KEY_A": "sk-alpha-Hq93vTy", "KEY_B": "sk-beta-Lm55kWd"}
CSRF_HEADER = "x-sipp-admin-csrf"


class FakeClock:
    """A monotonic clock the test moves by hand (rate limits, budgets, sessions, logins)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Admin:
    """A browser-like admin client: cookie jar plus the CSRF token from the session."""

    def __init__(self, gateway: RunningGateway, base: str = "/admin") -> None:
        self.url = gateway.management_url + base
        self.http = requests.Session()
        self.csrf: str | None = None

    def login(self, password: str = ADMIN_PASSWORD) -> requests.Response:
        r = self.http.post(self.url + "/api/session", json={"password": password}, timeout=5)
        if r.status_code == 200:
            self.csrf = r.json()["csrfToken"]
        return r

    def request(self, method: str, path: str, *, csrf: bool = True,
                **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if csrf and self.csrf is not None:
            headers[CSRF_HEADER] = self.csrf
        return self.http.request(method, self.url + path, headers=headers, timeout=5, **kwargs)

    def get(self, path: str) -> requests.Response:
        return self.request("GET", path)

    def close(self) -> None:
        self.http.close()


def public(gateway: RunningGateway, prompt: str = "hello", *, model: str = "alpha",
           token: str = TOKEN, stream: bool = False) -> requests.Response:
    return requests.post(gateway.url + "/v1/query",
                         json={"model": model, "prompt": prompt, "stream": stream},
                         headers={"Authorization": f"Bearer {token}"}, timeout=5)


@pytest.fixture
def admin_gateway(start_gateway: Callable[..., RunningGateway]
                  ) -> Callable[..., RunningGateway]:
    """Start a gateway with the distinctive secrets above; keyword overrides as in
    ``start_gateway`` plus ``token_limit`` for ``[security.token_limit]``."""

    def start(*, token_limit: dict[str, Any] | None = None, **kwargs: Any) -> RunningGateway:
        config = copy.deepcopy(BASE_CONFIG)
        if token_limit is not None:
            config["security"]["token_limit"] = token_limit
        return start_gateway(config, env=SECRET_ENV, **kwargs)

    return start


@pytest.fixture
def admin_client() -> Any:
    clients: list[Admin] = []

    def make(gateway: RunningGateway, base: str = "/admin") -> Admin:
        client = Admin(gateway, base)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
