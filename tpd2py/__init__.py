"""tpd2py: a fast, strict, pure-Python HTTP/1.1 server. One thread, many greenlets, one epoll hub.

Handlers are plain blocking-style functions; when a socket call would block, only that
connection's greenlet waits. See README.md and docs/design.md.
"""

from .app import App, Later, Request, Response
from .channel import Channel, Message, Update, sse_event
from .comet import event_stream, long_poll, sse
from .errors import (
    ClientDisconnected,
    ConnectionClosed,
    HTTPError,
    Overloaded,
    ProtocolError,
    Timeout,
)
from .gsocket import Socket, connect
from .hub import get_hub, sleep, spawn
from .jsonbody import json_bytes
from .server import Config, Server, serve
from .threads import ThreadPool, run_in_thread
from .urls import redirect
from .websocket import WebSocket, WebSocketClosed

__all__ = [
    "App", "Request", "Response", "Later", "HTTPError", "ProtocolError", "ConnectionClosed",
    "ClientDisconnected", "Timeout", "Overloaded", "Socket", "connect", "get_hub", "sleep",
    "spawn", "Config", "Server", "serve", "Channel", "Message", "Update", "event_stream",
    "long_poll", "sse", "sse_event", "ThreadPool", "run_in_thread", "WebSocket",
    "WebSocketClosed", "redirect", "json_bytes",
]
__version__ = "0.1.0"
