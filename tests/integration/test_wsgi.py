"""WSGI (tpd2py/wsgi.py): PEP 3333 over real sockets, in both modes (the app in the connection's
greenlet, and in a thread pool). The well-behaved apps run inside ``wsgiref.validate.validator``
(tests/wsgi_apps.py), which raises on anything either side does against PEP 3333."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import wsgi_apps  # noqa: E402
from conftest import WAIT, read_replies  # noqa: E402

from tpd2py.errors import Timeout  # noqa: E402
from tpd2py.wsgi import WSGI  # noqa: E402

MODES = {"greenlet": 0, "threads": 4}


@pytest.fixture(params=list(MODES))
def wsgi(request, server):
    """Factory: a server for a WSGI app in the parametrized mode."""
    adapters: list[WSGI] = []

    def start(app: Any = wsgi_apps.app, allow_errors: bool = False, **options: Any) -> Any:
        config = {k: options.pop(k) for k in list(options) if k in ("max_body_size",
                                                                     "body_timeout")}
        options.setdefault("threads", MODES[request.param])
        adapter = WSGI(app, **options)
        adapters.append(adapter)
        return server(adapter, allow_errors=allow_errors, **config)

    yield start
    for adapter in adapters:
        adapter.close()


def environ_of(srv: Any, raw: bytes) -> dict[str, Any]:
    ex = srv.exchange(raw)
    assert ex.statuses == [200], ex.raw
    return json.loads(ex.replies[0].body)


# -- environ --------------------------------------------------------------------------------------


def test_environ_has_every_required_key_and_the_request(wsgi):
    srv = wsgi()
    env = environ_of(srv, b"GET /environ?a=1&b=%20 HTTP/1.1\r\nHost: example.com:8080\r\n"
                          b"Connection: close\r\n\r\n")
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/environ"
    assert env["QUERY_STRING"] == "a=1&b=%20"
    assert env["SERVER_NAME"] == "example.com"
    assert env["SERVER_PORT"] == "8080"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"].isdigit()
    assert env["HTTP_HOST"] == "example.com:8080"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is (srv.app.threads > 0)
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert "CONTENT_LENGTH" not in env and "CONTENT_TYPE" not in env


def test_path_info_is_decoded_bytes_as_latin1(wsgi):
    env = environ_of(wsgi(), b"GET /environ/caf%C3%A9/%2F HTTP/1.1\r\nHost: a\r\n"
                             b"Connection: close\r\n\r\n")
    assert env["PATH_INFO"] == "/environ/caf\u00c3\u00a9//"
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/environ/café//"


def test_root_path_becomes_script_name(server):
    srv = server(WSGI(wsgi_apps.app, root_path="/mount/"))
    env = environ_of(srv, b"GET /mount/environ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert env["SCRIPT_NAME"] == "/mount"
    assert env["PATH_INFO"] == "/environ"
    # A path that only shares a prefix with the mount is not under it.
    assert srv.get("/mountain").status == 404


def test_headers_join_and_underscore_names_are_dropped(wsgi):
    env = environ_of(wsgi(), b"GET /environ HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\n"
                             b"X_Forwarded_For: 6.6.6.6\r\nAccept: a/b\r\nAccept: c/d\r\n"
                             b"Cookie: a=1\r\nCookie: b=2\r\nContent-Type: text/x\r\n"
                             b"Connection: close\r\n\r\n")
    assert env["HTTP_X_FORWARDED_FOR"] == "1.1.1.1"
    assert env["HTTP_ACCEPT"] == "a/b, c/d"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["CONTENT_TYPE"] == "text/x"
    assert "HTTP_CONTENT_TYPE" not in env


def test_content_length_and_chunked_bodies_in_the_environ(wsgi):
    srv = wsgi()
    env = environ_of(srv, b"POST /environ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                          b"Connection: close\r\n\r\nabc")
    assert env["CONTENT_LENGTH"] == "3"
    env = environ_of(srv, b"POST /environ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                          b"Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert "CONTENT_LENGTH" not in env
    assert env["HTTP_TRANSFER_ENCODING"] == "chunked"


def test_http10_without_host_gets_the_listening_address(wsgi):
    srv = wsgi()
    env = environ_of(srv, b"GET /environ HTTP/1.0\r\n\r\n")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", str(srv.port))


def test_url_scheme_only_from_a_trusted_proxy(server):
    raw = (b"GET /environ HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\n"
           b"Connection: close\r\n\r\n")
    assert environ_of(server(WSGI(wsgi_apps.app)), raw)["wsgi.url_scheme"] == "http"
    trusted = server(WSGI(wsgi_apps.app, trusted_proxies=["127.0.0.1"]))
    assert environ_of(trusted, raw)["wsgi.url_scheme"] == "https"


# -- wsgi.input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 7, 65536])
def test_input_read_n_content_length_and_chunked(wsgi, size):
    srv = wsgi()
    body = bytes(range(256)) * 40
    ex = srv.exchange(b"POST /echo?%d HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n"
                      b"Connection: close\r\n\r\n%s" % (size, len(body), body))
    assert ex.replies[0].body == body
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                       for i in range(0, len(body), 1000))
    ex = srv.exchange(b"POST /echo?%d HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                      b"Connection: close\r\n\r\n%s0\r\n\r\n" % (size, chunked))
    assert ex.replies[0].body == body


def test_input_lines_and_readline_limits(wsgi):
    srv = wsgi()
    ex = srv.exchange(b"POST /lines HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                      b"Connection: close\r\n\r\n4\r\none\n\r\n6\r\ntwo\nth\r\n4\r\nree\n\r\n"
                      b"3\r\nend\r\n0\r\n\r\n")
    assert json.loads(ex.replies[0].body) == ["one\n", "two\n", "three\n", "end"]
    ex = srv.exchange(b"POST /readline HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n"
                      b"Connection: close\r\n\r\nabcdefg\nrest")
    assert json.loads(ex.replies[0].body) == ["abcd", "efg\n"]


def test_keep_alive_after_a_body_the_app_did_not_read(wsgi):
    srv = wsgi()
    with srv.connect() as sock:
        sock.sendall(b"POST /ignore HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
                     b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        replies = read_replies(sock, 2)
    assert [r.body for r in replies] == [b"ignored", wsgi_apps.HELLO]


def test_100_continue_only_when_the_app_reads(wsgi):
    srv = wsgi()
    with srv.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += sock.recv(1)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"ping")
        replies = read_replies(sock, 1)
        assert replies[-1].body == b"ping"
    # The app that never reads: no 100, the answer, and the connection closes (the body
    # might still come and could not be told from a next request).
    ex = srv.exchange(b"POST /ignore HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                      b"Expect: 100-continue\r\n\r\n")
    assert ex.statuses == [200]
    assert ex.replies[0].header("Connection") == "close"


def test_body_limit_is_413_even_if_the_app_swallows_it(wsgi):
    def swallowing(environ, start_response):
        with contextlib.suppress(Exception):
            environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"fine"]

    srv = wsgi(swallowing, max_body_size=100)
    ex = srv.exchange(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n")
    assert ex.statuses == [413]
    ex = srv.exchange(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"65\r\n" + b"x" * 101 + b"\r\n0\r\n\r\n")
    assert ex.statuses == [413]
    ex = srv.exchange(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"zz\r\n")
    assert ex.statuses == [400]


# -- responses ------------------------------------------------------------------------------------


def test_framing_of_each_kind_of_body(wsgi):
    srv = wsgi()
    with srv.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
                     b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n"
                     b"GET /stream-length HTTP/1.1\r\nHost: a\r\n\r\n"
                     b"GET /lazy HTTP/1.1\r\nHost: a\r\n\r\n"
                     b"GET /write HTTP/1.1\r\nHost: a\r\n\r\n"
                     b"GET /no-content HTTP/1.1\r\nHost: a\r\n\r\n"
                     b"GET /custom-status HTTP/1.1\r\nHost: a\r\n\r\n"
                     b"GET /exc-info HTTP/1.1\r\nHost: a\r\n\r\n"
                     b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"
                     b"HEAD /stream HTTP/1.1\r\nHost: a\r\n\r\n")
        methods = ["GET"] * 8 + ["HEAD"] * 2
        hello, stream, length, lazy, write, empty, custom, exc, head, head_stream = \
            read_replies(sock, 10, methods)
    assert hello.header("Content-Length") == "13" and hello.body == wsgi_apps.HELLO
    assert stream.chunked and stream.body == b"one two three"
    assert not length.chunked and length.header("Content-Length") == "11"
    assert length.body == b"one two six"
    assert (lazy.status, lazy.body) == (201, b"made")
    assert write.chunked and write.body == b"written returned"
    assert empty.status == 204 and empty.header("Content-Length") is None
    assert custom.raw_head.startswith(b"HTTP/1.1 418 I'm a little teapot\r\n")
    assert (exc.status, exc.body) == (503, b"replaced")
    assert head.header("Content-Length") == "13" and head.body == b""
    assert head_stream.body == b"" and head_stream.header("Transfer-Encoding") is None


def test_http10_stream_is_close_delimited(wsgi):
    ex = wsgi().exchange(b"GET /stream HTTP/1.0\r\n\r\n")
    reply = ex.replies[0]
    assert not reply.chunked and reply.header("Content-Length") is None
    assert reply.body == b"one two three" and not ex.reset


def test_app_date_replaces_ours(wsgi):
    reply = wsgi().get("/date")
    assert reply.header("Date") == "Mon, 01 Jan 2024 00:00:00 GMT"


def test_file_wrapper_is_sent_whole_and_closed(wsgi, tmp_path):
    data = bytes(range(256)) * 1000
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    closed = threading.Event()

    class File:
        def __init__(self) -> None:
            self.f = open(path, "rb")  # noqa: SIM115
            self.f.read(10)  # the response starts where the file is

        def fileno(self) -> int:
            return self.f.fileno()

        def tell(self) -> int:
            return self.f.tell()

        def read(self, n: int) -> bytes:
            return self.f.read(n)

        def close(self) -> None:
            self.f.close()
            closed.set()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](File())

    srv = wsgi(app)
    reply = srv.get("/")
    assert reply.header("Content-Length") == str(len(data) - 10)
    assert reply.body == data[10:]
    assert closed.wait(WAIT)
    ex = srv.exchange(b"HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                      methods=["HEAD"])
    assert ex.replies[0].header("Content-Length") == str(len(data) - 10)


# -- bad apps: a clear 500 (or a close) and the log, and the server keeps serving ---------------


def _bad(status: Any = "200 OK", headers: Any = None, body: Any = None,
         call: bool = True) -> Any:
    def app(environ, start_response):
        if call:
            start_response(status, headers if headers is not None else
                           [("Content-Type", "text/plain")])
        return body if body is not None else [b"body"]

    return app


BAD_APPS = {
    "status without reason": _bad(status="200"),
    "status as int": _bad(status=200),
    "status of four digits": _bad(status="2000 OK"),
    "status with CRLF": _bad(status="200 OK\r\nX-Injected: 1"),
    "interim status": _bad(status="100 Continue"),
    "header value with LF": _bad(headers=[("X-A", "a\nX-Injected: 1")]),
    "hop-by-hop header": _bad(headers=[("Connection", "close")]),
    "headers not a list": _bad(headers=(("X-A", "b"),)),
    "header not a tuple": _bad(headers=[["X-A", "b"]]),
    "bad header name": _bad(headers=[("X A", "b")]),
    "start_response never called": _bad(call=False),
    "str items": _bad(body=["text"]),
    "str from a generator": lambda environ, start_response: _bad(
        body=iter(["text"]))(environ, start_response),
    "content-length mismatch": _bad(headers=[("Content-Length", "3")], body=[b"four"]),
    "returns None": lambda environ, start_response: None,
    "raises": lambda environ, start_response: 1 / 0,
    "an upstream wait timed out": lambda environ, start_response: _raise(Timeout()),
}


def _raise(exc: BaseException) -> Any:
    raise exc


@pytest.mark.parametrize("name", list(BAD_APPS))
def test_bad_app_gets_500_and_the_server_goes_on(wsgi, name):
    bad = BAD_APPS[name]

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/bad":
            return bad(environ, start_response)
        return wsgi_apps.raw(environ, start_response)

    srv = wsgi(app)
    with srv.connect() as sock:
        sock.sendall(b"GET /bad HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        replies = read_replies(sock, 2)
    assert [r.status for r in replies] == [500, 200]
    assert b"X-Injected" not in replies[0].raw_head


def test_start_response_twice_without_exc_info_is_500(wsgi):
    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("404 Not Found", [])
        return [b""]

    assert wsgi(app).get("/").status == 500


def _counting(pieces: Iterator[bytes], closed: threading.Event) -> Any:
    class Body:
        def __iter__(self) -> Iterator[bytes]:
            return pieces

        def close(self) -> None:
            closed.set()

    return Body()


def test_iterable_raising_midway_closes_and_close_is_called(wsgi):
    closed = threading.Event()

    def failing() -> Iterator[bytes]:
        yield b"first"
        raise RuntimeError("broken midway (expected by the test)")

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _counting(failing(), closed)

    srv = wsgi(app)
    with srv.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        ex = srv.read_until_close(sock)
    assert ex.raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert ex.raw.endswith(b"5\r\nfirst\r\n")  # no last chunk: the client sees it is cut
    assert closed.wait(WAIT)
    assert srv.get("/").status == 200


def test_http10_stream_raising_midway_ends_in_a_reset(wsgi):
    def failing() -> Iterator[bytes]:
        yield b"first"
        raise RuntimeError("broken midway (expected by the test)")

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return failing()

    srv = wsgi(app)
    with srv.connect() as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        ex = srv.read_until_close(sock)
    assert ex.reset  # not a clean EOF: the body must not look complete


def test_headers_after_body_raise_in_the_app_and_close(wsgi):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"sent")
        try:
            raise ValueError("late")
        except ValueError:
            start_response("500 Oops", [], sys.exc_info())  # re-raises: the head is out
        return [b"never"]

    srv = wsgi(app)
    ex = srv.exchange(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert b"sent" in ex.raw and b"never" not in ex.raw and b"Oops" not in ex.raw


def test_close_is_called_when_the_client_hangs_up_mid_response(wsgi):
    closed = threading.Event()
    started = threading.Event()

    def endless() -> Iterator[bytes]:
        started.set()
        while True:
            yield b"x" * 65536

    def app(environ, start_response):
        if environ["PATH_INFO"] != "/":
            return wsgi_apps.raw(environ, start_response)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _counting(endless(), closed)

    srv = wsgi(app)
    sock = srv.connect()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    sock.recv(65536)
    assert started.wait(WAIT)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # a reset: the next send fails
    assert closed.wait(WAIT)
    srv.wait_closed(1)
    assert srv.get("/environ").status == 200


# -- thread mode ----------------------------------------------------------------------------------


def test_threads_full_pool_answers_503_with_retry_after(server):
    entered = threading.Event()
    release = threading.Event()

    def blocking(environ, start_response):
        if environ["PATH_INFO"] == "/block":
            entered.set()
            release.wait(WAIT)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    adapter = WSGI(blocking, threads=1, max_queue=0, retry_after=7)
    srv = server(adapter)
    try:
        first = srv.connect()
        first.sendall(b"GET /block HTTP/1.1\r\nHost: a\r\n\r\n")
        assert entered.wait(WAIT)
        reply = srv.get("/")
        assert reply.status == 503
        assert reply.header("Retry-After") == "7"
        release.set()
        assert read_replies(first, 1)[0].body == b"done"
        first.close()
        assert srv.get("/").status == 200
    finally:
        release.set()
        adapter.close()


def test_threads_idle_connections_hold_no_thread(server):
    adapter = WSGI(wsgi_apps.app, threads=2)
    srv = server(adapter)
    socks = []
    try:
        for _ in range(20):
            sock = srv.connect()
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            read_replies(sock, 1)
            socks.append(sock)
        assert adapter.pool is not None
        stats = srv.call(adapter.pool.statistics)
        assert stats["running"] == 0 and stats["threads"] <= 2
        assert srv.open_connections() == 20
    finally:
        for sock in socks:
            sock.close()
        adapter.close()


# -- the command line -----------------------------------------------------------------------------


@pytest.mark.parametrize("args", [(), ("--threads", "2"), ("--root-path", "/app")])
def test_cli_detects_a_wsgi_callable(cli_server, args):
    srv = cli_server("wsgi_apps:app", *args)
    prefix = "/app" if args and args[0] == "--root-path" else ""
    reply = srv.get(prefix + "/")
    assert (reply.status, reply.body) == (200, wsgi_apps.HELLO)
    env = json.loads(srv.get(prefix + "/environ").body)
    assert env["wsgi.multithread"] is (args[:1] == ("--threads",))
    assert env["SCRIPT_NAME"] == prefix


def test_cli_finds_application_when_no_name_is_given(cli_server):
    assert cli_server("wsgi_application").get("/").body == b"found as application"


@pytest.mark.parametrize(("spec", "args", "message"), [
    ("wsgi_apps:number", (), "wsgi_apps:number is neither a tpd2py App nor a WSGI callable "
                             "(it is a int)"),
    ("no_such_module_here:app", (), "no module named 'no_such_module_here'"),
    ("wsgi_apps:nothing", (), "wsgi_apps has no attribute 'nothing'"),
    ("bench.hello:app", ("--threads", "4"), "--threads is for WSGI apps"),
])
def test_cli_refuses_what_it_cannot_serve_in_one_line(free_port, spec, args, message):
    import os
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo / "tests"), str(repo)]))
    done = subprocess.run([sys.executable, "-m", "tpd2py", spec, "--port", str(free_port),
                           *args], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=WAIT)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_identical_requests_each_get_a_fresh_environ(wsgi):
    # The environ of a byte-identical head is kept and copied (WSGI._by_head): what an app
    # writes into its environ must not reach the next request.
    seen = []

    def app(environ, start_response):
        seen.append(sorted(k for k in environ if k.startswith("app.")))
        environ["app.mark"] = True
        environ["PATH_INFO"] = "/changed"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["REMOTE_PORT"].encode()]

    srv = wsgi(app)
    ports = set()
    for _ in range(2):
        with srv.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" * 3)
            replies = read_replies(sock, 3)
            ports.add(replies[0].body)
            assert len({r.body for r in replies}) == 1
    assert seen == [[]] * 6
    assert len(ports) == 2  # REMOTE_PORT is the connection's, not the cached head's


def test_watchdog_names_a_wsgi_app_that_blocks_the_hub(server):
    import logging
    import time

    records: list[logging.LogRecord] = []
    arrived = threading.Event()

    class Captured(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)
            arrived.set()

    def sleepy_view(environ, start_response):
        time.sleep(0.3)  # a blocking call in greenlet mode: everyone waits
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slept"]

    handler = Captured(logging.WARNING)
    logger = logging.getLogger("tpd2py.watchdog")
    logger.addHandler(handler)
    try:
        srv = server(WSGI(sleepy_view), watchdog=0.05)
        assert srv.get("/").body == b"slept"
        assert arrived.wait(WAIT)
    finally:
        logger.removeHandler(handler)
    message = records[0].getMessage()
    assert "time.sleep" in message and "sleepy_view" in message


def test_threads_a_slow_uploader_holds_no_thread(server):
    # One thread, no queue: while a client trickles a small body, the thread stays free for
    # others (the body is read before the app gets a thread).
    adapter = WSGI(wsgi_apps.app, threads=1, max_queue=0)
    srv = server(adapter)
    try:
        with srv.connect() as slow:
            slow.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhalf-")
            srv.sync()
            assert srv.get("/").status == 200
            slow.sendall(b"done!")
            assert read_replies(slow, 1)[0].body == b"half-done!"
    finally:
        adapter.close()


@pytest.mark.parametrize("size", [10, 100_000])  # thread mode reads the small one up front
def test_a_stalled_body_is_408_in_both_modes(wsgi, size):
    srv = wsgi(body_timeout=1.0)
    with srv.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\nab" % size)
        srv.wait_thrown(Timeout)
        ex = srv.read_until_close(sock)
    assert ex.statuses == [408]
    assert srv.get("/").status == 200


@pytest.mark.parametrize("kind", ["list", "file"])
def test_threads_a_slow_reader_of_a_whole_response_holds_no_thread(server, tmp_path, kind):
    big = b"x" * (8 << 20)  # far more than the socket buffers hold
    (tmp_path / "big").write_bytes(big)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        if environ["PATH_INFO"] != "/big":
            return [b"small"]
        if kind == "file":
            return environ["wsgi.file_wrapper"](open(tmp_path / "big", "rb"))  # noqa: SIM115
        return [big]

    adapter = WSGI(app, threads=1, max_queue=0)
    srv = server(adapter)
    try:
        with srv.connect() as slow:
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
            slow.recv(1000)  # the response has started and the client stops reading
            assert srv.get("/").body == b"small"  # the one thread is free
            assert adapter.pool is not None
            assert srv.call(adapter.pool.statistics)["running"] == 0
    finally:
        adapter.close()


@pytest.mark.parametrize("args", [(), ("--threads", "2")])
def test_cli_access_log_has_each_wsgi_response(cli_server, tmp_path, args):
    log = tmp_path / "access.log"
    srv = cli_server("wsgi_apps:app", "--access-log", str(log), *args)
    assert srv.get("/").status == 200
    assert srv.get("/stream").body == b"one two three"
    assert srv.get("/nothing-here").status == 404
    assert srv.terminate() == 0
    lines = log.read_text().splitlines()
    assert len(lines) == 3
    assert '"GET / HTTP/1.1" 200 13' in lines[0]
    assert '"GET /stream HTTP/1.1" 200 13' in lines[1]
    assert '"GET /nothing-here HTTP/1.1" 404 9' in lines[2]


def test_http10_keep_alive(wsgi):
    srv = wsgi()
    with srv.connect() as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = read_replies(sock, 1)[0]
        assert first.header("Connection") == "keep-alive" and first.body == wsgi_apps.HELLO
        sock.sendall(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        ex = srv.read_until_close(sock)  # close-delimited: the close ends the body
    assert ex.raw.endswith(b"one two three")
    assert b"Connection: close" in ex.raw
