"""What ``App`` and ``Response`` offer beyond routing and the wire (mixins they inherit, so
that app.py stays the core): named routes and ``url_for``, per-route body limits,
before/after-request hooks, error pages and debug mode; ``response.set_cookie`` and
``delete_cookie``. (``Request`` takes no mixin: a base class costs its deallocation ~70
instructions a request, bench/instructions.py.)

Rules:
- Nothing here runs per request unless the app uses it. The router keeps each route's handler
  itself; only once a hook, an error page or ``debug`` is registered does the app wrap every
  handler, old and new, with ``hooks.wrap_handler`` (through ``App.wrap``, once).
- Per-route body limits are a dict the exchange reads for a request that has a body only
  (``body_limits``, keyed by the handler the router holds: rebuilt when a wrapper is added).
- ``url_for`` escapes each parameter for where it goes. ``<name>`` takes one path segment, so
  every reserved character is escaped, and a ``/`` (which the router would read as a
  separator) or an empty value raises ValueError; ``<path:name>`` keeps its slashes;
  ``<int:name>`` takes an int in the router's range. Parameters the pattern does not name
  become the query string. The result matches the same route when requested.
- Every mistake is raised where it is made: a name given to two routes, an unknown name or a
  missing parameter in ``url_for``, a body limit that is not a positive int.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from .cookies import delete_cookie_line, set_cookie_line
from .hooks import SESSIONS, router_error_handler, wrap_handler

Handler = Callable[..., Any]

__all__ = ["AppFeatures", "ResponseFeatures", "check_route", "tuple_response", "build_url",
           "SESSIONS"]



# The router's parameter syntax (app.py's _Route compiles the same).
# The router's parameter syntax (app.py's _Route compiles routes with it; url_for builds URLs).
ROUTE_PARAM = re.compile(r"<(?:(path|int):)?([A-Za-z_][A-Za-z0-9_]*)>")
_INT_MAX = 10**18 - 1  # the router's <int:...> takes at most 18 digits


class ResponseFeatures:
    """Mixed into ``Response`` (its ``fields``, the pre-encoded header lines)."""

    __slots__ = ()
    fields: bytes

    def set_cookie(self, name: str, value: str = "", **attributes: Any) -> None:
        """Add a ``Set-Cookie`` field: ``max_age``, ``expires``, ``path`` ("/"), ``domain``,
        ``secure``, ``httponly``, ``samesite`` ("Lax"). Raises ValueError on a name, value or
        attribute a browser would misread (see cookies.py)."""
        self.fields += b"Set-Cookie: %s\r\n" % set_cookie_line(  # type: ignore[misc]
            name, value, **attributes)

    def delete_cookie(self, name: str, **attributes: Any) -> None:
        """Tell the browser to drop a cookie (give the ``path``/``domain`` it was set with)."""
        self.fields += b"Set-Cookie: %s\r\n" % delete_cookie_line(  # type: ignore[misc]
            name, **attributes)


class AppFeatures:
    def __init__(self) -> None:
        self.before_hooks: list[Callable[[Any], Any]] = []
        self.after_hooks: list[Callable[[Any, Any], Any]] = []
        self.error_pages: dict[int, Handler] = {}
        # The router's own 404/405/501 handlers, made on first use (hooks.router_error_handler).
        self.error_handlers: dict[tuple[int, tuple[bytes, ...]], Handler] = {}
        # The handler the router holds -> its route's request body limit (bytes).
        self.body_limits: dict[Handler | None, int] = {}
        self._debug = False
        # Route name -> pattern; None when two routes share a default (function) name.
        self._names: dict[str, str | None] = {}
        # (pattern, method) -> (the handler as registered, its body limit or None).
        self._originals: dict[tuple[str, bytes], tuple[Handler, int | None]] = {}
        # (pattern, method) -> body limit, for the routes that set one.
        self._limits: dict[tuple[str, bytes], int] = {}
        self._hooked = False

    # -- registration (called by App.add_route) -------------------------------------------------

    def _register(self, pattern: str, method: bytes, fn: Handler, name: str | None,
                  max_body_size: int | None) -> None:
        """Record a route's handler (as given, before any wrapper), its name and its limit."""
        if max_body_size is not None and (isinstance(max_body_size, bool) or not isinstance(
                max_body_size, int) or max_body_size <= 0):
            raise ValueError(f"route {pattern!r}: max_body_size is a positive number of bytes")
        limited = max_body_size is not None or self._limits
        for (other, _), (registered, limit) in self._originals.items() if limited else ():
            if registered is fn and limit != max_body_size and other != pattern:
                # Without wrappers the router holds the function itself: one limit per function.
                raise ValueError(f"{getattr(fn, '__qualname__', fn)} is routed at {other!r} and "
                                 f"{pattern!r} with different max_body_size: use two functions")
        if name is not None:
            if self._names.get(name, pattern) != pattern:
                raise ValueError(f"route name {name!r} is given to {self._names[name]!r} "
                                 f"and {pattern!r}")
            self._names[name] = pattern
        else:
            default = getattr(fn, "__name__", None)
            if default and default != "<lambda>":
                known = self._names.get(default, pattern)
                self._names[default] = pattern if known == pattern else None
        self._originals[(pattern, method)] = (fn, max_body_size)
        if max_body_size is not None:
            self._limits[(pattern, method)] = max_body_size

    def _rebuild_body_limits(self) -> None:
        """``body_limits`` keyed by the handlers the router holds now (after any wrapper)."""
        if self._limits:
            routes: dict[str, Any] = self._all  # type: ignore[attr-defined]  # App's routes
            self.body_limits = {routes[pattern].handlers[method]: limit
                                for (pattern, method), limit in self._limits.items()}

    def _hook(self) -> None:
        """Wrap every handler with the hooks (``App.wrap``), once: the wrapper reads the
        app's hooks, pages and ``debug`` when it runs, so later registrations apply too."""
        if not self._hooked:
            self._hooked = True
            self.wrap(functools.partial(wrap_handler, self))  # type: ignore[attr-defined]

    # -- hooks, error pages, debug ---------------------------------------------------------------

    def before_request(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``@app.before_request``: ``fn(request)`` runs before every handler; a result other
        than None is the answer (the handler does not run)."""
        self.before_hooks.append(fn)
        self._hook()
        return fn

    def after_request(self, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        """``@app.after_request``: ``fn(request, response)`` runs after every handler (not for
        ``Later``); it returns the response to send, or None to keep it."""
        self.after_hooks.append(fn)
        self._hook()
        return fn

    def error(self, *statuses: int) -> Callable[[Handler], Handler]:
        """``@app.error(404)``: ``fn(request, error)`` makes the page for an error status (500:
        any exception of a handler). Its result gets that status unless it set one."""
        for status in statuses:
            if isinstance(status, bool) or not isinstance(status, int) \
                    or not 400 <= status <= 599:
                raise ValueError(f"@app.error takes 4xx/5xx statuses, not {status!r}")

        def register(fn: Handler) -> Handler:
            for status in statuses:
                self.error_pages[status] = fn
            self._hook()
            return fn

        return register

    @property
    def debug(self) -> bool:
        """Show a traceback page for a handler's exception. Development only."""
        return self._debug

    @debug.setter
    def debug(self, on: bool) -> None:
        self._debug = bool(on)
        if on:
            self._hook()

    # -- URLs -----------------------------------------------------------------------------------

    def url_for(self, name: str, **params: Any) -> str:
        """The path of the route named ``name`` (``route(..., name=)``, else the handler's
        function name) with ``params`` escaped into it; extra params become the query."""
        if name not in self._names:
            raise LookupError(f"no route named {name!r} (known: {', '.join(sorted(self._names))})")
        pattern = self._names[name]
        if pattern is None:
            raise LookupError(f"route name {name!r} is ambiguous: several routes use a "
                              "function of that name; give them route(..., name=...)")
        return build_url(pattern, params)

    def error_page(self, status: int, allowed: list[bytes]) -> Handler:
        """The handler the router gives for its own 404/405/501 once the app has hooks."""
        return router_error_handler(self, status, allowed)


def check_route(pattern: str, fn: Handler) -> None:
    """A converter the router does not know (``<float:x>`` would be a literal that never
    matches), a parameter named twice, or a handler that cannot take the request and the
    route's parameters fail here, at definition time, rather than as a 404 or a 500 on the
    first request."""
    literal = ROUTE_PARAM.sub("", pattern)
    if "<" in literal or ">" in literal:
        raise ValueError(f"route {pattern!r}: {literal[literal.find('<'):]!r} is not a "
                         "parameter; write <name>, <int:name> or <path:name>")
    params = [name for _, name in ROUTE_PARAM.findall(pattern)]
    if len(set(params)) != len(params):
        raise ValueError(f"route {pattern!r} names a parameter twice")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin or an odd callable: it will tell on its first call
    try:
        signature.bind(None, **dict.fromkeys(params))
    except TypeError as e:
        name = getattr(fn, "__qualname__", repr(fn))
        wanted = ", ".join(["request", *params])
        raise TypeError(f"handler {name} for {pattern!r} must take ({wanted}): {e}") from None


def tuple_response(result: tuple[Any, ...], to_response: Callable[[Any], Any]) -> Any:
    """A handler's ``(body, status)`` or ``(body, status, headers)`` as a Response
    (``to_response`` is app.py's, which this module cannot import)."""
    if len(result) not in (2, 3) or isinstance(result[0], tuple) or hasattr(result[0], "fields") \
            or isinstance(result[1], bool) or not isinstance(result[1], int):
        raise TypeError("handler returned a tuple; expected (body, status) or "
                        "(body, status, headers) with a body that is not a Response")
    if result[1] < 100 or result[1] > 999:
        raise ValueError(f"bad status {result[1]}")
    response = to_response(result[0])  # a new Response: the body is not one
    response.status = result[1]
    if len(result) == 3 and result[2]:
        headers = result[2]
        for name, value in headers.items() if isinstance(headers, dict) else headers:
            response.set_header(name, value)
    return response


def _segment(pattern: str, name: str, kind: str | None, value: Any) -> str:
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT_MAX:
            raise ValueError(f"url for {pattern!r}: {name} must be an int from 0 to {_INT_MAX}")
        return str(value)
    text = str(value)
    if not text:
        raise ValueError(f"url for {pattern!r}: {name} is empty")
    if kind == "path":
        return quote(text, safe="/")
    if "/" in text:
        raise ValueError(f"url for {pattern!r}: {name}={text!r} holds '/', which the router "
                         f"reads as a separator; make it <path:{name}>")
    return quote(text, safe="")


def build_url(pattern: str, params: dict[str, Any]) -> str:
    """The path that ``pattern`` matches with ``params``; the rest of ``params`` become the
    query string. Raises ValueError for a missing or unfit parameter."""
    parts, pos, used = [], 0, set()
    for m in ROUTE_PARAM.finditer(pattern):
        kind, name = m.group(1), m.group(2)
        if name not in params:
            raise ValueError(f"url for {pattern!r} needs {name}=")
        parts.append(quote(pattern[pos:m.start()], safe="/:@!$&'()*+,;=-._~"))
        parts.append(_segment(pattern, name, kind, params[name]))
        used.add(name)
        pos = m.end()
    parts.append(quote(pattern[pos:], safe="/:@!$&'()*+,;=-._~"))
    query = [(k, v) for k, v in params.items() if k not in used]
    url = "".join(parts)
    if query:
        url += "?" + urlencode(query, doseq=True)
    return url
