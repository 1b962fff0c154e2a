"""The admin dashboard in headless Chromium (Debian's chromium + chromedriver, Selenium).

Screenshots go to ``$SIPP_TEST_ARTIFACTS`` (default: pytest's tmp dir).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.admin.conftest import ADMIN_PASSWORD, public
from tests.gateway.server.conftest import RunningGateway

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# .ci/run sets SIPP_REQUIRE_BROWSER=1 once it has installed Chromium: there a missing
# browser or Selenium fails the run instead of skipping the dashboard tests.
_REQUIRED = os.environ.get("SIPP_REQUIRE_BROWSER") == "1"
_MISSING = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
if _MISSING:
    _reason = (f"browser tests need {' and '.join(_MISSING)} "
               "(apt-get install -y chromium chromium-driver)")
    if _REQUIRED:
        raise RuntimeError(f"SIPP_REQUIRE_BROWSER=1 but {_reason}")
    pytest.skip(_reason, allow_module_level=True)
if _REQUIRED:
    import selenium.webdriver as webdriver
else:
    webdriver = pytest.importorskip(
        "selenium.webdriver",
        reason="selenium is not installed (pip install selenium)")

from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

Driver = Any


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("SIPP_TEST_ARTIFACTS")
    path = Path(folder) / "admin-dashboard" if folder else \
        tmp_path_factory.mktemp("admin-dashboard")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def driver() -> Iterator[Driver]:
    profile = tempfile.mkdtemp(prefix="sipp-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1366,900"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    browser = webdriver.Chrome(options=options, service=service)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(browser: Driver, condition: Callable[[Driver], Any], what: str,
             timeout: float = 15) -> Any:
    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.1,
                             ignored_exceptions=(StaleElementReferenceException,)
                             ).until(condition)
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what}") from None


def click(browser: Driver, css: str) -> None:
    """Click ``css``; the page re-renders its tables every poll, so retry stale elements."""
    wait_for(browser, lambda b: b.find_element(By.CSS_SELECTOR, css).click() or True,
             f"a click on {css}")


def text_of(browser: Driver, element_id: str) -> str:
    return str(browser.find_element(By.ID, element_id).text)


def visible(browser: Driver, element_id: str) -> bool:
    return bool(browser.find_element(By.ID, element_id).is_displayed())


def log_in(browser: Driver, gateway: RunningGateway) -> None:
    browser.get(gateway.management_url + "/admin/")
    wait_for(browser, lambda b: visible(b, "login-view"), "the login form")
    field = browser.find_element(By.ID, "password")
    field.clear()
    field.send_keys(ADMIN_PASSWORD)
    browser.find_element(By.ID, "login-button").click()
    wait_for(browser, lambda b: visible(b, "dashboard-view"), "the dashboard")
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#targets tr[data-target]"),
             "the targets table")


def fetch(browser: Driver, method: str, path: str, body: Any = None,
          headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Run fetch() inside the page (same origin, the session cookie goes along)."""
    script = """
        const [method, path, body, headers, done] = arguments;
        fetch(path, {method, headers, body: body === null ? undefined : JSON.stringify(body)})
          .then(async (r) => done({status: r.status, body: await r.json()}))
          .catch((e) => done({status: 0, body: String(e)}));
    """
    result: dict[str, Any] = browser.execute_async_script(
        script, method, path, body, {"content-type": "application/json", **(headers or {})})
    return result


