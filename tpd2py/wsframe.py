"""WebSocket frames (RFC 6455 §5, RFC 7692): a sans-I/O parser of what clients send, and the
encoder of what the server sends.

Rules:
- No I/O and no switching: bytes in (``feed``), events out (``FrameParser.events``), or a
  ``WebSocketError(code, reason)`` that the caller answers with a Close frame of that code.
- Strict, as a server must be (RFC 6455 §5.1-§5.5, §8.1): client frames are masked; RSV bits
  are refused unless an extension gave them a meaning (RSV1: permessage-deflate, on the first
  frame of a data message only); unknown opcodes are refused; control frames carry at most 125
  bytes and are never fragmented, but may come between the fragments of a message; a
  continuation needs a message in progress and a new message needs none; payload lengths use
  the minimal encoding and the 64-bit form has its top bit clear.
- Text is checked as UTF-8 as it arrives, across fragments and inside a frame that is still
  arriving (an incremental decoder), so the first bad byte fails the connection (1007) without
  waiting for the rest. Close frames: a 1-byte payload is refused, the code must be one a peer
  may send (§7.4.1, IANA's registry: 1000-1003, 1007-1014, 3000-4999), the reason UTF-8.
- Limits (every one a named constant or a parser argument): a frame over ``max_frame`` or a
  message over ``max_message`` (after decompression: the decompression-bomb limit) is refused
  with 1009 as soon as its header or its inflated bytes say so; nothing is buffered beyond a
  frame header, a control frame's 125 bytes, and the message being assembled.
How it works: ``feed`` appends to a small buffer; a header is parsed once complete; a data
frame's payload is taken as it comes (unmasked by XOR of big integers, C speed), inflated if
compressed, decoded if text, and kept as parts of the message until its last frame. A control
frame waits for its whole (small) payload. Events are ``(opcode, payload)`` tuples: ``TEXT``
with a str, ``BINARY``/``PING``/``PONG`` with bytes, ``CLOSE`` with ``(code, reason)``.
Switch points: none.
"""

from __future__ import annotations

import codecs
import struct
import zlib
from collections.abc import Callable
from typing import Any

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA = (TEXT, BINARY)
_CONTROL = (CLOSE, PING, PONG)

# A frame larger than this is refused (1009): a client's message is usually one frame, so this
# also bounds what one read can make us hold. 1 MiB, as the `websockets` package's default.
MAX_FRAME = 1 << 20
# A message (all its fragments, after decompression) larger than this is refused (1009).
MAX_MESSAGE = 1 << 20
# RFC 6455 §5.5: control frames carry at most 125 bytes.
MAX_CONTROL = 125

# Close codes (RFC 6455 §7.4.1).
NORMAL, GOING_AWAY, PROTOCOL_ERROR, UNSUPPORTED = 1000, 1001, 1002, 1003
NO_STATUS, ABNORMAL = 1005, 1006  # never on the wire: "none given", "no close frame at all"
INVALID_DATA, POLICY, TOO_BIG, INTERNAL_ERROR = 1007, 1008, 1009, 1011
# Codes a peer may put in a Close frame: the registered 1000-1003 and 1007-1014 (1004-1006 and
# 1015 are reserved or never sent), and 3000-4999 (libraries, frameworks, applications).
_SENDABLE = frozenset(range(1000, 1004)) | frozenset(range(1007, 1015)) | frozenset(
    range(3000, 5000))

# RFC 7692 §7.2.1: a compressed message ends with these four bytes, removed by the sender.
_DEFLATE_TAIL = b"\x00\x00\xff\xff"

