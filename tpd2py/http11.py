"""HTTP/1.1 request parser: sans-I/O, strict, bytes in and a RequestHead / "need more" / error out.

Rules:
- No I/O and no switching: this module never imports `socket` or the hub; it only looks at
  `buf[start:end]` handed to it by the connection loop, which owns the buffer.
- Strict RFC 9112/9110 grammar. Anything that could be read two ways by two parsers (the root of
  request smuggling, see docs and peers.md section 7) raises `ProtocolError(status, reason)`; the
  caller answers with that status and closes. Only CRLF ends a line; bare CR/LF, obs-fold, CTLs,
  whitespace before a colon, bad Content-Length or Transfer-Encoding are all rejected.
- Limits count cumulative buffered bytes, so a request line or head trickled across many reads is
  refused as soon as it passes its limit (414 / 431), not when it finally ends.
- Linear time: wire bytes are checked with translate tables and C-level bytes methods; no `int()`
  before a byte-class check, no Unicode-aware `strip()`, no backtracking regexes.
- Transfer-Encoding plus Content-Length: chunked wins, Content-Length is ignored and `must_close`
  is set, so the connection closes after the response (RFC 9112 §6.3 item 3, peers #4/#9). We
  accept rather than reject because the request itself is unambiguous to us; closing removes
  what a CL-framing peer might have read as the next request.
- Retries are the caller's: after None it calls again from the same `start` with a larger `end`.
  Passing `scan_from=previous_end - 3` keeps a head trickled byte by byte linear overall;
  without it each retry rescans the whole partial head (still bounded by the head limit).

How it works: `parse_head` finds the blank line with one `find`, copies the head once to `bytes`,
checks every byte of it with one `translate` + `count`, splits it on CRLF and walks the lines.
Known header spellings hit a dict of validated names (and Host values a set), so the common path
does no per-byte Python work; both caches are bounded and only ever hold values that passed the
full check, so they change speed, never the verdict. A few framing headers (Host, Content-Length,
Transfer-Encoding, Connection, Expect) are set aside during the walk and interpreted afterwards.
The byte classes, name checks, caches and limits live in `_grammar.py`, shared with
`chunked.ChunkedDecoder`, which decodes chunked bodies; `Limits` is re-exported from here.
Switch points: none.
"""

from __future__ import annotations

from ._grammar import (
    CONNECTION,
    CONTENT_LENGTH,
    DEFAULT_LIMITS,
    HEAD_OK_CRLF,
    HEAD_TABLE,
    HOST,
    HOST_TABLE,
    HOSTS,
    MAX_CHUNK_EXT,
    MAX_CONTENT_LENGTH_DIGITS,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_REQUEST_LINE,
    MAX_TRAILER_BYTES,
    NAMES,
    OWS,
    SPECIAL,
    TRANSFER_ENCODING,
    Limits,
    check_host,
    check_name,
    invalid,
    is_token,
)
from .errors import ProtocolError

__all__ = [
    "DEFAULT_LIMITS",
    "Limits",
    "RequestHead",
    "parse_head",
    "MAX_REQUEST_LINE",
    "MAX_HEADER_BYTES",
    "MAX_HEADERS",
    "MAX_CHUNK_EXT",
    "MAX_TRAILER_BYTES",
]

