"""Test clients for an app: in-process (``TestClient``) or a real server in a thread
(``TestServer``), with one API.

    from tpd2py.testing import TestClient, TestServer

    def test_login():
        with TestClient(app) as client:        # in-process: no thread, no port
            r = client.post("/login", form={"user": "ada"})   # follows the 303
            assert r.status == 200 and "ada" in r.text

    def test_login_over_tcp():
        with TestServer(app) as server:        # a real server on 127.0.0.1:<free port>
            r = server.client().post("/login", form={"user": "ada"})

Rules:
- Both clients are ``http.client`` with keep-alive, a cookie jar (name -> value; ``Max-Age=0``
  deletes), redirects followed unless asked not to, and ``form=``, ``json=`` and ``files=``
  (multipart) bodies; they differ only in the socket under ``http.client``. They are for
  tests, not general HTTP clients: one host, no TLS, cookie paths and domains ignored.
- ``TestClient`` drives the server's own ``Connection`` over a ``socketpair()`` in the calling
  thread's hub (``get_hub()``): the request goes through the same parser, exchange, router,
  hooks and framing as one from the network; the client side is a greenlet of that hub
  (``gsocket.Socket``), so a large upload and the handler reading it take turns, and a
  handler that waits (``sleep``, a channel) waits on the same hub. The hub runs only while a
  request is in flight: a spawned background task runs then, not between requests. What
  differs from TCP: ``request.peer`` is ``peer`` (``("127.0.0.1", 0)`` by default), the
  ``Host`` header is ``testclient``, no watchdog thread, and it cannot run inside a running
  hub (from a handler: use ``TestServer``). A WSGI app (``tpd2py.wsgi.WSGI``) works the same
  way: the client does not care which exchange the server uses.
- ``TestServer`` runs ``Server`` on ``127.0.0.1:0`` in its own thread with its own hub. Start
  and stop are awaited, never slept on: ``start`` returns once the socket listens (or raises
  what the server thread raised), ``stop`` shuts the server down from its own hub
  (``call_soon_threadsafe``), joins the thread and closes the hub's fds. For tests of the
  server itself it also offers ``call`` (run a function in the hub thread), ``frozen`` (hold
  the hub while bytes pile up), ``sync``, ``wait_closed`` and ``wait_thrown``.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json as jsonlib
import queue
import secrets
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from .app import App
from .context import ExchangeApp
from .gsocket import Socket
from .hub import Hub, get_hub
from .server import Config, Server
from .urls import REDIRECT_STATUSES

__all__ = ["TestClient", "TestServer", "Client", "TestResponse"]

WAIT = 10.0  # seconds any start, stop or request may take before the test fails


class TestResponse:
    """What came back: ``status``, ``reason``, ``headers`` (list of pairs), ``body`` (bytes)."""

    __test__ = False  # not a pytest test class

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]],
                 body: bytes) -> None:
        self.status, self.reason, self.headers, self.body = status, reason, headers, body

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return default

    def header_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    def __repr__(self) -> str:
        return f"<TestResponse {self.status} {self.body[:60]!r}>"


def _multipart(form: Mapping[str, str], files: Mapping[str, Any]) -> tuple[bytes, str]:
    boundary = "tpd2py-" + secrets.token_hex(12)
    out = []
    for name, value in form.items():
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                   .encode() + str(value).encode() + b"\r\n")
    for name, spec in files.items():
        filename, data, content_type = (*spec, "application/octet-stream")[:3] \
            if isinstance(spec, tuple) else ("upload.bin", spec, "application/octet-stream")
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                   f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'.encode()
                   + (data.encode() if isinstance(data, str) else data) + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


class _Client:
    """The API both clients share; a subclass says how a connection is made
    (``_new_connection``) and where a round trip runs (``_perform``)."""

    __test__ = False

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}
        self._conn: http.client.HTTPConnection | None = None

    def _new_connection(self) -> http.client.HTTPConnection:
        raise NotImplementedError

    def _perform(self, fn: Callable[[], TestResponse]) -> TestResponse:
        return fn()

    def _drop(self) -> None:
        """Close the current connection (the next request opens another)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        self._drop()

    def request(self, method: str, path: str, *, body: bytes | str | None = None,
                headers: Mapping[str, str] | None = None, form: Mapping[str, str] | None = None,
                json: Any = None, files: Mapping[str, Any] | None = None,
                follow_redirects: bool = True) -> TestResponse:
        """One request (and the redirects it leads to, up to 10)."""
        sent = dict(headers or {})
        if files is not None:
            body, sent["Content-Type"] = _multipart(form or {}, files)
        elif form is not None:
            body = urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        elif json is not None:
            body = jsonlib.dumps(json)
            sent["Content-Type"] = "application/json"
        for _ in range(10):
            response = self._once(method, path, body, sent)
            location = response.header("Location")
            if not follow_redirects or response.status not in REDIRECT_STATUSES or location is None:
                return response
            path = urlsplit(location)._replace(scheme="", netloc="").geturl() or "/"
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method, body = "GET", None
                sent = {k: v for k, v in sent.items() if k.lower() != "content-type"}
        raise AssertionError(f"more than 10 redirects, the last to {path}")

    def _once(self, method: str, path: str, body: bytes | str | None,
              headers: dict[str, str]) -> TestResponse:
        sent = dict(headers)
        if self.cookies and not any(k.lower() == "cookie" for k in sent):
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = self._perform(lambda: self._round_trip(method, path, body, sent))
        for line in response.header_all("Set-Cookie"):
            self._store(line)
        return response

    def _round_trip(self, method: str, path: str, body: bytes | str | None,
                    headers: dict[str, str]) -> TestResponse:
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._new_connection()
            try:
                self._conn.request(method, path, body=body, headers=headers)
                raw = self._conn.getresponse()
                data = raw.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server closed a kept-alive connection between two requests (after an
                # error answer, say): one retry on a new connection.
                self._drop()
                if attempt == 2:
                    raise
            except BaseException:
                self._drop()  # a half-read response: the connection cannot be reused
                raise
        if raw.will_close:
            self._drop()
        return TestResponse(raw.status, raw.reason, raw.getheaders(), data)

    def _store(self, line: str) -> None:
        pair, *attributes = line.split(";")
        name, _, value = pair.strip().partition("=")
        gone = any(a.strip().lower() == "max-age=0" for a in attributes)
        if gone:
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = value

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("GET", path, **kwargs)

    def head(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("HEAD", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("DELETE", path, **kwargs)


class Client(_Client):
    """Requests to one TestServer over one keep-alive TCP connection, with a cookie jar."""

    def __init__(self, host: str, port: int, timeout: float = WAIT) -> None:
        super().__init__()
        self.host, self.port, self.timeout = host, port, timeout

    def _new_connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- in-process -----------------------------------------------------------------------------------


class _Reader(io.RawIOBase):
    """The client end's bytes as a raw stream for ``http.client`` (which buffers it)."""

    def __init__(self, sock: Socket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._sock.recv_into(buffer)  # may switch to the hub


class _GreenEnd:
    """The client end of a socketpair as ``http.client`` uses a socket: ``sendall``,
    ``makefile`` and ``close``, each waiting on the hub rather than blocking it."""

    def __init__(self, sock: Socket) -> None:
        self._sock = sock

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(bytes(data))  # may switch to the hub

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_Reader(self._sock))

    def close(self) -> None:
        self._sock.close()


class _PairConnection(http.client.HTTPConnection):
    def __init__(self, client: TestClient) -> None:
        super().__init__("testclient", timeout=client.timeout)
        self._client = client

    def connect(self) -> None:
        self.sock = self._client._open_pair()


class TestClient(_Client):
    """``app`` served in-process: each connection is a socketpair whose server end is a real
    ``Connection`` of a ``Server`` on this thread's hub (no listener, no thread)."""

    def __init__(self, app: App | ExchangeApp, config: Config | None = None, *,
                 peer: Any = ("127.0.0.1", 0), timeout: float = WAIT) -> None:
        super().__init__()
        self.app, self.peer, self.timeout = app, peer, timeout
        self.hub: Hub = get_hub()
        self.server = Server(app, config, hub=self.hub)
        self.server.start()  # the sweep (Date line, deadlines) runs whenever the hub does
        self._closed = False

    def _open_pair(self) -> _GreenEnd:
        """A new connection: the server end adopted as a client from ``peer`` would be (in
        the hub, as a listener does), the client end wrapped for ``http.client``."""
        mine, theirs = socket.socketpair()
        theirs.setblocking(True)  # as accepted fds are: the connection passes MSG_DONTWAIT
        self.hub.call_soon(self.server.adopt_connection, theirs, self.peer)
        return _GreenEnd(Socket(mine, self.hub, self.timeout))

    def _perform(self, fn: Callable[[], TestResponse]) -> TestResponse:
        """Run ``fn`` in a greenlet of the hub, and the hub until it is done."""
        if self._closed:
            raise RuntimeError("this TestClient is closed")
        hub = self.hub
        if hub.running:
            raise RuntimeError("TestClient runs the thread's hub: it cannot be used inside it "
                               "(from a handler or a greenlet); use TestServer")
        hub.refresh_now()  # the hub slept since the last request: deadlines count from now
        self.server.ctx.date.update()
        outcome: list[tuple[bool, Any]] = []

        def main() -> None:
            try:
                outcome.append((True, fn()))
            except BaseException as e:  # noqa: BLE001 - raised again in the caller
                outcome.append((False, e))
            finally:
                hub.stop()

        hub.spawn(main)
        while not outcome:
            hub.run()
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

    def _new_connection(self) -> http.client.HTTPConnection:
        return _PairConnection(self)

    def close(self) -> None:
        """Close the client's connection and shut the server down (its connections closed,
        its sweep cancelled), leaving the thread's hub as it was."""
        super().close()
        if self._closed:
            return
        self._closed = True
        hub = self.hub
        if hub.running:
            raise RuntimeError("TestClient.close() inside the running hub")
        hub.call_soon(self.server.shutdown, 0.0)  # ends with hub.stop()
        while not self.server.stopped:
            hub.run()

    def __enter__(self) -> TestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- a real server in a thread -------------------------------------------------------------------


class TestServer:
    """``app`` served on ``127.0.0.1`` (a free port) in a background thread."""

    __test__ = False

    def __init__(self, app: App | ExchangeApp, config: Config | None = None,
                 host: str = "127.0.0.1", port: int = 0,
                 transport: Callable[[Any], Any] | None = None) -> None:
        self.app, self.config, self.host, self.port = app, config, host, port
        self.transport = transport
        self.server: Server | None = None
        self.thread: threading.Thread | None = None
        self.thread_id: int | None = None
        self.failure: BaseException | None = None
        self._clients: list[Client] = []
        # Counted in the hub thread, waited on in the test's (wait_closed, wait_thrown).
        self._events = threading.Condition()
        self._closed = 0
        self._thrown: list[type] = []
        # Set (under the lock) before the thread closes its hub: stop() must not wake a hub
        # whose wake-up pipe is closed (EBADF).
        self._hub_lock = threading.Lock()
        self._hub_closed = False
        self._release: threading.Event | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def start(self) -> TestServer:
        ready: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                       name=f"tpd2py-test-server-{id(self):x}")
        self.thread.start()
        started = ready.get(timeout=WAIT)
        if isinstance(started, BaseException):
            self.thread.join(WAIT)
            raise started
        self.server, (self.host, self.port) = started
        return self

    def _run(self, ready: queue.Queue[Any]) -> None:
        self.thread_id = threading.get_ident()
        try:
            server = Server(self.app, self.config)  # this thread's own hub
            address = server.listen_tcp(self.host, self.port, transport=self.transport)
            self._count(server)
        except BaseException as e:  # noqa: BLE001 - handed to start()
            ready.put(e)
            with self._hub_lock:
                self._hub_closed = True
            get_hub().close()
            return
        ready.put((server, address[:2]))
        try:
            server.serve_forever(install_signals=False)
        except BaseException as e:  # noqa: BLE001 - raised again by stop()
            self.failure = e
        finally:
            with self._hub_lock:
                self._hub_closed = True
                server.hub.close()

    def _count(self, server: Server) -> None:
        """Count closed connections and thrown exceptions (``forget`` and ``hub.throw``,
        wrapped on these instances) for wait_closed and wait_thrown."""
        forget, throw = server.ctx.forget, server.hub.throw
        events = self._events

        def counting_forget(conn: Any) -> None:
            forget(conn)
            with events:
                self._closed += 1
                events.notify_all()

        def counting_throw(g: Any, exc: BaseException) -> None:
            throw(g, exc)
            with events:
                self._thrown.append(type(exc))
                events.notify_all()

        server.ctx.forget = counting_forget
        server.hub.throw = counting_throw  # type: ignore[method-assign]

    def _threadsafe(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Queue ``fn`` on the server's hub; False when that hub is gone."""
        with self._hub_lock:
            if self._hub_closed or self.server is None:
                return False
            self.server.hub.call_soon_threadsafe(fn, *args)
            return True

    # -- control of the server, from the test's thread ---------------------------------------

    def call(self, fn: Callable[[], Any], timeout: float = WAIT) -> Any:
        """Run ``fn()`` in the hub thread (between greenlets) and return its result."""
        result: queue.Queue[tuple[bool, Any]] = queue.Queue()

        def run() -> None:
            try:
                result.put((True, fn()))
            except BaseException as e:  # noqa: BLE001 - handed back to the test thread
                result.put((False, e))

        if not self._threadsafe(run):
            raise RuntimeError("the test server has stopped")
        ok, value = result.get(timeout=timeout)
        if not ok:
            raise value
        return value

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Block the hub thread for the duration of the block (the kernel keeps queueing), so
        that the server sees at once all the bytes a test puts on the wire meanwhile."""
        entered = threading.Event()
        release = self._release = threading.Event()

        def block() -> None:
            entered.set()
            release.wait(WAIT * 3)

        if not self._threadsafe(block):
            raise RuntimeError("the test server has stopped")
        assert entered.wait(WAIT), "hub did not run the freezing callback"
        try:
            yield
        finally:
            release.set()
            self._release = None

    def sync(self) -> None:
        """Return once the hub has handled what the kernel held when this was called: two
        round trips through its callback queue (the first lands in the same poll as bytes
        already queued on a socket, the second after the greenlets they woke ran)."""
        self.call(lambda: None)
        self.call(lambda: None)

    def open_connections(self) -> int:
        return int(self.call(lambda: len(self.server.conns)))  # type: ignore[union-attr]

    @property
    def closed_count(self) -> int:
        with self._events:
            return self._closed

    def wait_closed(self, count: int, timeout: float = WAIT) -> None:
        """Wait until the server has closed ``count`` connections in total."""
        with self._events:
            ok = self._events.wait_for(lambda: self._closed >= count, timeout)
        assert ok, f"server closed {self._closed} connections, expected {count} within {timeout}s"

    def wait_thrown(self, exc_type: type, count: int = 1, timeout: float = WAIT) -> None:
        """Wait until the hub has thrown ``count`` exceptions of ``exc_type`` into greenlets
        (the sweep throws ``Timeout`` into connections whose deadline passed)."""
        with self._events:
            ok = self._events.wait_for(
                lambda: sum(issubclass(t, exc_type) for t in self._thrown) >= count, timeout)
        assert ok, f"the hub threw {self._thrown}, expected {count} x {exc_type.__name__}"

    def stop(self, grace: float = 1.0) -> None:
        """Shut down (in-flight requests get ``grace`` seconds) and join the thread."""
        if self._release is not None:
            self._release.set()
        for client in self._clients:
            client.close()
        server, thread = self.server, self.thread
        if server is None or thread is None:
            return
        if thread.is_alive():
            self._threadsafe(server.shutdown, grace)
            thread.join(WAIT + grace)
            if thread.is_alive():
                raise AssertionError("the test server did not stop")
        if self.failure is not None:
            raise self.failure

    def client(self) -> Client:
        client = Client(self.host, self.port)
        self._clients.append(client)
        return client

    def __enter__(self) -> TestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
