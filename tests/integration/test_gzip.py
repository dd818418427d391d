"""compress.Gzip over loopback: negotiation, whole bodies with their Content-Length, streamed
bodies compressed piece by piece (an SSE event arrives before the stream ends), the opt-outs,
ETags, HEAD, and the cache of gzip forms for bodies that are the same bytes each time."""

from __future__ import annotations

import json
import socket
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import WAIT
from tpd2py import App, Channel, Response
from tpd2py.compress import Gzip

PAGE = b"<p>" + b"a tpd2py page that compresses well " * 100 + b"</p>"
CHUNKS = [b"<html><body>", b"<p>" + b"constant chunk " * 80 + b"</p>", b"</body></html>"]


def gunzip(data: bytes) -> bytes:
    return zlib.decompress(data, 31)


@pytest.fixture
def app() -> tuple[App, Gzip, Channel]:
    app = App()
    events = Channel()

    @app.route("/page")
    def page(req: Any) -> bytes:
        return PAGE

    @app.route("/chunks")
    def chunks(req: Any) -> list[bytes]:
        return CHUNKS

    @app.route("/small")
    def small(req: Any) -> bytes:
        return b"tiny"

    @app.route("/json")
    def data(req: Any) -> dict:
        return {"items": list(range(500))}

    @app.route("/png")
    def png(req: Any) -> Response:
        return Response(b"\x89PNG" + bytes(4000), content_type="image/png")

    @app.route("/tagged")
    def tagged(req: Any) -> Response:
        return Response(PAGE, headers={"ETag": '"v1"'})

    @app.route("/no-transform")
    def opt_out(req: Any) -> Response:
        return Response(PAGE, headers={"Cache-Control": "no-transform"})

    @app.route("/encoded")
    def encoded(req: Any) -> Response:
        return Response(zlib.compress(PAGE), headers={"Content-Encoding": "deflate"})

    @app.route("/stream")
    def stream(req: Any) -> Iterator[bytes]:
        def pieces() -> Iterator[bytes]:
            for i in range(50):
                yield b"line %d of a streamed page\n" % i
        return pieces()

    @app.route("/events")
    def sse(req: Any) -> Response:
        def gen() -> Iterator[bytes]:
            yield b"data: first\n\n"
            with req.park():
                message = events.wait(0, timeout=WAIT)
            yield b"data: %s\n\n" % message[0].data
        return Response(gen(), content_type="text/event-stream")

    gz = Gzip(level=6, min_size=512)
    app.wrap(gz)  # routes added after this are wrapped too

    @app.route("/later-route")
    def later_route(req: Any) -> bytes:
        return PAGE

    return app, gz, events


def test_whole_bodies_are_compressed_with_their_length(server, app):
    srv = server(app[0])
    for path, expected in (("/page", PAGE), ("/chunks", b"".join(CHUNKS)),
                           ("/later-route", PAGE)):
        r = srv.get(path, {"Accept-Encoding": "gzip, deflate, br"})
        assert r.header("Content-Encoding") == "gzip", path
        assert r.header("Vary") == "Accept-Encoding"
        assert r.header("Content-Length") == str(len(r.body))
        assert gunzip(r.body) == expected and len(r.body) < len(expected) // 5
    r = srv.get("/json", {"Accept-Encoding": "gzip"})
    assert json.loads(gunzip(r.body)) == {"items": list(range(500))}


def test_identity_when_not_accepted_with_vary(server, app):
    srv = server(app[0])
    for headers in ({}, {"Accept-Encoding": "deflate"}, {"Accept-Encoding": "gzip;q=0"},
                    {"Accept-Encoding": "gzip;q=nope"}):
        r = srv.get("/page", headers)
        assert r.body == PAGE and r.header("Content-Encoding") is None, headers
        assert r.header("Vary") == "Accept-Encoding"


def test_what_is_never_compressed(server, app):
    srv = server(app[0])
    ae = {"Accept-Encoding": "gzip"}
    assert srv.get("/small", ae).body == b"tiny"  # under min_size
    assert srv.get("/png", ae).header("Content-Encoding") is None  # not compressible
    assert srv.get("/no-transform", ae).body == PAGE  # the per-response opt-out
    r = srv.get("/encoded", ae)  # never twice
    assert r.header("Content-Encoding") == "deflate" and zlib.decompress(r.body) == PAGE


