"""Validators, conditional requests and byte ranges (RFC 9110 §8.8, §13, §14), as pure functions.

What it is: the decisions a file server makes before it sends a byte, on bytes in and values out,
with no I/O, so every rule is a table in the unit tests.
Rules:
- HTTP-dates: IMF-fixdate is what we send; all three formats are accepted (RFC 9110 §5.6.7). A
  date that does not parse makes its header be ignored, as §13.1.3/§13.1.4 require.
- Entity tags: ``If-Match`` compares strongly, ``If-None-Match`` weakly (§8.8.3.2); ``*`` matches
  any current representation. A malformed list matches nothing (a garbled ``If-None-Match``
  must not produce a 304 for a representation the client does not have).
- Preconditions are evaluated in §13.2.2's order; the result is 200 (go on), 304 or 412.
- Ranges: one ``bytes=`` range (``a-b``, ``a-``, ``-n``) gives 206; a syntactically bad header
  or another unit is ignored (§14.2: a server MAY ignore Range); more than one range is answered
  with the whole representation (200), never with amplification; a range that starts past the
  end is 416.
Never switches.
"""

from __future__ import annotations

import calendar
import datetime
import re
import time

# -- HTTP-dates -----------------------------------------------------------------------------------

_MONTHS = {m: i for i, m in enumerate(
    (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
     b"Dec"), 1)}
_DAY = rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_LONG_DAY = rb"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_TIME = rb"(\d\d):(\d\d):(\d\d)"
_MON = rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
# Sun, 06 Nov 1994 08:49:37 GMT
_IMF = re.compile(_DAY + rb", (\d\d) " + _MON + rb" (\d{4}) " + _TIME + rb" GMT\Z")
# Sunday, 06-Nov-94 08:49:37 GMT
_RFC850 = re.compile(_LONG_DAY + rb", (\d\d)-" + _MON + rb"-(\d\d) " + _TIME + rb" GMT\Z")
# Sun Nov  6 08:49:37 1994
_ASCTIME = re.compile(_DAY + rb" " + _MON + rb" ([ \d]\d) " + _TIME + rb" (\d{4})\Z")


