"""Strict input end to end: every malformed case of peers.md section 7 (1-33) over a real socket.

Each case is sent on a fresh connection *after* a valid request and *followed by* a valid request
that must never be answered: the first gets its normal response, the bad one gets its status,
then the server closes without reading further (the "400+close" of peers.md). The parser's own
table tests live in tests/unit/test_http11.py and test_smuggling.py; these check the wiring.
Case ids are ``p<N>-<what>``, N being the row of peers.md section 7.
"""

from __future__ import annotations

import json

import pytest

GOOD = b"GET /path/first HTTP/1.1\r\nHost: a\r\n\r\n"
# Must never be answered: it follows a request the server has to close on.
AFTER = b"GET /path/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"


def _head(*fields: bytes, line: bytes = b"POST /echo HTTP/1.1") -> bytes:
    return line + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"


CHUNKED = (b"Host: a", b"Transfer-Encoding: chunked")

# (id, request bytes, allowed statuses). Every one must end the connection.
BAD_REQUESTS = [
    # -- framing: Content-Length / Transfer-Encoding --
    ("p1-differing-content-lengths",
     _head(b"Host: a", b"Content-Length: 1", b"Content-Length: 3") + b"abc", {400}),
    ("p1-differing-content-length-list", _head(b"Host: a", b"Content-Length: 1, 3") + b"abc",
     {400}),
    ("p2-plus-sign", _head(b"Host: a", b"Content-Length: +10") + b"0123456789", {400}),
    ("p2-underscore", _head(b"Host: a", b"Content-Length: 1_0") + b"0123456789", {400}),
    ("p2-hex", _head(b"Host: a", b"Content-Length: 0x0a") + b"0123456789", {400}),
    ("p2-negative", _head(b"Host: a", b"Content-Length: -1"), {400}),
    ("p2-empty", _head(b"Host: a", b"Content-Length: "), {400}),
    ("p2-arabic-indic-digits", _head(b"Host: a", "Content-Length: ١٠".encode()) + b"0" * 10,
     {400}),
    ("p3-5000-digits", _head(b"Host: a", b"Content-Length: " + b"9" * 5000), {400, 413}),
    ("p5-chunked-then-gzip-lines", _head(*CHUNKED, b"Transfer-Encoding: gzip") + b"0\r\n\r\n",
     {400}),
    ("p5-chunked-gzip-list", _head(b"Host: a", b"Transfer-Encoding: chunked, gzip")
     + b"0\r\n\r\n", {400}),
    ("p6-unknown-coding-with-length",
     _head(b"Host: a", b"Transfer-Encoding: chunkedx", b"Content-Length: 5") + b"hello", {400}),
    ("p7-gzip-chunked", _head(b"Host: a", b"Transfer-Encoding: gzip, chunked") + b"0\r\n\r\n",
     {501}),
    ("p7-identity", _head(b"Host: a", b"Transfer-Encoding: identity", b"Content-Length: 5")
     + b"hello", {400}),
    ("p8-chunked-twice-lines", _head(*CHUNKED, b"Transfer-Encoding: chunked") + b"0\r\n\r\n",
     {400}),
    ("p8-chunked-chunked-list", _head(b"Host: a", b"Transfer-Encoding: chunked, chunked")
     + b"0\r\n\r\n", {400}),
    ("p10-vertical-tab-around-chunked",
     _head(b"Host: a", b"Transfer-Encoding: \x0bchunked\x0b") + b"0\r\n\r\n", {400}),
    ("p10-nbsp-around-chunked",
     _head(b"Host: a", b"Transfer-Encoding: \xa0chunked\xa0", b"Content-Length: 5") + b"0\r\n\r\n",
     {400}),
    ("p11-http10-transfer-encoding",
     _head(b"Transfer-Encoding: chunked", b"Content-Length: 3", line=b"POST /echo HTTP/1.0")
     + b"0\r\n\r\n", {400}),
    # -- chunked bodies --
    ("p12-0x-prefix", _head(*CHUNKED) + b"0x5\r\nhello\r\n0\r\n\r\n", {400}),
    ("p12-plus-prefix", _head(*CHUNKED) + b"+5\r\nhello\r\n0\r\n\r\n", {400}),
    ("p12-underscore", _head(*CHUNKED) + b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n", {400}),
    ("p12-minus-zero", _head(*CHUNKED) + b"-0\r\n\r\n", {400}),
    ("p12-leading-space", _head(*CHUNKED) + b" 5\r\nhello\r\n0\r\n\r\n", {400}),
    ("p12-huge-hex", _head(*CHUNKED) + b"f" * 40 + b"\r\nhello\r\n0\r\n\r\n", {400, 413}),
    ("p13-data-not-followed-by-crlf", _head(*CHUNKED) + b"5\r\nhelloXX0\r\n\r\n", {400}),
    ("p14-lf-in-extension", _head(*CHUNKED) + b"5;a\nb\r\nhello\r\n0\r\n\r\n", {400}),
    ("p14-bare-cr-in-chunk-line", _head(*CHUNKED) + b"5\r\r;a\r\nhello\r\n0\r\n\r\n", {400}),
    ("p14-extension-too-long", _head(*CHUNKED) + b"5;" + b"a" * 100_000 + b"\r\nhello\r\n"
     b"0\r\n\r\n", {400, 413, 431}),
    ("p15-request-line-as-trailer", _head(*CHUNKED) + b"0\r\nGET /path/admin HTTP/1.1\r\n"
     b"Host: a\r\n\r\n", {400}),
    ("p16-next-request-read-as-trailer", _head(*CHUNKED) + b"0\r\n" + AFTER, {400}),
    ("p18-thousands-of-trailers", _head(*CHUNKED) + b"0\r\n"
     + b"".join(b"T%d: v\r\n" % i for i in range(5000)) + b"\r\n", {400, 431}),
    # -- request line and header fields --
    ("p19-space-before-colon", _head(b"Host: a", b"Content-Length : 5") + b"hello", {400}),
    ("p20-nel-in-field-name", _head(b"Host: a", b"Content-Length\x85: 5") + b"hello", {400}),
    ("p20-nbsp-in-field-name", _head(b"Host: a", b"Transfer-Encoding\xa0: chunked")
     + b"0\r\n\r\n", {400}),
    ("p21-nul-in-value", _head(b"Host: a", b"X-Header: v\x00alue"), {400}),
    ("p21-bare-cr-hiding-a-field",
     _head(b"Host: a", b"X-Abc: \rxTransfer-Encoding: chunked") + b"0\r\n\r\n", {400}),
    ("p21-bare-cr-in-value", _head(b"Host: a", b"X-Header: va\rlue"), {400}),
    ("p23-obs-fold", _head(b"Host: a", b"X: a", b" b"), {400}),
    ("p23-field-split-over-lines", _head(b"Host: a", b"Transfer-", b"Encoding: chunked")
     + b"0\r\n\r\n", {400}),
    ("p24-whitespace-before-first-field", b"GET / HTTP/1.1\r\n\tContent-Length: 1\r\n"
     b"Host: a\r\n\r\nX", {400}),
    ("p25-empty-field-name", b"GET / HTTP/1.1\r\n: x\r\nHost: a\r\n\r\n", {400}),
    ("p26-lf-after-colon", b"GET / HTTP/1.1\r\nHost: a\r\nUseless:\n\nGET /path/admin "
     b"HTTP/1.1\r\n\r\n", {400}),
    ("p27-version-1-32", b"GET / HTTP/1.32\r\nHost: a\r\n\r\n", {400, 505}),
    ("p27-version-0-2-1-0", b"GET / HTTP/0.2.1.0\r\nHost: a\r\n\r\n", {400}),
    ("p27-version-math-digit", "GET / HTTP/1.\U0001d7d9\r\nHost: a\r\n\r\n".encode(), {400}),
    ("p27-nul-method", b"\x00 / HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("p27-lowercase-version", b"GET / http/1.1\r\nHost: a\r\n\r\n", {400}),
    ("p28-method-not-a-token", b'G=":<>(e),[T];?" /get HTTP/1.1\r\nHost: a\r\n\r\n', {400}),
    ("p28-lf-in-request-line", b"GET /\nHTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("p28-two-spaces", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("p28-space-in-target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("p28-non-ascii-target", "GET /é HTTP/1.1\r\nHost: a\r\n\r\n".encode(), {400}),
    ("p28-tab-in-target", b"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("p29-two-hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
    ("p29-no-host", b"GET / HTTP/1.1\r\nX: y\r\n\r\n", {400}),
    ("p29-invalid-host", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", {400}),
]


@pytest.mark.parametrize(
    "request_bytes, statuses", [pytest.param(r, s, id=i) for i, r, s in BAD_REQUESTS])
def test_malformed_request_gets_error_and_close(srv, request_bytes, statuses):
    ex = srv.exchange(GOOD + request_bytes + AFTER)
    replies = ex.replies
    assert [r.status for r in replies][:1] == [200], ex.raw[:300]
    assert replies[0].body == b"first", "the valid request before the bad one was not answered"
    assert len(replies) == 2, f"expected exactly one error response, got {ex.statuses}"
    error = replies[1]
    assert error.status in statuses, error.raw_head
    assert error.header("Connection") == "close"
    assert b"smuggled" not in ex.raw


SHORT_BAD_REQUESTS = [(i, r, s) for i, r, s in BAD_REQUESTS if len(r) < 300]


@pytest.mark.parametrize(
    "request_bytes, statuses", [pytest.param(r, s, id=i) for i, r, s in SHORT_BAD_REQUESTS])
def test_malformed_request_fed_one_byte_per_read(srv, request_bytes, statuses):
    # The same verdict when every byte arrives in its own read (limits and the chunked
    # decoder must work incrementally, not only on a whole request).
    with srv.connect() as sock:
        sock.sendall(GOOD)
        srv.read_replies(sock, 1)
        for i in range(len(request_bytes)):
            try:
                sock.sendall(request_bytes[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            srv.sync()
            if srv.closed_count:
                break
        ex = srv.read_until_close(sock)
    assert len(ex.replies) == 1, ex.statuses
    assert ex.replies[0].status in statuses


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/3.0", b"HTTP/9.9"])
def test_p27_unsupported_major_version_gets_505(srv, version):
    ex = srv.exchange(b"GET / " + version + b"\r\nHost: a\r\n\r\n" + AFTER)
    assert ex.statuses == [505]


def test_p22_bare_lf_line_endings_rejected_without_waiting(srv):
    # The head never contains CRLFCRLF, so a parser that only looks for the blank line keeps
    # waiting; strict mode must refuse the bare LF (peers #22) instead of timing out.
    ex = srv.exchange(b"GET / HTTP/1.1\nHost: a\n\n", timeout=4.0)
    assert ex.statuses == [400]


@pytest.mark.parametrize("data", [
    # The start of a TLS 1.2 ClientHello: what a client that speaks HTTPS to the HTTP port sends.
    bytes.fromhex("160301020001000001fc0303") + b"\x00" * 32,
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Bad: nul\x00here",  # a NUL in an unfinished head
    b"\x1b[A",  # terminal garbage
])
def test_control_bytes_in_an_unfinished_head_get_400_without_waiting(server, data):
    """Before: a head with no blank line yet was only checked for bare CR/LF and its limits,
    so control bytes waited for the header timeout. Now they are refused as they arrive."""
    srv = server(header_timeout=30.0)
    ex = srv.exchange(data, timeout=4.0)
    assert ex.statuses == [400]


def test_p22_bare_lf_after_crlf_request_line(srv):
    ex = srv.exchange(b"GET / HTTP/1.1\r\nHost: a\n\r\n" + AFTER)
    assert ex.statuses == [400]


# -- framing that is valid but must close (RFC 9112 §6.3 item 3) ------------------------------


@pytest.mark.parametrize("te", [b"chunked", b",chunked"], ids=["p4-cl-te", "p9-empty-member"])
def test_content_length_with_chunked_is_answered_then_closed(srv, te):
    request = _head(b"Host: a", b"Content-Length: 5", b"Transfer-Encoding: " + te)
    ex = srv.exchange(request + b"3\r\nabc\r\n0\r\n\r\n" + AFTER, methods=["POST"])
    replies = ex.final
    assert len(replies) == 1, ex.statuses
    reply = replies[0]
    assert reply.status in (200, 400)
    if reply.status == 200:
        assert reply.body == b"abc", "the body must be framed by chunked, not Content-Length"
    assert reply.header("Connection") == "close"


def test_p15_request_line_shaped_trailer_is_just_a_trailer(srv):
    # "X:POST / HTTP/1.1" is a well-formed trailer field; it must not start a new request.
    request = _head(*CHUNKED) + b"5\r\nhello\r\n0\r\nX:POST /echo HTTP/1.1\r\n\r\n"
    ex = srv.exchange(request + b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert ex.statuses == [200, 200]
    assert ex.replies[0].body == b"hello"
    assert ex.replies[1].body == b"Hello, World!"


def test_p16_last_chunk_without_trailer_end_is_not_dispatched(server):
    # "0\r\n" alone does not finish the message: no response until the trailer section ends,
    # and then the body deadline (not a dispatch) ends the connection.
    srv = server(body_timeout=0.3)
    ex = srv.exchange(_head(*CHUNKED) + b"5\r\nhello\r\n0\r\n")
    assert all(s != 200 for s in ex.statuses), ex.raw[:300]
    assert ex.statuses in ([], [408])


def test_p17_hundred_thousand_one_byte_chunks(cli_server):
    # Regression (BUG #4): some chunk line always straddles two reads, and the chunked reader
    # spun on it forever. A subprocess, so a relapse cannot freeze the suite.
    srv = cli_server("bench.hello:app")
    body = b"1\r\na\r\n" * 100_000 + b"0\r\n\r\n"
    ex = srv.exchange(_head(*CHUNKED, b"Connection: close") + body, methods=["POST"], timeout=5)
    assert ex.statuses == [200]
    assert ex.replies[0].body == b"a" * 100_000


def test_p30_long_request_line_in_small_segments_gets_414_before_it_ends(srv):
    # Cumulative counting: 9000 bytes of target trickled in 500-byte sends, never finished.
    with srv.connect() as sock:
        sock.sendall(b"GET /")
        for _ in range(18):
            try:
                sock.sendall(b"a" * 500)
            except (BrokenPipeError, ConnectionResetError):
                break
        ex = srv.read_until_close(sock)
    assert ex.statuses == [414]


def test_p30_8000_octet_request_line_is_supported(srv):
    target = b"/query?x=" + b"y" * (8000 - len(b"GET /query?x= HTTP/1.1"))
    ex = srv.exchange(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert ex.statuses == [200]
    assert len(json.loads(ex.replies[0].body)["query"]["x"]) > 7900


def test_p31_underscore_name_does_not_alias_dash_name(srv):
    r = srv.get("/headers", {"X-Auth_User": "admin"})
    names = [n for n, _ in json.loads(r.body)["headers"]]
    assert "x-auth_user" in names
    assert "x-auth-user" not in names


def test_p32_obs_text_in_value_kept_and_only_sp_htab_trimmed(srv):
    ex = srv.exchange(b"GET /headers HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                      b"X-Obs: \t \x85admin\xa0 \t\r\n\r\n")
    fields = dict(json.loads(ex.replies[0].body)["headers"])
    assert fields["x-obs"] == "\x85admin\xa0"


def test_p33_whitespace_heavy_value_is_accepted(srv):
    value = b"a" + b" \t" * 20_000 + b"b"
    ex = srv.exchange(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Ws: " + value
                      + b"\r\n\r\n")
    assert ex.statuses == [200]


def test_absolute_form_target_is_routed_by_path(srv):
    ex = srv.exchange(b"GET http://a/path/abs HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert ex.statuses == [200]
    assert ex.replies[0].body == b"abs"


def test_unknown_method_token_gets_405_or_501_not_400(srv):
    ex = srv.exchange(b"BREW / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert ex.statuses[0] in (405, 501)


def test_fragment_in_query_never_reaches_the_app(srv):
    """Before: "GET /?name=x#frag" reached the app with the query value "x#frag". A client never
    sends a fragment (RFC 9110 §7.1) and "#" is no query byte (RFC 3986 §3.4): 400 and close."""
    ex = srv.exchange(b"GET /path/echo?name=x#frag HTTP/1.1\r\nHost: a\r\n\r\n" + AFTER)
    assert ex.statuses == [400]
    assert b"smuggled" not in ex.raw
