"""A small pure-Python HTTP/1.1 load generator, for dry runs where wrk and ab are absent (CI).

It is not a measuring instrument: one Python thread is slower than most servers, so its figures say
more about itself. It exists so that the harness runs end to end anywhere and cannot rot.

Closed loop: each connection writes `depth` requests at once and waits for all their answers before
writing again. With keepalive=False every request goes on a new connection with `Connection: close`,
as ab does without -k. Bounded by a duration and by a request count, whichever comes first.
Responses must carry Content-Length (every server in the bench contract does).
"""

from __future__ import annotations

import errno
import selectors
import socket
import time

MAX_REQUESTS = 2_000_000


class _Conn:
    __slots__ = ("sock", "connected", "buffer", "waiting", "sent_at")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.connected = False
        self.buffer = b""
        self.waiting = 0
        self.sent_at = 0.0


def _take_response(buffer: bytes) -> tuple[int, bytes] | None:
    """(status, rest of the buffer) when one whole response is buffered, else None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buffer[:end].split(b"\r\n")
    status = int(head[0].split()[1])
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if len(buffer) < end + 4 + length:
        return None
    return status, buffer[end + 4 + length:]


def _percentile(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(port: int, path: str, connections: int, duration: float, depth: int = 1,
        keepalive: bool = True, max_requests: int = MAX_REQUESTS) -> dict:
    """Load 127.0.0.1:port; return the same fields as the wrk and ab parsers."""
    header = "" if keepalive else "Connection: close\r\n"
    burst = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{header}\r\n" * depth).encode()
    selector = selectors.DefaultSelector()
    latencies: list[float] = []
    errors = {"connect": 0, "read": 0, "status": 0}
    done = 0
    start = time.monotonic()
    deadline = start + duration

    def open_connection() -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(("127.0.0.1", port))
        if code not in (0, errno.EINPROGRESS):
            errors["connect"] += 1
            sock.close()
            return
        selector.register(sock, selectors.EVENT_WRITE, _Conn(sock))

    def send(conn: _Conn) -> None:
        conn.sock.send(burst)  # a few hundred bytes always fit an empty socket buffer
        conn.waiting = depth
        conn.sent_at = time.monotonic()
        selector.modify(conn.sock, selectors.EVENT_READ, conn)

    def close(conn: _Conn, reopen: bool) -> None:
        selector.unregister(conn.sock)
        conn.sock.close()
        if reopen and time.monotonic() < deadline:
            open_connection()

    for _ in range(connections):
        open_connection()
    while done < max_requests and selector.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        for key, _mask in selector.select(min(remaining, 0.5)):
            conn: _Conn = key.data
            if not conn.connected:
                if conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    errors["connect"] += 1
                    close(conn, reopen=True)
                    continue
                conn.connected = True
                send(conn)
                continue
            try:
                data = conn.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                errors["read"] += 1
                close(conn, reopen=True)
                continue
            conn.buffer += data
            now = time.monotonic()
            while conn.waiting:
                taken = _take_response(conn.buffer)
                if taken is None:
                    break
                status, conn.buffer = taken
                conn.waiting -= 1
                done += 1
                latencies.append(now - conn.sent_at)
                if status >= 400:
                    errors["status"] += 1
            if conn.waiting == 0:
                if keepalive and now < deadline:
                    send(conn)
                else:
                    close(conn, reopen=not keepalive)
    elapsed = time.monotonic() - start
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    selector.close()
    latencies.sort()
    p50, p99 = _percentile(latencies, 0.50), _percentile(latencies, 0.99)
    return {
        "tool": "pyload",
        "requests": done,
        "seconds": round(elapsed, 3),
        "rps": done / elapsed if elapsed else 0.0,
        "p50_ms": None if p50 is None else p50 * 1000,
        "p99_ms": None if p99 is None else p99 * 1000,
        "errors": sum(errors.values()),
        "error_detail": {kind: count for kind, count in errors.items() if count},
    }
