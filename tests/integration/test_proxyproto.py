"""PROXY protocol v1/v2: the parser as a table (whole and byte by byte), and a server with
``--proxy-protocol`` over real sockets: the client address reaches request.peer, the request
bytes after the header are all served, a bad or late header gets 400 and a close."""

from __future__ import annotations

import ipaddress
import json
import socket
import struct

import pytest
from conftest import WAIT, read_until_close

from tpd2py import App, Request
from tpd2py.proxyproto import V2_SIGNATURE, PROXYProtocol, ProxyProtocolError, parse


def v2(command: int, family: int, block: bytes, length: int | None = None) -> bytes:
    n = len(block) if length is None else length
    return V2_SIGNATURE + struct.pack("!BBH", 0x20 | command, family, n) + block


V4 = (ipaddress.IPv4Address("192.0.2.7").packed + ipaddress.IPv4Address("10.0.0.1").packed
      + struct.pack("!HH", 51000, 80))
V6 = (ipaddress.IPv6Address("2001:db8::7").packed + ipaddress.IPv6Address("::1").packed
      + struct.pack("!HH", 443, 8080))

GOOD = [
    (b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 80\r\n", ("192.0.2.7", 51000)),
    (b"PROXY TCP6 2001:db8::7 ::1 443 8080\r\n", ("2001:db8::7", 443)),
    (b"PROXY UNKNOWN\r\n", None),
    (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", None),
    (v2(1, 0x11, V4), ("192.0.2.7", 51000)),
    (v2(1, 0x11, V4 + b"\x03\x00\x04abcd"), ("192.0.2.7", 51000)),  # with a TLV
    (v2(1, 0x21, V6), ("2001:db8::7", 443)),
    (v2(0, 0x00, b""), None),  # LOCAL: a health check
    (v2(1, 0x00, b""), None),  # UNSPEC
]

BAD = [
    b"GET / HTTP/1.1\r\n\r\n",
    b"PROXY TCP4 192.0.2.7 10.0.0.1 51000\r\n",
    b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n",  # family mismatch
    b"PROXY TCP4 192.0.2.7 10.0.0.1 051000 80\r\n",  # leading zero
    b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 80\r\n",
    b"PROXY TCP4 192.0.2.7  10.0.0.1 1 2\r\n",
    b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\n",
    b"PROXY TCP5 192.0.2.7 10.0.0.1 1 2\r\n",
    b"PROXY " + b"x" * 120,
    v2(1, 0x11, V4[:8]),  # IPv4 block too short
    v2(2, 0x11, V4),  # command 2
    v2(1, 0x11, V4, length=5000)[:16],  # longer than we take
    V2_SIGNATURE[:11] + b"X" + b"\x21\x11\x00\x0c" + V4,
    b"\x21\x11" + V4,
]


@pytest.mark.parametrize("data, address", GOOD)
def test_parse_good(data, address):
    follow = b"GET / HTTP/1.1\r\n\r\n"
    assert parse(data + follow) == (len(data), address)
    for i in range(len(data)):  # a prefix is "need more", never an error
        assert parse(data[:i]) is None, i


@pytest.mark.parametrize("data", BAD)
def test_parse_bad(data):
    with pytest.raises(ProxyProtocolError):
        for i in range(1, len(data) + 1):
            parse(data[:i])


def make_app() -> App:
    app = App()

    @app.route("/")
    def index(req: Request) -> dict:
        return {"peer": list(req.peer)}

    return app


@pytest.fixture
def proxied(server):
    srv = server(make_app())
    # Installed before listening in real use; here the listener exists: swap its callback.
    srv.call(lambda: _install(srv.server))
    return srv


def _install(server) -> None:
    PROXYProtocol(timeout=1.0).install(server)
    for rec in server._listener_recs:
        rec.on_readable = server._accept_preface


def test_client_address_from_v1_and_pipelined_requests_after_it(proxied):
    with socket.create_connection(proxied.address, timeout=WAIT) as sock:
        sock.sendall(b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 80\r\n"
                     b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        replies = read_until_close(sock).final
    assert [r.status for r in replies] == [200, 200]
    assert all(json.loads(r.body) == {"peer": ["192.0.2.7", 51000]} for r in replies)


def test_client_address_from_v2_sent_in_pieces(proxied):
    data = v2(1, 0x21, V6) + b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    with socket.create_connection(proxied.address, timeout=WAIT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in (data[:5], data[5:20], data[20:]):
            sock.sendall(piece)
        replies = read_until_close(sock).final
    assert json.loads(replies[0].body) == {"peer": ["2001:db8::7", 443]}


def test_local_command_keeps_the_socket_peer(proxied):
    with socket.create_connection(proxied.address, timeout=WAIT) as sock:
        sock.sendall(v2(0, 0, b"") + b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        replies = read_until_close(sock).final
    assert json.loads(replies[0].body)["peer"][0] == "127.0.0.1"


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
                                  b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n\r\n"])
def test_bad_header_gets_400_and_close(proxied, data):
    ex = proxied.exchange(data)
    assert ex.statuses == [400]


def test_a_header_that_never_completes_times_out(proxied):
    # The timer (1 s here) fires, whatever the client does: read_until_close waits for it.
    ex = proxied.exchange(b"PROXY TCP4 1.2.3.4")
    assert ex.statuses == [400]


def test_off_by_default_a_proxy_header_is_a_bad_request(server):
    srv = server(make_app())
    ex = srv.exchange(b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 80\r\nGET / HTTP/1.1\r\n\r\n")
    assert ex.statuses == [400]