class RequestHead:
    """A parsed request head. Header names are lower-case; values have SP/HTAB trimmed."""

    __slots__ = (
        "method",
        "target",
        "path",
        "query",
        "version",
        "headers",
        "content_length",
        "chunked",
        "keep_alive",
        "expect_continue",
        "must_close",
    )

    method: bytes
    target: bytes
    path: bytes
    query: bytes
    version: int
    headers: list[tuple[bytes, bytes]]
    content_length: int
    chunked: bool
    keep_alive: bool
    expect_continue: bool
    must_close: bool

    def __init__(
        self,
        method: bytes = b"GET",
        target: bytes = b"/",
        path: bytes = b"/",
        query: bytes = b"",
        version: int = 11,
        headers: list[tuple[bytes, bytes]] | None = None,
        content_length: int = -1,
        chunked: bool = False,
        keep_alive: bool = True,
        expect_continue: bool = False,
        must_close: bool = False,
    ) -> None:
        # parse_head bypasses this (object.__new__ + slot stores is ~30% faster); it exists for
        # tests and for code that builds heads by hand.
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.version = version
        self.headers = [] if headers is None else headers
        self.content_length = content_length
        self.chunked = chunked
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.must_close = must_close

    def header(self, name: bytes) -> bytes | None:
        """The first value of header `name` (given lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def __repr__(self) -> str:
        return (
            f"<RequestHead {self.method!r} {self.target!r} HTTP/{self.version // 10}."
            f"{self.version % 10} cl={self.content_length} chunked={self.chunked}"
            f" keep_alive={self.keep_alive} must_close={self.must_close}>"
        )


# RFC 9110 §9: the registered methods skip the token check (any other token is allowed too).
_METHODS = frozenset(
    (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE")
)


# --- the head -----------------------------------------------------------------------------------


def _skip_empty_lines(buf: bytes | bytearray, start: int, end: int, limit: int) -> int:
    """Index of the first byte after the CRLFs that precede the request line, or -1 for "need more".

    RFC 9112 §2.2: a server SHOULD ignore at least one empty line received before the request
    line. They count towards the request-line limit (measured from `start`), so a flood of them is
    bounded like any other head bytes.
    """
    window = bytes(buf[start : min(end, start + limit + 2)])
    rest = window.lstrip(b"\r\n")
    n = len(window) - len(rest)
    pairs = n >> 1
    if window[: pairs * 2] != b"\r\n" * pairs:
        raise invalid(400, "bare CR or LF before request line")
    if n & 1:
        if rest or window[n - 1] != 13:
            raise invalid(400, "bare CR or LF before request line")
        return -1  # ends with a lone "\r": its "\n" may be on the way
    if not rest:
        if len(window) >= limit + 2:
            raise invalid(400, "too many empty lines before request line")
        return -1
    return start + n


def _head_error(head: bytes) -> ProtocolError:
    """Name the byte that made the head check fail (slow path, only for a good reason string)."""
    lines = head.split(b"\r\n")
    for number, line in enumerate(lines):
        if 13 in line:
            return invalid(400, "bare CR in request head")  # RFC 9112 §2.2
        if 10 in line:
            return invalid(400, "bare LF in request head")  # strict: only CRLF ends a line
        if line.translate(HEAD_TABLE).count(0):
            where = "request line" if number == 0 else "field line"
            return invalid(400, f"control character in {where}")  # RFC 9110 §5.5
    return invalid(400, "invalid byte in request head")


def _parse_version(version: bytes) -> int:
    """RFC 9112 §2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT (case-sensitive)."""
    if (
        len(version) != 8
        or version[:5] != b"HTTP/"
        or version[6] != 46
        or not version[5:6].isdigit()
        or not version[7:8].isdigit()
    ):
        raise invalid(400, "malformed HTTP version")
    if version[5] != 49:
        raise invalid(505, "unsupported HTTP major version")  # RFC 9110 §15.6.6
    return 11  # HTTP/1.x with x >= 2: speak 1.1 (RFC 9110 §6.2)


def _parse_target(method: bytes, target: bytes) -> tuple[bytes, bytes]:
    """Split a non-origin-form target (RFC 9112 §3.2.2-3.2.4) into (path, query), or raise."""
    if method == b"CONNECT":
        # authority-form = uri-host ":" port, only for CONNECT (RFC 9112 §3.2.3)
        host, colon, port = target.rpartition(b":")
        if not colon or not host or not port.isdigit() or target.translate(HOST_TABLE).count(0):
            raise invalid(400, "CONNECT needs an authority-form target")
        return b"", b""
    if target == b"*":
        if method != b"OPTIONS":
            raise invalid(400, "asterisk-form is only for OPTIONS")  # RFC 9112 §3.2.4
        return b"*", b""
    scheme = target[:8].lower()
    if scheme.startswith(b"http://"):
        rest = target[7:]
    elif scheme == b"https://":
        rest = target[8:]
    else:
        raise invalid(400, "invalid request target")
    # absolute-form (RFC 9112 §3.2.2): authority, then path-abempty, then optional query.
    cut = len(rest)
    for sep in (b"/", b"?"):
        i = rest.find(sep)
        if 0 <= i < cut:
            cut = i
    authority = rest[:cut]
    if not authority or authority.translate(HOST_TABLE).count(0):
        # RFC 9110 §4.2.1: an http(s) URI with an empty host MUST be rejected as invalid.
        raise invalid(400, "invalid authority in absolute-form target")
    path, _, query = rest[cut:].partition(b"?")
    return path or b"/", query


def _parse_content_length(value: bytes) -> int:
    """RFC 9110 §8.6: Content-Length = 1*DIGIT (ASCII). A list of identical values counts once."""
    if len(value) <= MAX_CONTENT_LENGTH_DIGITS and value.isdigit():  # bytes.isdigit: ASCII only
        return int(value)
    if 44 in value:  # "5, 5": RFC 9110 §8.6 lets a recipient collapse identical members
        parts = {part.strip(OWS) for part in value.split(b",")}
        if len(parts) == 1:
            only = parts.pop()
            if len(only) <= MAX_CONTENT_LENGTH_DIGITS and only.isdigit():
                return int(only)
        raise invalid(400, "invalid or conflicting Content-Length list")
    raise invalid(400, "invalid Content-Length")  # peers #2/#3: +10, 0x0a, 1_0, -1, empty, huge


def _check_transfer_encoding(values: list[bytes]) -> None:
    """Accept exactly one final "chunked" coding (RFC 9112 §6.1, §6.3 item 4), else raise.

    The field is a comma list (several lines combine); empty members are ignored (RFC 9110 §5.6.1)
    and only SP/HTAB are OWS (§5.6.3), so "\\xa0chunked" is not chunked. A final coding that is
    not exactly chunked (gzip, chunk, "chunked", chunked;q=1, or chunked then gzip) is a 400:
    §6.3 item 4 says a server MUST answer 400 and close when chunked is not the final coding of
    a request, and the body's framing is then unknowable (never fall back to Content-Length,
    gunicorn CVE-2024-1135/CVE-2024-6827). Only when chunked is final do we know where the body
    ends; an earlier coding we do not decode (gzip, chunked) is then a 501 (RFC 9112 §6.1).
    """
    codings = []
    for value in values:
        for member in value.split(b","):
            member = member.strip(OWS)
            if member:
                codings.append(member.lower())
    if not codings or codings[-1] != b"chunked":
        raise invalid(400, "chunked is not the final transfer coding")
    if len(codings) > 1:
        if codings.count(b"chunked") > 1:
            raise invalid(400, "chunked applied more than once")  # RFC 9112 §6.1 MUST NOT
        raise invalid(501, "unsupported transfer coding")  # e.g. gzip, chunked: we do not decode


def _connection_tokens(value: bytes) -> set[bytes]:
    """RFC 9110 §7.6.1: Connection = #connection-option; `value` is already lower-cased."""
    return {member.strip(OWS) for member in value.split(b",")}


