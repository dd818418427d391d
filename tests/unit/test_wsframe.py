"""wsframe.FrameParser as tables: (client bytes, expected events or the close code refused
with), each run whole and fed one byte at a time with the same result. The groups follow
the Autobahn test suite's case list (1 framing, 2 pings, 3 reserved bits, 4 opcodes,
5 fragmentation, 6 UTF-8, 7 closing, 9 limits, 12/13 compression)."""

from __future__ import annotations

import os
import zlib
from typing import Any

import pytest

from tpd2py.wsframe import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    Deflater,
    FrameParser,
    Inflater,
    WebSocketError,
    close_payload,
    encode_frame,
    frame_head,
    parse_close,
    unmask,
)

MASK = b"\x37\xfa\x21\x3d"


def cf(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0, masked: bool = True,
       length: int | None = None, ext: str | None = None) -> bytes:
    """A client frame; ``ext`` forces the 16- or 64-bit length form (for the minimal-length
    rule), ``rsv`` is the RSV bits (0x40, 0x20, 0x10)."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | rsv | opcode
    m = 0x80 if masked else 0
    if ext == "16" or (ext is None and 126 <= n < 65536):
        head = bytes((b0, m | 126)) + n.to_bytes(2, "big")
    elif ext == "64" or (ext is None and n >= 65536):
        head = bytes((b0, m | 127)) + n.to_bytes(8, "big")
    else:
        head = bytes((b0, m | n))
    return head + (MASK + unmask(payload, MASK) if masked else payload)


def run(data: bytes, one_byte: bool, **kw: Any) -> tuple[list[tuple[int, Any]], int | None]:
    parser = FrameParser(**kw)
    events: list[tuple[int, Any]] = []
    try:
        if one_byte:
            for i in range(len(data)):
                events += parser.feed(data[i:i + 1])
        else:
            events += parser.feed(data)
    except WebSocketError as e:
        return events + e.events, e.code
    return events, None


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return cf(CLOSE, code.to_bytes(2, "big") + reason)


snowman = "☃".encode()
CASES: list[tuple[str, bytes, list[tuple[int, Any]], int | None]] = [
    # 1: framing
    ("1.1.1 empty text", cf(TEXT), [(TEXT, "")], None),
    ("1.1.2 text 125", cf(TEXT, b"*" * 125), [(TEXT, "*" * 125)], None),
    ("1.1.3 text 126", cf(TEXT, b"*" * 126), [(TEXT, "*" * 126)], None),
    ("1.1.4 text 127", cf(TEXT, b"*" * 127), [(TEXT, "*" * 127)], None),
    ("1.1.5 text 65535", cf(TEXT, b"*" * 65535), [(TEXT, "*" * 65535)], None),
    ("1.1.6 text 65536", cf(TEXT, b"*" * 65536), [(TEXT, "*" * 65536)], None),
    ("1.2.1 empty binary", cf(BINARY), [(BINARY, b"")], None),
    ("1.2.2 binary 125", cf(BINARY, b"\xfe" * 125), [(BINARY, b"\xfe" * 125)], None),
    ("1.2.6 binary 65536", cf(BINARY, b"\xfe" * 65536), [(BINARY, b"\xfe" * 65536)], None),
    ("two messages in one read", cf(TEXT, b"a") + cf(BINARY, b"b"),
     [(TEXT, "a"), (BINARY, b"b")], None),
    ("unmasked client frame", cf(TEXT, b"hi", masked=False), [], 1002),
    ("16-bit length not minimal", cf(TEXT, b"x" * 5, ext="16"), [], 1002),
    ("64-bit length not minimal", cf(TEXT, b"x" * 5, ext="64"), [], 1002),
    ("64-bit length with the top bit", cf(BINARY, b"", length=1 << 63, ext="64"), [], 1002),
    # 2: pings
    ("2.1 ping, no payload", cf(PING), [(PING, b"")], None),
    ("2.3 ping, binary payload", cf(PING, b"\x00\xff\xfe\xfd"), [(PING, b"\x00\xff\xfe\xfd")],
     None),
    ("2.4 ping, 125 bytes", cf(PING, b"*" * 125), [(PING, b"*" * 125)], None),
    ("2.5 ping, 126 bytes", cf(PING, b"*" * 126), [], 1002),
    ("2.6 fragmented ping", cf(PING, b"a", fin=False), [], 1002),
    ("2.7 unsolicited pong", cf(PONG, b"p"), [(PONG, b"p")], None),
    # 3: reserved bits
    ("3.1 RSV2", cf(TEXT, b"a", rsv=0x20), [], 1002),
    ("3.2 RSV1 without an extension", cf(TEXT, b"a", rsv=0x40), [], 1002),
    ("3.3 RSV3 after a good frame", cf(TEXT, b"ok") + cf(TEXT, b"a", rsv=0x10),
     [(TEXT, "ok")], 1002),
    ("3.7 RSV on a ping", cf(PING, b"", rsv=0x70), [], 1002),
    # 4: opcodes
    *[(f"4.1 reserved data opcode {op}", cf(op, b"x"), [], 1002) for op in (3, 4, 5, 6, 7)],
    *[(f"4.2 reserved control opcode {op}", cf(op, b"x"), [], 1002) for op in range(11, 16)],
    ("4.2 after a good message", cf(TEXT, b"ok") + cf(11), [(TEXT, "ok")], 1002),
    # 5: fragmentation
    ("5.1 ping fragmented", cf(PING, b"a", fin=False) + cf(CONTINUATION, b"b"), [], 1002),
    ("5.3 text in two fragments", cf(TEXT, b"frag", fin=False) + cf(CONTINUATION, b"ment"),
     [(TEXT, "fragment")], None),
    ("5.6 ping between fragments",
     cf(TEXT, b"a", fin=False) + cf(PING, b"p") + cf(CONTINUATION, b"b", fin=False)
     + cf(PONG) + cf(CONTINUATION, b"c"), [(PING, b"p"), (PONG, b""), (TEXT, "abc")], None),
    ("5.9 continuation without a message", cf(CONTINUATION, b"x"), [], 1002),
    ("5.18 text while a text is unfinished", cf(TEXT, b"a", fin=False) + cf(TEXT, b"b"), [],
     1002),
    ("5.x binary in many empty fragments",
     cf(BINARY, b"", fin=False) + cf(CONTINUATION, b"", fin=False) + cf(CONTINUATION, b"z"),
     [(BINARY, b"z")], None),
    ("5.x close between fragments ends the stream",
     cf(TEXT, b"a", fin=False) + close_frame(1000), [(CLOSE, (1000, ""))], None),
    # 6: UTF-8
    ("6.2 valid UTF-8, split inside a character",
     cf(TEXT, snowman[:1], fin=False) + cf(CONTINUATION, snowman[1:]), [(TEXT, "☃")], None),
    ("6.2 four-byte character", cf(TEXT, "𝄞".encode()), [(TEXT, "𝄞")], None),
    ("6.3 invalid byte", cf(TEXT, b"ab\xffcd"), [], 1007),
    ("6.3 invalid in a later fragment", cf(TEXT, b"ok", fin=False)
     + cf(CONTINUATION, b"\xc0\xaf"), [], 1007),
    ("6.4 fail fast: bad byte before the frame is complete",
     cf(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80" + b"x" * 100)[:30],
     [], 1007),
    ("6.6 truncated sequence at the end", cf(TEXT, b"ab\xe2\x98"), [], 1007),
    ("6.8 overlong encoding of '/'", cf(TEXT, b"\xc0\xaf"), [], 1007),
    ("6.9 code point above U+10FFFF", cf(TEXT, b"\xf4\x90\x80\x80"), [], 1007),
    ("6.10 UTF-16 surrogate", cf(TEXT, b"\xed\xa0\x80"), [], 1007),
    ("6.x binary is not checked", cf(BINARY, b"\xff\xfe"), [(BINARY, b"\xff\xfe")], None),
    # 7: closing
    ("7.3.1 close, no payload", cf(CLOSE), [(CLOSE, (1005, ""))], None),
    ("7.3.2 close, 1-byte payload", cf(CLOSE, b"\x03"), [], 1002),
    ("7.3.3 close with code", close_frame(1000), [(CLOSE, (1000, ""))], None),
    ("7.3.4 close with code and reason", close_frame(1001, "bye ☃".encode()),
     [(CLOSE, (1001, "bye ☃"))], None),
    ("7.3.6 close, 126 bytes", close_frame(1000, b"x" * 124), [], 1002),
    ("7.5.1 close reason not UTF-8", close_frame(1000, b"\xce\xba\xff"), [], 1007),
    *[(f"7.7 code {code}", close_frame(code), [(CLOSE, (code, ""))], None)
      for code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000,
                   4999)],
    *[(f"7.9 code {code}", close_frame(code), [], 1002)
      for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535)],
    ("7.x close then more: the parser still parses", close_frame(1000) + cf(TEXT, b"a"),
     [(CLOSE, (1000, "")), (TEXT, "a")], None),
]


@pytest.mark.parametrize("one_byte", [False, True], ids=["whole", "byte-at-a-time"])
@pytest.mark.parametrize(("name", "data", "events", "code"), CASES, ids=[c[0] for c in CASES])
def test_frame_table(name: str, data: bytes, events: list[tuple[int, Any]], code: int | None,
                     one_byte: bool) -> None:
    got, got_code = run(data, one_byte)
    assert (got, got_code) == (events, code)


LIMIT_CASES = [
    ("9.x frame over max_frame: refused from its header", cf(BINARY, length=2000)[:4],
     {"max_frame": 1000}, 1009),
    ("9.x message over max_message across fragments",
     cf(BINARY, b"a" * 600, fin=False) + cf(CONTINUATION, b"b" * 600)[:8],
     {"max_message": 1000}, 1009),
    ("9.x at the limits", cf(TEXT, b"a" * 1000), {"max_frame": 1000, "max_message": 1000},
     None),
    # Small whole frames (feed's one-frame shortcut) meet the same limits.
    ("9.x small frame over max_frame", cf(TEXT, b"a" * 20), {"max_frame": 10}, 1009),
    ("9.x small message over max_message", cf(BINARY, b"a" * 20), {"max_message": 10}, 1009),
    ("9.x small frame at the limits", cf(TEXT, b"a" * 10), {"max_frame": 10, "max_message": 10},
     None),
]


@pytest.mark.parametrize("one_byte", [False, True], ids=["whole", "byte-at-a-time"])
@pytest.mark.parametrize(("name", "data", "limits", "code"), LIMIT_CASES,
                         ids=[c[0] for c in LIMIT_CASES])
def test_limits(name: str, data: bytes, limits: dict[str, int], code: int | None,
                one_byte: bool) -> None:
    assert run(data, one_byte, **limits)[1] == code


def deflate_message(data: bytes) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


@pytest.mark.parametrize("one_byte", [False, True], ids=["whole", "byte-at-a-time"])
def test_compressed_messages_across_fragments_with_context_takeover(one_byte: bool) -> None:
    z = zlib.compressobj(6, zlib.DEFLATED, -15)

    def message(data: bytes) -> bytes:
        out = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
        return out[:-4]

    first = message("héllo ".encode() * 20)
    second = message("héllo ".encode() * 20)  # refers to the first through the window
    assert len(second) < len(first)
    data = cf(TEXT, first[:5], fin=False, rsv=0x40) + cf(PING) + cf(CONTINUATION, first[5:]) \
        + cf(BINARY, second, rsv=0x40) + cf(TEXT, b"plain")
    parser = FrameParser(inflater=Inflater())
    events: list[tuple[int, Any]] = []
    chunks = [data[i:i + 1] for i in range(len(data))] if one_byte else [data]
    for chunk in chunks:
        events += parser.feed(chunk)
    assert events == [(PING, b""), (TEXT, "héllo " * 20),
                      (BINARY, "héllo ".encode() * 20), (TEXT, "plain")]


def test_decompression_bomb_is_refused_before_it_is_inflated() -> None:
    bomb = deflate_message(b"\0" * 10_000_000)  # ~10 KB on the wire
    assert len(bomb) < 20_000
    parser = FrameParser(max_message=1 << 20, inflater=Inflater())
    with pytest.raises(WebSocketError) as e:
        parser.feed(cf(BINARY, bomb, rsv=0x40))
    assert e.value.code == 1009


def test_rsv1_on_a_continuation_is_refused_even_with_deflate() -> None:
    parser = FrameParser(inflater=Inflater())
    with pytest.raises(WebSocketError) as e:
        parser.feed(cf(TEXT, deflate_message(b"ab"), fin=False, rsv=0x40)
                    + cf(CONTINUATION, b"x", rsv=0x40))
    assert e.value.code == 1002


def test_bad_compressed_data_is_invalid_data() -> None:
    with pytest.raises(WebSocketError) as e:
        FrameParser(inflater=Inflater()).feed(cf(BINARY, b"\xff\xff\xff\xff", rsv=0x40))
    assert e.value.code == 1007


def test_deflater_without_context_takeover_makes_the_same_bytes_each_time() -> None:
    d = Deflater(takeover=False)
    payload = b"the same broadcast " * 10
    once, again = d.deflate(payload), d.deflate(payload)
    assert once == again
    assert zlib.decompressobj(-15).decompress(once + b"\x00\x00\xff\xff") == payload


def test_server_frames() -> None:
    assert encode_frame(TEXT, b"hi") == b"\x81\x02hi"
    assert frame_head(BINARY, 126) == b"\x82\x7e\x00\x7e"
    assert frame_head(BINARY, 65536) == b"\x82\x7f" + (65536).to_bytes(8, "big")
    assert frame_head(TEXT, 3, fin=False, rsv1=True) == b"\x41\x03"
    assert close_payload(1000, "x" * 200)[:2] == b"\x03\xe8"
    assert len(close_payload(1000, "☃" * 100)) <= 125
    assert parse_close(close_payload(4000, "ok")) == (4000, "ok")
    with pytest.raises(ValueError):
        close_payload(1006)
    assert close_payload(1005) == b""


def test_unmask_is_its_own_inverse_at_any_offset() -> None:
    data = os.urandom(1001)
    for offset in range(4):
        assert unmask(unmask(data, MASK, offset), MASK, offset) == data
    whole = unmask(data, MASK)
    assert unmask(data[:7], MASK) + unmask(data[7:], MASK, 7 % 4) == whole


@pytest.mark.parametrize(("data", "events", "code"), [
    (cf(TEXT, b"caf\xc3\xa9"), [(TEXT, "caf\u00e9")], None),
    (cf(BINARY, b"\xff\x00"), [(BINARY, b"\xff\x00")], None),
    (cf(TEXT, b"caf\xc3"), [], 1007),  # not UTF-8: the general path refuses it
    (cf(TEXT, b"one") + cf(TEXT, b"two"), [(TEXT, "one"), (TEXT, "two")], None),
    (cf(TEXT, b"x", rsv=0x40), [], 1002),  # RSV1 without an extension
    (cf(TEXT, b"x", masked=False), [], 1002),
    (cf(TEXT, b"x", ext="16"), [], 1002),  # not the minimal length form
], ids=["text", "binary", "bad-utf8", "two-frames", "rsv1", "unmasked", "long-form"])
def test_a_whole_small_frame_gets_the_general_verdict(data: bytes, events: list[Any],
                                                      code: int | None) -> None:
    # feed's one-frame shortcut and the byte-at-a-time general path agree on every case.
    assert run(data, False) == (events, code) == run(data, True)
