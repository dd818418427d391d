"""Connection persistence: keep-alive, HTTP/1.0 rules, Connection: close (peers #34), and
what must not carry over from one request to the next."""

from __future__ import annotations

import contextlib
import json

import pytest

from tpd2py import App, Request


def test_many_requests_on_one_http_client_connection(srv):
    conn = srv.http()
    for i in range(200):
        conn.request("GET", f"/query?i={i}")
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read())["query"] == {"i": str(i)}
        assert not resp.will_close
    conn.close()
    assert srv.closed_count <= 1


def test_keep_alive_mixes_methods_and_bodies(srv):
    conn = srv.http()
    for i in range(20):
        conn.request("POST", "/echo", body=b"x" * i)
        assert conn.getresponse().read() == b"x" * i
        conn.request("HEAD", "/")
        head = conn.getresponse()
        assert head.read() == b""
        assert head.getheader("Content-Length") == "13"
        conn.request("GET", "/missing")
        missing = conn.getresponse()
        assert missing.status == 404
        missing.read()
    conn.close()


def test_http10_closes_by_default(srv):
    ex = srv.exchange(b"GET / HTTP/1.0\r\n\r\nGET /path/second HTTP/1.0\r\n\r\n")
    assert ex.statuses == [200], "the second HTTP/1.0 request must not be read"
    assert ex.replies[0].header("Connection") == "close"
    assert ex.replies[0].body == b"Hello, World!"


@pytest.mark.parametrize("value", ["keep-alive", "Keep-Alive", "KEEP-ALIVE"])
def test_http10_keep_alive_when_asked(srv, value):
    with srv.connect() as sock:
        request = f"GET / HTTP/1.0\r\nConnection: {value}\r\n\r\n".encode()
        sock.sendall(request)
        (first,) = srv.read_replies(sock, 1)
        assert first.header("Connection") == "keep-alive"
        assert first.header("Content-Length") == "13"
        sock.sendall(b"GET /path/second HTTP/1.0\r\n\r\n")
        ex = srv.read_until_close(sock)
    assert ex.statuses == [200]
    assert ex.replies[0].body == b"second"
    assert ex.replies[0].header("Connection") == "close"


def test_http11_response_has_no_connection_header_when_kept(srv):
    with srv.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        (reply,) = srv.read_replies(sock, 1)
    assert reply.header("Connection") is None
    assert reply.version == b"HTTP/1.1"


@pytest.mark.parametrize("value", ["close", "Close", "keep-alive, close", "close, upgrade"])
def test_p34_connection_close_honoured_and_next_request_not_processed(srv, value):
    ex = srv.exchange(f"GET /path/a HTTP/1.1\r\nHost: a\r\nConnection: {value}\r\n\r\n"
                      "GET /path/b HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    assert ex.statuses == [200]
    assert ex.replies[0].body == b"a"
    assert ex.replies[0].header("Connection") == "close"
    assert b"\r\n\r\nb" not in ex.raw


def test_p34_connection_close_on_a_post_is_honoured(srv):
    ex = srv.exchange(b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                      b"Content-Length: 3\r\n\r\nabcGET /path/b HTTP/1.1\r\nHost: a\r\n\r\n",
                      methods=["POST"])
    assert ex.statuses == [200]
    assert ex.replies[0].body == b"abc"


def test_idle_keep_alive_connection_closed_after_timeout(server):
    srv = server(keepalive_timeout=0.3)
    with srv.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        srv.read_replies(sock, 1)
        # Nothing more is sent: the server's sweep must close it (read_until_close fails the
        # test if it does not within its timeout).
        rest = srv.read_until_close(sock)
    assert rest.raw == b""
    assert srv.open_connections() == 0


def test_keep_alive_survives_errors_that_are_not_protocol_errors(srv):
    conn = srv.http()
    for path, status in (("/missing", 404), ("/error", 500), ("/http-error", 418), ("/", 200)):
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == status
        assert not resp.will_close, f"{path} should not close the connection"
    conn.close()


@pytest.mark.parametrize("path", ["/missing", "/error", "/post-only"])
def test_http10_keep_alive_error_responses_say_what_happens_next(server, path):
    # Regression (BUG #13): these omitted "Connection: keep-alive" yet kept the connection.
    # An HTTP/1.0 client treats a response without "Connection: keep-alive" as the last on
    # the connection and may wait for EOF (ab -k does): the header and the server's
    # behaviour must agree.
    srv = server(keepalive_timeout=30)
    with srv.connect() as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
        (reply,) = srv.read_replies(sock, 1)
        if reply.header("Connection") == "keep-alive":
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert srv.read_until_close(sock).replies[0].body == b"Hello, World!"
        else:
            rest = srv.read_until_close(sock, timeout=1.5)  # a close would be immediate
            assert rest.raw == b""


def _annotating_app() -> App:
    app = App()
    calls = []

    @app.route("/annotate")
    def annotate(req: Request) -> dict:
        # A middleware-style handler: the first request it sees is marked as trusted (think
        # "peer address is on the allow-list") by adding a field to the request's headers.
        seen = [n.decode() for n, _ in req.headers.raw()]
        calls.append(1)
        if len(calls) == 1:
            with contextlib.suppress(AttributeError, TypeError):
                req.headers.raw().append((b"x-trusted", b"1"))  # type: ignore[attr-defined]
        return {"seen": seen}

    return app


def test_request_headers_do_not_leak_between_identical_requests(server):
    # Regression (BUG #14): the head cache handed one parsed head, with a mutable header
    # list, to every byte-identical request; an annotation leaked to other clients.
    srv = server(_annotating_app())
    first = srv.get("/annotate")
    second = srv.get("/annotate")  # another connection, same bytes
    assert "x-trusted" not in json.loads(first.body)["seen"]
    assert "x-trusted" not in json.loads(second.body)["seen"], \
        "the second request sees a header its client never sent"
