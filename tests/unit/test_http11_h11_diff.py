"""Differential test: on valid requests our parser must agree with h11 (a careful, sans-I/O,
pure-Python HTTP/1.1 implementation) about method, target, headers, body and trailers.

Hypothesis builds requests from the RFC 9110/9112 alphabets (tokens, field-vchar with inner
SP/HTAB and obs-text, optional OWS around values, Content-Length or chunked bodies with
extensions and trailers) and cuts the bytes at random places, as TCP would.
"""

from __future__ import annotations

import h11
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tpd2py.chunked import ChunkedDecoder
from tpd2py.http11 import Limits, parse_head

LIMITS = Limits()
TCHAR = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Visible ASCII that may appear in an origin-form target (no SP, CTL or "?", added separately;
# no "#": h11 accepts a fragment, we refuse it, see test_http11.py "fragment" cases).
TARGET_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "?#")
HOST_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-."
# Names whose meaning changes framing are generated on purpose, never at random.
SPECIAL = {b"host", b"content-length", b"transfer-encoding", b"connection", b"expect", b"te",
           b"upgrade", b"trailer", b"keep-alive"}

tokens = st.text(TCHAR, min_size=1, max_size=12).map(str.encode)
field_names = tokens.filter(lambda name: name.lower() not in SPECIAL)
field_vchar = st.sampled_from(
    [bytes([c]) for c in range(0x21, 0x7F)] + [b"\x80", b"\xa0", b"\xe9", b"\xff"]
)


@st.composite
def field_values(draw: st.DrawFn) -> bytes:
    """field-value = *field-content: vchar runs separated by SP/HTAB, optionally OWS around."""
    words = draw(st.lists(st.lists(field_vchar, min_size=1, max_size=6).map(b"".join), max_size=4))
    seps = [draw(st.sampled_from([b" ", b"\t", b"  ", b" \t"])) for _ in words]
    inner = b"".join(sep + word for sep, word in zip(seps, words, strict=True))[
        len(seps[0]) if seps else 0 :
    ]
    lead = draw(st.sampled_from([b"", b" ", b"\t", b"  "]))
    trail = draw(st.sampled_from([b"", b" ", b"\t"]))
    return lead + inner + trail


@st.composite
def targets(draw: st.DrawFn) -> bytes:
    path = "/" + draw(st.text(TARGET_CHARS, max_size=20))
    if draw(st.booleans()):
        path += "?" + draw(st.text(TARGET_CHARS + "?", max_size=12))
    if draw(st.integers(0, 5)) == 0:
        host = draw(st.text(HOST_CHARS, min_size=1, max_size=10))
        path = draw(st.sampled_from(["http://", "https://"])) + host + path
    return path.encode()


@st.composite
def chunked_bodies(draw: st.DrawFn) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
    """(wire bytes, decoded data, trailers)."""
    chunks = draw(st.lists(st.binary(min_size=1, max_size=40), max_size=5))
    wire = b""
    for chunk in chunks:
        size = b"%x" % len(chunk)
        if draw(st.booleans()):
            size = size.upper()
        ext = b""
        if draw(st.integers(0, 3)) == 0:
            ext = b";" + draw(tokens)
            if draw(st.booleans()):
                ext += b"=" + draw(tokens)
        wire += size + ext + b"\r\n" + chunk + b"\r\n"
    trailers = draw(st.lists(st.tuples(field_names, field_values()), max_size=3))
    wire += b"0\r\n" + b"".join(n + b":" + v + b"\r\n" for n, v in trailers) + b"\r\n"
    expected = [(n.lower(), v.strip(b" \t")) for n, v in trailers]
    return wire, b"".join(chunks), expected


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """A valid request and the places to cut it into reads."""
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH"]) | tokens)
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    fields = draw(st.lists(st.tuples(field_names, field_values()), max_size=8))
    if version == b"1.1" or draw(st.booleans()):
        host = draw(st.text(HOST_CHARS, max_size=15)).encode()
        fields.insert(draw(st.integers(0, len(fields))), (b"Host", b" " + host))
    body_kind = draw(st.sampled_from(["none", "length", "chunked"] if version == b"1.1"
                                     else ["none", "length"]))
    body = b""
    if body_kind == "length":
        body = draw(st.binary(max_size=60))
        fields.insert(draw(st.integers(0, len(fields))), (b"Content-Length", b" %d" % len(body)))
    elif body_kind == "chunked":
        body = draw(chunked_bodies())[0]
        fields.insert(draw(st.integers(0, len(fields))), (b"Transfer-Encoding", b" chunked"))
    raw = (method + b" " + draw(targets()) + b" HTTP/" + version + b"\r\n"
           + b"".join(name + b":" + value + b"\r\n" for name, value in fields) + b"\r\n" + body)
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(raw) - 1)), max_size=6)))
    return raw, cuts


def h11_parse(raw: bytes):
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(raw)
    request = conn.next_event()
    assert isinstance(request, h11.Request), request
    body = b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            trailers = list(event.headers)
            break
        else:
            raise AssertionError(event)
    return request.method, request.target, list(request.headers), body, trailers


def our_parse(raw: bytes, cuts: list[int]):
    """Parse like the connection loop: data arrives in pieces ending at each cut."""
    buf = bytearray()
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    pieces.append(b"GET /next HTTP/1.1\r\n")  # a pipelined tail that must stay unconsumed
    head = None
    start = 0
    decoder = None
    body = b""
    while pieces:
        buf += pieces.pop(0)
        if head is None:
            result = parse_head(buf, 0, len(buf), LIMITS)
            if result is None:
                continue
            head, start = result
            if head.chunked:
                decoder = ChunkedDecoder(LIMITS)
        if decoder is not None:
            start = decoder.feed(buf, start, len(buf))
            if decoder.done:
                break
        elif len(buf) - start >= max(head.content_length, 0):
            body = bytes(buf[start : start + max(head.content_length, 0)])
            start += len(body)
            break
    buf += b"".join(pieces)  # whatever was not needed arrives too
    assert head is not None
    trailers: list[tuple[bytes, bytes]] = []
    if decoder is not None:
        assert decoder.done
        body = b"".join(decoder.out)
        trailers = decoder.trailers
    assert bytes(buf[start:]) == b"GET /next HTTP/1.1\r\n"
    return head.method, head.target, head.headers, body, trailers


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_agrees_with_h11(request: tuple[bytes, list[int]]) -> None:
    raw, cuts = request
    assert our_parse(raw, cuts) == h11_parse(raw)


@settings(max_examples=200, deadline=None)
@given(chunked_bodies(), st.lists(st.integers(1, 400), max_size=8))
def test_chunked_agrees_with_h11(body: tuple[bytes, bytes, list], cuts: list[int]) -> None:
    wire, data, trailers = body
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + wire
    cuts = sorted({c for c in cuts if c < len(raw)})
    ours = our_parse(raw, cuts)
    assert ours[3:] == (data, trailers)
    assert ours == h11_parse(raw)
