"""WSGI (PEP 3333): Flask, Django, Falcon, Bottle or any WSGI callable, served by tpd2py.

``serve(WSGI(app))``, or ``python -m tpd2py module:app`` (the CLI tells a WSGI callable from a
tpd2py App). The adapter sits at the edge: ``WSGI`` brings its own exchange
(``context.ExchangeApp``), so every connection of its server gets a ``WSGIExchange``, which
answers each request by calling the app instead of routing it. The router's path pays nothing
for this. What a request needs from the core is reused as it is: reading the body
(Content-Length or chunked, ``100 Continue`` on the first read, the minimum rate, 413) and
draining it come from ``exchange.Exchange``, the bytes of the head from ``wire``, files from
``Connection.send_file``; the call itself (start_response, framing, errors) is wsgi_call.py.

Two modes:
- greenlet (default): the app runs in the connection's greenlet. Reads of ``wsgi.input`` and
  flushes of the response wait on the hub like any handler's, so a slow client stalls no one;
  an app that blocks (``time.sleep``, a blocking database driver) blocks everyone: that is
  what thread mode is for (docs/wsgi.md; the watchdog names such a call).
- threads (``WSGI(app, threads=N)``, ``--threads N``): the app runs in a bounded
  ``threads.ThreadPool``; the connection's greenlet waits with it and does its I/O (every
  read of ``wsgi.input`` and every flush is a call into the greenlet through the hub), so the
  hub keeps every socket and an idle or slow client holds no thread. When the pool and its
  queue are full the request is answered ``503`` with ``Retry-After``.
Rules for the environ: every key PEP 3333 requires; ``PATH_INFO`` percent-decoded, its bytes
as latin-1; ``SCRIPT_NAME`` the ``root_path`` (stripped from ``PATH_INFO`` when the path
starts with it); header fields as ``HTTP_*`` (several fields of one name joined with ", ",
cookies with "; ", RFC 9110 §5.3), and a name with ``_`` dropped, so that ``X_Forwarded_For``
cannot pose as ``X-Forwarded-For``; ``CONTENT_LENGTH`` only for a Content-Length body (a
chunked one is read to its end: ``wsgi.input_terminated``); ``SERVER_NAME``/``SERVER_PORT``
from Host; ``wsgi.url_scheme`` "https" over a TLS transport or from a trusted proxy's
``X-Forwarded-Proto``.
Switch points: ``WSGIExchange.handle`` (it runs the app) and, inside the app, ``Input``'s reads.
"""

from __future__ import annotations

import socket
import struct
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from functools import partial
from typing import Any
from urllib.parse import unquote_to_bytes

from .errors import ClientDisconnected, CloseConnection, Overloaded
from .exchange import BODY_DONE, Connection, Exchange
from .http11 import RequestHead
from .threads import ThreadPool
from .wsgi_call import CLOSE_DELIMITED, Call, FileWrapper, ThreadCall

__all__ = ["WSGI", "WSGIExchange", "Input", "FileWrapper"]

SERVER_SOFTWARE = "tpd2py"
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH",
                                    "OPTIONS")}
# Header name (lower-case bytes, as parsed) -> environ key ("" for a name that is dropped).
_KEYS: dict[bytes, str] = {}
_KEYS_MAX = 1024  # header names are few in practice; a client sending random ones is not cached
_HOSTS: dict[str, tuple[str, str]] = {}
_HOSTS_MAX = 256
_BY_HEAD_MAX = 256  # as many as the parser's head cache keeps
# Thread mode: a Content-Length body up to this size is read before the app gets a thread.
PREREAD_MAX = 65536


def _environ_key(name: bytes) -> str:
    if b"_" in name or name == b"content-length":  # CONTENT_LENGTH comes from the parsed head
        key = ""
    elif name == b"content-type":
        key = "CONTENT_TYPE"
    else:
        key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
    if len(_KEYS) < _KEYS_MAX:
        _KEYS[name] = key
    return key


