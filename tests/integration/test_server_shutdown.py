"""Graceful shutdown: SIGTERM/SIGINT to ``python -m tpd2py`` and ``Server.shutdown()`` in-process.

In-flight requests complete, idle keep-alive connections are closed at once, new connections
are refused, and the process exits 0. Requests are known to be in flight because the handler
streams a first chunk before it sleeps; nothing here sleeps to wait.
"""

from __future__ import annotations

import signal
import socket

import pytest

SLOW = b"GET /slow-stream?t=0.5 HTTP/1.1\r\nHost: a\r\n\r\n"
HELLO = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def _start_in_flight(srv) -> tuple[socket.socket, bytes]:
    """Open a connection whose handler is running (its first chunk arrived)."""
    sock = srv.connect()
    sock.sendall(SLOW)
    got = b""
    while b"start\n" not in got:
        more = sock.recv(4096)
        assert more, "closed before the handler started"
        got += more
    return sock, got


def _idle_connection(srv) -> socket.socket:
    sock = srv.connect()
    sock.sendall(HELLO)
    srv.read_replies(sock, 1)
    return sock


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_finishes_in_flight_closes_idle_and_exits_0(cli_server, signum):
    srv = cli_server("conftest:app")
    idle = _idle_connection(srv)
    busy, got = _start_in_flight(srv)
    srv.proc.send_signal(signum)

    assert srv.read_until_close(idle).raw == b"", "idle keep-alive connection closed, no bytes"
    idle.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(srv.address, timeout=5).close()

    rest = srv.read_until_close(busy)
    busy.close()
    rest.raw = got + rest.raw
    (reply,) = rest.replies
    assert reply.status == 200
    assert reply.body == b"start\nend\n", "the in-flight request must complete"
    assert not rest.reset
    assert srv.proc.wait(10) == 0


def test_sigterm_with_no_connections_exits_0(cli_server):
    srv = cli_server("bench.hello:app")
    assert srv.get("/").body == b"Hello, World!"
    assert srv.terminate() == 0


def test_sigterm_cuts_requests_that_outlive_the_grace_period(cli_server):
    srv = cli_server("conftest:app", "--grace", "0.3")
    sock = srv.connect()
    sock.sendall(b"GET /slow-stream?t=30 HTTP/1.1\r\nHost: a\r\n\r\n")
    got = b""
    while b"start\n" not in got:
        got += sock.recv(4096)
    srv.proc.send_signal(signal.SIGTERM)
    rest = srv.read_until_close(sock)
    sock.close()
    assert b"end\n" not in rest.raw
    assert srv.proc.wait(10) == 0


def test_in_process_shutdown_is_graceful(srv):
    idle = _idle_connection(srv)
    busy, got = _start_in_flight(srv)
    srv.server.hub.call_soon_threadsafe(srv.server.shutdown)

    assert srv.read_until_close(idle).raw == b""
    idle.close()
    rest = srv.read_until_close(busy)
    busy.close()
    rest.raw = got + rest.raw
    assert rest.replies[0].body == b"start\nend\n"
    srv.thread.join(10)
    assert not srv.thread.is_alive(), "serve_forever must return after shutdown()"
    assert srv.server.conns == {}


def test_request_after_shutdown_started_is_answered_with_close(srv):
    # A kept-alive connection busy when shutdown starts gets its current response, marked
    # Connection: close, and nothing more is read from it.
    busy, got = _start_in_flight(srv)
    busy.sendall(HELLO)  # pipelined behind the slow one
    srv.server.hub.call_soon_threadsafe(srv.server.shutdown)
    rest = srv.read_until_close(busy)
    busy.close()
    rest.raw = got + rest.raw
    replies = rest.replies
    assert replies[0].body == b"start\nend\n"
    # The pipelined request may be answered (it was already read) or dropped; if answered,
    # its response must announce the close that follows.
    assert len(replies) <= 2
    if len(replies) == 2:
        assert replies[1].body == b"Hello, World!"
        assert replies[1].header("Connection") == "close"