def parse_head(
    buf: bytes | bytearray,
    start: int,
    end: int,
    limits: Limits = DEFAULT_LIMITS,
    scan_from: int = 0,
) -> tuple[RequestHead, int] | None:
    """Parse the request head at buf[start:end].

    Returns (head, index just after the blank line), or None if the head is not complete yet.
    Raises ProtocolError(status, reason) on invalid input, including an incomplete head that
    already exceeds a limit. `scan_from` is an optional hint for retries: an index before which
    no b"\\r\\n\\r\\n" starts (e.g. the previous `end` minus 3); it only saves rescanning.
    Never switches.
    """
    if start >= end:
        return None
    pos = start
    if buf[start] == 13:
        pos = _skip_empty_lines(buf, start, end, limits.max_request_line)
        if pos < 0:
            return None
    max_head = limits.max_header_bytes
    window_end = start + max_head
    if window_end > end:
        window_end = end
    idx = buf.find(b"\r\n\r\n", scan_from if scan_from > pos else pos, window_end)
    if idx < 0:
        _check_incomplete(buf, start, pos, end, limits, scan_from)
        return None

    # One copy to bytes (b"" + bytearray-slice is the cheapest such copy in CPython 3.11).
    head = b"" + buf[pos:idx]
    lines = head.split(b"\r\n")
    n_lines = len(lines)
    line = lines[0]
    if len(line) + (pos - start) > limits.max_request_line:
        # Checked first so that a head parsed whole fails like one fed byte by byte.
        raise invalid(414, "request line too long")
    if head.translate(HEAD_TABLE).count(0) != 2 * (n_lines - 1):
        raise _head_error(head)

    # --- request line: method SP request-target SP HTTP-version (RFC 9112 §3) ---
    try:
        method, target, version_bytes = line.split(b" ")
    except ValueError:
        raise invalid(400, "request line is not method SP target SP version") from None
    if method not in _METHODS and not is_token(method):
        raise invalid(400, "method is not a token")  # RFC 9112 §3.1
    if version_bytes == b"HTTP/1.1":
        version = 11
    elif version_bytes == b"HTTP/1.0":
        version = 10
    else:
        version = _parse_version(version_bytes)
    # Targets are ASCII without CTL/SP (RFC 9112 §3.2; the head check already refused CTLs but
    # allowed HTAB and obs-text, which a target must not contain) and without "#": a fragment
    # is never sent (RFC 9110 §7.1) and "#" is no pchar or query byte (RFC 3986 §3.3, §3.4), so
    # an app must not see "/?q=x#frag" as the query value "x#frag".
    if not target.isascii() or 9 in target or 35 in target:
        if 35 in target:
            raise invalid(400, "fragment (#) in request target")
        raise invalid(400, "invalid byte in request target")
    if target and target[0] == 47 and method != b"CONNECT":  # origin-form (RFC 9112 §3.2.1)
        if 63 in target:
            path, _, query = target.partition(b"?")
        else:
            path = target
            query = b""
    else:
        path, query = _parse_target(method, target)

    # --- field lines: field-name ":" OWS field-value OWS (RFC 9112 §5) ---
    if n_lines - 1 > limits.max_headers:
        raise invalid(431, "too many header fields")
    # The list of lines becomes the list of (name, value) pairs in place: one allocation less.
    del lines[0]
    headers: list[tuple[bytes, bytes]] = lines  # type: ignore[assignment]
    names = NAMES
    host = None
    special: list[tuple[bytes, bytes]] | None = None
    i = 0
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon:
            raise invalid(400, "field line without colon")  # also catches "Transfer-\r\nEncoding"
        lname = names.get(name)
        if lname is None:
            lname = check_name(name)
        value = value.strip(OWS)
        headers[i] = (lname, value)
        i += 1  # noqa: SIM113 -- enumerate() costs an allocation per request
        if lname in SPECIAL:
            if lname is HOST and host is None:
                host = value
            elif special is None:
                special = [(lname, value)]
            else:
                special.append((lname, value))

    # --- framing and connection semantics ---
    if host is None:
        if version == 11:
            raise invalid(400, "missing Host header")  # RFC 9112 §3.2
    elif host not in HOSTS:
        check_host(host)
    h = _new(RequestHead)
    if special is None:
        h.content_length = -1
        h.chunked = False
        h.keep_alive = version == 11
        h.expect_continue = False
        h.must_close = False
    else:
        _framing(h, special, version)
    h.method = method
    h.target = target
    h.path = path
    h.query = query
    h.version = version
    h.headers = headers
    return h, idx + 4


