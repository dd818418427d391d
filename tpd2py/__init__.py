"""tpd2py: a fast, strict, pure-Python HTTP/1.1 server. One thread, many greenlets, one epoll hub.

Handlers are plain blocking-style functions; when a socket call would block, only that
connection's greenlet waits. See README.md and docs/design.md.
"""

from .app import App, Request, Response
from .errors import ClientDisconnected, ConnectionClosed, HTTPError, ProtocolError, Timeout
from .gsocket import Socket, connect
from .hub import get_hub, sleep, spawn
from .server import Config, Server, serve

__all__ = [
    "App", "Request", "Response", "HTTPError", "ProtocolError", "ConnectionClosed",
    "ClientDisconnected", "Timeout", "Socket", "connect", "get_hub", "sleep", "spawn",
    "Config", "Server", "serve",
]
__version__ = "0.1.0"

# Comet and blocking work (comet.py, threads.py, watchdog.py).
from .comet import Channel, Message, Update, event_stream, long_poll, sse, sse_event  # noqa: E402
from .errors import Overloaded  # noqa: E402
from .threads import ThreadPool, run_in_thread  # noqa: E402

__all__ += [
    "Channel", "Message", "Update", "event_stream", "long_poll", "sse", "sse_event",
    "Overloaded", "ThreadPool", "run_in_thread",
]