def _split_host(host: str, default_port: str) -> tuple[str, str]:
    """(SERVER_NAME, SERVER_PORT) from a Host value (the parser checked its grammar)."""
    found = _HOSTS.get(host)
    if found is not None:
        return found
    if host.startswith("["):  # an IPv6 literal: [::1]:8080
        end = host.find("]")
        name, rest = host[:end + 1], host[end + 1:]
        port = rest[1:] if rest.startswith(":") and rest[1:] else default_port
    else:
        name, colon, port = host.rpartition(":")
        if not colon:
            name, port = host, default_port
        elif not port:
            port = default_port
    result = (name.lower(), port)
    if len(_HOSTS) < _HOSTS_MAX:
        _HOSTS[host] = result
    return result


class Input:
    """``wsgi.input``: the request body as a binary file. ``read()``, ``read(n)``,
    ``readline()``, ``readlines()`` and iteration by lines; it never reads past the body, and
    its end is a plain EOF (also for a chunked body). A read may switch to the hub (greenlet
    mode) or wait for the connection's greenlet (thread mode). A bad or oversized body raises
    ``ProtocolError`` (the client gets 400/413); a client gone mid-body raises
    ``ClientDisconnected``, on every read from then on."""

    __slots__ = ("_pull", "_buf", "_pos", "_error")

    def __init__(self, pull: Callable[[], bytes] | None) -> None:
        self._pull = pull  # the body's next piece, b"" at its end
        self._buf = b""
        self._pos = 0
        self._error: BaseException | None = None

    def _more(self) -> bytes:
        if self._error is not None:
            raise self._error
        pull = self._pull
        if pull is None:
            return b""
        try:
            piece = pull()
        except BaseException as e:
            self._error = e
            raise
        if not piece:
            self._pull = None
        return piece

    def read(self, size: int | None = -1) -> bytes:
        buf, pos = self._buf, self._pos
        if size is None or size < 0:
            parts = [buf[pos:]] if pos < len(buf) else []
            self._buf, self._pos = b"", 0
            while piece := self._more():
                parts.append(piece)
            return b"".join(parts)
        avail = len(buf) - pos
        if size <= avail:
            self._pos = pos + size
            return buf[pos:pos + size]
        parts = [buf[pos:]] if avail else []
        need = size - avail
        self._buf, self._pos = b"", 0
        while need:
            piece = self._more()
            if not piece:
                break
            if len(piece) > need:
                parts.append(piece[:need])
                self._buf, self._pos = piece, need
                break
            parts.append(piece)
            need -= len(piece)
        return b"".join(parts)

    def readline(self, size: int | None = -1) -> bytes:
        if size is None:
            size = -1
        parts = []
        got = 0
        while size < 0 or got < size:
            buf, pos = self._buf, self._pos
            if pos >= len(buf):
                buf = self._more()
                if not buf:
                    break
                self._buf, self._pos, pos = buf, 0, 0
            end = buf.find(b"\n", pos) + 1  # 0: no newline here
            stop = end or len(buf)
            if size >= 0 and stop - pos > size - got:
                stop = pos + size - got
            parts.append(buf[pos:stop])
            got += stop - pos
            self._pos = stop
            if end and stop == end:
                break
        return b"".join(parts)

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


# The wsgi.input of a request without a body: nothing to read, so one object serves all.
EMPTY_INPUT = Input(None)


