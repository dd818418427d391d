"""The cooperative socket and the two primitives every socket user calls.

Rules:
- The readiness rule lives here. The hub's fds are edge-triggered: a reader clears
  ``FdRecord.read_pending`` before each receive, and a receive that filled its buffer sets it
  again (bytes may remain in the kernel, and no new edge will announce them). ``recv_nowait``
  keeps that rule; nothing else outside the hub writes ``read_pending``.
- There is one send path: ``send_queued`` sends, without ever waiting, what a
  ``SendBuf`` holds (one chunk: ``send``; more: ``sendmsg`` of at most ``IOV_MAX`` iovecs;
  partial: ``consume`` and go on until EAGAIN); ``sendfile_nowait`` is its twin for a file. The
  server's connections, their resume after parking and outbound ``Socket``s all call them,
  and wait on the hub themselves when they cannot go on.
- The transport seam: both primitives take any object with the socket's ``recv_into``,
  ``send`` and ``sendmsg`` (flags included) that raises ``BlockingIOError`` when it must wait.
  A plain connection passes its kernel socket itself (no Python layer on the hot path); a TLS
  transport provides the same methods over ``ssl.SSLObject`` and memory BIOs, so the parser,
  the exchange and the handlers never know whether the bytes were encrypted.
- Every call on a server connection passes ``DONTWAIT``: accepted fds stay in blocking mode
  (O_NONBLOCK would cost an ioctl per connection), so a call without it would block the hub.
``Socket``: non-blocking from birth; every method first makes the syscall and only on
``BlockingIOError`` parks the calling greenlet, so data that is already there costs no trip
through the hub. Closing: mark closed, wake waiters with ConnectionClosed, unregister, close.
Deadlines: ``timeout`` (seconds, or None) bounds each blocking call; expiry raises ``Timeout``.
Switch points: the ``Socket`` methods that say so. ``recv_nowait``/``send_queued`` never switch.
"""

from __future__ import annotations

import _socket
import contextlib
import errno
import os
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from greenlet import getcurrent

from .errors import ConnectionClosed, Timeout
from .hub import FdRecord, Hub, get_hub
from .sendbuf import IOV_MAX, Chunk, SendBuf

T = TypeVar("T")

DONTWAIT = socket.MSG_DONTWAIT
# The last send before a close: MSG_MORE holds the final segment so the FIN rides on it.
LAST = socket.MSG_DONTWAIT | socket.MSG_MORE


def recv_nowait(rec: FdRecord, sock: Any, view: memoryview) -> int:
    """One receive into ``view`` that never waits: the bytes read (0 at EOF), or -1 when
    nothing is there yet (wait for ``rec`` to become readable, then call again)."""
    rec.read_pending = False
    try:
        n: int = sock.recv_into(view, 0, DONTWAIT)
    except BlockingIOError:
        return -1
    if n == len(view):
        rec.read_pending = True  # maybe more in the kernel: no new edge will say so
    return n


def recv_bytes_nowait(rec: FdRecord, sock: Any, buffers: Any) -> bytes | None:
    """``recv_nowait`` into a new bytes object of at most ``buffers.size`` bytes, for a parser
    that slices bytes faster than a memoryview: b"" at EOF, None when nothing is there yet. A
    kernel socket receives into the bytes object itself; another transport (TLS, whose
    ``recv`` is the seam's hang-up peek) through ``recv_nowait`` into a buffer lent by
    ``buffers`` (an ``inbuf.BufferPool``) for this call, and one copy."""
    size = buffers.size
    if type(sock) is not _socket.socket:
        buf, view = buffers.take()
        try:
            n = recv_nowait(rec, sock, view)
            return None if n < 0 else view[:n].tobytes()
        finally:
            buffers.give(buf, view)
    rec.read_pending = False
    try:
        data: bytes = sock.recv(size, DONTWAIT)
    except BlockingIOError:
        return None
    if len(data) == size:
        rec.read_pending = True  # maybe more in the kernel: no new edge will say so
    return data