def format_http_date(seconds: float) -> bytes:
    """IMF-fixdate for a POSIX time: ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    t = time.gmtime(seconds)
    return b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")[t.tm_wday], t.tm_mday,
        (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
         b"Dec")[t.tm_mon - 1], t.tm_year, t.tm_hour, t.tm_min, t.tm_sec)


def parse_http_date(value: bytes) -> int | None:
    """POSIX seconds for an HTTP-date in any of its three formats, or None if it is not one."""
    value = value.strip(b" \t")
    m = _IMF.match(value)
    if m:
        day, mon, year, hh, mm, ss = m.groups()
    else:
        m = _RFC850.match(value)
        if m:
            day, mon, yy, hh, mm, ss = m.groups()
            # §5.6.7: a two-digit year more than 50 years in the future is in the past century.
            year_now = time.gmtime().tm_year
            y = 2000 + int(yy)
            if y > year_now + 50:
                y -= 100
            year = b"%d" % y
        else:
            m = _ASCTIME.match(value)
            if not m:
                return None
            mon, day, hh, mm, ss, year = m.groups()
    try:
        fields = (int(year), _MONTHS[mon], int(day), int(hh), int(mm), int(ss))
        datetime.datetime(*fields)  # raises on 31 Feb, 25:00:00...
    except ValueError:
        return None  # 31 Feb, 25:00:00...
    return calendar.timegm((*fields, 0, 0, 0))


# -- entity tags ----------------------------------------------------------------------------------

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E / obs-text (§8.8.3)
_ETAG = re.compile(rb'[ \t]*((?:W/)?"[\x21\x23-\x7e\x80-\xff]*")[ \t]*(?:,|\Z)')


def parse_etags(value: bytes) -> list[bytes] | None:
    """The entity tags of an If-Match/If-None-Match list, ``[b"*"]`` for ``*``, or None when the
    field is malformed. Empty list elements are allowed (§5.6.1)."""
    if value.strip(b" \t") == b"*":
        return [b"*"]
    tags: list[bytes] = []
    pos, end = 0, len(value)
    while pos < end:
        if value[pos] in b" \t,":  # an empty element, or the spaces before one
            pos += 1
            continue
        m = _ETAG.match(value, pos)
        if m is None:
            return None
        tags.append(m.group(1))
        pos = m.end()
    return tags


def _opaque(tag: bytes) -> bytes:
    return tag[2:] if tag.startswith(b"W/") else tag


def strong_match(tags: list[bytes], etag: bytes) -> bool:
    """If-Match: ``*``, or a strong tag equal to ours (ours is strong)."""
    return tags == [b"*"] or any(t == etag and not t.startswith(b"W/") for t in tags)


def weak_match(tags: list[bytes], etag: bytes) -> bool:
    """If-None-Match: ``*``, or any tag whose opaque part equals ours."""
    mine = _opaque(etag)
    return tags == [b"*"] or any(_opaque(t) == mine for t in tags)


# -- preconditions (§13.2.2) -----------------------------------------------------------------------

PROCEED = 200
NOT_MODIFIED = 304
PRECONDITION_FAILED = 412


def evaluate(method: bytes, etag: bytes, mtime: int, if_match: bytes | None,
             if_unmodified_since: bytes | None, if_none_match: bytes | None,
             if_modified_since: bytes | None) -> int:
    """PROCEED, NOT_MODIFIED or PRECONDITION_FAILED for a request on a representation with strong
    ``etag`` last modified at ``mtime`` (whole seconds), in the order of RFC 9110 §13.2.2."""
    if if_match is not None:
        tags = parse_etags(if_match)
        if tags is None or not strong_match(tags, etag):
            return PRECONDITION_FAILED
    elif if_unmodified_since is not None:
        since = parse_http_date(if_unmodified_since)
        if since is not None and mtime > since:
            return PRECONDITION_FAILED
    get_or_head = method == b"GET" or method == b"HEAD"
    if if_none_match is not None:
        tags = parse_etags(if_none_match)
        if tags is not None and weak_match(tags, etag):
            return NOT_MODIFIED if get_or_head else PRECONDITION_FAILED
    elif if_modified_since is not None and get_or_head:
        since = parse_http_date(if_modified_since)
        if since is not None and mtime <= since:
            return NOT_MODIFIED
    return PROCEED


# -- ranges (§14) ------------------------------------------------------------------------------

WHOLE = None  # answer 200 with the whole representation
UNSATISFIABLE = (-1, -1)  # answer 416
# Bounded digit runs: int() of thousands of digits is slow (peers #3); 18 digits exceed any file.
_RANGE = re.compile(rb"[ \t]*(?:(\d{1,18})-(\d{0,18})|-(\d{1,18}))[ \t]*\Z")


def parse_range(value: bytes, length: int) -> tuple[int, int] | None:
    """For a GET of a ``length``-byte representation: ``(offset, count)`` to answer 206,
    UNSATISFIABLE for 416, or WHOLE (None) when the Range is to be ignored: not ``bytes``,
    malformed, more than one range (answered whole: never amplification), or an empty file."""
    unit, eq, spec = value.partition(b"=")
    if not eq or unit.lower() != b"bytes" or length == 0:
        return WHOLE
    if b"," in spec:
        parts = [p for p in spec.split(b",") if p.strip(b" \t")]
        if len(parts) != 1:
            return WHOLE  # several ranges: the whole file, once (documented in docs/files.md)
        spec = parts[0]
    m = _RANGE.match(spec)
    if m is None:
        return WHOLE
    first, last, suffix = m.groups()
    if suffix is not None:
        n = int(suffix)
        if n == 0:
            return UNSATISFIABLE
        n = min(n, length)
        return (length - n, n)
    start = int(first)
    if last:
        end = int(last)
        if end < start:
            return WHOLE  # invalid: ignore the header (§14.1.1)
        end = min(end, length - 1)
    else:
        end = length - 1
    if start >= length:
        return UNSATISFIABLE
    return (start, end - start + 1)


def if_range_allows(value: bytes, etag: bytes, mtime: int) -> bool:
    """Whether a Range may be applied given If-Range (§13.1.5): a strong entity tag equal to
    ours, or an HTTP-date exactly equal to our Last-Modified. Anything else: send it whole."""
    value = value.strip(b" \t")
    if value.startswith(b'"'):
        return value == etag
    if value.startswith(b"W/"):
        return False  # a weak tag never validates a range
    return parse_http_date(value) == mtime


# -- the whole decision ---------------------------------------------------------------------------

RANGE_HEADERS = frozenset({b"if-match", b"if-unmodified-since", b"if-none-match",
                           b"if-modified-since", b"range", b"if-range"})
PARTIAL = 206
RANGE_NOT_SATISFIABLE = 416


def fields_named(headers: list[tuple[bytes, bytes]], names: frozenset[bytes]
                 ) -> dict[bytes, bytes] | None:
    """The request's fields among ``names`` (lower case), or None when there is none (the
    common request: one pass, nothing made). A field sent on several lines is one
    comma-separated list (RFC 9110 §5.3)."""
    found: dict[bytes, bytes] | None = None
    for name, value in headers:
        if name in names:
            if found is None:
                found = {}
            found[name] = found[name] + b", " + value if name in found else value
    return found


def decide(method: bytes, headers: dict[bytes, bytes], etag: bytes, mtime: int, size: int
           ) -> tuple[int, tuple[int, int] | None]:
    """What to answer for a GET/HEAD of a ``size``-byte representation, given the request's
    conditional and range ``headers`` (lower-case names): (200, None), (206, (offset,
    count)), (304, None), (412, None) or (416, None). Preconditions first (§13.2.2), then
    If-Range and Range for GET only."""
    status = evaluate(method, etag, mtime, headers.get(b"if-match"),
                      headers.get(b"if-unmodified-since"), headers.get(b"if-none-match"),
                      headers.get(b"if-modified-since"))
    if status != PROCEED:
        return status, None
    span = headers.get(b"range")
    if span is None or method != b"GET":
        return PROCEED, None
    if_range = headers.get(b"if-range")
    if if_range is not None and not if_range_allows(if_range, etag, mtime):
        return PROCEED, None
    chosen = parse_range(span, size)
    if chosen is UNSATISFIABLE:
        return RANGE_NOT_SATISFIABLE, None
    if chosen is None:
        return PROCEED, None
    return PARTIAL, chosen


_NOT_MODIFIED_KEEPS = (b"etag:", b"last-modified:", b"cache-control:", b"vary:", b"expires:",
                       b"content-location:")


def not_modified_fields(fields: bytes) -> bytes:
    """The header lines of a 304 made from those of the 200 it stands for: the validators,
    Cache-Control, Expires, Content-Location and Vary (RFC 9110 §15.4.5); no content headers."""
    return b"".join(line + b"\r\n" for line in fields.split(b"\r\n")
                    if line.lower().startswith(_NOT_MODIFIED_KEEPS))
