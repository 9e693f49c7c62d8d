"""The chat page in a real browser: Debian's headless Chromium driven by selenium through chromedriver opens
``/``, sends a message, and sees the typing indicator, the text growing as it streams, and the model that
answered. Screenshots are kept under the test's tmp dir (``GENPOOL_SCREENSHOT_DIR`` copies them too)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Stack
from tests.integration.gatewaykit import Api, make_token, running_gateway

pytestmark = pytest.mark.integration
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
HEAD = "gemini-3.8-flash"
WAIT_S = 60


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Debian's chromium and chromium-driver are not installed (make deps installs them as root)")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1000,720", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def keep(driver: object, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    assert driver.save_screenshot(str(path))  # type: ignore[attr-defined]
    if target := os.environ.get("GENPOOL_SCREENSHOT_DIR"):
        shutil.copy(path, Path(target) / name)
    return path


def test_the_page_shows_typing_streamed_text_and_the_model(browser: object, stack: Stack, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    stack.workers.start(count=1, concurrency=4)
    stack.sim.models({HEAD: {"latency_ms": 3000, "jitter_ms": 0}})  # 1.8 s to the first chunk, then 0.6 s apart
    token = make_token(stack.env["REDIS_URL"], "demo")
    wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.05)
    with running_gateway(stack) as server:
        driver.get(server.url + "/")  # type: ignore[attr-defined]
        find = driver.find_element  # type: ignore[attr-defined]
        find(By.ID, "token").send_keys(token)
        conversation = find(By.ID, "conversation")
        conversation.clear()
        conversation.send_keys("browser-demo")
        find(By.ID, "connect").click()
        wait.until(lambda d: find(By.ID, "status").text.startswith("connected"))
        find(By.ID, "message").send_keys("What does a worker pool do?", Keys.ENTER)

        wait.until(lambda d: find(By.ID, "typing").is_displayed())
        assert find(By.CSS_SELECTOR, ".msg.user .text").text == "What does a worker pool do?"

        def partial_text(d: object) -> str | bool:
            bubbles = d.find_elements(By.CSS_SELECTOR, ".msg.model")  # type: ignore[attr-defined]
            if not bubbles or bubbles[-1].find_elements(By.CSS_SELECTOR, ".model-name"):
                return False
            return str(bubbles[-1].find_element(By.CSS_SELECTOR, ".text").text) or False

        partial = wait.until(partial_text)  # some text, no model name yet: it is still streaming
        assert find(By.ID, "typing").is_displayed() and HEAD in find(By.ID, "typing-model").text
        keep(driver, tmp_path, "gateway-chat-streaming.png")

        name = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.model .model-name"))[0]
        assert name.text == HEAD
        final = find(By.CSS_SELECTOR, ".msg.model .text").text
        assert final.startswith(partial) and len(final) > len(partial)
        wait.until(lambda d: not find(By.ID, "typing").is_displayed())
        assert "tokens" in find(By.CSS_SELECTOR, ".msg.model .meta").text
        shot = keep(driver, tmp_path, "gateway-chat.png")
        assert shot.stat().st_size > 10_000

        api = Api(server.url, token)
        history = api.http.get("/v1/conversations/browser-demo").json()["turns"]
        assert [t["role"] for t in history] == ["user", "model"] and history[1]["text"] == final
        seen = driver.execute_script("return window.genpoolEvents")  # type: ignore[attr-defined]
        assert seen[0] == "typing:true" and seen[-2:] == ["message", "typing:false"] and "chunk" in seen
        api.close()
