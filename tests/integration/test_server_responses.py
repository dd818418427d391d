"""Responses end to end: framing, HEAD, Date, streaming (chunked / close-delimited), 204,
routing errors, and refusal to emit injected header bytes (peers #38, #40)."""

from __future__ import annotations

import email.utils
import json
from urllib.parse import urlencode

import pytest

from tpd2py import App, Request, Response


def test_content_length_matches_body(srv):
    for n in (0, 1, 13, 65536, 1_000_000):
        r = srv.get(f"/big?n={n}")
        assert r.status == 200
        assert r.header("Content-Length") == str(n)
        assert len(r.body) == n
        assert r.header("Transfer-Encoding") is None


def test_date_header_present_and_valid_on_every_kind_of_response(srv):
    for path in ("/", "/missing", "/error", "/stream", "/nocontent"):
        r = srv.get(path)
        date = r.header("Date")
        assert date is not None, f"{path} has no Date"
        assert email.utils.parsedate_to_datetime(date).tzname() == "UTC"
    ex = srv.exchange(b"GET / HTTP/1.1\r\n\r\n")  # a canned protocol error
    assert ex.replies[0].header("Date") is not None


def test_head_has_headers_only(srv):
    ex = srv.exchange(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n"
                      b"Connection: close\r\n\r\n", methods=["HEAD", "GET"])
    head, get = ex.replies
    assert head.status == 200
    assert head.header("Content-Length") == "13", "HEAD reports the GET body's length"
    assert head.body == b""
    assert get.body == b"Hello, World!", "a body after HEAD would have shifted this response"


@pytest.mark.parametrize("path", ["/missing", "/error", "/stream", "/big?n=100000"])
def test_head_of_other_responses_has_no_body(srv, path):
    ex = srv.exchange(f"HEAD {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
                      + b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                      methods=["HEAD", "GET"])
    assert len(ex.final) == 2, ex.raw[:500]
    assert ex.final[0].body == b""
    assert ex.final[1].body == b"Hello, World!"


