"""App, Request and the router: what a handler sees (Response, re-exported, is response.py).

Rules:
- The request is passed to the handler explicitly (no thread- or greenlet-locals).
- The request keeps the wire bytes and decodes only what the handler asks for, once.
- A handler may return str, bytes, a list of bytes chunks, a dict (JSON), a generator (streamed
  response), (body, status[, headers]) or a Response; ``to_response`` is the one place those
  become a Response (None is an error: a forgotten return, not a 204).
- Response headers set by a handler are checked: CR, LF or NUL in a status, name or value raise
  ``ValueError`` instead of being sent (RFC 9110 §5.5).
- Routing: exact paths are one dict lookup on the raw path bytes; ``<name>`` / ``<path:name>``
  patterns are compiled regexes tried in order. A path that matches but not for this method
  gives 405 with ``Allow``; HEAD falls back to GET; a method no route accepts, on a path that
  matches nothing, gives 501 (RFC 9110 §9.1: a method the server does not recognize).
- The handler contract: a handler returns a response (any of the above), or ``Later`` to answer
  without holding a greenlet; ``Request.park()`` brackets a wait on something other than the
  client. Handlers reach their connection only through ``Request`` (``peer``, ``body``,
  ``stream``, ``park``), never directly.
Nothing here does I/O except ``Request.body``/``Request.stream``/``Request.park``, which call
into the connection and may switch to the hub.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, unquote_to_bytes

from .contract import Later, Parking, RequestConnection, Upgraded
from .cookies import cookie_mapping
from .errors import HTTPError
from .headers import Headers  # re-exported: app.Headers is the request's header view
from .response import HTML as HTML  # re-exported ("X as X"): app is where handlers and
from .response import JSON as JSON  # the feature modules find the response side
from .response import TEXT as TEXT
from .response import FileBody as FileBody
from .response import Response as Response
from .response import bare_response as bare_response
from .response import http_error_response, to_response
from .webapp import ROUTE_PARAM, SESSIONS, AppFeatures, check_route

if TYPE_CHECKING:
    from .http11 import RequestHead

Handler = Callable[..., Any]

_METHOD_NAMES = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH",
                                         "OPTIONS", "CONNECT", "TRACE")}


def _unquote(part: bytes) -> str:
    if b"%" in part or b"+" in part:
        return unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8", "replace")
    return part.decode("utf-8", "replace")


_NO_PARAMS: Mapping[str, Any] = MappingProxyType({})


def parse_query(query: bytes) -> list[tuple[str, str]]:
    """``application/x-www-form-urlencoded`` bytes to (name, value) pairs, like
    ``urllib.parse.parse_qsl(..., keep_blank_values=True)`` but on bytes and without its
    per-call overhead (the common parameter has no escapes and is decoded in one step)."""
    pairs = []
    for part in query.split(b"&"):
        if part:
            name, _, value = part.partition(b"=")
            pairs.append((_unquote(name), _unquote(value)))
    return pairs


class Request:
    """One request. Wire bytes stay bytes; the str views are decoded on first use."""

    __slots__ = ("_head", "_conn", "params", "_query", "_body", "_path")

    def __init__(self, head: RequestHead, conn: RequestConnection) -> None:
        # Private and never mutated: byte-identical requests may share one parsed head.
        self._head = head
        self._conn = conn
        # The route's path parameters (read-only); one shared empty mapping when there are none
        # (a dict per request less on the hot path).
        self.params: Mapping[str, Any] = _NO_PARAMS
        self._query: dict[str, str] | None = None
        self._body: bytes | None = None
        self._path: str | None = None

    @property
    def method(self) -> str:
        m = self._head.method
        return _METHOD_NAMES.get(m) or m.decode("ascii")

    @property
    def raw_path(self) -> bytes:
        return self._head.path

    @property
    def path(self) -> str:
        """The percent-decoded path (UTF-8, invalid bytes replaced)."""
        if self._path is None:
            self._path = unquote(self._head.path.decode("latin-1"), errors="replace")
        return self._path

    @property
    def raw_query(self) -> bytes:
        return self._head.query

    @property
    def query(self) -> dict[str, str]:
        """Query parameters (first value of each name), decoded on first use."""
        first = self._query
        if first is None:
            first = self._query = {}
            for part in self._head.query.split(b"&"):  # parse_query, keeping first values
                if part:
                    name, _, value = part.partition(b"=")
                    key = _unquote(name)
                    if key not in first:
                        first[key] = _unquote(value)
        return first

    def query_list(self) -> list[tuple[str, str]]:
        """All query parameters in order, percent- and plus-decoded (UTF-8, invalid bytes
        replaced); names without ``=`` get ``""``."""
        return parse_query(self._head.query)

    @property
    def headers(self) -> Headers:
        return Headers(self._head.headers)

    def header(self, name: str, default: str | None = None) -> str | None:
        v = self._head.header(name.lower().encode("latin-1"))
        return default if v is None else v.decode("latin-1")

    @property
    def cookies(self) -> Mapping[str, str]:
        """``{name: value}``, parsed when asked (cookies.py: a parse is kept per header)."""
        return cookie_mapping(self._head.headers)

    @property
    def session(self) -> Any:
        """The signed-cookie session (``tpd2py.sessions.Sessions`` sets it up; webapp.py)."""
        session = SESSIONS.get(self)
        if session is None:
            raise RuntimeError("request.session needs tpd2py.sessions.Sessions(app, ...)")
        return session

    @property
    def version(self) -> str:
        return "HTTP/1.1" if self._head.version == 11 else "HTTP/1.0"

    @property
    def scheme(self) -> str:
        """``https`` over a TLS transport, else ``http``; behind a trusted proxy (proxy.py)
        what the proxy says the client used."""
        return getattr(self._conn.sock, "scheme", "http")

    @property
    def peer_certificate(self) -> Any:
        """The client's verified certificate (mutual TLS: ``ssl.SSLObject.getpeercert()``),
        or None."""
        getpeercert = getattr(self._conn.sock, "getpeercert", None)
        return getpeercert() if getpeercert is not None else None

    @property
    def peer(self) -> Any:
        """The client's address, as the socket gives it (a (host, port) tuple over TCP)."""
        return self._conn.address()

    @property
    def host(self) -> str | None:
        """The Host header (None without one); behind a trusted proxy (proxy.py) the host the
        client asked the proxy for."""
        v = self._head.header(b"host")
        return None if v is None else v.decode("latin-1")

    def park(self, on_hangup: Callable[[], None] | None = None) -> Parking:
        """A context manager around a wait on something other than this client (a channel, a
        timer, another server): on entry the responses already queued for earlier pipelined
        requests are sent (may switch to the hub), the connection lends its input buffer back
        and watches for the client hanging up; on exit it stops watching. A hang-up meanwhile
        throws ``ClientDisconnected`` into this greenlet, or, with ``on_hangup``, calls that
        from the hub instead (once), for a waiter that can also be woken by someone else and
        must decide itself whether to throw (at once, in this greenlet, when the hang-up was
        seen already). ::

            with request.park():
                result = some_event.wait()
        """
        return Parking(self._conn, on_hangup)

    def upgrade(self, head: bytes, protocol: Upgraded) -> Later:
        """Leave HTTP: the ``Later`` to return so that, once earlier responses are sent, the
        connection queues ``head`` (a whole 101 head) and belongs to ``protocol`` (an
        ``Upgraded``: tpd2py.websocket). Never switches."""
        return Later(partial(self._conn.upgrade, head, protocol), protocol.closed)

    def body(self) -> bytes:
        """The whole request body (b"" if none). Reads it on first call: may switch to the hub.

        Bodies over the server's ``max_body_size`` raise a 413 for the client.
        """
        if self._body is None:
            self._body = b"".join(self._conn.read_body())
        return self._body

    def stream(self) -> Iterator[bytes]:
        """The body as an iterator of chunks, for large uploads. May switch to the hub."""
        if self._body is not None:
            return iter((self._body,)) if self._body else iter(())
        return self._conn.read_body()

    def form(self) -> dict[str, str]:
        """An application/x-www-form-urlencoded body, decoded (first value of each name)."""
        first: dict[str, str] = {}
        for k, v in parse_query(self.body()):
            first.setdefault(k, v)
        return first

    def json(self) -> Any:
        """The body parsed as JSON; a body that is not JSON (or nests too deep) is a 400."""
        try:
            return json.loads(self.body())
        except (ValueError, RecursionError) as e:
            raise HTTPError(400, f"400 Bad Request: the body is not valid JSON ({e})\n") from None


