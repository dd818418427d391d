"""Shared fixtures: in-process servers on 127.0.0.1:0, the CLI in a subprocess, raw-socket I/O.

How it works:
- ``server(app=None, **config)`` starts ``tpd2py.server.Server`` in a background thread (each
  thread has its own hub, so the Server is built inside it) and returns a ``RunningServer``: the
  package's own ``tpd2py.testing.TestServer`` with the raw-socket helpers below. Teardown shuts
  it down through ``call_soon_threadsafe`` and joins the thread. Errors the hub or the
  accept/connection loop log in that thread fail the test: they are server bugs.
- ``RunningServer.frozen()`` blocks the hub thread in a callback, so a test can put bytes on the
  wire (or close a socket) and be sure the server sees all of it at once when it resumes. That
  makes "which recv sees what" deterministic without sleeping.
- ``RunningServer.wait_closed(n)`` waits (on a condition, never by polling) until the server has
  closed ``n`` connections: its ``forget`` is wrapped on the instance. ``wait_thrown(Timeout)``
  likewise waits for the sweep to throw a deadline into a connection (``hub.throw`` wrapped).
- ``cli_server(spec, *args)`` runs ``python -m tpd2py SPEC --port N`` and waits for its
  "serving on" line; ``app`` below is the app those subprocesses and most tests use.
Rules: loopback only; every wait has a timeout; nothing sleeps to wait for an event.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
# The venv's editable install can resolve ``tpd2py`` to an empty namespace package when the
# repository is not the current directory (e.g. ``.venv/bin/pytest`` run from elsewhere); put
# the checkout first so the tests always exercise the working tree.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import tpd2py  # noqa: E402
from tpd2py import App, HTTPError, Request, Response  # noqa: E402
from tpd2py.hub import Hub  # noqa: E402
from tpd2py.server import Config  # noqa: E402
from tpd2py.testing import TestServer  # noqa: E402

# Any single wait in a test: far above what loopback needs, far below the suite budget.
WAIT = 10.0

# -- the test app ---------------------------------------------------------------------------------


def make_app() -> App:
    """Routes the integration tests exercise; each does one thing."""
    app = App()

    @app.route("/")
    def hello(req: Request) -> Response:
        return Response(b"Hello, World!", content_type=b"text/plain")

    @app.route("/echo", methods=["POST", "PUT"])
    def echo(req: Request) -> Response:
        return Response(req.body(), content_type=b"application/octet-stream")

    @app.route("/upload", methods=["POST"])
    def upload(req: Request) -> dict:
        # Large uploads through stream(): never hold the body, just count and checksum it.
        import hashlib

        digest = hashlib.sha256()
        total = pieces = 0
        for piece in req.stream():
            digest.update(piece)
            total += len(piece)
            pieces += 1
        return {"length": total, "sha256": digest.hexdigest(), "pieces": pieces}

    @app.route("/ignore-body", methods=["POST"])
    def ignore_body(req: Request) -> Response:
        size = int(req.query.get("size", "0"))
        return Response(b"i" * size if size else b"ignored", content_type=b"text/plain")

    @app.route("/path/<name>")
    def path(req: Request, name: str) -> bytes:
        return name.encode()

    @app.route("/query")
    def query(req: Request) -> dict:
        return {"query": req.query, "version": req.version}

    @app.route("/headers")
    def headers(req: Request) -> dict:
        return {"headers": [[n.decode("latin-1"), v.decode("latin-1")]
                            for n, v in req.headers.raw()]}

    @app.route("/stream")
    def stream(req: Request) -> Iterator[bytes]:
        n = int(req.query.get("n", "3"))
        return (b"part %d\n" % i for i in range(n))

    @app.route("/stream-error")
    def stream_error(req: Request) -> Iterator[bytes]:
        def gen() -> Iterator[bytes]:
            yield b"first\n"
            raise RuntimeError("generator failed mid-stream (expected by the test)")

        return gen()

    @app.route("/big")
    def big(req: Request) -> Response:
        n = int(req.query.get("n", "1000000"))
        return Response(b"x" * n, content_type=b"application/octet-stream")

    @app.route("/error")
    def error(req: Request) -> Response:
        raise RuntimeError("handler failed (expected by the test)")

    @app.route("/http-error")
    def http_error(req: Request) -> Response:
        raise HTTPError(418, "short and stout\n")

    @app.route("/nocontent")
    def nocontent(req: Request) -> Response:
        return Response(b"", status=204)

    @app.route("/set-header")
    def set_header(req: Request) -> Response:
        # Echoes user input into a response header (peers #38: response splitting).
        resp = Response(b"ok", content_type=b"text/plain")
        resp.set_header(req.query.get("name", "X-Test"), req.query.get("value", ""))
        return resp

    @app.route("/slow")
    def slow(req: Request) -> bytes:
        tpd2py.sleep(float(req.query.get("t", "0.5")))
        return b"slept"

    @app.route("/slow-stream")
    def slow_stream(req: Request) -> Iterator[bytes]:
        # The first chunk tells the client the handler is running (in flight) before it sleeps.
        def gen() -> Iterator[bytes]:
            yield b"start\n"
            tpd2py.sleep(float(req.query.get("t", "0.5")))
            yield b"end\n"

        return gen()

    @app.route("/post-only", methods=["POST"])
    def post_only(req: Request) -> bytes:
        return b"posted"

    return app


app = make_app()

# -- parsing what the server sent -----------------------------------------------------------------


@dataclass
class Reply:
    """One response as it came off the wire."""

    status: int
    reason: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    raw_head: bytes
    chunked: bool = False
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        key = name.lower().encode()
        values = [v for n, v in self.headers if n.lower() == key]
        assert len(values) <= 1, f"{name} sent {len(values)} times: {values}"
        return values[0].decode("latin-1") if values else None

    def header_names(self) -> list[str]:
        return [n.decode("latin-1").lower() for n, _ in self.headers]


class WireError(AssertionError):
    pass


def wait_listening(port: int, proc: subprocess.Popen, what: str) -> None:
    """Wait until 127.0.0.1:``port`` accepts (a process that says nothing when it listens, as
    nginx): tried every 20 ms, bounded by WAIT; fails the test with the process's stderr if it
    exits or the time runs out."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read() if proc.stderr else b""
                pytest.fail(f"{what} did not start: {err!r}")
            time.sleep(0.02)


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)

