"""`GET /docs` in a real browser, as a person uses it: the page lists the rerank endpoints, and
"Try it out" -> "Execute" reranks, with an API key entered through "Authorize" when the server wants
one. The browser is Debian's headless Chromium (`make test` installs it), one per module; every
page must load from the server alone, because the service runs air-gapped.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from server.http.docs import DOCS_PUBLIC_PATHS

from .conftest import XLMR, RunningServer

WAIT_S = 30  # generous for a loaded 2-core CI machine; the waits end as soon as the page is ready
KEY = "docs-test-key"
QUERY = "What is a panda?"
DOCUMENTS = ["hi", "The giant panda is a bear species endemic to China.", "it is a bear"]

# The body typed into each endpoint's form, and how many results it must answer.
BODIES: dict[str, tuple[dict[str, Any], int]] = {
    "/v1/rerank": ({"model": "xlmr-tiny", "query": QUERY, "documents": DOCUMENTS, "top_n": 2}, 2),
    "/rerank": ({"query": QUERY, "texts": DOCUMENTS}, 3),
    "/v2/rerank": ({"model": "xlmr-tiny", "query": QUERY, "documents": DOCUMENTS, "top_n": 1}, 1),
}


def chromium_paths() -> tuple[str, str]:
    """Debian's chromium and its matching driver; without them Selenium would try to download a
    browser, which an air-gapped CI cannot."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        pytest.fail("tests/test_docs.py needs chromium and chromedriver: "
                    "`make test` installs them (apt-get install chromium chromium-driver)")
    return browser, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    binary, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    # A container has no sandbox support and a small /dev/shm.
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(flag)
    # Network events show every request the page makes; console messages show blocked ones.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_script_timeout(WAIT_S)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[RunningServer]:
    srv = RunningServer("--model", str(XLMR), "--alias", "xlmr-tiny", "--api-key", KEY)
    srv.wait_ready()
    yield srv
    srv.stop()


def wait(browser: WebDriver) -> WebDriverWait:
    return WebDriverWait(browser, WAIT_S)


def open_docs(browser: WebDriver, url: str) -> None:
    """Loads the page afresh (no authorization kept) and waits until Swagger UI lists operations."""
    browser.get_log("performance")  # drop the events of earlier pages
    browser.get_log("browser")
    browser.get(f"{url}/docs")
    wait(browser).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))


def listed_paths(browser: WebDriver) -> set[str]:
    return {e.get_attribute("data-path") for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}


def try_it_out(browser: WebDriver, path: str, body: dict[str, Any]) -> WebElement:
    """Opens a POST operation, presses "Try it out" and puts the body over the generated example.
    The body goes in as one input event, as a paste does: typed key by key, Swagger UI re-renders
    the form at each character (3 s for this body)."""
    op = browser.find_element(By.CSS_SELECTOR, f'.opblock-post:has(.opblock-summary-path[data-path="{path}"])')
    op.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    wait(browser).until(lambda _: op.find_element(By.CSS_SELECTOR, ".try-out__btn")).click()
    editor = wait(browser).until(lambda _: op.find_element(By.CSS_SELECTOR, "textarea.body-param__text"))
    editor.send_keys(Keys.CONTROL, "a")
    editor.send_keys(Keys.DELETE)
    browser.execute_cdp_cmd("Input.insertText", {"text": json.dumps(body)})
    assert json.loads(editor.get_attribute("value")) == body
    return op


