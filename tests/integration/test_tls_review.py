# ruff: noqa: F811 - the fixtures imported from test_tls are parameters here
"""Regression tests from an independent review of the HTTPS transport (issue 12): each caught a
real defect (stale readiness after a read, a record trickled in, a close_notify behind the last
request, SNI with a trailing dot), over real loopback sockets and real TLS clients.

A client-side ``ssl.SSLObject`` over memory BIOs (``RawTLS``) lets a test decide exactly which
ciphertext bytes go on the wire and when (half a record, a close_notify without a FIN)."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from typing import Any

import pytest

import tpd2py
from tests.conftest import WAIT, parse_replies, read_replies
from tests.integration.test_tls import (  # noqa: F401 - fixtures
    client_context,
    https,
    later_app,
    pki,
    tls_app,
    wait_until_waiting,
)
from tpd2py import Request, Response
from tpd2py.tls import TLSSettings

pytest.importorskip("trustme", reason="needs trustme (the test extra)")


class RawTLS:
    """A TLS client whose ciphertext the test sends by hand (an SSLObject over memory BIOs)."""

    def __init__(self, port: int, pki: dict[str, Any], hostname: str = "localhost") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        ctx = client_context(pki)
        ctx.check_hostname = False
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=hostname)
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("closed during the handshake") from None
                self.incoming.write(data)
        self.flush()

    def flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def encrypt(self, plain: bytes) -> bytes:
        """The ciphertext of ``plain`` (not sent)."""
        self.obj.write(plain)
        return self.outgoing.read()

    def send(self, plain: bytes) -> None:
        self.sock.sendall(self.encrypt(plain))

    def read_plain(self, timeout: float = WAIT) -> tuple[bytes, str]:
        """Everything until the server ends the stream: (plaintext, how it ended:
        'close_notify', 'fin' or 'timeout')."""
        self.sock.settimeout(timeout)
        got = bytearray()
        while True:
            try:
                while piece := self.obj.read(65536):
                    got += piece
                return bytes(got), "close_notify"  # read() returns b"" at a close_notify
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                return bytes(got), "close_notify"
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return bytes(got), "timeout"
            except ConnectionResetError:
                return bytes(got), "fin"
            if not data:
                return bytes(got), "fin"
            self.incoming.write(data)

    def close(self) -> None:
        self.sock.close()


def nodelay_connection(srv: Any) -> socket.socket:
    """A client socket without Nagle: a small second write must not wait for the server's
    delayed ACK (40 ms), or it reaches the server after the step the test meant it for."""
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def hub_turns(srv: Any, n: int = 3) -> None:
    """Let the server's hub run ``n`` turns (each srv.call is one epoll_wait at least), so that
    every edge the kernel queued before this call has been reported and handled."""
    for _ in range(n):
        srv.call(lambda: None)


# -- 1. a stale "drained" after the hang-up peek: a pipelined request is never read -------------

def test_two_requests_pipelined_behind_a_waiting_one_are_both_answered(https, pki):
    """The hang-up peek reads the kernel (drained=True) for the first pipelined request; a
    second one's edge is then used up by a peek that finds ``peeked`` and reads nothing. After
    the resume, recv_into believes the kernel is empty (stale ``drained``) and the connection
    goes IDLE with the second request unread: no edge will ever come for it."""
    resumes: list[Any] = []
    gone = threading.Event()
    srv = https(later_app(resumes, gone))
    sock = client_context(pki).wrap_socket(nodelay_connection(srv), server_hostname="127.0.0.1")
    sock.sendall(b"GET /wait HTTP/1.1\r\nHost: t\r\n\r\n")
    wait_until_waiting(srv, resumes)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # read and decrypted by the peek
    hub_turns(srv)
    sock.sendall(b"GET /?second HTTP/1.1\r\nHost: t\r\n\r\n")  # its edge: a peek that reads none
    hub_turns(srv)
    srv.call(lambda: resumes[0](Response(b"resumed", content_type="text/plain")))
    replies = read_replies(sock, 3)
    assert [r.body for r in replies] == [b"resumed", b"hello over https", b"hello over https"]
    sock.close()


# -- 2. a close_notify read together with data is forgotten --------------------------------------

def close_notify(tls: RawTLS) -> bytes:
    """The client's close_notify alert, encrypted (not sent)."""
    with contextlib.suppress(ssl.SSLWantReadError):  # the server's is not awaited here
        tls.obj.unwrap()
    return tls.outgoing.read()


