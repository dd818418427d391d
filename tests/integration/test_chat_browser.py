"""The chat demo end to end in real headless browsers (Debian's chromium + chromium-driver).

Two separate Chromium instances (two users) open ``/chat``: one receives over Server-Sent
Events, the other over long polling. A message posted in one page appears in the other, and
the other way round. The demo app is served by ``tpd2py.server.Server`` in a thread on
127.0.0.1:0. Skipped, with the reason, when Chromium, chromedriver or selenium is missing
(``.ci/run`` installs them: ``apt-get install chromium chromium-driver``).
Selenium Manager is never used (the driver path is given), so nothing is downloaded; Chromium's
own background networking is switched off.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from comet_helpers import ServerThread  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT = 15.0

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
           "chromium-driver; .ci/run does it)")

webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the test extra)")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def demo_server() -> Iterator[ServerThread]:
    from demo.app import app

    srv = ServerThread(app, grace=0.5)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Callable[[], Any]]:
    drivers: list[Any] = []

    def launch(*extra_args: str) -> Any:
        options = Options()
        assert CHROMIUM is not None and CHROMEDRIVER is not None
        options.binary_location = CHROMIUM
        profile = tmp_path / f"profile-{len(drivers)}"
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    f"--user-data-dir={profile}", *extra_args):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER),
                                  options=options)
        driver.set_page_load_timeout(WAIT)
        drivers.append(driver)
        return driver

    yield launch
    for driver in drivers:
        driver.quit()


def open_chat(driver: Any, port: int, mode: str, name: str) -> None:
    driver.get(f"http://127.0.0.1:{port}/chat?mode={mode}")
    WebDriverWait(driver, WAIT).until(
        lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == "live")
    field = driver.find_element(By.ID, "name")
    field.clear()
    field.send_keys(name)


def post(driver: Any, text: str) -> None:
    driver.find_element(By.ID, "text").send_keys(text)
    driver.find_element(By.ID, "submit").click()


def wait_for_message(driver: Any, text: str) -> str:
    def seen(d: Any) -> str | bool:
        for item in d.find_elements(By.CSS_SELECTOR, "#messages li"):
            if text in item.text:
                return str(item.text)
        return False

    return WebDriverWait(driver, WAIT).until(seen)  # type: ignore[no-any-return]


def test_a_message_posted_in_one_page_appears_in_the_other(
        demo_server: ServerThread, browser: Callable[[], Any]) -> None:
    alice, bob = browser(), browser()
    open_chat(alice, demo_server.port, "sse", "alice")
    open_chat(bob, demo_server.port, "poll", "bob")

    post(alice, "hello from the event stream page")
    assert wait_for_message(bob, "hello from the event stream page") == \
        "alice:hello from the event stream page"

    post(bob, "<b>and back</b> from the long-poll page")
    # Rendered as text, never as markup.
    assert wait_for_message(alice, "and back") == "bob:<b>and back</b> from the long-poll page"

    # Each page also shows its own message, once (its own stream delivers it).
    assert wait_for_message(bob, "and back")
    for driver in (alice, bob):
        texts = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#messages li")]
        assert sum("hello from the event stream page" in t for t in texts) == 1, texts
        assert sum("and back" in t for t in texts) == 1, texts


def test_the_websocket_page_chats_with_the_event_stream_page(
        demo_server: ServerThread, browser: Callable[[], Any]) -> None:
    carol, dave = browser(), browser()
    open_chat(carol, demo_server.port, "ws", "carol")
    open_chat(dave, demo_server.port, "sse", "dave")

    post(carol, "sent over the WebSocket ☃")  # goes up the socket, not by POST
    assert wait_for_message(dave, "sent over the WebSocket") == \
        "carol:sent over the WebSocket ☃"
    post(dave, "<i>posted</i> by the event stream page")
    assert wait_for_message(carol, "posted") == "dave:<i>posted</i> by the event stream page"
    assert wait_for_message(carol, "sent over the WebSocket")  # its own, from the channel
    texts = [li.text for li in carol.find_elements(By.CSS_SELECTOR, "#messages li")]
    assert sum("sent over the WebSocket" in t for t in texts) == 1, texts