def test_identity_refused_forces_gzip_even_when_small(server, app):
    srv = server(app[0])
    r = srv.get("/small", {"Accept-Encoding": "gzip, identity;q=0"})
    assert r.header("Content-Encoding") == "gzip" and gunzip(r.body) == b"tiny"


def test_etag_of_the_gzip_form_is_distinct(server, app):
    srv = server(app[0])
    assert srv.get("/tagged").header("ETag") == '"v1"'
    assert srv.get("/tagged", {"Accept-Encoding": "gzip"}).header("ETag") == '"v1-gzip"'


def test_head_tells_the_compressed_length(server, app):
    srv = server(app[0])
    get = srv.get("/page", {"Accept-Encoding": "gzip"})
    ex = srv.exchange(b"HEAD /page HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n"
                      b"Connection: close\r\n\r\n", methods=["HEAD"])
    head = ex.final[0]
    assert head.body == b"" and head.header("Content-Length") == get.header("Content-Length")


def test_a_streamed_body_is_compressed_piece_by_piece(server, app):
    srv = server(app[0])
    r = srv.get("/stream", {"Accept-Encoding": "gzip"})
    assert r.chunked and r.header("Content-Encoding") == "gzip"
    assert gunzip(r.body) == b"".join(b"line %d of a streamed page\n" % i for i in range(50))


def test_an_sse_event_leaves_before_the_stream_ends(server, app):
    application, _, events = app
    srv = server(application)
    with srv.connect() as sock:
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n")
        inflate = zlib.decompressobj(31)
        seen = b""
        data = b""
        while b"data: first\n\n" not in seen:
            more = sock.recv(65536)
            assert more, "closed before the first event"
            data += more
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                assert b"Content-Encoding: gzip" in head
                seen = inflate.decompress(_dechunk(body))
                inflate = zlib.decompressobj(31)
        # The stream is still open (the generator waits on the channel): now let it finish.
        srv.call(lambda: events.publish(b"second"))
        sock.settimeout(WAIT)
        while not data.endswith(b"0\r\n\r\n"):
            more = sock.recv(65536)
            assert more
            data += more
        body = data.partition(b"\r\n\r\n")[2]
        assert gunzip(_dechunk(body)) == b"data: first\n\ndata: second\n\n"
        sock.shutdown(socket.SHUT_WR)


def _dechunk(body: bytes) -> bytes:
    out, pos = b"", 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            return out
        size = int(body[pos:end], 16)
        if size == 0 or end + 2 + size > len(body):
            return out
        out += body[end + 2:end + 2 + size]
        pos = end + 2 + size + 2


def test_constant_bodies_are_compressed_once(server, app):
    application, gz, _ = app
    srv = server(application)
    for _ in range(5):
        srv.get("/page", {"Accept-Encoding": "gzip"})
        srv.get("/chunks", {"Accept-Encoding": "gzip"})
    assert gz.cache.hits >= 6  # admitted on the second sighting, then served from the cache
    assert len(gz.cache.entries) == 2


def test_dynamic_bodies_do_not_fill_the_cache():
    gz = Gzip()
    for i in range(2000):
        gz.cache.get(b"page %d" % i * 100, b"page %d" % i * 100, 6)
    assert not gz.cache.entries and len(gz.cache.seen) <= 4 * gz.cache.max_entries


def test_head_of_a_stream_says_gzip_and_sends_nothing(server):
    closed: list[bool] = []
    app = App()

    @app.route("/s")
    def stream(req: Any) -> Iterator[bytes]:
        def gen() -> Iterator[bytes]:
            try:
                yield b"x" * 2000
            finally:
                closed.append(True)
        return gen()

    app.wrap(Gzip())
    srv = server(app)
    ex = srv.exchange(b"HEAD /s HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n"
                      b"Connection: close\r\n\r\n", methods=["HEAD"])
    assert ex.final[0].header("Content-Encoding") == "gzip" and ex.final[0].body == b""
    r = srv.get("/s", {"Accept-Encoding": "gzip"})
    assert gunzip(r.body) == b"x" * 2000 and closed == [True]  # the handler's generator closed
