"""The command line: ``python -m tpd2py MODULE:APP`` serving the bench contract app, its options,
and its errors; curl as a real-world client when it is installed."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WAIT = 10.0


def test_cli_serves_the_bench_contract(cli_server):
    srv = cli_server("bench.hello:app")
    hello = srv.get("/")
    assert hello.status == 200
    assert hello.body == b"Hello, World!"
    assert hello.header("Content-Type") == "text/plain"
    ex = srv.exchange(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                      b"Connection: close\r\n\r\nping", methods=["POST"])
    assert ex.replies[0].body == b"ping"
    escaped = srv.get("/test?name=%3Cb%3EJohn%3C/b%3E")
    assert escaped.body == b"<h1>Hello &lt;b&gt;John&lt;/b&gt;</h1>"
    assert srv.get("/nope").status == 404
    ex = srv.exchange(b"HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                      methods=["HEAD"])
    assert ex.replies[0].header("Content-Length") == "13"
    assert ex.replies[0].body == b""


def test_cli_options_reach_the_config(cli_server):
    srv = cli_server("conftest:app", "--max-body-size", "10", "--max-header-bytes", "2000")
    ex = srv.exchange(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n")
    assert ex.statuses == [413]
    ex = srv.exchange(b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"x" * 3000 + b"\r\n\r\n")
    assert ex.statuses == [431]


def test_cli_access_log_escapes_client_bytes(cli_server, tmp_path):
    # peers #39: percent-encoded ANSI escapes reach the log escaped, not raw.
    log = tmp_path / "access.log"
    srv = cli_server("bench.hello:app", "--access-log", str(log))
    assert srv.get("/%1b[2J?x=%1b").status == 404
    assert srv.get("/").status == 200
    assert srv.terminate() == 0
    text = log.read_bytes()
    assert b"\x1b" not in text
    lines = text.decode("ascii").splitlines()
    assert len(lines) == 2
    assert '"GET / HTTP/1.1" 200 13' in lines[1]


def test_cli_unix_socket(cli_server, tmp_path):
    path = str(tmp_path / "tpd2py.sock")
    srv = cli_server("bench.hello:app", "--unix", path)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(WAIT)
        sock.connect(path)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        ex = srv.read_until_close(sock)
    assert ex.replies[0].body == b"Hello, World!"


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tpd2py", *args], cwd=REPO,
                          capture_output=True, timeout=WAIT, check=False)


def test_cli_help_exits_0():
    result = _run_cli("--help")
    assert result.returncode == 0
    assert b"MODULE:APP" in result.stdout


@pytest.mark.parametrize("spec", ["no_such_module:app", "bench.hello:no_such_app", ":app"])
def test_cli_bad_app_spec_fails_with_a_message(spec):
    result = _run_cli(spec, "--port", "0")
    assert result.returncode != 0
    assert result.stderr.strip(), "the user must be told what went wrong"


# -- curl ----------------------------------------------------------------------------------------

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


def _curl(srv, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess:
    assert CURL is not None
    return subprocess.run([CURL, "--silent", "--show-error", "--max-time", "10", *args],
                          input=data, capture_output=True, timeout=WAIT + 5, check=False)


@needs_curl
def test_curl_get(srv):
    result = _curl(srv, "--include", f"http://127.0.0.1:{srv.port}/")
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == b"Hello, World!"


@needs_curl
def test_curl_chunked_post(srv):
    data = b"chunked upload from curl\n" * 1000
    result = _curl(srv, "-H", "Transfer-Encoding: chunked", "-H", "Content-Type: text/plain",
                   "--data-binary", "@-", f"http://127.0.0.1:{srv.port}/echo", data=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == data


@needs_curl
def test_curl_expect_100_continue_post(srv):
    data = b"e" * 2_000_000
    result = _curl(srv, "-H", "Expect: 100-continue", "--data-binary", "@-",
                   f"http://127.0.0.1:{srv.port}/upload", data=data)
    assert result.returncode == 0, result.stderr
    assert b'"length": 2000000' in result.stdout


@needs_curl
def test_curl_keep_alive_reuses_one_connection(srv):
    url = f"http://127.0.0.1:{srv.port}/"
    result = _curl(srv, "--verbose", url, url, url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"Hello, World!" * 3
    assert result.stderr.count(b"Connected to") == 1
    assert srv.closed_count <= 1