# Everything of an nginx.conf but the ``http`` block's own directives (``{http}``): in the
# foreground, one worker, every path in the test's directory, errors to stderr; as root the
# worker stays root (as nobody it could not reach a unix socket in the test's directory).
_NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log stderr warn;
{user}
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{http}
}}
"""


def unused_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def nginx_front(directory: Path, http: str, port: int) -> Iterator[subprocess.Popen]:
    """Run nginx with ``http`` (its upstreams and servers, listening on 127.0.0.1:``port``)
    from ``directory`` until the block ends; skips the test when nginx is not installed."""
    if NGINX is None:
        pytest.skip("nginx is not installed (.ci/run installs it)")
    conf = directory / "nginx.conf"
    conf.write_text(_NGINX_CONF.format(dir=directory, http=http,
                                       user="user root;" if os.geteuid() == 0 else ""))
    proc = subprocess.Popen([NGINX, "-p", str(directory), "-c", str(conf), "-e", "stderr"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_listening(port, proc, "nginx")  # nginx tells no one when it listens
        yield proc
    finally:
        proc.terminate()
        proc.wait(WAIT)


def parse_replies(data: bytes, methods: list[str] | None = None) -> tuple[list[Reply], bytes]:
    """Split ``data`` into responses (1xx included) and the unparsed rest.

    ``methods`` gives the request method of each final response in order (HEAD responses have
    no body); by default all are GET. A response without Content-Length or chunked coding is
    close-delimited: it takes the rest of ``data``.
    """
    replies: list[Reply] = []
    final = 0
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        raw_head = data[pos:end + 4]
        lines = data[pos:end].split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        code, _, reason = rest.partition(b" ")
        if not version.startswith(b"HTTP/") or not code.isdigit() or len(code) != 3:
            raise WireError(f"bad status line {lines[0]!r} at offset {pos}")
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise WireError(f"bad header line {line!r}")
            headers.append((name, value.strip(b" \t")))
        reply = Reply(int(code), reason, version, headers, b"", raw_head)
        pos = end + 4
        status = reply.status
        method = "GET"
        if status >= 200:
            if methods is not None and final < len(methods):
                method = methods[final]
            final += 1
        te = reply.header("Transfer-Encoding")
        cl = reply.header("Content-Length")
        if status < 200 or status in (204, 304) or method == "HEAD":
            pass
        elif te is not None:
            if te.lower() != "chunked":
                raise WireError(f"unexpected Transfer-Encoding {te!r}")
            if cl is not None:
                raise WireError("both Content-Length and Transfer-Encoding")
            reply.chunked = True
            body, pos = _dechunk(data, pos, reply)
            if body is None:
                replies.append(reply)
                return replies, data[pos:]
            reply.body = body
        elif cl is not None:
            if not cl.isdigit():
                raise WireError(f"bad Content-Length {cl!r}")
            n = int(cl)
            if len(data) - pos < n:
                reply.body = data[pos:]
                replies.append(reply)
                return replies, b""
            reply.body = data[pos:pos + n]
            pos += n
        else:
            reply.body = data[pos:]
            pos = len(data)
        replies.append(reply)
    return replies, data[pos:]


def _dechunk(data: bytes, pos: int, reply: Reply) -> tuple[bytes | None, int]:
    body = bytearray()
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return None, pos
        size_text = data[pos:eol].split(b";")[0]
        size = int(size_text, 16)
        pos = eol + 2
        if size == 0:
            break
        if len(data) < pos + size + 2:
            return None, pos
        body += data[pos:pos + size]
        if data[pos + size:pos + size + 2] != b"\r\n":
            raise WireError("chunk data not followed by CRLF")
        pos += size + 2
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return None, pos
        line = data[pos:eol]
        pos = eol + 2
        if not line:
            return bytes(body), pos
        name, _, value = line.partition(b":")
        reply.trailers.append((name, value.strip()))


@dataclass
class Exchange:
    """What one raw connection got back: the bytes, whether it ended in EOF or a reset."""

    raw: bytes
    closed: bool
    reset: bool
    methods: list[str] | None = None

    @property
    def replies(self) -> list[Reply]:
        replies, rest = parse_replies(self.raw, self.methods)
        assert not rest, f"unparsed bytes after the responses: {rest[:200]!r}"
        return replies

    @property
    def final(self) -> list[Reply]:
        return [r for r in self.replies if r.status >= 200]

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.replies]


def read_until_close(sock: socket.socket, timeout: float = WAIT) -> Exchange:
    """Read until EOF or reset; a server that keeps the connection open fails the test."""
    sock.settimeout(timeout)
    chunks = []
    reset = False
    deadline = time.monotonic() + timeout
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            reset = True
            break
        except TimeoutError:
            got = b"".join(chunks)
            raise AssertionError(
                f"server kept the connection open for {timeout}s; got {got[:300]!r}") from None
        if not data:
            break
        chunks.append(data)
        if time.monotonic() > deadline:
            raise AssertionError("server kept sending for too long")
    return Exchange(b"".join(chunks), closed=True, reset=reset)


def read_replies(sock: socket.socket, count: int, methods: list[str] | None = None,
                 timeout: float = WAIT) -> list[Reply]:
    """Read until ``count`` complete final responses arrived (the connection may stay open)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        replies, rest = parse_replies(data, methods)
        finals = [r for r in replies if r.status >= 200]
        complete = len(finals) >= count and not rest and not (
            finals and _incomplete(finals[-1], data))
        if complete:
            return replies
        try:
            more = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(
                f"expected {count} responses within {timeout}s, got {len(finals)}: "
                f"{data[-300:]!r}") from None
        if not more:
            raise AssertionError(
                f"connection closed after {len(finals)} of {count} responses: {data[-300:]!r}")
        data += more


