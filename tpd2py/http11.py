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
Chunked bodies are decoded by `chunked.ChunkedDecoder`, which shares this module's byte classes.
"""

from __future__ import annotations

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

# --- limits -----------------------------------------------------------------------------------

# RFC 9112 §3: recipients SHOULD support request lines of at least 8000 octets; 8 KiB is also
# what nginx and gunicorn accept by default. Longer ones get 414 (URI Too Long).
MAX_REQUEST_LINE = 8192
# Whole head (request line + fields + blank line). Browsers with many cookies stay well under
# 16 KiB; 64 KiB leaves room for fat JWTs while bounding what one connection can make us buffer.
MAX_HEADER_BYTES = 65536
# Real clients send 5-30 fields; 100 is what gunicorn/h2o allow. More -> 431 (RFC 6585 §5).
MAX_HEADERS = 100
# Chunk extensions are almost never used; the cap exists because RFC 9112 §7.1.1 asks servers to
# bound them (an unbounded chunk line is a memory/CPU sink). Applies to a whole chunk line.
MAX_CHUNK_EXT = 4096
# Trailers are rare and small; the same reasoning as for headers applies (peers #18).
MAX_TRAILER_BYTES = 16384
# 18 decimal digits always fit in a signed 64-bit integer; peers #3 (h11 #181) shows why a
# numeral must be bounded before it ever reaches int().
MAX_CONTENT_LENGTH_DIGITS = 18
# 15 hex digits < 2**60: any larger chunk is an attack, and the bound keeps int(x, 16) trivial.
MAX_CHUNK_SIZE_DIGITS = 15
# Validated header-name spellings are cached; bounded so a client cannot grow it forever.
NAME_CACHE_MAX = 2048
NAME_CACHE_MAX_LEN = 64
# Validated Host values are cached too (a set lookup beats a translate); bounded likewise.
HOST_CACHE_MAX = 256


class Limits:
    """Per-server parser limits; every default is a module constant documented above."""

    __slots__ = (
        "max_request_line",
        "max_header_bytes",
        "max_headers",
        "max_chunk_ext",
        "max_trailer_bytes",
    )

    def __init__(
        self,
        max_request_line: int = MAX_REQUEST_LINE,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_headers: int = MAX_HEADERS,
        max_chunk_ext: int = MAX_CHUNK_EXT,
        max_trailer_bytes: int = MAX_TRAILER_BYTES,
    ) -> None:
        self.max_request_line = max_request_line
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.max_chunk_ext = max_chunk_ext
        self.max_trailer_bytes = max_trailer_bytes


DEFAULT_LIMITS = Limits()


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


# --- byte classes (RFC 9110 §5.6.2 tchar, §5.5 field-value, RFC 3986 for Host) -------------------

_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_HEXDIG = b"0123456789abcdefABCDEF"


def _table(allowed: bytes) -> bytes:
    """A translate table mapping allowed bytes to 1 and everything else to 0 (so 0 == bad)."""
    return bytes(1 if i in allowed else 0 for i in range(256))


# Head check: CTLs are forbidden in field values (RFC 9110 §5.5) and everywhere else in the head;
# HTAB is allowed (it is OWS); obs-text 0x80-0xFF survives here and is refused later where the
# grammar forbids it (method, target, version, names). CR and LF map to 0 as well: the head must
# contain exactly 2 of them per line break, so one `count(0)` catches CTLs *and* bare CR/LF.
_HEAD_OK = bytes([9]) + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
_HEAD_TABLE = _table(_HEAD_OK)
_HEAD_OK_CRLF = _HEAD_OK + b"\r\n"  # what an unfinished head may hold (CR/LF pairing apart)
# RFC 3986 §3.2.2/3.2.3 reg-name / IPv4 / IP-literal characters, plus ":" for the port.
_HOST_TABLE = _table(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%!$&'()*+,;=:[]"
)
_HEX_TABLE = _table(_HEXDIG)
_OWS = b" \t"  # RFC 9110 §5.6.3: only SP and HTAB are whitespace; never bare .strip()

_METHODS = frozenset(
    (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE")
)

_HOST = b"host"
_CONTENT_LENGTH = b"content-length"
_TRANSFER_ENCODING = b"transfer-encoding"
_CONNECTION = b"connection"
_EXPECT = b"expect"
# Fields that frame the message or decide the connection's fate: interpreted after the walk.
_SPECIAL = frozenset((_HOST, _CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION, _EXPECT))
_CANONICAL = {name: name for name in _SPECIAL}

_COMMON_NAMES = (
    b"Host", b"User-Agent", b"Accept", b"Accept-Encoding", b"Accept-Language", b"Accept-Charset",
    b"Connection", b"Content-Length", b"Content-Type", b"Cookie", b"Referer", b"Origin",
    b"Cache-Control", b"Pragma", b"Transfer-Encoding", b"Expect", b"Authorization", b"Upgrade",
    b"If-None-Match", b"If-Modified-Since", b"If-Match", b"If-Range", b"Range", b"TE", b"DNT",
    b"Upgrade-Insecure-Requests", b"Sec-Fetch-Site", b"Sec-Fetch-Mode", b"Sec-Fetch-User",
    b"Sec-Fetch-Dest", b"Sec-Ch-Ua", b"Sec-Ch-Ua-Mobile", b"Sec-Ch-Ua-Platform", b"Priority",
    b"X-Forwarded-For", b"X-Forwarded-Proto", b"X-Forwarded-Host", b"X-Real-IP",
    b"X-Requested-With", b"Keep-Alive", b"Sec-WebSocket-Key", b"Sec-WebSocket-Version",
    b"Sec-WebSocket-Extensions", b"Sec-WebSocket-Protocol", b"Forwarded", b"Via", b"Date",
)
# Validated spelling -> lower-case name. Only names that passed _check_name are ever added.
_NAMES: dict[bytes, bytes] = {}
# Host values that passed _check_host: a server sees few distinct ones.
_HOSTS: set[bytes] = set()


def _bad(status: int, reason: str) -> ProtocolError:
    return ProtocolError(status, reason)


def _is_token(value: bytes) -> bool:
    """RFC 9110 §5.6.2 token = 1*tchar."""
    return bool(value) and not value.translate(None, _TCHAR)


def _check_name(name: bytes) -> bytes:
    """Validate a field name (RFC 9112 §5.1, RFC 9110 §5.1), cache it, return it lower-cased."""
    if not _is_token(name):
        if not name:
            raise _bad(400, "empty field name")
        if name[0] in (32, 9):
            # RFC 9112 §5.2: obs-fold is deprecated; a server MUST reject it or replace it, and a
            # leading-whitespace line could also hide a field from another parser (peers #23/24).
            raise _bad(400, "obs-fold or whitespace at start of field line")
        if name[-1] in (32, 9):
            raise _bad(400, "whitespace between field name and colon")  # RFC 9112 §5.1 MUST
        raise _bad(400, "invalid byte in field name")
    lname = name.lower()  # bytes.lower() is ASCII-only by definition
    lname = _CANONICAL.get(lname, lname)
    if len(_NAMES) < NAME_CACHE_MAX and len(name) <= NAME_CACHE_MAX_LEN:
        _NAMES[name] = lname
    return lname


for _name in _COMMON_NAMES:
    _check_name(_name)
    _check_name(_name.lower())
del _name


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
        raise _bad(400, "bare CR or LF before request line")
    if n & 1:
        if rest or window[n - 1] != 13:
            raise _bad(400, "bare CR or LF before request line")
        return -1  # ends with a lone "\r": its "\n" may be on the way
    if not rest:
        if len(window) >= limit + 2:
            raise _bad(400, "too many empty lines before request line")
        return -1
    return start + n


def _head_error(head: bytes) -> ProtocolError:
    """Name the byte that made the head check fail (slow path, only for a good reason string)."""
    lines = head.split(b"\r\n")
    for number, line in enumerate(lines):
        if 13 in line:
            return _bad(400, "bare CR in request head")  # RFC 9112 §2.2
        if 10 in line:
            return _bad(400, "bare LF in request head")  # strict: only CRLF ends a line
        if line.translate(_HEAD_TABLE).count(0):
            where = "request line" if number == 0 else "field line"
            return _bad(400, f"control character in {where}")  # RFC 9110 §5.5
    return _bad(400, "invalid byte in request head")


def _parse_version(version: bytes) -> int:
    """RFC 9112 §2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT (case-sensitive)."""
    if (
        len(version) != 8
        or version[:5] != b"HTTP/"
        or version[6] != 46
        or not version[5:6].isdigit()
        or not version[7:8].isdigit()
    ):
        raise _bad(400, "malformed HTTP version")
    if version[5] != 49:
        raise _bad(505, "unsupported HTTP major version")  # RFC 9110 §15.6.6
    return 11  # HTTP/1.x with x >= 2: speak 1.1 (RFC 9110 §6.2)


def _parse_target(method: bytes, target: bytes) -> tuple[bytes, bytes]:
    """Split a non-origin-form target (RFC 9112 §3.2.2-3.2.4) into (path, query), or raise."""
    if method == b"CONNECT":
        # authority-form = uri-host ":" port, only for CONNECT (RFC 9112 §3.2.3)
        host, colon, port = target.rpartition(b":")
        if not colon or not host or not port.isdigit() or target.translate(_HOST_TABLE).count(0):
            raise _bad(400, "CONNECT needs an authority-form target")
        return b"", b""
    if target == b"*":
        if method != b"OPTIONS":
            raise _bad(400, "asterisk-form is only for OPTIONS")  # RFC 9112 §3.2.4
        return b"*", b""
    scheme = target[:8].lower()
    if scheme.startswith(b"http://"):
        rest = target[7:]
    elif scheme == b"https://":
        rest = target[8:]
    else:
        raise _bad(400, "invalid request target")
    # absolute-form (RFC 9112 §3.2.2): authority, then path-abempty, then optional query.
    cut = len(rest)
    for sep in (b"/", b"?"):
        i = rest.find(sep)
        if 0 <= i < cut:
            cut = i
    authority = rest[:cut]
    if not authority or authority.translate(_HOST_TABLE).count(0):
        # RFC 9110 §4.2.1: an http(s) URI with an empty host MUST be rejected as invalid.
        raise _bad(400, "invalid authority in absolute-form target")
    path, _, query = rest[cut:].partition(b"?")
    return path or b"/", query


def _parse_content_length(value: bytes) -> int:
    """RFC 9110 §8.6: Content-Length = 1*DIGIT (ASCII). A list of identical values counts once."""
    if len(value) <= MAX_CONTENT_LENGTH_DIGITS and value.isdigit():  # bytes.isdigit: ASCII only
        return int(value)
    if 44 in value:  # "5, 5": RFC 9110 §8.6 lets a recipient collapse identical members
        parts = {part.strip(_OWS) for part in value.split(b",")}
        if len(parts) == 1:
            only = parts.pop()
            if len(only) <= MAX_CONTENT_LENGTH_DIGITS and only.isdigit():
                return int(only)
        raise _bad(400, "invalid or conflicting Content-Length list")
    raise _bad(400, "invalid Content-Length")  # peers #2/#3: +10, 0x0a, 1_0, -1, empty, huge


def _check_transfer_encoding(values: list[bytes]) -> None:
    """Accept exactly one final "chunked" coding (RFC 9112 §6.1, §6.3 item 4), else raise.

    The field is a comma list (several lines combine); empty members are ignored (RFC 9110 §5.6.1)
    and only SP/HTAB are OWS (§5.6.3), so "\\xa0chunked" is an unknown coding.
    """
    codings = []
    for value in values:
        for member in value.split(b","):
            member = member.strip(_OWS)
            if member:
                codings.append(member.lower())
    if not codings or codings[-1] != b"chunked":
        if b"chunked" in codings or not codings:
            raise _bad(400, "chunked is not the final transfer coding")  # gunicorn CVE-2024-1135
        raise _bad(501, "unsupported transfer coding")  # RFC 9112 §6.1; never fall back to CL
    if len(codings) > 1:
        if codings.count(b"chunked") > 1:
            raise _bad(400, "chunked applied more than once")  # RFC 9112 §6.1 MUST NOT
        raise _bad(501, "unsupported transfer coding")  # e.g. gzip, chunked: we do not decode


def _connection_tokens(value: bytes) -> set[bytes]:
    """RFC 9110 §7.6.1: Connection = #connection-option; `value` is already lower-cased."""
    return {member.strip(_OWS) for member in value.split(b",")}


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
        raise _bad(414, "request line too long")
    if head.translate(_HEAD_TABLE).count(0) != 2 * (n_lines - 1):
        raise _head_error(head)

    # --- request line: method SP request-target SP HTTP-version (RFC 9112 §3) ---
    try:
        method, target, version_bytes = line.split(b" ")
    except ValueError:
        raise _bad(400, "request line is not method SP target SP version") from None
    if method not in _METHODS and not _is_token(method):
        raise _bad(400, "method is not a token")  # RFC 9112 §3.1
    if version_bytes == b"HTTP/1.1":
        version = 11
    elif version_bytes == b"HTTP/1.0":
        version = 10
    else:
        version = _parse_version(version_bytes)
    # Targets are ASCII without CTL/SP (RFC 9112 §3.2; the head check already refused CTLs but
    # allowed HTAB and obs-text, which a target must not contain).
    if not target.isascii() or 9 in target:
        raise _bad(400, "invalid byte in request target")
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
        raise _bad(431, "too many header fields")
    # The list of lines becomes the list of (name, value) pairs in place: one allocation less.
    del lines[0]
    headers: list[tuple[bytes, bytes]] = lines  # type: ignore[assignment]
    names = _NAMES
    host = None
    special: list[tuple[bytes, bytes]] | None = None
    i = 0
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon:
            raise _bad(400, "field line without colon")  # also catches "Transfer-\r\nEncoding"
        lname = names.get(name)
        if lname is None:
            lname = _check_name(name)
        value = value.strip(_OWS)
        headers[i] = (lname, value)
        i += 1  # noqa: SIM113 -- enumerate() costs an allocation per request
        if lname in _SPECIAL:
            if lname is _HOST and host is None:
                host = value
            elif special is None:
                special = [(lname, value)]
            else:
                special.append((lname, value))

    # --- framing and connection semantics ---
    if host is None:
        if version == 11:
            raise _bad(400, "missing Host header")  # RFC 9112 §3.2
    elif host not in _HOSTS:
        _check_host(host)
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
        if lname is _CONTENT_LENGTH:
            length = _parse_content_length(value)
            if has_length and length != content_length:
                raise _bad(400, "conflicting Content-Length values")  # RFC 9112 §6.3 item 5
            content_length = length
            has_length = True
        elif lname is _CONNECTION:
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
        elif lname is _TRANSFER_ENCODING:
            if codings is None:
                codings = [value]
            else:
                codings.append(value)
        elif lname is _HOST:
            raise _bad(400, "more than one Host header")  # RFC 9112 §3.2
        elif version == 11 and value.lower() == b"100-continue":  # lname is _EXPECT
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
            raise _bad(400, "Transfer-Encoding in an HTTP/1.0 request")
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


def _check_host(value: bytes) -> None:
    """RFC 9112 §3.2: a Host with an invalid value gets 400. Host = uri-host [ ":" port ]."""
    if value.translate(_HOST_TABLE).count(0):
        raise _bad(400, "invalid Host header")
    if len(_HOSTS) < HOST_CACHE_MAX:
        _HOSTS.add(value)


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
        raise _bad(400, "bare LF in request head")
    if buf.count(b"\r", lo, end - 1) != crlfs:
        raise _bad(400, "bare CR in request head")
    # A control byte (NUL, ESC, a TLS ClientHello's 0x16...) cannot become valid by waiting:
    # answer now, not at the header timeout. Only the new bytes are looked at.
    if buf[lo:end].translate(None, _HEAD_OK_CRLF):
        raise _bad(400, "control byte in request head")
    max_line = limits.max_request_line
    if end - start >= max_line + 2 and buf.find(b"\r\n", pos, start + max_line + 2) < 0:
        raise _bad(414, "request line too long")
    if end - start >= limits.max_header_bytes:
        raise _bad(431, "request head too large")