def test_streaming_response_is_chunked_for_http11(srv):
    with srv.connect() as sock:
        sock.sendall(b"GET /stream?n=5 HTTP/1.1\r\nHost: a\r\n\r\n"
                     b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        replies = srv.read_replies(sock, 2)
    stream, after = replies
    assert stream.chunked
    assert stream.header("Content-Length") is None
    assert stream.body == b"".join(b"part %d\n" % i for i in range(5))
    assert stream.header("Connection") is None, "chunked framing keeps the connection"
    assert after.body == b"Hello, World!"


def test_p40_streaming_response_is_close_delimited_for_http10(srv):
    ex = srv.exchange(b"GET /stream?n=3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    (reply,) = ex.replies
    assert not reply.chunked
    assert reply.header("Transfer-Encoding") is None
    assert reply.header("Content-Length") is None
    assert reply.header("Connection") == "close"
    assert reply.body == b"part 0\npart 1\npart 2\n"


def test_streaming_error_mid_body_truncates_and_closes(server):
    srv = server()
    ex = srv.exchange(b"GET /stream-error HTTP/1.1\r\nHost: a\r\n\r\n"
                      b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert ex.raw.startswith(b"HTTP/1.1 200 ")
    assert b"first\n" in ex.raw
    assert not ex.raw.endswith(b"0\r\n\r\n"), "a failed stream must not look complete"
    assert b"Hello, World!" not in ex.raw
    assert srv.get("/").status == 200


def test_204_has_no_body_and_no_content_length(srv):
    ex = srv.exchange(b"GET /nocontent HTTP/1.1\r\nHost: a\r\n\r\n"
                      b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    nocontent, after = ex.replies
    assert nocontent.status == 204
    assert nocontent.header("Content-Length") is None
    assert nocontent.header("Transfer-Encoding") is None
    assert after.body == b"Hello, World!"


def test_404_and_405_with_allow(srv):
    ex = srv.exchange(b"GET /missing HTTP/1.1\r\nHost: a\r\n\r\n"
                      b"DELETE /echo HTTP/1.1\r\nHost: a\r\n\r\n"
                      b"GET /post-only HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    missing, delete, get = ex.replies
    assert missing.status == 404
    assert delete.status == 405
    assert sorted(delete.header("Allow").replace(" ", "").split(",")) == ["POST", "PUT"]
    assert get.status == 405
    assert get.header("Allow") == "POST"


def test_head_falls_back_to_get_route(srv):
    ex = srv.exchange(b"HEAD /path/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                      methods=["HEAD"])
    assert ex.statuses == [200]
    assert ex.replies[0].header("Content-Length") == "1"


def test_int_route_with_huge_numeral_is_answered(server):
    # Regression (BUG #9): int() on 5000 digits raised out of the router: no response.
    app = App()

    @app.route("/items/<int:n>")
    def item(req: Request, n: int) -> bytes:
        return b"%d" % (n % 1000)

    srv = server(app)
    ex = srv.exchange(b"GET /items/" + b"9" * 5000 + b" HTTP/1.1\r\nHost: a\r\n"
                      b"Connection: close\r\n\r\n")
    assert ex.statuses in ([200], [404], [400]), ex.raw[:200]


def test_http_error_from_handler(srv):
    r = srv.get("/http-error")
    assert r.status == 418
    assert r.body == b"short and stout\n"


def test_route_parameters_and_query(srv):
    assert srv.get("/path/hello%20world").body == b"hello world"
    r = srv.get("/query?a=1&b=%C3%A9&a=2")
    assert json.loads(r.body)["query"] == {"a": "1", "b": "é"}


# -- peers #38: response header injection ---------------------------------------------------


@pytest.mark.parametrize("name, value", [
    ("X-Test", "a\r\nSet-Cookie: injected=1"),
    ("X-Test", "a\nSet-Cookie: injected=1"),
    ("X-Test", "a\rSet-Cookie: injected=1"),
    ("X-Test", "a\0b"),
    ("X-Test\r\nSet-Cookie: injected", "1"),
    ("X Test", "1"),
    ("X-Test:", "1"),
    ("", "1"),
], ids=["crlf-value", "lf-value", "cr-value", "nul-value", "crlf-name", "space-name",
        "colon-name", "empty-name"])
def test_p38_header_injection_from_handler_is_a_500(srv, name, value):
    query = urlencode({"name": name, "value": value})
    ex = srv.exchange(f"GET /set-header?{query} HTTP/1.1\r\nHost: a\r\n"
                      "Connection: close\r\n\r\n".encode())
    assert ex.statuses == [500]
    assert b"injected" not in ex.raw
    assert b"Set-Cookie" not in ex.raw


def test_p38_header_from_handler_sent_when_clean(srv):
    r = srv.get("/set-header?name=X-Test&value=fine%20value")
    assert r.status == 200
    assert r.header("X-Test") == "fine value"


def _framing_app() -> App:
    app = App()

    @app.route("/manual-length")
    def manual_length(req: Request) -> Response:
        return Response(b"hello", headers={"Content-Length": "2"}, content_type=b"text/plain")

    @app.route("/manual-te")
    def manual_te(req: Request) -> Response:
        return Response(b"hello", headers={"Transfer-Encoding": "chunked"},
                        content_type=b"text/plain")

    @app.route("/manual-connection")
    def manual_connection(req: Request) -> Response:
        return Response(b"hello", headers={"Connection": "keep-alive"},
                        content_type=b"text/plain")

    return app


@pytest.mark.parametrize("path", ["/manual-length", "/manual-te", "/manual-connection"])
def test_handler_cannot_send_second_framing_header(server, path):
    # Regression (BUG #6): these went out next to the server's own framing headers; a proxy
    # that reads the handler's copy frames the stream differently (response smuggling).
    srv = server(_framing_app())
    ex = srv.exchange(f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
    names = [line.split(b":", 1)[0].strip().lower()
             for line in ex.raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]]
    for name in (b"content-length", b"transfer-encoding", b"connection"):
        assert names.count(name) <= 1, f"{name!r} sent {names.count(name)} times"
    assert not (b"content-length" in names and b"transfer-encoding" in names)
    first = ex.replies[0]
    assert first.status == 500 or first.body == b"hello"


def _bodiless_stream_app() -> App:
    app = App()

    @app.route("/stream-204")
    def stream_204(req: Request) -> Response:
        return Response((piece for piece in [b"should not be sent"]), status=204)

    @app.route("/stream-304")
    def stream_304(req: Request) -> Response:
        return Response(iter(()), status=304)

    return app


@pytest.mark.parametrize("path", ["/stream-204", "/stream-304"])
def test_streamed_bodiless_status_sends_no_body(server, path):
    # Regression (BUG #12): these went out chunked, with a body.
    # RFC 9112 §6.1: no Transfer-Encoding in a 204 (nor a 304's body); RFC 9110 §6.4.1: they
    # end at the blank line, so any body bytes become the start of the next "response".
    srv = server(_bodiless_stream_app())
    with srv.connect() as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
                     + b"GET /missing HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        ex = srv.read_until_close(sock)
    first_head, _, rest = ex.raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in first_head.lower()
    assert rest.startswith(b"HTTP/1.1 404 "), f"bytes between the responses: {rest[:40]!r}"