def _incomplete(reply: Reply, data: bytes) -> bool:
    cl = reply.header("Content-Length")
    return cl is not None and len(reply.body) < int(cl) and reply.status >= 200 \
        and reply.status not in (204, 304)


# -- the in-process server ------------------------------------------------------------------------

_SERVER_LOGGERS = ("tpd2py.hub", "tpd2py.server", "tpd2py.conn", "tpd2py.wsgi")
# tpd2py.conn also logs the application's own errors (a handler that raised, a bad response):
# expected by the tests that provoke them. Its other errors are the server's bugs.
_APP_ERRORS = ("handler error", "bad HTTPError", "bad response", "error while streaming",
               "hang-up hook", "WSGI app")


def _server_fault(record: logging.LogRecord) -> bool:
    """A "handler error" that is really the server's: a socket error or a failed assertion
    reached the handler through the Request API (body, park)."""
    exc = record.exc_info[1] if record.exc_info else None
    return isinstance(exc, (OSError, AssertionError))


class _ThreadErrors(logging.Handler):
    """Collects ERROR records the hub or the server loop log from one thread."""

    def __init__(self, owner: TestServer) -> None:
        super().__init__(logging.ERROR)
        self.owner = owner  # its thread_id is the server thread's, once it runs
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.owner.thread_id and record.name in _SERVER_LOGGERS:
            if record.name in ("tpd2py.conn", "tpd2py.wsgi") \
                    and str(record.msg).startswith(_APP_ERRORS) \
                    and not _server_fault(record):
                return
            self.records.append(record)


