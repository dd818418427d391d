"""One RESP (Redis protocol) connection on the hub, for ``redis_channel`` (the ``redis`` extra).

What it is: a socket waiting on the hub (``gsocket.Socket``: no thread, no blocking call),
commands packed by hiredis into one SendBuf, replies parsed by hiredis's sans-I/O reader.
Rules: commands are sent at once when the socket takes them; when it is full, one writer
greenlet waits for space, so a caller only ever waits for its reply. A send error closes
nothing itself: it is reported to ``on_error`` (the link decides). Switch points:
``reply``, ``request``, the writer greenlet; ``send`` never switches.
"""

from __future__ import annotations

import collections
import socket
from collections.abc import Callable
from typing import Any

import hiredis

from .errors import ConnectionClosed
from .gsocket import Socket, send_queued
from .hub import Hub
from .sendbuf import SendBuf

# Connecting (TCP to a machine that is gone) gives up after this long.
CONNECT_TIMEOUT = 2.0


class RedisError(Exception):
    """Redis answered a command with an error."""


class RespConnection:
    """One RESP connection on the hub: commands out through one SendBuf, replies parsed by
    hiredis. Commands are sent at once when the socket takes them; when it is full, one writer
    greenlet waits for space, so a caller only ever waits for its reply (the reply reader
    wakes callers from that one park). ``on_error`` hears of a failed send."""

    def __init__(self, hub: Hub, family: int, address: Any,
                 on_error: Callable[[RespConnection, BaseException], None]) -> None:
        raw = socket.socket(family, socket.SOCK_STREAM)
        if family != socket.AF_UNIX:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.hub = hub
        self.on_error = on_error
        self.sock = Socket(raw, hub, timeout=CONNECT_TIMEOUT)
        self.parser = hiredis.Reader()
        self.out = SendBuf()
        self.writing = False
        self.pending: collections.deque[Any] = collections.deque()
        try:
            self.sock.connect(address)
        except BaseException:
            self.sock.close()
            raise
        self.sock.timeout = None

    def close(self) -> None:
        self.sock.close()

    def send(self, *args: Any) -> None:
        """Queue one command and send it now if the socket takes it. Never switches; a send
        error closes the connection and is reported to ``on_error``."""
        out = self.out
        out.add(hiredis.pack_command(args))
        if self.writing:
            return
        try:
            if send_queued(self.sock.sock, out, 0):
                return
        except OSError as e:
            self.on_error(self, e)
            return
        self.writing = True
        self.hub.spawn(self._write)

    def _write(self) -> None:
        try:
            self.sock.flush(self.out)
        except (OSError, ConnectionClosed) as e:
            self.on_error(self, e)
        finally:
            self.writing = False

    def reply(self) -> Any:
        """The next reply (a Redis error reply raises RedisError). May switch to the hub."""
        parser = self.parser
        while True:
            value = parser.gets()
            if value is not False:
                if isinstance(value, hiredis.ReplyError):
                    raise RedisError(str(value))
                return value
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionClosed("Redis closed the connection")
            parser.feed(data)

    def request(self, *args: Any) -> Any:
        """Send one command and return its reply (one greenlet only). May switch to the hub."""
        self.send(*args)
        return self.reply()
