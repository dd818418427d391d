"""The tpd2py exception hierarchy.

Rules: client protocol errors carry the HTTP status to answer with (a canned 4xx/5xx, then close);
cancellation and timeouts thrown into greenlets derive from BaseException so that an application's
`except Exception` cannot swallow them. Imports nothing from the package (the bottom layer).
``ClientTimeout`` and ``CloseConnection`` are the connection wing's own (conn.py, exchange.py);
they are not exported.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer broke HTTP/1.1 framing or grammar: answer `status` (with `reason` for logs), close.

    Raised by the sans-I/O parser (`http11.py`); the connection loop turns it into a pre-encoded
    error response and closes the connection without reading further requests.
    """

    __slots__ = ("status", "reason")

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.status} {self.reason}"


class HubError(RuntimeError):
    """A bug in how the hub is used (two readers on one fd, waiting from the hub itself): loud."""


class ConnectionClosed(ConnectionError):
    """The socket was closed (by us or the peer) while a greenlet waited on it or used it."""


class Cancelled(BaseException):
    """Thrown into a greenlet to stop it; BaseException so `except Exception` cannot swallow it."""


class Timeout(BaseException):
    """A deadline passed while a greenlet waited; BaseException for the same reason."""


class ClientDisconnected(Cancelled):
    """Thrown into a parked handler when its client hangs up; safe to catch."""


class HTTPError(Exception):
    """Raise from a handler to answer with ``status`` (e.g. ``raise HTTPError(404)``): the
    ``message`` (default: the status and its reason phrase) as text/plain, with ``headers``
    (``app.http_error_response`` builds it)."""

    def __init__(self, status: int, message: str | bytes | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.headers = headers


class Overloaded(HTTPError):
    """The server sheds load instead of queueing without limit (SEDA's admission control):
    answered ``503 Service Unavailable`` with ``Retry-After`` (seconds). Raised by
    ``run_in_thread`` when its pool and queue are full; a handler may raise it too."""

    def __init__(self, message: str | None = None, retry_after: int = 1) -> None:
        super().__init__(503, message or "503 Service Unavailable: overloaded, retry later\n",
                         {"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class ClientTimeout(Timeout):
    """Internal: one of a connection's own deadlines passed while it read from its client (the
    server's sweep threw Timeout into the wait). Answered with 408. A Timeout from anything else
    a handler waited on is the application's error."""


class CloseConnection(BaseException):
    """Internal: stop serving this connection now (its error response, if any, is queued).
    BaseException: an application's ``except Exception`` around a flush must not take it."""