class Client:
    """Client-side helpers shared by in-process and subprocess servers (needs ``address``)."""

    address: tuple[str, int]
    port: int

    read_until_close = staticmethod(read_until_close)
    read_replies = staticmethod(read_replies)

    def connect(self, timeout: float = WAIT) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=timeout)
        return sock

    def http(self, timeout: float = WAIT) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def exchange(self, data: bytes, methods: list[str] | None = None, shut_wr: bool = False,
                 timeout: float = WAIT) -> Exchange:
        """Send ``data`` on a new connection and read until the server closes it."""
        with self.connect(timeout) as sock:
            # The server may close before it has read everything (it answered an error):
            # what it sent is still to be read.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(data)
                if shut_wr:
                    sock.shutdown(socket.SHUT_WR)
            result = read_until_close(sock, timeout)
        result.methods = methods
        return result

    def get(self, path: str = "/", headers: dict[str, str] | None = None) -> Reply:
        """One GET with Connection: close; returns the only response."""
        lines = [f"GET {path} HTTP/1.1", "Host: t", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        ex = self.exchange(("\r\n".join(lines) + "\r\n\r\n").encode())
        replies = ex.final
        assert len(replies) == 1, ex.raw[:500]
        return replies[0]


class RunningServer(TestServer, Client):
    """tpd2py.testing's TestServer (a Server in a background thread; ``call``, ``frozen``,
    ``sync``, ``wait_closed``, ``wait_thrown``), started at once, with conftest's raw-socket
    client helpers and its rule: an error the hub or the server loop logs fails the test."""

    def __init__(self, app: App, config: Config, allow_errors: bool = False,
                 transport: Callable[[Any], Any] | None = None) -> None:
        TestServer.__init__(self, app, config, transport=transport)
        self.config: Config = config
        self.allow_errors = allow_errors
        self._errors = _ThreadErrors(self)
        for name in _SERVER_LOGGERS:
            logging.getLogger(name).addHandler(self._errors)
        try:
            self.start()
        except BaseException:
            self._remove_log_handler()
            raise

    def _remove_log_handler(self) -> None:
        for name in _SERVER_LOGGERS:
            logging.getLogger(name).removeHandler(self._errors)

    def stop(self, grace: float | None = None) -> None:
        try:
            try:
                TestServer.stop(self, self.config.grace if grace is None else grace)
            except BaseException as e:
                if e is not self.failure:
                    raise
                raise AssertionError("serve_forever raised") from e
            if self._errors.records and not self.allow_errors:
                lines = [f"{r.name}: {r.getMessage()}\n{r.exc_text or ''}"
                         for r in self._errors.records]
                raise AssertionError("the server logged errors:\n" + "\n".join(lines))
        finally:
            self._remove_log_handler()


@pytest.fixture
def server() -> Iterator[Callable[..., RunningServer]]:
    """Factory: ``server(app=None, allow_errors=False, transport=None, **config_overrides)``.

    Defaults to the test app and ``Config(grace=2.0)``; each server runs in its own thread.
    ``transport`` wraps accepted sockets (``tls.TLSSettings(...).wrap`` for HTTPS).
    """
    started: list[RunningServer] = []

    def start(app: App | None = None, allow_errors: bool = False,
              transport: Callable[[Any], Any] | None = None,
              **overrides: Any) -> RunningServer:
        overrides.setdefault("grace", 2.0)
        running = RunningServer(app or make_app(), Config(**overrides), allow_errors,
                                transport)
        started.append(running)
        return running

    yield start
    errors = []
    for running in started:
        try:
            running.stop()
        except AssertionError as e:
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def srv(server: Callable[..., RunningServer]) -> RunningServer:
    """A server with the test app and default limits."""
    return server()


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for the CLI, which needs --port)."""
    return unused_port()


# -- the CLI in a subprocess ----------------------------------------------------------------------


class CliServer(Client):
    """``python -m tpd2py SPEC --port N`` with its stderr collected."""

    def __init__(self, spec: str, port: int, args: tuple[str, ...],
                 max_fds: int | None = None) -> None:
        self.address = ("127.0.0.1", port)
        self.port = port
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO)]))

        def limit_fds() -> None:
            if max_fds is not None:
                import resource

                resource.setrlimit(resource.RLIMIT_NOFILE, (max_fds, max_fds))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tpd2py", spec, "--port", str(port), *args],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=limit_fds,  # noqa: PLW1509 - only setrlimit, no locks involved
        )
        self.stderr: list[bytes] = []
        self._stderr_cond = threading.Condition()
        assert self.proc.stderr is not None
        line = self._read_line(WAIT)
        if b"serving on" not in line:
            self.proc.kill()
            rest = self.proc.communicate(timeout=WAIT)[1]
            raise AssertionError(f"tpd2py did not start: {line!r} {rest!r}")
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _read_line(self, timeout: float) -> bytes:
        assert self.proc.stderr is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stderr, selectors.EVENT_READ)
            line = b""
            deadline = time.monotonic() + timeout
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return line
                byte = os.read(self.proc.stderr.fileno(), 1)
                if not byte:
                    return line
                line += byte
            self.stderr.append(line)
            return line

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._stderr_cond:
                self.stderr.append(line)
                self._stderr_cond.notify_all()

    def wait_stderr(self, text: bytes, timeout: float = WAIT) -> bool:
        """Wait until a line containing ``text`` was logged; returns whether it was."""
        with self._stderr_cond:
            return self._stderr_cond.wait_for(
                lambda: any(text in line for line in self.stderr), timeout)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(WAIT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)
        self._reader.join(WAIT)


@pytest.fixture
def cli_server(free_port: int) -> Iterator[Callable[..., CliServer]]:
    """Factory: ``cli_server(spec="bench.hello:app", *extra_args, max_fds=None)`` on
    ``free_port``; ``max_fds`` sets the subprocess's RLIMIT_NOFILE."""
    started: list[CliServer] = []

    def start(spec: str = "bench.hello:app", *args: str, max_fds: int | None = None) -> CliServer:
        running = CliServer(spec, free_port, args, max_fds)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def hub() -> Iterator[Hub]:
    """A fresh Hub (not the thread's get_hub() one), closed after the test. (Here, not in a
    tests/unit/conftest.py: two modules named conftest made `from conftest import ...` in
    the integration tests fail whenever the unit tests were collected first.)"""
    hub = Hub()
    yield hub
    hub.close()