class WSGIExchange(Exchange):
    """The exchange of a WSGI server's connections: one WSGI call per request."""

    __slots__ = ("remote",)

    def __init__(self) -> None:
        super().__init__()
        self.remote: tuple[str, str] | None = None  # (REMOTE_ADDR, REMOTE_PORT), per connection

    def handle(self, conn: Connection, head: RequestHead) -> bool | None:
        """Call the app for ``head`` and queue its response. May switch to the hub."""
        ctx = conn.ctx
        adapter: WSGI = ctx.app
        # The request's state, as Exchange.handle sets it.
        self.head = head
        self.response_started = self.continue_sent = False
        self.keep_alive = head.keep_alive and not head.must_close and not ctx.draining
        self._frame_body(conn, head)
        threaded = adapter.threads > 0
        call = ThreadCall(self, conn, head) if threaded else Call(self, conn, head)
        if self.body_left == BODY_DONE:
            body = EMPTY_INPUT
        elif threaded and 0 < self.body_left <= PREREAD_MAX and not head.expect_continue:
            # A small body is read here, before the app gets a thread: a client slow to send
            # it holds no thread meanwhile (with 100-continue the app must ask first).
            data = b"".join(self.read_body(conn))
            body = Input(partial(next, iter((data,)), b"") if data else None)
        else:
            pieces = self.read_body(conn)
            body = Input(partial(call.in_hub, next, pieces, b"") if threaded
                         else partial(next, pieces, b""))
        call.environ = adapter.environ(conn, head, self, body)
        if threaded:
            pool = adapter.pool_for(ctx.hub)
            try:
                job = pool.start(call.run, adapter.app)
            except Overloaded as e:
                return self.answer_error(conn, 503, b"Retry-After: %d\r\n" % e.retry_after)
            assert isinstance(call, ThreadCall)
            call.serve(job)
            pool.result(job)  # the connection's own errors, raised in the thread
        else:
            call.run(adapter.app)
            if not call.failure and self.body_left == BODY_DONE and ctx.access_log is None:
                # The common case of _after inline: a whole response, nothing left to read.
                conn.queued += 1
                return self.keep_alive
        return self._after(conn, call)

    def _after(self, conn: Connection, call: Call) -> bool:
        """Once the app is done: a 500 if it failed before sending anything, a close if it
        failed after; else what is left of the response is queued and the body drained."""
        ctx = conn.ctx
        if call.failure:
            if not call.framing:
                return self.answer_error(conn, 500)
            self.keep_alive = False
            if call.framing == CLOSE_DELIMITED:
                # Its end would look like the end of the body: a reset tells the truth.
                with suppress(OSError, ClientDisconnected, CloseConnection):
                    conn.out.extend(call.pending)
                    conn.flush()
                with suppress(OSError):
                    conn.sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                raise CloseConnection()
        if call.pending:
            conn.out.extend(call.pending)
        deferred = call.deferred_file  # thread mode's file body
        if deferred is not None:
            try:
                conn.send_file(deferred)
            finally:
                deferred.close()
        conn.queued += 1
        if ctx.access_log is not None:
            ctx.access_log.write(conn, self.head, call.code, call.written)
        if self.body_left != BODY_DONE and self.keep_alive:
            # After a streamed response: what the app left unread. The response is out, so
            # bad framing or a stalled body can only close the connection.
            self._drain_after_stream(conn)
        return self.keep_alive