def send_queued(sock: Any, out: SendBuf, flags: int = DONTWAIT) -> bool:
    """Send what ``out`` holds without waiting; returns whether it is all sent. False means
    the socket is full (EAGAIN): only then may the caller wait for write space, because only
    then will an edge announce it. What went out is dropped from ``out`` (a partial chunk
    becomes a view of its rest). Errors other than EAGAIN propagate."""
    chunks = out.chunks
    while True:
        try:
            if len(chunks) == 1:
                sent = sock.send(chunks[0], flags)  # one chunk: no iovec array to build
            elif len(chunks) <= IOV_MAX:
                sent = sock.sendmsg(chunks, (), flags)
            else:
                sent = sock.sendmsg(chunks[:IOV_MAX], (), flags)
        except BlockingIOError:
            return False
        if sent == out.size:
            chunks.clear()
            out.size = 0
            return True
        # A partial send: the rest of a batch of IOV_MAX chunks, or a full socket (then the
        # next attempt says EAGAIN). MSG_MORE stays on: more of this response follows.
        out.consume(sent)


def sendfile_nowait(sock: Any, fd: int, offset: int, count: int) -> int:
    """One attempt to send ``count`` bytes of file ``fd`` from ``offset`` by the kernel,
    never waiting: the bytes sent (0: the file ended early), or -1 when the socket is full.
    sendfile takes no MSG_DONTWAIT: call ``make_nonblocking`` on the socket first (accepted
    fds are left blocking: see DONTWAIT). Never switches."""
    try:
        return os.sendfile(sock.fileno(), fd, offset, count)
    except BlockingIOError:
        return -1


# The socket types the kernel can send a file through: a plain socket, not a wrapper that
# transforms the bytes (a TLS transport), which subclasses or imitates them.
_SENDFILE_TYPES = (socket.socket, socket.socket.__mro__[1])
# What one read of the fallback loop takes from a file: bounded memory per download.
READ_PIECE = 64 * 1024


def can_sendfile(sock: Any) -> bool:
    """Whether ``sendfile`` may write ``sock``'s fd directly: only for a plain socket object
    (exact type), never for a transport that encrypts or frames what it sends."""
    return type(sock) in _SENDFILE_TYPES


def make_nonblocking(sock: Any) -> None:
    """Set O_NONBLOCK on the socket's fd, for the calls that have no MSG_DONTWAIT (sendfile).
    Once set it stays: a later file response on the connection costs one fcntl, not two."""
    fd = sock.fileno()
    if os.get_blocking(fd):
        os.set_blocking(fd, False)


def peek_hangup(rec: FdRecord, sock: Any) -> bool:
    """Whether the peer has hung up (EOF or an error), learnt without consuming input; when
    anything is there (input or the EOF), ``rec.read_pending`` is set for the next reader.
    Never switches."""
    try:
        data = sock.recv(1, socket.MSG_PEEK | DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:
        data = b""
    rec.read_pending = True
    return not data


def watch_pending(hub: Hub, rec: FdRecord) -> None:
    """Put a record made with ``armed=False`` into epoll, assuming input may have come while
    it was out (no edge announced it): the next reader tries a receive first. Never switches."""
    hub.arm(rec)
    rec.read_pending = True


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
        """Send everything in ``buf`` with as few syscalls as possible. May switch to the hub."""
        while buf.size:
            if self.rec.closed:
                raise ConnectionClosed()
            if not send_queued(self.sock, buf, 0):
                self._wait(self.hub.wait_writable)

    def connect(self, address: Any) -> None:
        """Connect without blocking other greenlets. May switch to the hub."""
        err = self.sock.connect_ex(address)
        if err == 0:
            return
        if err not in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
            raise OSError(err, f"connect to {address!r} failed")
        self._wait(self.hub.wait_writable)
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
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
