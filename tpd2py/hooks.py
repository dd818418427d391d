"""Before/after-request hooks, error pages and the debug traceback page.

Rules:
- An app with none of these runs its handlers as registered: the router holds the handler
  itself and nothing here is called (zero cost per request). Registering the first hook, error
  page or ``debug`` makes the app wrap every handler, once (``App.wrap``, the seam that
  ``compress.Gzip`` uses too): the wrapper below runs the before-hooks, the handler,
  ``to_response`` and the after-hooks, and maps exceptions to the app's error pages.
- A before-hook that returns something other than None answers the request itself (the
  handler does not run); an after-hook gets ``(request, response)`` and returns the response
  to send (or None to keep it). A handler that returns ``Later`` answers after the hooks have
  run, so after-hooks do not see its response. The router's own 404/405/501 go through the
  same wrapper once the app has any hook, page or ``debug`` (``router_error_handler``): the
  answer is the canned one unless a hook or page changes it.
- Error pages: ``@app.error(404)`` is called with ``(request, error)`` for an ``HTTPError`` of
  that status (the router's own 404/405/501 included); ``@app.error(500)`` for any other
  exception of a handler or hook, after it is logged once with the request line and peer. A
  page's result gets the error's status unless it set another one, and the error's headers
  (``Allow``...). A page that itself fails is logged and the canned answer goes out instead.
- ``debug``: an exception becomes a 500 page with the traceback. Only for development: the
  CLI says so when ``--debug`` is on.
- The client's own faults and the server's control flow (``ProtocolError``, ``Timeout``,
  ``ConnectionClosed``, ``CloseConnection``) pass through untouched: the exchange owns them.
"""

from __future__ import annotations

import functools
import html
import logging
import traceback
from collections.abc import Callable
from typing import Any

from .errors import ConnectionClosed, HTTPError, ProtocolError

# This module sits below app.py (which imports it through webapp.py), so it takes what it needs
# of the response side from the app: ``app.to_response``, ``app.later_type`` and
# ``app.error_response`` (app.py's own, named on App).
App = Any
Request = Any
Response = Any
Handler = Callable[..., Any]

log = logging.getLogger("tpd2py.app")

# Each request's session (sessions.py; ``Request.session`` reads it), keyed by the Request
# itself: a side table rather than a slot on Request, which would cost every request, session
# or not, ~40 instructions (bench/instructions.py). Only an app with hooks fills it (the
# Sessions before-hook), and the wrappers below remove the entry once the handler and the
# after-hooks are done; a streamed body keeps it, read-only, until it ends (_SessionKept).
SESSIONS: dict[Any, Any] = {}

__all__ = ["wrap_handler", "router_error_handler", "SESSIONS"]