def test_a_close_notify_behind_the_last_request_ends_the_connection(https, pki):
    """The client sends its request and its close_notify (TCP stays open: it waits for the
    server's close_notify, as a bidirectional TLS shutdown does). recv_into returns the request
    when SSLObject.read returns 0 (a close_notify) without remembering the end (``eof`` stays
    False; the next call asks the kernel, which has nothing: EAGAIN), so the server
    answers, goes IDLE and waits out the keep-alive timeout; a plain-HTTP client that
    half-closes after its request gets the response and the close at once."""
    srv = https(keepalive_timeout=60)
    tls = RawTLS(srv.port, pki)
    tls.sock.sendall(tls.encrypt(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n") + close_notify(tls))
    plain, how = tls.read_plain()
    tls.close()
    assert plain.endswith(b"hello over https")
    assert how == "close_notify", f"the server's end: {how}"



# -- 3. slowloris at the record layer: trickled ciphertext renews the deadline forever ---------

def read_responses(tls: RawTLS, count: int) -> list[Any]:
    """Decrypt until ``count`` complete responses came (the connection stays open)."""
    tls.sock.settimeout(WAIT)
    plain = bytearray()
    while True:
        with contextlib.suppress(ssl.SSLWantReadError):
            while piece := tls.obj.read(65536):
                plain += piece
        replies, rest = parse_replies(bytes(plain))
        if len(replies) >= count and not rest and len(replies[-1].body) == int(
                replies[-1].header("Content-Length") or 0):
            return replies
        data = tls.sock.recv(65536)
        assert data, f"closed after {len(replies)} responses"
        tls.incoming.write(data)


def trickle(tls: RawTLS, data: bytes, every: float = 0.1) -> None:
    """Send ``data`` a byte per ``every`` seconds until the server reacts (as
    test_server_timeouts._trickle); fails if it let the whole trickle through."""
    for i in range(len(data)):
        readable, _, _ = select.select([tls.sock], [], [], every)
        if readable:
            return
        try:
            tls.sock.sendall(data[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            return
    raise AssertionError("the server let the whole trickle through without a deadline")


def test_slowloris_inside_a_tls_record_is_cut_by_the_header_deadline(https, pki):
    """Plain HTTP cuts a head trickled a byte at a time at the header timeout
    (test_server_timeouts). Over TLS the bytes of a record that is not complete yet decrypt to
    nothing: recv_into raises BlockingIOError, serve goes IDLE, and ``_enter(IDLE)`` sets a
    fresh deadline (now + header timeout) on every byte, so a client that sends one byte per
    (timeout - epsilon) holds the connection, and OpenSSL's record buffer, forever (the
    handshake deadline is over once the handshake is done)."""
    srv = https(header_timeout=0.5, keepalive_timeout=30)
    tls = RawTLS(srv.port, pki)
    tls.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_responses(tls, 1)[0].body == b"hello over https"
    trickle(tls, tls.encrypt(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"s" * 200 + b"\r\n\r\n"))
    tls.close()



# -- 1b. the same stale "drained" after a read that filled the buffer ----------------------------

def test_an_upload_read_by_a_handler_that_waits_between_pieces_completes(server, pki):
    """recv_into keeps ``drained`` when it returns a full buffer (a 16 KiB record into the
    16 KiB input buffer: the common case of an upload). If the handler then waits on the hub
    (here tpd2py.sleep; in life a write to an upstream, a database), the edge for the next
    record is reported meanwhile (read_pending), recv_nowait clears it, and recv_into, trusting
    the stale ``drained``, raises BlockingIOError without asking the kernel: the upload stalls
    until the body timeout (408) though every byte is in the server's socket."""
    started = threading.Event()
    pieces: list[int] = []
    app = tls_app()

    @app.route("/slow-upload", methods=["POST"])
    def slow_upload(req: Request) -> bytes:
        started.set()
        for piece in req.stream():
            pieces.append(len(piece))
            tpd2py.sleep(0.2)  # work between pieces that waits on the hub
        return b"%d" % sum(pieces)

    srv = server(app, transport=TLSSettings(pki["server"]).wrap, body_timeout=WAIT + 5)
    tls = RawTLS(srv.port, pki)
    tls.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    record = b"r" * 16384  # one full TLS record (the most plaintext a record carries)
    tls.send(b"POST /slow-upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
             % (2 * len(record)))
    assert started.wait(WAIT)
    tls.send(record)
    hub_turns(srv)
    tls.send(record)  # while the handler sleeps after the first piece
    replies = read_responses(tls, 1)
    tls.close()
    assert replies[0].status == 200 and replies[0].body == b"%d" % (2 * len(record))


# -- 6. SNI: a client's fully qualified name (a trailing dot) gets the wrong certificate -------

def test_sni_with_a_trailing_dot_chooses_the_same_certificate(server, pki, tmp_path):
    """TLSSettings strips a trailing dot from the configured names, but the SNI callback looks
    up the client's name as sent (``name.lower()``): ``api.example.test.`` gets the main
    certificate, which does not name it."""
    other = pki["ca"].issue_cert("api.example.test")
    other.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "api.pem"))
    settings = TLSSettings(pki["server"], sni={"api.example.test": (str(tmp_path / "api.pem"),
                                                                     None)})
    srv = server(tls_app(), transport=settings.wrap)
    tls = RawTLS(srv.port, pki, hostname="api.example.test.")
    names = [v for k, v in tls.obj.getpeercert()["subjectAltName"] if k == "DNS"]
    tls.close()
    assert names == ["api.example.test"]