class WSGI:
    """A WSGI application as a tpd2py app: ``serve(WSGI(app))``.

    ``threads``: 0 runs the app in the connection's greenlet; N > 0 in a pool of N threads
    with ``max_queue`` requests waiting at most (default 4 N), beyond which requests get
    ``503`` with ``Retry-After: retry_after``. ``root_path``: the path prefix the app is
    mounted under (``SCRIPT_NAME``). ``trusted_proxies``: peer addresses whose
    ``X-Forwarded-Proto`` sets ``wsgi.url_scheme``. ``errors``: ``wsgi.errors`` (stderr).
    """

    new_exchange = WSGIExchange

    def __init__(self, app: Callable[..., Iterable[bytes]], threads: int = 0,
                 max_queue: int | None = None, root_path: str = "",
                 trusted_proxies: Iterable[str] = (), errors: Any = None,
                 retry_after: int = 1, url_scheme: str = "http") -> None:
        if not callable(app):
            raise TypeError(f"a WSGI app is a callable, not {type(app).__name__}")
        if threads < 0:
            raise ValueError("threads must not be negative")
        root = root_path.rstrip("/")
        if root and not root.startswith("/"):
            raise ValueError(f"root_path starts with '/': {root_path!r}")
        self.app = app
        self.threads = threads
        self.max_queue = max_queue
        self.retry_after = retry_after
        self.root = root.encode("utf-8")
        self.trusted = frozenset(trusted_proxies)
        self.default_port = "443" if url_scheme == "https" else "80"
        self.pool: ThreadPool | None = None
        # RequestHead (by identity: heads are immutable) -> its environ, less the per-request
        # keys (REMOTE_*, wsgi.input, a trusted proxy's scheme).
        self._by_head: dict[RequestHead, dict[str, Any]] = {}
        self.base: dict[str, Any] = {
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": url_scheme,
            "wsgi.errors": errors if errors is not None else sys.stderr,
            "wsgi.multithread": threads > 0,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
            "SCRIPT_NAME": self.root.decode("latin-1"),
            "SERVER_SOFTWARE": SERVER_SOFTWARE,
        }

    def pool_for(self, hub: Any) -> ThreadPool:
        """The thread pool (thread mode), made on the first request, in the hub's thread."""
        pool = self.pool
        if pool is None:
            pool = self.pool = ThreadPool(self.threads, self.max_queue, hub=hub,
                                          name="tpd2py-wsgi", retry_after=self.retry_after)
        elif pool.hub is not hub:
            raise RuntimeError("a WSGI adapter in thread mode serves one server: make one "
                               "WSGI(app, threads=...) per server")
        return pool

    def close(self) -> None:
        """Stop the pool's threads once their jobs are done (after the server stopped)."""
        if self.pool is not None:
            self.pool.shutdown(wait=False)
            self.pool = None

    def environ(self, conn: Connection, head: RequestHead, ex: WSGIExchange,
                body: Input) -> dict[str, Any]:
        """The PEP 3333 environ for one request. Never switches.

        What comes from the head alone is kept per head object (``_by_head``, bounded): the
        parser's head cache gives a byte-identical request the same, immutable head, whose
        environ then costs one dict copy (bench/instructions.py --app wsgi, keep-alive: see
        docs/wsgi.md). The app gets a fresh copy each time: apps write into their environ."""
        template = self._by_head.get(head)
        if template is None:
            template = self._from_head(conn, head)
        env = template.copy()
        remote = ex.remote
        if remote is None:
            peer = conn.address()
            remote = ex.remote = (str(peer[0]), str(peer[1])) \
                if isinstance(peer, tuple) and len(peer) >= 2 else ("", "")
        env["REMOTE_ADDR"], env["REMOTE_PORT"] = remote
        env["wsgi.input"] = body
        scheme = getattr(conn.sock, "scheme", None)  # a TLS transport says "https"
        if scheme is not None:
            env["wsgi.url_scheme"] = scheme
        if self.trusted and remote[0] in self.trusted:
            proto = env.get("HTTP_X_FORWARDED_PROTO", "").rpartition(",")[2].strip().lower()
            if proto in ("http", "https"):
                env["wsgi.url_scheme"] = proto
        return env

    def _from_head(self, conn: Connection, head: RequestHead) -> dict[str, Any]:
        env = self.base.copy()
        method = head.method
        env["REQUEST_METHOD"] = _METHODS.get(method) or method.decode("latin-1")
        raw = head.path
        path = unquote_to_bytes(raw) if b"%" in raw else raw
        root = self.root
        if root and path.startswith(root) and (len(path) == len(root)
                                               or path[len(root)] == 47):  # "/"
            path = path[len(root):]
        env["PATH_INFO"] = path.decode("latin-1")
        env["QUERY_STRING"] = head.query.decode("latin-1")
        env["SERVER_PROTOCOL"] = "HTTP/1.1" if head.version == 11 else "HTTP/1.0"
        keys = _KEYS
        for name, value in head.headers:
            key = keys.get(name)
            if key is None:
                key = _environ_key(name)
            if not key:
                continue
            text = value.decode("latin-1")
            if key in env:
                env[key] += ("; " if key == "HTTP_COOKIE" else ", ") + text
            else:
                env[key] = text
        if head.content_length >= 0 and not head.chunked:
            env["CONTENT_LENGTH"] = str(head.content_length)
        host = env.get("HTTP_HOST")
        if host:
            env["SERVER_NAME"], env["SERVER_PORT"] = _split_host(host, self.default_port)
            by_head = self._by_head
            if len(by_head) >= _BY_HEAD_MAX:
                by_head.clear()  # a stream of distinct heads: start over (as the head cache)
            by_head[head] = env
        else:  # the listener's address: not a function of the head alone
            env["SERVER_NAME"], env["SERVER_PORT"] = self._local(conn)
        return env

    def _local(self, conn: Connection) -> tuple[str, str]:
        """The listening address, for a request without Host (HTTP/1.0)."""
        try:
            local = conn.sock.getsockname()
        except OSError:
            local = None
        if isinstance(local, tuple) and len(local) >= 2:
            return str(local[0]), str(local[1])
        return "localhost", self.default_port

