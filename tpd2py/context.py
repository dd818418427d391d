"""What every connection of one server shares: its configuration, hub, app, pools and clocks.

Rules: the connection wing (conn.py, exchange.py) reaches the rest of the server only through
one ``Context``; ``server.py`` builds it and is never on the per-request path. The context is
plain data plus ``forget``, the server's callback for a connection that closes.
Never does I/O, never switches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .accesslog import AccessLog, timed
from .headcache import HeadCache
from .http11 import Limits, parse_head
from .inbuf import BufferPool
from .wire import DateCache

if TYPE_CHECKING:
    from .app import App
    from .hub import Hub


class ExchangeApp(Protocol):
    """An app that answers its requests itself: each connection gets ``new_exchange()`` in
    place of the router's ``exchange.Exchange`` (wsgi.WSGI is one)."""

    new_exchange: Callable[[], Any]


@dataclass
class Config:
    """Limits and timeouts; every default says why."""

    # Absolute time to receive a whole request head, from its first byte (slowloris).
    header_timeout: float = 10.0
    # Longer than common load balancers' idle timeouts (60 s), so they close first.
    keepalive_timeout: float = 75.0
    # A body read may stall at most this long...
    body_timeout: float = 30.0
    # ...and must average at least this many bytes/second (each byte buys 1/rate seconds).
    min_body_rate: float = 1024.0
    # A full socket that does not drain in this long is a dead or hostile reader.
    write_timeout: float = 30.0
    max_body_size: int = 16 * 1024 * 1024
    # The C10K figure with half again as headroom: at 0.7 KiB per idle connection 15,000 cost
    # ~10 MiB, and the default soft limit on open files (1,024) bites long before; raise both
    # together for more.
    max_connections: int = 10_000 + 5_000
    # Time in-flight requests get to finish after SIGTERM/SIGINT.
    grace: float = 10.0
    # Input buffer size; a head may grow it up to limits.max_header_bytes.
    buffer_size: int = 16384
    # Reuse the parse of a byte-identical request head (tpd2py/headcache.py): changes nothing
    # but speed; off to measure the parser alone.
    head_cache: bool = True
    limits: Limits = field(default_factory=Limits)
    # Log the stack of a handler that runs this many seconds without switching (it blocks
    # everyone). None: 0.1 s in debug (python -X dev, or tpd2py logging at DEBUG), else off; 0: off.
    watchdog: float | None = None


class Context:
    """One server's shared state, as the connections see it."""

    __slots__ = ("hub", "config", "limits", "header_timeout", "keepalive_timeout", "app", "date",
                 "access_log", "buffers", "parse_head", "draining", "requests", "sendmsg_calls",
                 "forget", "new_exchange")

    def __init__(self, hub: Hub, config: Config, app: App | ExchangeApp, access_log: Any = None,
                 forget: Callable[[Any], None] | None = None, *,
                 new_exchange: Callable[[], Any]) -> None:
        self.hub = hub
        self.config = config
        # Read on every request: one attribute hop each instead of two. (So the config is read
        # once, when the server is built: change it before, not after.)
        self.limits = config.limits
        self.header_timeout = config.header_timeout
        self.keepalive_timeout = config.keepalive_timeout
        # An App for the router's Exchange; for an ExchangeApp, what its own exchange reads.
        self.app: Any = app
        self.date = DateCache()
        self.access_log = AccessLog(access_log, self.date) if access_log is not None else None
        self.buffers = BufferPool(config.buffer_size, config.limits.max_header_bytes)
        # The request-head parser: parse_head itself, or through a HeadCache.
        self.parse_head = HeadCache().parse if config.head_cache else parse_head
        # Set by the server's shutdown: finish the current request, keep nothing alive.
        self.draining = False
        self.requests = 0
        self.sendmsg_calls = 0  # send and sendmsg calls on client sockets (tests, statistics)
        # Called by a connection as it closes (the server's registry); nothing by default.
        self.forget: Callable[[Any], None] = forget or _ignore
        # What answers one connection's requests, called once per connection: the router's
        # Exchange, or the app's own (an ExchangeApp, e.g. wsgi.WSGI). server.py passes it
        # (this module does not import the exchange, which imports it).
        # With a log, one that notes when each request starts (its line's duration).
        self.new_exchange = timed(new_exchange) if access_log is not None else new_exchange


def _ignore(conn: Any) -> None:
    pass