def _name(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _line(request: Request) -> str:
    query = request.raw_query
    target = request.raw_path + (b"?" + query if query else b"")
    return f"{request.method} {target.decode('latin-1')} {request.version}"


def _page(app: App, request: Request, error: BaseException, status: int) -> Response | None:
    """The app's page for ``status``, or None when it has none or it failed (logged)."""
    page = app.error_pages.get(status)
    if page is None:
        return None
    try:
        response = app.to_response(page(request, error))
        if response.status == 200:
            response.status = status
        headers = getattr(error, "headers", None)
        if headers:
            for name, value in headers.items():
                response.set_header(name, value)
        return response
    except Exception:
        log.exception("handler error in the error page %s for %s", _name(page), _line(request))
        return None


def _debug_page(app: App, request: Request, error: BaseException) -> Response:
    text = "".join(traceback.format_exception(error))
    body = (f"<!doctype html><title>500 {html.escape(type(error).__name__)}</title>"
            f"<h1>500: {html.escape(type(error).__name__)}</h1>"
            f"<p>{html.escape(_line(request))}</p><pre>{html.escape(text)}</pre>"
            "<p>tpd2py debug mode: never in production.</p>")
    return app.to_response((body, 500, {"Cache-Control": "no-store"}))


def _fail(app: App, fn: Handler, request: Request, error: Exception) -> Response:
    """An exception of a handler or hook: logged once, then the debug page, the app's 500 page
    or, without either, raised on for the exchange's canned 500."""
    if isinstance(error, HTTPError):
        response = _page(app, request, error, error.status)
        return response if response is not None else app.error_response(error)
    if isinstance(error, (ProtocolError, ConnectionClosed)):
        raise error  # the client's fault, or a connection gone: the exchange answers
    if not app.debug and 500 not in app.error_pages:
        raise error
    log.exception("handler error in %s for %s from %s", _name(fn), _line(request),
                  request.peer)
    if app.debug:
        return _debug_page(app, request, error)
    response = _page(app, request, error, 500)
    if response is None:
        raise error
    return response


def wrap_handler(app: App, fn: Handler) -> Handler:
    """``fn`` run with the app's hooks and error pages (read when called, so hooks added later
    apply too)."""

    name = _name(fn)

    @functools.wraps(fn)
    def handler(request: Request, **params: Any) -> Any:
        try:
            try:
                result = None
                for hook in app.before_hooks:
                    result = hook(request)
                    if result is not None:
                        break
                else:
                    result = fn(request, **params)
                if type(result) is app.later_type:
                    SESSIONS.pop(request, None)  # answered later, after the hooks
                    return result
                response = app.to_response(result)
            except Exception as e:  # noqa: BLE001 - mapped by _fail, re-raised when unmapped
                response = _fail(app, fn, request, e)
            try:
                for after in app.after_hooks:
                    replaced = after(request, response)
                    if replaced is not None:
                        response = app.to_response(replaced)
            except Exception as e:  # noqa: BLE001
                response = _fail(app, fn, request, e)
        except BaseException:
            SESSIONS.pop(request, None)
            raise
        session = SESSIONS.pop(request, None)  # the request's session, if Sessions gave it one
        if session is not None and _streamed(response.body):
            response.body = _SessionKept(response.body, request, session, name)
        return response

    return handler


def _streamed(body: Any) -> bool:
    """Whether ``body`` is produced after the handler returned (an iterator, not bytes, a list
    of chunks or a file)."""
    return not isinstance(body, (bytes, list)) and hasattr(body, "__iter__")


class _SessionKept:
    """A streamed body whose request keeps its session, read-only, until the body is done: a
    generator runs after the handler returned and after the session was saved (the cookie
    goes in the response's head, which is sent before the first chunk), so it may read the
    session but a change raises, naming the handler, instead of being lost. The entry leaves
    SESSIONS when the exchange closes the body or, if it never does (the body was dropped
    unsent, or wrapped by a later wrapper that never ran it), when this object is freed."""

    __slots__ = ("_body", "_items", "_request")

    def __init__(self, body: Any, request: Request, session: Any, handler: str) -> None:
        session.spent = handler
        SESSIONS[request] = session
        self._body, self._items, self._request = body, iter(body), request

    def __iter__(self) -> _SessionKept:
        return self

    def __next__(self) -> Any:
        return next(self._items)

    def close(self) -> None:
        SESSIONS.pop(self._request, None)
        close = getattr(self._body, "close", None)
        if close is not None:
            close()

    def __del__(self) -> None:
        SESSIONS.pop(self._request, None)


def router_error_handler(app: App, status: int, allowed: list[bytes]) -> Handler:
    """A handler for the router's own 404/405/501 in an app with hooks, pages or debug: the
    error goes through the same wrapper as a handler's (before-hooks, the page if any,
    after-hooks), so a session or a security header works there too. Without a page the
    answer is ``app.error_response``'s, the same bytes as the exchange's canned one."""
    key = (status, tuple(allowed))
    cached = app.error_handlers.get(key)
    if cached is not None:
        return cached  # made once per (status, Allow): a scanner's 404s make no closures
    headers = {"Allow": ", ".join(m.decode() for m in allowed)} if allowed else None

    def no_route(request: Request) -> Response:
        raise HTTPError(status, headers=headers)

    handler = app.error_handlers[key] = wrap_handler(app, no_route)
    return handler