def execute(browser: WebDriver, op: WebElement) -> tuple[int, Any]:
    """Presses "Execute" and reads the status and the JSON body that the page shows; an earlier
    answer is cleared first so that the one read is the new one."""
    for clear in op.find_elements(By.CSS_SELECTOR, ".btn-clear"):
        clear.click()
    wait(browser).until(lambda _: not op.find_elements(By.CSS_SELECTOR, ".live-responses-table"))
    op.find_element(By.CSS_SELECTOR, "button.execute").click()
    status = wait(browser).until(
        lambda _: op.find_element(By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status"))
    body = op.find_element(By.CSS_SELECTOR, ".live-responses-table tbody .highlight-code code")
    return int(status.text), json.loads(body.get_attribute("textContent"))


def authorize(browser: WebDriver, key: str) -> None:
    """Enters the key in the dialog of the `bearer` scheme that /openapi.json declares."""
    browser.find_element(By.CSS_SELECTOR, ".auth-wrapper .btn.authorize").click()
    field = wait(browser).until(lambda b: b.find_element(By.ID, "auth-bearer-value"))
    field.send_keys(key)
    browser.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper .btn.authorize").click()
    wait(browser).until(lambda b: b.find_elements(By.CSS_SELECTOR, 'button[aria-label="Remove authorization"]'))
    browser.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper .btn-done").click()
    wait(browser).until(lambda b: not b.find_elements(By.CSS_SELECTOR, ".modal-ux"))


def requested_urls(browser: WebDriver) -> list[str]:
    """Every URL the browser asked for since the page was opened, from Chrome's network events."""
    events = (json.loads(entry["message"])["message"] for entry in browser.get_log("performance"))
    return [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]


def assert_stayed_on(browser: WebDriver, url: str, *seen: str) -> list[dict[str, Any]]:
    """No request left the server, and none was tried: the network log holds what was sent (it
    must show the `seen` paths, so it is not just empty), the console what the page's policy
    blocked. Returns the console messages for more checks."""
    urls = requested_urls(browser)
    assert {f"{url}{path}" for path in seen} <= set(urls), urls
    outside = [u for u in urls if not u.startswith((f"{url}/", "data:"))]
    assert not outside, f"the page reached beyond the server: {outside}"
    console = browser.get_log("browser")
    assert [m for m in console if m["source"] == "security"] == [], "the page tried to reach elsewhere"
    return console


def assert_reranked(path: str, answer: Any, expected: int) -> None:
    """The answer of each dialect holds `expected` results, best first, indexing the documents."""
    results = answer if path == "/rerank" else answer["results"]
    scores = [r["score"] if path == "/rerank" else r["relevance_score"] for r in results]
    assert len(results) == expected
    assert {r["index"] for r in results} <= set(range(len(DOCUMENTS)))
    assert scores == sorted(scores, reverse=True)


def test_docs_page_lists_the_rerank_endpoints(server: RunningServer, browser: WebDriver) -> None:
    open_docs(browser, server.url)
    assert {"/v1/rerank", "/rerank", "/v2/rerank"} <= listed_paths(browser)
    # No keys, no bearer scheme: the page shows no Authorize button and no locks.
    assert not browser.find_elements(By.CSS_SELECTOR, ".auth-wrapper .btn.authorize")
    console = assert_stayed_on(browser, server.url, "/docs/assets/swagger-ui-bundle.js", "/openapi.json")
    assert [m for m in console if m["level"] == "SEVERE"] == []


@pytest.mark.parametrize("path", list(BODIES))
def test_try_it_out_reranks(server: RunningServer, browser: WebDriver, path: str) -> None:
    body, expected = BODIES[path]
    open_docs(browser, server.url)
    status, answer = execute(browser, try_it_out(browser, path, body))
    assert status == 200, answer
    assert_reranked(path, answer, expected)
    assert_stayed_on(browser, server.url, path)


def test_page_policy_blocks_other_origins(server: RunningServer, browser: WebDriver) -> None:
    """The page's Content-Security-Policy stops a request to any other origin before it is sent,
    so nothing in Swagger UI can reach for the internet. The probe goes to a closed loopback port."""
    open_docs(browser, server.url)
    violated = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        document.addEventListener("securitypolicyviolation", e => done(e.effectiveDirective), {once: true});
        fetch("http://localhost:9/").catch(() => {});
    """)
    assert violated == "connect-src"


def test_docs_need_no_key_but_the_api_does(keyed_server: RunningServer) -> None:
    with httpx.Client(base_url=keyed_server.url, timeout=30) as client:
        for path in DOCS_PUBLIC_PATHS:
            assert client.get(path).status_code == 200, path
        assert "connect-src 'self'" in client.get("/docs").headers["content-security-policy"]
        assert client.post("/v1/rerank", json=BODIES["/v1/rerank"][0]).status_code == 401
        keyed_doc = client.get("/openapi.json").json()
    assert keyed_doc["security"] == [{"bearer": []}] and "bearer" in keyed_doc["components"]["securitySchemes"]
    assert keyed_doc["paths"]["/health"]["get"]["security"] == [], "public paths need no key"


def test_a_server_without_keys_declares_no_security(server: RunningServer) -> None:
    doc = httpx.get(f"{server.url}/openapi.json").json()
    assert "security" not in doc and "securitySchemes" not in doc["components"]
    assert all("security" not in op for methods in doc["paths"].values() for op in methods.values())


def test_try_it_out_with_the_key_from_authorize(keyed_server: RunningServer, browser: WebDriver) -> None:
    body, expected = BODIES["/v1/rerank"]
    open_docs(browser, keyed_server.url)
    op = try_it_out(browser, "/v1/rerank", body)
    status, answer = execute(browser, op)
    assert status == 401, answer
    authorize(browser, KEY)
    status, answer = execute(browser, op)
    assert status == 200, answer
    assert_reranked("/v1/rerank", answer, expected)
    assert_stayed_on(browser, keyed_server.url, "/v1/rerank")