def _owner(mounts: list[tuple[bytes, Any]], path: bytes) -> bytes | None:  # match()'s mount
    return next((start for start, _ in mounts if path.startswith(start)), None)


class _Route:
    __slots__ = ("pattern", "regex", "handlers", "converters")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.handlers: dict[bytes, Handler] = {}
        self.converters: dict[str, Callable[[str], Any]] = {}
        parts, pos = [], 0
        for m in ROUTE_PARAM.finditer(pattern):
            parts.append(re.escape(pattern[pos:m.start()]))
            kind, name = m.group(1), m.group(2)
            if kind == "path":
                parts.append(f"(?P<{name}>.+)")
            elif kind == "int":
                # Bounded: int() of thousands of digits is slow or refused (peers #3).
                parts.append(f"(?P<{name}>[0-9]{{1,18}})")
                self.converters[name] = int
            else:
                parts.append(f"(?P<{name}>[^/]+)")
            pos = m.end()
        parts.append(re.escape(pattern[pos:]))
        self.regex = re.compile("".join(parts) + r"\Z") if pos else None


class App(AppFeatures):
    """A router of straight-line handlers: ``@app.route("/hello/<name>")``."""

    # The response side that the hooks (hooks.py, below this module) use.
    to_response = staticmethod(to_response)
    later_type = Later
    error_response = staticmethod(http_error_response)

    def __init__(self) -> None:
        super().__init__()
        self.exact: dict[bytes, _Route] = {}
        self._patterns: list[_Route] = []
        self._all: dict[str, _Route] = {}
        # The methods this app recognizes: GET and HEAD (RFC 9110 §9.1: every general-purpose
        # server supports them) and every method some route accepts.
        self.methods: set[bytes] = {b"GET", b"HEAD"}
        # Handler wrappers (``wrap``), applied to every route's handler, earlier and later ones.
        self._wrappers: list[Callable[[Handler], Handler]] = []
        # (b"/prefix/", route) of each mount, longest prefix first: matched on the raw path
        # before any pattern (a mount owns its prefix; only exact routes come before it).
        self._mounts: list[tuple[bytes, _Route]] = []
        # Exact routes a mount pinned for paths it answers from memory (``pin``).
        self._pinned: dict[bytes, tuple[_Route, Handler]] = {}

    def route(self, pattern: str, methods: Iterable[str] = ("GET",), *, name: str | None = None,
              max_body_size: int | None = None) -> Callable[[Handler], Handler]:
        """``name=`` for ``url_for``; ``max_body_size=`` for this route's bodies (webapp.py)."""
        if not pattern.startswith("/"):
            raise ValueError("a route pattern starts with '/'")

        def register(fn: Handler) -> Handler:
            self.add_route(pattern, fn, methods, name=name, max_body_size=max_body_size)
            return fn

        return register

    def wrap(self, wrapper: Callable[[Handler], Handler]) -> None:
        """Wrap every handler, those routed already and those routed later, with ``wrapper``
        (a function of the handler that returns a new handler; ``compress.Gzip`` is one). The
        wrapping happens here, once: a request pays only for the wrappers it runs through."""
        self._wrappers.append(wrapper)
        for route in (*self._all.values(), *(r for r, _ in self._pinned.values())):
            for name, fn in route.handlers.items():
                route.handlers[name] = wrapper(fn)
        self._rebuild_body_limits()  # keyed by the handlers the router holds

    def mount(self, prefix: str, handler: Handler) -> None:
        """Route GET and HEAD of ``prefix``, ``prefix/`` and every path under it to ``handler``,
        called as ``handler(request)``: it reads ``request.raw_path`` itself (not decoded). A
        mount is matched on the raw path's prefix, after exact routes and before patterns. A
        handler's ``mounted_at(prefix)`` is called first, its class's ``routed_by(app, prefix)``
        (not a delegate's) after (``static.StaticFiles`` pins files it keeps in memory: ``pin``)."""
        if not prefix.startswith("/") or "<" in prefix:
            raise ValueError("a mount prefix is a plain path starting with '/'")
        prefix = prefix.rstrip("/")
        if prefix + "/*" in self._all:  # the first would keep the paths under it, the second
            raise ValueError(f"{prefix or '/'!r} is mounted already")  # the prefix itself
        mounted_at = getattr(handler, "mounted_at", None)
        told = getattr(handler, "routed_by", None) if hasattr(type(handler), "routed_by") else None
        if mounted_at is not None:
            mounted_at(prefix)  # the handler learns its prefix (StaticFiles slices raw paths)
        if prefix:
            self.add_route(prefix, handler, ("GET",))
        self.add_route(prefix + "/", handler, ("GET",))
        route = _Route(prefix + "/")
        for wrapper in self._wrappers:
            handler = wrapper(handler)
        route.handlers[b"GET"] = handler
        self._all[prefix + "/*"] = route  # so that wrap() reaches it too
        self._mounts.append((start := (prefix + "/").encode(), route))
        self._mounts.sort(key=lambda m: -len(m[0]))
        for path, (_, pinned) in list(self._pinned.items()):
            if _owner(self._mounts, path) == start:  # the new mount owns it (not when shorter)
                self.unpin(path, pinned)
        if told is not None:
            told(self, prefix)

    def pin(self, raw_path: bytes, handler: Handler, prefix: bytes) -> None:
        """For the mount at ``prefix``: GET of ``raw_path`` goes to ``handler`` by an exact route
        until ``unpin``; not where a route of the app or a longer mount owns it. Never switches."""
        if raw_path in self.exact or _owner(self._mounts, raw_path) != prefix + b"/":
            return
        route = _Route("/")  # not parsed as a pattern: the path is taken as it is
        route.pattern = raw_path.decode("latin-1")
        fn = handler
        for wrapper in self._wrappers:
            fn = wrapper(fn)
        route.handlers[b"GET"] = fn
        self.exact[raw_path] = route
        self._pinned[raw_path] = (route, handler)

    def unpin(self, raw_path: bytes, handler: Handler) -> None:
        """Undo ``pin(raw_path, handler)`` (nothing if that pin is gone). Never switches."""
        route, pinned = self._pinned.get(raw_path, (None, None))
        if pinned is handler:
            del self._pinned[raw_path]
            if self.exact.get(raw_path) is route:
                del self.exact[raw_path]

    def add_route(self, pattern: str, fn: Handler, methods: Iterable[str] = ("GET",), *,
                  name: str | None = None, max_body_size: int | None = None) -> None:
        if isinstance(methods, str):
            raise TypeError(f"route {pattern!r}: methods is a list, e.g. [{methods!r}]")
        check_route(pattern, fn)
        route = self._all.get(pattern) or _Route(pattern)
        names = [m.upper().encode() for m in methods]
        for method in names:
            self._register(pattern, method, fn, name, max_body_size)
        for wrapper in self._wrappers:
            fn = wrapper(fn)
        if pattern not in self._all:
            self._all[pattern] = route
            if route.regex is None:
                self.exact[pattern.encode()] = route
            else:
                self._patterns.append(route)
        for method in names:
            route.handlers[method] = fn
            self.methods.add(method)
            if method == b"GET":
                self.methods.add(b"HEAD")
        if max_body_size is not None:
            self._rebuild_body_limits()

    def websocket(self, pattern: str, **options: Any) -> Callable[[Handler], Handler]:
        """Register a WebSocket handler, ``handler(ws, **params)``: ``@app.websocket("/chat")``.
        ``options`` are ``tpd2py.websocket.Options`` fields (docs/websocket.md)."""
        from .websocket import route  # the feature at the edge, loaded on first use

        return route(self, pattern, **options)

    def match(self, method: bytes, raw_path: bytes) -> tuple[Handler | None, dict[str, Any],
                                                             int, list[bytes]]:
        """Find the handler: (handler, params, status, allowed). Never switches.

        status is 200 when found, else 404, 405 (with the allowed methods) or 501 (a method no
        route accepts, on a path no route matches).
        """
        route = self.exact.get(raw_path)
        params: dict[str, Any] = {}
        if route is None and self._mounts:
            for start, mounted in self._mounts:
                if raw_path.startswith(start):
                    route = mounted
                    break
        if route is None:
            path = unquote_to_bytes(raw_path).decode("utf-8", "replace") \
                if b"%" in raw_path else raw_path.decode("latin-1")
            route = self.exact.get(path.encode()) if b"%" in raw_path else None
            if route is None:
                for candidate in self._patterns:
                    assert candidate.regex is not None
                    m = candidate.regex.match(path)
                    if m:
                        route = candidate
                        params = m.groupdict()
                        for name, conv in candidate.converters.items():
                            params[name] = conv(params[name])
                        break
            if route is None:
                status = 404 if method in self.methods else 501
                if self._hooked:  # hooks, pages or debug: the error goes through them too
                    return self.error_page(status, []), {}, 200, []
                return None, params, status, []
        handler = route.handlers.get(method)
        if handler is None and method == b"HEAD":
            handler = route.handlers.get(b"GET")
        if handler is None:
            allowed = sorted(route.handlers)
            if b"GET" in route.handlers and b"HEAD" not in route.handlers:
                allowed.append(b"HEAD")
            if self._hooked:
                return self.error_page(405, allowed), {}, 200, []
            return None, params, 405, allowed
        return handler, params, 200, []