_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class WebSocketError(Exception):
    """The client broke the protocol: close the connection with ``code`` (``reason`` goes in
    the Close frame and the log). ``events``: what the same ``feed`` completed before."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.events: list[tuple[int, Any]] = []  # from FrameParser.feed: complete before it

    def __str__(self) -> str:
        return f"{self.code} {self.reason}"


def valid_close_code(code: int) -> bool:
    """Whether a peer may send ``code`` in a Close frame (RFC 6455 §7.4)."""
    return code in _SENDABLE


def unmask(data: bytes | bytearray | memoryview, mask: bytes, offset: int = 0) -> bytes:
    """``data`` XOR the 4-byte ``mask``, starting at byte ``offset`` of the mask (a frame taken
    in pieces). One XOR of two big integers: linear, in C."""
    n = len(data)
    if not n:
        return b""
    if offset:
        mask = mask[offset:] + mask[:offset]
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def frame_head(opcode: int, length: int, fin: bool = True, rsv1: bool = False) -> bytes:
    """The header of an unmasked (server) frame carrying ``length`` payload bytes."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def encode_frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    """A whole server frame: header and payload in one bytes object (one chunk to send)."""
    return frame_head(opcode, len(payload), fin, rsv1) + payload


def close_payload(code: int, reason: str = "") -> bytes:
    """A Close frame's payload; ``reason`` is cut to fit the 125-byte limit on a character
    boundary. Raises ValueError for a code an endpoint may not send."""
    if code == NO_STATUS:
        return b""
    if not valid_close_code(code) and code != INTERNAL_ERROR:
        raise ValueError(f"close code {code} may not be sent")
    data = reason.encode()
    if len(data) > MAX_CONTROL - 2:
        data = data[:MAX_CONTROL - 2].decode("utf-8", "ignore").encode()
    return struct.pack("!H", code) + data


def parse_close(payload: bytes) -> tuple[int, str]:
    """A received Close frame's (code, reason); 1005 when it carries none. Raises
    WebSocketError for a 1-byte payload, a code a peer may not send, or a reason that is not
    UTF-8."""
    if not payload:
        return NO_STATUS, ""
    if len(payload) == 1:
        raise WebSocketError(PROTOCOL_ERROR, "close frame with a 1-byte payload")
    code = (payload[0] << 8) | payload[1]
    if code not in _SENDABLE:
        raise WebSocketError(PROTOCOL_ERROR, f"close code {code} may not be sent")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise WebSocketError(INVALID_DATA, "close reason is not UTF-8") from None
    return code, reason


class Inflater:
    """permessage-deflate's receiving side (RFC 7692 §7.2.2): one message at a time, with the
    LZ77 window kept between messages unless the client gave up context takeover."""

    __slots__ = ("window_bits", "takeover", "z")

    def __init__(self, window_bits: int = 15, takeover: bool = True) -> None:
        self.window_bits = window_bits
        self.takeover = takeover
        self.z: Any = None

    def inflate(self, data: bytes, limit: int, final: bool) -> bytes:
        """Inflate a piece of a message; ``final`` for its last piece. More than ``limit``
        bytes out is a bomb: WebSocketError(1009), found before they are all made."""
        z = self.z
        if z is None:
            z = self.z = zlib.decompressobj(-self.window_bits)
        if final:
            data += _DEFLATE_TAIL
        try:
            out = z.decompress(data, limit + 1)
        except zlib.error:
            raise WebSocketError(INVALID_DATA, "bad compressed data") from None
        if len(out) > limit or z.unconsumed_tail:
            raise WebSocketError(TOO_BIG, "message too big once inflated")
        if final and not self.takeover:
            self.z = None
        return out


class Deflater:
    """permessage-deflate's sending side: each message compressed and sync-flushed, its
    4-byte tail removed (RFC 7692 §7.2.1); the window is kept between messages unless the
    server was asked not to (then the same message compresses to the same bytes for every
    socket, so a broadcast is compressed once)."""

    __slots__ = ("window_bits", "takeover", "level", "z")

    def __init__(self, window_bits: int = 15, takeover: bool = True, level: int = 6) -> None:
        self.window_bits = window_bits
        self.takeover = takeover
        self.level = level
        self.z: Any = None

    def deflate(self, data: bytes) -> bytes:
        z = self.z
        if z is None:
            z = zlib.compressobj(self.level, zlib.DEFLATED, -max(self.window_bits, 9))
            if self.takeover:
                self.z = z
        out = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
        return out[:-4] if out.endswith(_DEFLATE_TAIL) else out


_HEADER, _PAYLOAD = 0, 1


class FrameParser:
    """Client frames in, events out; see the module header for the rules. Sans-I/O.

    ``feed(data)`` returns the list of events the bytes completed (often empty); it raises
    WebSocketError on the first violation, after which the parser must not be fed again.
    ``in_message`` says whether a message (or a frame) is partly received.
    """

    __slots__ = ("buf", "state", "fin", "opcode", "mask", "remaining", "mask_pos",
                 "message", "parts", "size", "decoder", "compressed", "inflater",
                 "max_frame", "max_message")

    def __init__(self, max_frame: int = MAX_FRAME, max_message: int = MAX_MESSAGE,
                 inflater: Inflater | None = None) -> None:
        self.buf = bytearray()
        self.state = _HEADER
        self.fin = True
        self.opcode = 0
        self.mask = b""
        self.remaining = 0
        self.mask_pos = 0
        # The data message being assembled: its opcode (0: none), parts and size so far.
        self.message = 0
        self.parts: list[Any] = []
        self.size = 0
        self.decoder: Any = None
        self.compressed = False
        self.inflater = inflater
        self.max_frame = max_frame
        self.max_message = max_message

    @property
    def in_message(self) -> bool:
        return bool(self.message or self.buf or self.state == _PAYLOAD)

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, Any]]:
        # The common case first: one whole small text/binary frame (FIN, no RSV bit, masked,
        # a 7-bit length) and nothing else, between messages. The checks are those _header
        # and _parse would make for it, so the verdict is the same; anything else, or a
        # payload that is not UTF-8, takes the general path (which raises as it must).
        if not self.message and not self.buf and self.state == _HEADER and len(data) > 6:
            b0, b1 = data[0], data[1]
            n = b1 - 0x80  # masked (0x80) with a 7-bit length
            if (b0 == 0x81 or b0 == 0x82) and 0 < n < 126 and len(data) == n + 6 \
                    and n <= self.max_frame and n <= self.max_message:
                payload = unmask(data[6:], bytes(data[2:6]))
                if b0 == 0x82:
                    return [(BINARY, payload)]
                try:
                    return [(TEXT, payload.decode("utf-8"))]
                except UnicodeDecodeError:
                    pass
        events: list[tuple[int, Any]] = []
        try:
            self._parse(data, events)
        except WebSocketError as e:
            e.events = events  # what came whole before the violation is still to be handled
            raise
        return events

    def _parse(self, data: bytes | bytearray | memoryview,
               events: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
        buf = self.buf
        buf += data
        while True:
            if self.state == _HEADER and not self._header():
                return events
            if self.opcode in _CONTROL:
                n = self.remaining
                if len(buf) < n:
                    return events
                payload = unmask(buf[:n], self.mask)
                del buf[:n]
                self.state = _HEADER
                opcode = self.opcode
                if opcode == CLOSE:
                    events.append((CLOSE, parse_close(payload)))
                else:
                    events.append((opcode, payload))
                continue
            # A data frame: take what is there of its payload.
            n = min(self.remaining, len(buf))
            if n == self.remaining and self.fin and not self.size and not self.compressed:
                # The common case: a whole message in one frame, all here. Decoded at once
                # (the same verdict as piece by piece: every byte is there).
                payload = unmask(buf[:n], self.mask) if n else b""
                del buf[:n]
                opcode = self.message
                if opcode == TEXT:
                    try:
                        payload = payload.decode("utf-8")  # type: ignore[assignment]
                    except UnicodeDecodeError:
                        raise WebSocketError(INVALID_DATA, "text message is not UTF-8") from None
                self.message = 0
                self.state = _HEADER
                events.append((opcode, payload))
                continue
            if n or self.remaining == 0:
                chunk = unmask(buf[:n], self.mask, self.mask_pos) if n else b""
                del buf[:n]
                self.remaining -= n
                self.mask_pos = (self.mask_pos + n) & 3
                last = self.remaining == 0
                self._data(chunk, last and self.fin)
                if last:
                    self.state = _HEADER
                    if self.fin:
                        events.append((self.message, self._take_message()))
                    continue
            return events

    def _header(self) -> bool:
        """Parse a frame header from the buffer once it is complete; what its first two bytes
        show is checked as soon as they are there. Raises WebSocketError."""
        buf = self.buf
        if len(buf) < 2:
            return False
        b0, b1 = buf[0], buf[1]
        fin = bool(b0 & 0x80)
        rsv1 = bool(b0 & 0x40)
        opcode = b0 & 0x0F
        length = b1 & 0x7F
        if b0 & 0x30:
            raise WebSocketError(PROTOCOL_ERROR, "reserved bits set (RSV2/RSV3)")
        if opcode in _CONTROL:
            if not fin:
                raise WebSocketError(PROTOCOL_ERROR, "fragmented control frame")
            if length > MAX_CONTROL:
                raise WebSocketError(PROTOCOL_ERROR, "control frame over 125 bytes")
            if rsv1:
                raise WebSocketError(PROTOCOL_ERROR, "reserved bit set on a control frame")
        elif opcode == CONTINUATION:
            if not self.message:
                raise WebSocketError(PROTOCOL_ERROR, "continuation without a message")
            if rsv1:
                raise WebSocketError(PROTOCOL_ERROR, "RSV1 on a continuation frame")
        elif opcode in _DATA:
            if self.message:
                raise WebSocketError(PROTOCOL_ERROR, "new message before the last one ended")
            if rsv1 and self.inflater is None:
                raise WebSocketError(PROTOCOL_ERROR, "reserved bit set (RSV1) with no extension")
        else:
            raise WebSocketError(PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
        if not b1 & 0x80:
            raise WebSocketError(PROTOCOL_ERROR, "client frame not masked")
        pos = 2 if length < 126 else 4 if length == 126 else 10
        if len(buf) < pos:
            return False
        if length == 126:
            length = (buf[2] << 8) | buf[3]
            if length < 126:
                raise WebSocketError(PROTOCOL_ERROR, "payload length not minimally encoded")
        elif length == 127:
            length = int.from_bytes(buf[2:10], "big")
            if length >> 63:
                raise WebSocketError(PROTOCOL_ERROR, "payload length with its top bit set")
            if length < 65536:
                raise WebSocketError(PROTOCOL_ERROR, "payload length not minimally encoded")
        if length > self.max_frame:
            raise WebSocketError(TOO_BIG, f"frame of {length} bytes is over the limit")
        if opcode not in _CONTROL and not (rsv1 or self.compressed) \
                and self.size + length > self.max_message:
            raise WebSocketError(TOO_BIG, "message over the size limit")
        if len(buf) < pos + 4:
            return False
        self.mask = bytes(buf[pos:pos + 4])
        del buf[:pos + 4]
        self.fin = fin
        self.opcode = opcode
        self.remaining = length
        self.mask_pos = 0
        self.state = _PAYLOAD
        if opcode in _DATA:
            self.message = opcode
            self.compressed = rsv1
            self.decoder = None  # made by _data when a text message comes in pieces
        return True

    def _data(self, chunk: bytes, final: bool) -> None:
        """A piece of a data message's payload (unmasked): inflate, check, keep."""
        if self.compressed:
            assert self.inflater is not None
            chunk = self.inflater.inflate(chunk, self.max_message - self.size, final)
        if not chunk and not final:
            return
        self.size += len(chunk)
        if self.size > self.max_message:
            raise WebSocketError(TOO_BIG, "message over the size limit")
        decoder = self.decoder
        if decoder is None and self.message == TEXT:
            decoder = self.decoder = _utf8_decoder()
        if decoder is not None:
            try:
                text = decoder.decode(chunk, final)
            except UnicodeDecodeError:
                raise WebSocketError(INVALID_DATA, "text message is not UTF-8") from None
            if text:
                self.parts.append(text)
        elif chunk:
            self.parts.append(chunk)

    def _take_message(self) -> Any:
        parts = self.parts
        text = self.message == TEXT
        data = parts[0] if len(parts) == 1 else ("" if text else b"").join(parts)
        self.parts = []
        self.message = 0
        self.size = 0
        self.decoder = None
        self.compressed = False
        return data


