"""The cooperative socket: try the syscall, on EAGAIN wait on the hub, retry.

Rules: the socket is non-blocking from birth; every method first makes the syscall and only
on ``BlockingIOError`` parks the calling greenlet (``wait_readable``/``wait_writable``), so data
that is already there costs no trip through the hub. Methods that may switch to the hub say so.
Closing: mark closed, wake waiters with ConnectionClosed, unregister from epoll, then close.
Deadlines: ``timeout`` (seconds, or None) bounds each blocking call; expiry raises ``Timeout``.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import ConnectionClosed, Timeout
from .hub import FdRecord, Hub, get_hub
from .sendbuf import Chunk, SendBuf

T = TypeVar("T")


class Socket:
    """A non-blocking socket whose blocking-style methods park only the calling greenlet."""

    __slots__ = ("sock", "rec", "hub", "timeout")

    def __init__(self, sock: socket.socket, hub: Hub | None = None,
                 timeout: float | None = None) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.hub = hub or get_hub()
        self.rec: FdRecord = self.hub.register(sock.fileno())
        self.timeout = timeout

    def fileno(self) -> int:
        return self.sock.fileno()

    def _wait(self, waiter: Callable[[FdRecord], None]) -> None:
        if self.timeout is None:
            waiter(self.rec)
            return
        from greenlet import getcurrent

        timer = self.hub.call_later(self.timeout, self.hub.throw, getcurrent(), Timeout())
        try:
            waiter(self.rec)
        finally:
            timer.cancel()

    def _retry_read(self, call: Callable[..., T], *args: Any) -> T:
        rec = self.rec
        while True:
            if rec.closed:
                raise ConnectionClosed()
            rec.read_pending = False
            try:
                return call(*args)
            except BlockingIOError:
                self._wait(self.hub.wait_readable)

    def recv(self, size: int) -> bytes:
        """Receive up to ``size`` bytes (b"" at EOF). May switch to the hub."""
        return self._retry_read(self.sock.recv, size)

    def recv_into(self, buffer: Any, nbytes: int = 0) -> int:
        """Receive into ``buffer``. May switch to the hub."""
        return self._retry_read(self.sock.recv_into, buffer, nbytes)

    def accept(self) -> tuple[socket.socket, Any]:
        """Accept one connection (returned non-blocking). May switch to the hub."""
        conn, addr = self._retry_read(self.sock.accept)
        conn.setblocking(False)
        return conn, addr

    def sendall(self, data: Chunk) -> None:
        """Send all of ``data``. May switch to the hub."""
        buf = SendBuf()
        buf.add(data)
        self.flush(buf)

    def flush(self, buf: SendBuf) -> None:
        """Send everything in ``buf`` with as few sendmsg calls as possible. May switch."""
        if self.rec.closed:
            raise ConnectionClosed()
        buf.flush(self.sock.sendmsg, lambda: self._wait(self.hub.wait_writable))

    def connect(self, address: Any) -> None:
        """Connect without blocking other greenlets. May switch to the hub."""
        err = self.sock.connect_ex(address)
        if err == 0:
            return
        import errno

        if err not in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
            raise OSError(err, f"connect to {address!r} failed")
        self._wait(self.hub.wait_writable)
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            import os

            raise OSError(err, os.strerror(err))

    def shutdown(self, how: int) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(how)

    def close(self) -> None:
        """Mark closed, wake waiters with ConnectionClosed, unregister, close. Never switches."""
        if not self.rec.closed:
            self.hub.unregister(self.rec)
        self.sock.close()

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(host: str, port: int, timeout: float | None = 30.0) -> Socket:
    """Open a TCP connection from inside a handler without blocking the other connections.

    ``timeout`` bounds the connect and each later blocking call (raises ``Timeout``).
    Name resolution uses getaddrinfo, which blocks: pass a numeric address on hot paths.
    May switch to the hub.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    last: OSError | None = None
    for family, type_, proto, _name, addr in infos:
        raw = socket.socket(family, type_, proto)
        if family in (socket.AF_INET, socket.AF_INET6):
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s = Socket(raw, timeout=timeout)
        try:
            s.connect(addr)
            return s
        except OSError as e:
            s.close()
            last = e
    raise last or OSError(f"cannot connect to {host}:{port}")
