"""The guestbook demo in a real headless browser (Debian's chromium + chromium-driver): sign with
a photo, get redirected (303) to the page, reload without posting again, and find the signed-
cookie session still there; "Forget me" ends it. Skipped, with the reason, when Chromium,
chromedriver or selenium is missing (``.ci/run`` installs them). The demo app is served by
``tpd2py.testing.TestServer``.
"""

from __future__ import annotations

import base64
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT = 15.0

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
           "chromium-driver; .ci/run does it)")

webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the test extra)")
pytest.importorskip("multipart", reason="needs the multipart package (the test extra)")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tpd2py.testing import TestServer  # noqa: E402

# A 1x1 PNG.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8Dw"
                       "HwAFBQIAX8jx0gAAAABJRU5ErkJggg==")


@pytest.fixture
def demo_server() -> Iterator[TestServer]:
    from demo.app import app

    with TestServer(app) as server:
        yield server


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Callable[[], Any]]:
    drivers: list[Any] = []

    def launch() -> Any:
        options = Options()
        assert CHROMIUM is not None and CHROMEDRIVER is not None
        options.binary_location = CHROMIUM
        profile = tmp_path / f"profile-{len(drivers)}"
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    f"--user-data-dir={profile}"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER),
                                  options=options)
        driver.set_page_load_timeout(WAIT)
        drivers.append(driver)
        return driver

    yield launch
    for driver in drivers:
        driver.quit()


def entries(driver: Any) -> list[str]:
    return [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#entries li")]


def test_sign_redirect_reload_and_the_session_survives(
        demo_server: TestServer, browser: Callable[[], Any], tmp_path: Path) -> None:
    photo = tmp_path / "dot.png"
    photo.write_bytes(PNG)
    driver = browser()
    driver.get(f"{demo_server.url}/guestbook")
    assert driver.find_elements(By.ID, "me") == []  # no session yet
    driver.find_element(By.ID, "name").send_keys("Ada <script>")
    driver.find_element(By.ID, "message").send_keys("hello & welcome")
    driver.find_element(By.ID, "photo").send_keys(str(photo))
    driver.find_element(By.ID, "sign").click()
    WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.ID, "me"))
    assert driver.current_url == f"{demo_server.url}/guestbook"  # the 303 was followed
    assert entries(driver) == ["Ada <script>: hello & welcome"]  # as text, not markup
    image = driver.find_element(By.CSS_SELECTOR, "#entries img")
    WebDriverWait(driver, WAIT).until(
        lambda d: d.execute_script("return arguments[0].naturalWidth", image) == 1)

    driver.refresh()  # a GET: nothing is posted again
    WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.ID, "me"))
    assert entries(driver) == ["Ada <script>: hello & welcome"]
    assert driver.find_element(By.ID, "me").text.startswith("Signed in as Ada <script>, 1 post")
    assert driver.find_element(By.ID, "name").get_attribute("value") == "Ada <script>"
    cookie = driver.get_cookie("session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    driver.find_element(By.ID, "forget").click()
    WebDriverWait(driver, WAIT).until(lambda d: not d.find_elements(By.ID, "me"))
    assert driver.get_cookie("session") is None
    assert entries(driver) == ["Ada <script>: hello & welcome"]