def message_frame(message: Any, encode: Callable[[Any], str | bytes] | None,
                   window_bits: int | None) -> bytes:
    """One Channel message's frame for every socket with this deflate window (the same
    bytes): ``encode`` (or the message's JSON) gives its text or binary payload."""
    data = message.json if encode is None else encode(message)
    opcode = TEXT if encode is None or isinstance(data, str) else BINARY
    return data_frame(opcode, data.encode() if isinstance(data, str) else bytes(data),
                       window_bits)


def data_frame(opcode: int, payload: bytes, window_bits: int | None) -> bytes:
    """A whole message's frame, deflated (RSV1) when permessage-deflate was negotiated with
    this window and it is worth it; no compressor is kept (a new one per message). A short
    one's header comes from a table (the common message: one echo, one chat line)."""
    n = len(payload)
    if window_bits is not None and n > 64:
        return encode_frame(opcode, Deflater(window_bits, takeover=False).deflate(payload),
                            rsv1=True)
    if n < 126:
        return SHORT_HEADS[opcode][n] + payload
    return encode_frame(opcode, payload)


# The header of every unfragmented, uncompressed text and binary frame under 126 bytes.
SHORT_HEADS = {opcode: [frame_head(opcode, n) for n in range(126)] for opcode in (TEXT, BINARY)}
