"""proxy.py: X-Forwarded-* and Forwarded believed from trusted peers only, over real sockets;
the Forwarded grammar as a table."""

from __future__ import annotations

import json

import pytest

from tpd2py import App, Request
from tpd2py.proxy import ProxyHeaders, parse_forwarded


def make_app(trusted: str | None) -> App:
    app = App()

    @app.route("/")
    def index(req: Request) -> dict:
        peer = req.peer
        return {"peer": list(peer), "scheme": req.scheme, "host": req.host}

    @app.route("/p/<name>")
    def param(req: Request, name: str) -> dict:
        return {"name": name, "peer": list(req.peer)}

    app.wrap(ProxyHeaders(trusted))
    return app


def ask(srv, headers: dict[str, str], path: str = "/") -> dict:
    reply = srv.get(path, headers)
    assert reply.status == 200
    return json.loads(reply.body)


def test_trusted_peer_gives_the_client(server):
    srv = server(make_app(None))  # default: loopback
    got = ask(srv, {"X-Forwarded-For": "198.51.100.4, 203.0.113.7",
                    "X-Forwarded-Proto": "https", "X-Forwarded-Host": "example.org"})
    assert got == {"peer": ["203.0.113.7", 0], "scheme": "https", "host": "example.org"}


def test_untrusted_peer_is_not_believed(server):
    # The test client is 127.0.0.1; trust only a network it is not in.
    srv = server(make_app("10.0.0.0/8"))
    got = ask(srv, {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
                    "X-Forwarded-Host": "evil.example", "Forwarded": "for=192.0.2.1"})
    assert got["peer"][0] == "127.0.0.1"
    assert got["scheme"] == "http"
    assert got["host"] == "t"


def test_chain_walks_past_trusted_proxies_only(server):
    srv = server(make_app("127.0.0.1,10.0.0.0/8"))
    # A client may prepend anything; the first untrusted hop from the right is the client.
    got = ask(srv, {"X-Forwarded-For": "1.1.1.1, 203.0.113.7, 10.1.2.3"})
    assert got["peer"] == ["203.0.113.7", 0]
    # Garbage ends the trail: nothing to the left of it is believed.
    got = ask(srv, {"X-Forwarded-For": "1.1.1.1, nonsense, 10.1.2.3"})
    assert got["peer"] == ["10.1.2.3", 0]


def test_bad_values_are_ignored(server):
    srv = server(make_app(None))
    got = ask(srv, {"X-Forwarded-For": "not-an-ip", "X-Forwarded-Proto": "gopher",
                    "X-Forwarded-Host": "a b"})
    assert got["peer"][0] == "127.0.0.1"
    assert (got["scheme"], got["host"]) == ("http", "t")


def test_forwarded_header_when_no_x_forwarded(server):
    srv = server(make_app(None))
    got = ask(srv, {"Forwarded": 'for=192.0.2.60;proto=https;host="shop.example:8443", '
                                 'for="[2001:db8::1]:4711"'})
    assert got == {"peer": ["2001:db8::1", 4711], "scheme": "http", "host": "t"}
    got = ask(srv, {"Forwarded": 'for="192.0.2.60:81";proto=HTTPS;host=shop.example'})
    assert got == {"peer": ["192.0.2.60", 81], "scheme": "https", "host": "shop.example"}
    # X-Forwarded-* win: a proxy that appends to X-Forwarded-For passes a client's Forwarded on.
    got = ask(srv, {"Forwarded": "for=192.0.2.60", "X-Forwarded-For": "203.0.113.7"})
    assert got["peer"] == ["203.0.113.7", 0]
    # Unparsable: ignored.
    got = ask(srv, {"Forwarded": "for=192.0.2.60;;"})
    assert got["peer"][0] == "127.0.0.1"


def test_route_params_survive(server):
    srv = server(make_app(None))
    got = ask(srv, {"X-Forwarded-For": "203.0.113.7"}, "/p/abc")
    assert got == {"name": "abc", "peer": ["203.0.113.7", 0]}


@pytest.mark.parametrize("value, expected", [
    (b"for=a", [{b"for": b"a"}]),
    (b'For="[::1]:80";Proto=http', [{b"for": b"[::1]:80", b"proto": b"http"}]),
    (b"for=a, for=b ,for=c", [{b"for": b"a"}, {b"for": b"b"}, {b"for": b"c"}]),
    (b'for="a\\"b"', [{b"for": b'a"b'}]),
    (b"for=a;for=b", None),  # a parameter twice in one element
    (b"=a", None),
    (b"for", None),
    (b'for="open', None),
    (b"for=a b", None),
    (b"", None),
])
def test_parse_forwarded(value, expected):
    assert parse_forwarded(value) == expected


def test_bad_trust_list_is_a_clear_error():
    with pytest.raises(ValueError, match="not an address or network: 'x.y'"):
        ProxyHeaders("127.0.0.1,x.y")


def test_header_lines_repeated_by_a_proxy_are_one_list(server):
    # RFC 9110 §5.3: "X-Forwarded-For: a" then "X-Forwarded-For: b" is "a, b". The client
    # sent the first line; the proxy (HAProxy's option forwardfor) added the second.
    import socket

    srv = server(make_app(None))
    for name in (b"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 203.0.113.9",
                 b"Forwarded: for=6.6.6.6\r\nForwarded: for=203.0.113.9"):
        with socket.create_connection(srv.address) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n" + name + b"\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert json.loads(data.split(b"\r\n\r\n", 1)[1])["peer"] == ["203.0.113.9", 0], name
