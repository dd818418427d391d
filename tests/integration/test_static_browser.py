"""A page with its stylesheet, script and image from a folder mount, loaded by headless Chromium:
the CSS applies, the (precompressed) script runs, the image decodes; a reload revalidates the
assets (304s) instead of fetching them again. The demo's own stylesheet and favicon too.
Skipped, with the reason, where Chromium, chromedriver or selenium is missing (as the chat test).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_chat_browser import CHROMEDRIVER, CHROMIUM, ServerThread, browser
from tpd2py import App, Request
from tpd2py.static import StaticFiles

__all__ = ["browser"]  # the fixture, shared with the chat test

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
           "chromium-driver; .ci/run does it)")
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the test extra)")
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT = 15.0


def png(width: int, height: int) -> bytes:
    rows = b"".join(b"\x00" + bytes((200, 40, 40)) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


class Recorder:
    """A mount that records (path, status, Content-Encoding) of what StaticFiles answered."""

    def __init__(self, files: StaticFiles) -> None:
        self.files = files
        self.seen: list[tuple[str, int, str | None]] = []

    def mounted_at(self, prefix: str) -> None:
        self.files.mounted_at(prefix)

    def __call__(self, request: Request) -> Any:
        response = self.files(request)
        encoding = next((v.decode() for n, v in response.headers
                         if n.lower() == b"content-encoding"), None)
        self.seen.append((request.path, response.status, encoding))
        return response


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[ServerThread, Recorder]]:
    pub = tmp_path / "pub"
    pub.mkdir()
    (pub / "index.html").write_bytes(
        b'<!DOCTYPE html><html><head><meta charset="utf-8"><title>assets</title>'
        b'<link rel="stylesheet" href="/assets/site.css"><script src="/assets/app.js"></script>'
        b'</head><body><h1 id="title">Assets</h1><img id="logo" src="/assets/logo.png"></body>'
        b"</html>")
    (pub / "site.css").write_bytes(b"h1 { color: rgb(10, 20, 30); }\n" + b"/* pad */\n" * 60)
    script = b"document.addEventListener('DOMContentLoaded', () => " \
             b"{ document.body.dataset.js = 'ran'; });\n" + b"// pad\n" * 100
    (pub / "app.js").write_bytes(script)
    (pub / "app.js.gz").write_bytes(gzip.compress(script))
    (pub / "logo.png").write_bytes(png(24, 12))
    recorder = Recorder(StaticFiles(pub, cache_control="no-cache", gzip=True))
    app = App()
    app.mount("/assets", recorder)
    srv = ServerThread(app, grace=0.5)
    try:
        yield srv, recorder
    finally:
        srv.stop()


def test_a_page_and_its_assets_in_chromium(site, browser):
    srv, recorder = site
    driver = browser()
    driver.get(f"http://127.0.0.1:{srv.port}/assets/")
    WebDriverWait(driver, WAIT).until(
        lambda d: d.execute_script("return document.body.dataset.js") == "ran")
    color = driver.execute_script(
        "return getComputedStyle(document.getElementById('title')).color")
    assert color == "rgb(10, 20, 30)"
    WebDriverWait(driver, WAIT).until(lambda d: d.execute_script(
        "const i = document.getElementById('logo'); return i.complete && i.naturalWidth"))
    assert driver.execute_script("return document.getElementById('logo').naturalWidth") == 24
    first = {path: (status, enc) for path, status, enc in recorder.seen}
    assert first["/assets/site.css"] == (200, "gzip")  # made once, in memory
    assert first["/assets/app.js"] == (200, "gzip")  # the .gz sibling
    assert first["/assets/logo.png"] == (200, None)
    recorder.seen.clear()
    driver.refresh()  # no-cache: the browser revalidates with If-None-Match
    WebDriverWait(driver, WAIT).until(
        lambda d: d.execute_script("return document.body.dataset.js") == "ran")
    again = {path: status for path, status, _ in recorder.seen}
    assert again.get("/assets/site.css") == 304, recorder.seen


def test_the_demo_stylesheet_and_favicon(browser):
    from demo.app import app

    srv = ServerThread(app, grace=0.5)
    try:
        driver = browser()
        driver.get(f"http://127.0.0.1:{srv.port}/")
        WebDriverWait(driver, WAIT).until(lambda d: d.execute_script(
            "return getComputedStyle(document.querySelector('h1')).color")
            == "rgb(30, 90, 160)")
        icon = driver.execute_script(
            "return fetch('/static/favicon.ico').then(r => r.headers.get('content-type'))")
        assert icon in ("image/vnd.microsoft.icon", "image/x-icon")
    finally:
        srv.stop()