_new = object.__new__


def _framing(h: RequestHead, special: list[tuple[bytes, bytes]], version: int) -> None:
    """Set h's framing and connection fields from the special fields (all but the first Host)."""
    content_length = -1
    has_length = False
    codings = None
    close = False
    keep_alive_token = False
    expect_continue = False
    for lname, value in special:
        if lname is CONTENT_LENGTH:
            length = _parse_content_length(value)
            if has_length and length != content_length:
                raise invalid(400, "conflicting Content-Length values")  # RFC 9112 §6.3 item 5
            content_length = length
            has_length = True
        elif lname is CONNECTION:
            # RFC 9110 §7.6.1: a list of case-insensitive tokens; lines combine, and "close"
            # anywhere wins (RFC 9112 §9.6) whatever the order.
            tokens = value.lower()
            if tokens == b"keep-alive":
                keep_alive_token = True
            elif tokens == b"close":
                close = True
            else:
                tokens_set = _connection_tokens(tokens)
                close = close or b"close" in tokens_set
                keep_alive_token = keep_alive_token or b"keep-alive" in tokens_set
        elif lname is TRANSFER_ENCODING:
            if codings is None:
                codings = [value]
            else:
                codings.append(value)
        elif lname is HOST:
            raise invalid(400, "more than one Host header")  # RFC 9112 §3.2
        elif version == 11 and value.lower() == b"100-continue":  # lname is EXPECT
            # RFC 9110 §10.1.1: ignore 100-continue from HTTP/1.0 clients; other
            # expectations are ignored too (417 is optional).
            expect_continue = True
    # RFC 9112 §9.3: 1.1 is persistent unless "close"; 1.0 only with "keep-alive".
    keep_alive = not close and (version == 11 or keep_alive_token)
    must_close = False
    chunked = False
    if codings is not None:
        chunked = True
        if version == 10:
            # RFC 9112 §6.1: TE in an HTTP/1.0 message means faulty framing (peers #11).
            raise invalid(400, "Transfer-Encoding in an HTTP/1.0 request")
        if len(codings) != 1 or codings[0].lower() != b"chunked":
            _check_transfer_encoding(codings)
        if has_length:
            # RFC 9112 §6.3 item 3: TE overrides CL, and the server MUST close afterwards
            # because a peer may have framed it by CL (peers #4, #9).
            content_length = -1
            must_close = True
            keep_alive = False
    h.content_length = content_length
    h.chunked = chunked
    h.keep_alive = keep_alive
    h.expect_continue = expect_continue
    h.must_close = must_close


