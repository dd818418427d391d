"""The demo over HTTPS in headless Chromium, the test CA's server certificate trusted by its
public key (``--ignore-certificate-errors-spki-list``, Chromium's way to trust one key without
touching the system store): the page loads, its stylesheet applies, and the page's script sees a
secure context. Skipped, with the reason, where Chromium, chromedriver or selenium is missing."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningServer
from tests.integration.test_chat_browser import CHROMEDRIVER, CHROMIUM, browser
from tpd2py.server import Config
from tpd2py.tls import TLSSettings

__all__ = ["browser"]  # the fixture, shared with the chat test

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
           "chromium-driver; .ci/run does it)")
trustme = pytest.importorskip("trustme", reason="needs trustme (the test extra)")
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the test extra)")
x509 = pytest.importorskip("cryptography.x509", reason="needs cryptography (trustme's)")
from cryptography.hazmat.primitives import serialization  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT = 15.0


@pytest.fixture
def https_demo(tmp_path: Path) -> Iterator[tuple[RunningServer, str]]:
    from demo.app import app

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    pem = tmp_path / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    leaf = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
    spki = leaf.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    srv = RunningServer(app, Config(grace=0.5), transport=TLSSettings(str(pem)).wrap)
    try:
        yield srv, pin
    finally:
        srv.stop()


def test_the_demo_over_https_in_chromium(https_demo: Any, browser: Any) -> None:
    srv, pin = https_demo
    driver = browser(f"--ignore-certificate-errors-spki-list={pin}")
    driver.get(f"https://127.0.0.1:{srv.port}/")
    WebDriverWait(driver, WAIT).until(lambda d: d.execute_script(
        "return getComputedStyle(document.querySelector('h1')).color") == "rgb(30, 90, 160)")
    assert driver.execute_script("return window.isSecureContext") is True
    assert driver.execute_script("return location.protocol") == "https:"