def test_dashboard_controls_the_live_gateway(
        driver: Driver, admin_gateway: Callable[..., RunningGateway], artifacts: Path) -> None:
    gw = admin_gateway()
    driver.set_window_size(1366, 900)
    driver.get(gw.management_url + "/admin/")
    wait_for(driver, lambda b: visible(b, "login-view"), "the login form")
    driver.save_screenshot(str(artifacts / "01-login.png"))

    # wrong password is refused in the page
    driver.find_element(By.ID, "password").send_keys("wrong-password")
    driver.find_element(By.ID, "login-button").click()
    wait_for(driver, lambda b: "wrong admin password" in text_of(b, "login-error"),
             "the wrong-password message")

    log_in(driver, gw)
    rows = wait_for(driver, lambda b: [r.text for r in b.find_elements(
        By.CSS_SELECTOR, "#targets tr[data-target]")], "the target rows")
    assert [row.split()[0] for row in rows] == ["alpha", "beta"]
    assert "openai" in rows[0] and "m-a" in rows[0] and "ready" in rows[0]

    # live metrics move after a request
    wait_for(driver, lambda b: text_of(b, "total-requests") == "0", "zero requests")
    assert public(gw).status_code == 200
    wait_for(driver, lambda b: text_of(b, "total-requests") == "1", "the request count")
    wait_for(driver, lambda b: text_of(b, "total-tokens") == "5", "the token count")
    wait_for(driver, lambda b: b.find_element(By.ID, "chart-requests")
             .get_attribute("data-total") == "1", "the requests chart")
    wait_for(driver, lambda b: b.find_elements(By.CSS_SELECTOR,
                                               '#clients tr[data-client="127.0.0.1"]'),
             "the caller in the top-callers table")
    driver.save_screenshot(str(artifacts / "02-dashboard.png"))

    # block the client: its next request gets 403 blocked
    driver.find_element(By.ID, "block-input").send_keys("127.0.0.1")
    driver.find_element(By.ID, "block-add").click()
    wait_for(driver, lambda b: b.find_elements(By.CSS_SELECTOR,
                                               '#blocklist li[data-entry="127.0.0.1"]'),
             "the blocklist entry")
    r = public(gw)
    assert r.status_code == 403 and r.json()["error"]["code"] == "blocked"
    wait_for(driver, lambda b: text_of(b, "total-blocked") == "1", "the blocked counter")
    driver.save_screenshot(str(artifacts / "03-blocked.png"))

    # unblock
    click(driver, '#blocklist li[data-entry="127.0.0.1"] button')
    wait_for(driver, lambda b: not b.find_elements(By.CSS_SELECTOR,
                                                   '#blocklist li[data-entry="127.0.0.1"]'),
             "the entry to go")
    assert public(gw).status_code == 200

    # change the rate limit: on, burst 1
    enabled = driver.find_element(By.ID, "rl-enabled")
    if not enabled.is_selected():
        enabled.click()
    for field, value in (("rl-rpm", "6"), ("rl-burst", "1")):
        element = driver.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)
    driver.find_element(By.ID, "rl-save").click()
    wait_for(driver, lambda b: "Rate limit on: 6/min, burst 1" in text_of(b, "status"),
             "the rate-limit confirmation")
    assert gw.server.state.rate_limit.burst == 1
    statuses = [public(gw).status_code for _ in range(2)]
    assert statuses == [200, 429]
    wait_for(driver, lambda b: text_of(b, "total-rate-limited") == "1", "the 429 counter")

    # disable a target from its row
    click(driver, '#targets tr[data-target="beta"] button')
    wait_for(driver, lambda b: "disabled" in b.find_element(
        By.CSS_SELECTOR, '#targets tr[data-target="beta"]').text, "beta disabled")
    assert "beta" in gw.server.state.disabled_targets
    wait_for(driver, lambda b: "Disabled target beta" in text_of(b, "status"),
             "the target confirmation")
    assert "error" not in (driver.find_element(By.ID, "status").get_attribute("class") or "")
    driver.save_screenshot(str(artifacts / "04-controls.png"))

    # a mutating call without the CSRF header is refused, even with the session cookie
    refused = fetch(driver, "PUT", "api/controls/concurrency", {"limit": 1})
    assert refused == {"status": 403, "body": {"error": "csrf_failed",
                                               "message": "admin CSRF token is invalid"}}
    wrong = fetch(driver, "PUT", "api/controls/concurrency", {"limit": 1},
                  {"x-sipp-admin-csrf": "f" * 64})
    assert wrong["status"] == 403
    assert gw.server.state.admission.limit is None
    assert fetch(driver, "GET", "api/session")["status"] == 200

    # phone width: the page reflows without horizontal scrolling
    driver.set_window_size(390, 844)
    time.sleep(0.3)
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"page is {overflow}px wider than a phone screen"
    driver.save_screenshot(str(artifacts / "05-phone.png"))
    driver.set_window_size(1366, 900)

    # log out: back to the login form, and the session is gone server-side
    driver.find_element(By.ID, "logout").click()
    wait_for(driver, lambda b: visible(b, "login-view"), "the login form after logout")
    assert text_of(driver, "login-error") == "Signed out."
    assert fetch(driver, "GET", "api/session")["status"] == 401
    assert driver.get_cookie("sipp_gateway_admin") is None


def test_session_expiry_returns_to_login(
        driver: Driver, admin_gateway: Callable[..., RunningGateway], artifacts: Path) -> None:
    gw = admin_gateway()
    admin_app = gw.server.management_app.admin
    assert admin_app is not None
    admin_app.sessions.ttl = 2.0
    log_in(driver, gw)
    wait_for(driver, lambda b: visible(b, "login-view"), "the expired session", timeout=20)
    assert "expired" in text_of(driver, "login-error")
    driver.save_screenshot(str(artifacts / "06-expired.png"))
    assert fetch(driver, "GET", "api/overview")["status"] == 401
