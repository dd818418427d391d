"""A test client: the app served for real on a loopback port, in a thread, inside a test.

    from tpd2py.testing import TestServer

    def test_login():
        with TestServer(app) as server:
            client = server.client()
            r = client.post("/login", form={"user": "ada"})   # follows the 303
            assert r.status == 200 and "ada" in r.text

Rules:
- A real server (``Server`` on ``127.0.0.1:0``, its own hub in its own thread) and a real
  client (``http.client``): what the test sees is what a browser would, framing included.
- Start and stop are awaited, never slept on: ``start`` returns once the socket listens (or
  raises what the server thread raised), ``stop`` shuts the server down from its own hub
  (``call_soon_threadsafe``), joins the thread and closes the hub's fds.
- ``Client`` keeps one keep-alive connection and a cookie jar (name -> value; ``Max-Age=0``
  deletes), follows redirects unless asked not to, and encodes ``form=``, ``json=`` and
  ``files=`` (multipart) bodies. It is for tests, not a general HTTP client: one host, no TLS,
  cookie paths and domains ignored.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import queue
import secrets
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from .app import App
from .server import Config, Server
from .urls import REDIRECT_STATUSES

__all__ = ["TestServer", "Client", "TestResponse"]

WAIT = 10.0  # seconds any start, stop or request may take before the test fails


class TestResponse:
    """What came back: ``status``, ``headers`` (list of pairs), ``body`` (bytes)."""

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


class Client:
    """Requests to one TestServer over one keep-alive connection, with a cookie jar."""

    __test__ = False

    def __init__(self, host: str, port: int, timeout: float = WAIT) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.cookies: dict[str, str] = {}
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

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
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port,
                                                        timeout=self.timeout)
            try:
                self._conn.request(method, path, body=body, headers=sent)
                raw = self._conn.getresponse()
                data = raw.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server closed a kept-alive connection between two requests (after an
                # error answer, say): one retry on a new connection.
                self.close()
                if attempt == 2:
                    raise
        response = TestResponse(raw.status, raw.reason, raw.getheaders(), data)
        if raw.will_close:
            self.close()
        for line in response.header_all("Set-Cookie"):
            self._store(line)
        return response

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

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TestServer:
    """``app`` served on ``127.0.0.1`` (a free port) in a background thread."""

    __test__ = False

    def __init__(self, app: App, config: Config | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.app, self.config, self.host, self.port = app, config, host, port
        self.server: Server | None = None
        self.thread: threading.Thread | None = None
        self.failure: BaseException | None = None
        self._clients: list[Client] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

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
        try:
            server = Server(self.app, self.config)  # this thread's own hub
            address = server.listen_tcp(self.host, self.port)
        except BaseException as e:  # noqa: BLE001 - handed to start()
            ready.put(e)
            return
        ready.put((server, address[:2]))
        try:
            server.serve_forever(install_signals=False)
        except BaseException as e:  # noqa: BLE001 - raised again by stop()
            self.failure = e
        finally:
            server.hub.close()

    def stop(self, grace: float = 1.0) -> None:
        """Shut down (in-flight requests get ``grace`` seconds) and join the thread."""
        for client in self._clients:
            client.close()
        server, thread = self.server, self.thread
        if server is None or thread is None:
            return
        self.server = None
        if thread.is_alive():
            server.hub.call_soon_threadsafe(server.shutdown, grace)
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
