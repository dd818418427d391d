"""Which flags the connection passes to the kernel: every recv/send says MSG_DONTWAIT (accepted
sockets stay in blocking mode), and the last response before a close says MSG_MORE so that
the FIN rides on its final segment. A recording socket (a thin proxy over a real socketpair)
makes the flags visible; the loopback test checks the segment count the kernel reports."""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

from bench.hello import app
from tpd2py.conn import Connection
from tpd2py.server import Server


class RecordingSocket:
    """A real socket that remembers the flags of each recv_into, send and sendmsg."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.flags: list[tuple[str, int]] = []
        self.chunk_sizes: list[list[int]] = []  # per send call, the sizes of its chunks

    def recv_into(self, buf: Any, nbytes: int = 0, flags: int = 0) -> int:
        self.flags.append(("recv", flags))
        return self._sock.recv_into(buf, nbytes, flags)

    def sendmsg(self, chunks: Any, ancdata: Any = (), flags: int = 0) -> int:
        self.flags.append(("send", flags))
        self.chunk_sizes.append([len(c) for c in chunks])
        return self._sock.sendmsg(chunks, ancdata, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        self.flags.append(("send", flags))
        self.chunk_sizes.append([len(data)])
        return self._sock.send(data, flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def serve_once(request: bytes, record: list[RecordingSocket] | None = None
               ) -> tuple[list[tuple[str, int]], bytes]:
    server = Server(app)
    ours, theirs = socket.socketpair()
    rec_sock = RecordingSocket(ours)
    if record is not None:
        record.append(rec_sock)
    theirs.sendall(request)
    conn = Connection(server.ctx, rec_sock)
    server.conns[ours.fileno()] = conn

    def go() -> None:
        conn.serve()
        server.hub.stop()

    server.hub.call_soon(go)
    server.hub.run()
    theirs.settimeout(5)
    data = b""
    while chunk := theirs.recv(65536):
        data += chunk
        if b"close" not in request and data.count(b"HTTP/1.1 ") == request.count(b"HTTP/1."):
            break
    theirs.close()
    if not conn.closed:
        conn.close()
    return rec_sock.flags, data


def test_every_syscall_is_nonblocking_and_only_the_last_send_holds_for_the_fin() -> None:
    flags, data = serve_once(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
                             b"GET /test?name=John HTTP/1.1\r\nHost: a\r\n"
                             b"Connection: close\r\n\r\n")
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert all(f & socket.MSG_DONTWAIT for _, f in flags)
    sends = [f for kind, f in flags if kind == "send"]
    assert sends == [socket.MSG_DONTWAIT | socket.MSG_MORE]  # both responses, then the close


def test_a_kept_alive_connection_never_holds_its_output() -> None:
    flags, data = serve_once(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert data.endswith(b"Hello, World!")
    assert [f for kind, f in flags if kind == "send"] == [socket.MSG_DONTWAIT]


def test_the_fin_arrives_with_the_response_on_loopback(server) -> None:
    """One segment carries a closing response and its FIN. The client's TCP_INFO counts what it
    received: the SYN-ACK, the ACK of its request (quick-ack at the start of a connection) and
    that segment; without MSG_MORE the FIN came in a fourth. A slow machine can split them
    (a delayed response): tolerated twice."""
    srv = server()
    counts = []
    for _ in range(3):
        with socket.create_connection(srv.address) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert srv.read_until_close(sock).statuses == [200]
            time.sleep(0.05)
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
            segs_in = struct.unpack_from("8B24I4Q2I", info)[37]
            counts.append(segs_in)
        if segs_in <= 3:
            break
    assert min(counts) <= 3, f"segments received per connection: {counts}"


def test_when_the_server_chooses_to_close_the_last_send_does_not_hold_output() -> None:
    """Review finding: MSG_MORE holds the final segment until the close; if the close turns into
    a reset (input came that nobody read), the whole response is lost. So it is used only when
    the client asked to close. Here the server closes because of ambiguous framing (TE with CL)."""
    flags, data = serve_once(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                             b"Content-Length: 5\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"abc")
    assert [f for kind, f in flags if kind == "send"] == [socket.MSG_DONTWAIT]


def test_accepted_sockets_never_wait_whatever_the_default_timeout(server) -> None:
    """Review finding: accepted sockets were left to CPython's default timeout; an app that set
    socket.setdefaulttimeout(T) made every recv that found nothing wait T seconds in the hub
    (one slowloris client stalled everyone). Their timeout is 0 now, set without a syscall."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(5.0)
    try:
        srv = server()
        with socket.create_connection(srv.address, timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHo")  # a head that has not ended: parked in recv
            for _ in range(500):
                timeouts = srv.call(lambda: [c.sock.gettimeout()
                                             for c in srv.server.conns.values()])
                if timeouts:
                    break
                time.sleep(0.01)
            assert timeouts == [0.0]
            sock.sendall(b"st: a\r\n\r\n")
            assert srv.read_replies(sock, 1)[0].status == 200
    finally:
        socket.setdefaulttimeout(previous)


def test_small_bodies_join_their_head_and_large_ones_are_not_copied() -> None:
    """A fixed body of at most 1 KiB goes in one chunk with its head (one `send`); a larger one
    stays a chunk of its own, never copied into the head (one `sendmsg` of head and body)."""
    small: list[RecordingSocket] = []
    serve_once(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", small)
    [[size]] = small[0].chunk_sizes
    assert size > len(b"Hello, World!")  # head and body together
    large: list[RecordingSocket] = []
    body = b"x" * 4096
    flags, data = serve_once(b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                             b"Content-Length: 4096\r\n\r\n" + body, large)
    assert data.endswith(body)
    [[head_size, body_size]] = large[0].chunk_sizes
    assert body_size == 4096 and head_size < 300
