"""RFC 9110/9112 byte classes, token and field-name checks, and the parser's limits.

What it is: the grammar shared by the head parser (`http11.py`) and the chunked-body decoder
(`chunked.py`): translate tables for the byte classes, the validated-name and Host caches, the
names of the fields that frame a message, and `Limits` with every default as a named constant.

Rules:
- No I/O: imports neither `socket`, the hub nor greenlet; only `errors`.
- Byte classes are 256-byte translate tables mapping allowed bytes to 1 and all others to 0, so
  `value.translate(TABLE).count(0)` counts bad bytes in C, with no per-byte Python work.
- The caches (`NAMES`, `HOSTS`) are bounded and only ever hold values that passed the full
  check, so they change the parser's speed, never its verdict.
- Field names are interned through `CANONICAL`: a framing field's lower-case name is always the
  very object `HOST`, `CONTENT_LENGTH`, ..., so the parser may compare them with `is`.

How it works: the tables are built once at import; `check_name` validates a name, caches it and
returns it lower-cased; the common browser field names are put in the cache at import.

Switch points: none.
"""

from __future__ import annotations

from .errors import ProtocolError

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


# --- byte classes (RFC 9110 §5.6.2 tchar, §5.5 field-value, RFC 3986 for Host) -------------------

TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
HEXDIG = b"0123456789abcdefABCDEF"


def table(allowed: bytes) -> bytes:
    """A translate table mapping allowed bytes to 1 and everything else to 0 (so 0 == bad)."""
    return bytes(1 if i in allowed else 0 for i in range(256))


# Head check: CTLs are forbidden in field values (RFC 9110 §5.5) and everywhere else in the head;
# HTAB is allowed (it is OWS); obs-text 0x80-0xFF survives here and is refused later where the
# grammar forbids it (method, target, version, names). CR and LF map to 0 as well: the head must
# contain exactly 2 of them per line break, so one `count(0)` catches CTLs *and* bare CR/LF.
HEAD_OK = bytes([9]) + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
HEAD_TABLE = table(HEAD_OK)
HEAD_OK_CRLF = HEAD_OK + b"\r\n"  # what an unfinished head may hold (CR/LF pairing apart)
# RFC 3986 §3.2.2/3.2.3 reg-name / IPv4 / IP-literal characters, plus ":" for the port.
HOST_TABLE = table(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%!$&'()*+,;=:[]"
)
HEX_TABLE = table(HEXDIG)
OWS = b" \t"  # RFC 9110 §5.6.3: only SP and HTAB are whitespace; never bare .strip()


# --- field names --------------------------------------------------------------------------------

HOST = b"host"
CONTENT_LENGTH = b"content-length"
TRANSFER_ENCODING = b"transfer-encoding"
CONNECTION = b"connection"
EXPECT = b"expect"
# Fields that frame the message or decide the connection's fate: interpreted after the walk.
SPECIAL = frozenset((HOST, CONTENT_LENGTH, TRANSFER_ENCODING, CONNECTION, EXPECT))
# Lower-case name -> the one object the parser compares with `is` (see the rules above).
CANONICAL = {name: name for name in SPECIAL}

COMMON_NAMES = (
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
# Validated spelling -> lower-case name. Only names that passed check_name are ever added.
NAMES: dict[bytes, bytes] = {}
# Host values that passed check_host: a server sees few distinct ones.
HOSTS: set[bytes] = set()


def invalid(status: int, reason: str) -> ProtocolError:
    """The error to raise for input that breaks the grammar: `raise invalid(400, "why")`."""
    return ProtocolError(status, reason)


def is_token(value: bytes) -> bool:
    """RFC 9110 §5.6.2 token = 1*tchar."""
    return bool(value) and not value.translate(None, TCHAR)


def check_name(name: bytes) -> bytes:
    """Validate a field name (RFC 9112 §5.1, RFC 9110 §5.1), cache it, return it lower-cased."""
    if not is_token(name):
        if not name:
            raise invalid(400, "empty field name")
        if name[0] in (32, 9):
            # RFC 9112 §5.2: obs-fold is deprecated; a server MUST reject it or replace it, and a
            # leading-whitespace line could also hide a field from another parser (peers #23/24).
            raise invalid(400, "obs-fold or whitespace at start of field line")
        if name[-1] in (32, 9):
            raise invalid(400, "whitespace between field name and colon")  # RFC 9112 §5.1 MUST
        raise invalid(400, "invalid byte in field name")
    lname = name.lower()  # bytes.lower() is ASCII-only by definition
    lname = CANONICAL.get(lname, lname)
    if len(NAMES) < NAME_CACHE_MAX and len(name) <= NAME_CACHE_MAX_LEN:
        NAMES[name] = lname
    return lname


def check_host(value: bytes) -> None:
    """RFC 9112 §3.2: a Host with an invalid value gets 400. Host = uri-host [ ":" port ]."""
    if value.translate(HOST_TABLE).count(0):
        raise invalid(400, "invalid Host header")
    if len(HOSTS) < HOST_CACHE_MAX:
        HOSTS.add(value)


for _spelling in COMMON_NAMES:
    check_name(_spelling)
    check_name(_spelling.lower())
del _spelling