def _check_incomplete(
    buf: bytes | bytearray, start: int, pos: int, end: int, limits: Limits, scan_from: int
) -> None:
    """No blank line yet: raise now if the head is already invalid or can no longer fit its
    limits (so neither a bare-LF client nor a slowloris waits for a timeout); else need more."""
    # Bare LF / bare CR (RFC 9112 §2.2, peers #22): every LF must follow a CR, every CR precede
    # an LF (a CR in the last byte may still get its LF). Only bytes from the hint on are
    # counted, starting one byte early so that a CRLF split by the hint is seen whole.
    lo = pos
    lf_from = pos
    if scan_from > pos + 1:
        lo = scan_from - 1
        lf_from = scan_from
    crlfs = buf.count(b"\r\n", lo, end)
    if buf.count(b"\n", lf_from, end) != crlfs:
        raise invalid(400, "bare LF in request head")
    if buf.count(b"\r", lo, end - 1) != crlfs:
        raise invalid(400, "bare CR in request head")
    # A control byte (NUL, ESC, a TLS ClientHello's 0x16...) cannot become valid by waiting:
    # answer now, not at the header timeout. Only the new bytes are looked at.
    if buf[lo:end].translate(None, HEAD_OK_CRLF):
        raise invalid(400, "control byte in request head")
    max_line = limits.max_request_line
    if end - start >= max_line + 2 and buf.find(b"\r\n", pos, start + max_line + 2) < 0:
        raise invalid(414, "request line too long")
    if end - start >= limits.max_header_bytes:
        raise invalid(431, "request head too large")
