"""gzip for responses: negotiated from Accept-Encoding, whole bodies, streams, and a cache.

What it is: ``Gzip(level=6)``, a handler wrapper (``app.wrap(Gzip())``, or ``--gzip``) that
compresses what handlers return when the client accepts it, plus ``negotiate``, the
Accept-Encoding rule that static.py shares.
Rules:
- Accept-Encoding with q-values (RFC 9110 §12.5.3): a coding is acceptable when named (or
  matched by ``*``) with q > 0; no Accept-Encoding means no compression (curl without
  ``--compressed`` must get bytes it can read); ``identity;q=0`` forces gzip when gzip is
  acceptable, whatever the size.
- Only bodies of compressible types (text, JSON, JavaScript, XML, SVG...) of ``min_size`` bytes
  or more, with a status that has a body and is not 206, and with no Content-Encoding already
  (never twice). ``Cache-Control: no-transform`` set by the handler opts a response out.
- Every response that could have been compressed says ``Vary: Accept-Encoding``, compressed
  or not; a compressed one gets ``Content-Encoding: gzip`` and its ETag suffixed ``-gzip``.
- Whole bodies (bytes, a list of chunks) keep their Content-Length; a generator is compressed
  piece by piece with a sync flush after each piece, so a streamed page or an SSE event leaves
  when it is produced and is never held in the compressor.
- Cached gzip forms (Antiweb did this): a body made of the same bytes objects as before (a
  pre-encoded page, a constant) is compressed once. A body enters the bounded cache the second
  time it is seen, so dynamic pages, which differ each time, never evict the constants.
Never switches (compression runs in the handler's greenlet: its time is the handler's).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any

from .app import Handler, Later, Request, Response, bare_response, to_response
from .conditional import not_modified_fields, parse_etags, weak_match

_Q = re.compile(rb"\s*;\s*q\s*=\s*([01](?:\.\d{0,3})?)\s*\Z", re.IGNORECASE)
_CODING = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")

# Content types worth compressing (the media type, lower case, before any parameter).
COMPRESSIBLE_PREFIXES = (b"text/",)
COMPRESSIBLE_TYPES = frozenset({
    b"application/json", b"application/javascript", b"application/xml", b"application/xhtml+xml",
    b"application/rss+xml", b"application/atom+xml", b"application/ld+json",
    b"application/manifest+json", b"application/wasm", b"image/svg+xml", b"image/x-icon",
    b"image/vnd.microsoft.icon", b"font/ttf", b"font/otf", b"application/x-font-ttf",
})


def compressible(content_type: bytes) -> bool:
    media = content_type.partition(b";")[0].strip().lower()
    return media.startswith(COMPRESSIBLE_PREFIXES) or media in COMPRESSIBLE_TYPES


def parse_accept_encoding(value: bytes) -> dict[bytes, float] | None:
    """Coding (lower case) -> q for an Accept-Encoding value; None if it is malformed (a
    malformed field is treated as absent: no compression)."""
    out: dict[bytes, float] = {}
    for item in value.split(b","):
        coding, semi, params = item.partition(b";")
        coding = coding.strip(b" \t").lower()
        if not coding:
            if semi:
                return None
            continue  # an empty list element (§5.6.1)
        if not _CODING.match(coding):
            return None
        q = 1.0
        if semi:
            m = _Q.match(b";" + params)
            if m is None:
                return None
            q = float(m.group(1))
            if q > 1:
                return None
        out[coding] = q
    return out


def _q(codings: dict[bytes, float], name: bytes) -> float:
    q = codings.get(name)
    if q is None and name == b"gzip":
        q = codings.get(b"x-gzip")
    if q is None:
        q = codings.get(b"*")
    return 0.0 if q is None else q


# Negotiation results are cached per header value: clients send a handful of distinct ones.
_NEGOTIATED: dict[tuple[bytes, tuple[bytes, ...]], tuple[bytes | None, bool]] = {}
_NEGOTIATED_MAX = 512


def negotiate(accept_encoding: bytes | None,
              offered: tuple[bytes, ...] = (b"gzip",)) -> tuple[bytes | None, bool]:
    """(the coding to use of ``offered``, best first on equal q; or None for identity) and
    whether identity is unacceptable (``identity;q=0``, or ``*;q=0`` without identity)."""
    if accept_encoding is None:
        return None, False
    key = (accept_encoding, offered)
    hit = _NEGOTIATED.get(key)
    if hit is not None:
        return hit
    codings = parse_accept_encoding(accept_encoding)
    if codings is None:
        result: tuple[bytes | None, bool] = (None, False)
    else:
        best, best_q = None, 0.0
        for name in offered:
            q = _q(codings, name)
            if q > best_q:
                best, best_q = name, q
        identity_q = codings.get(b"identity", codings.get(b"*", 1.0))
        result = (best, identity_q == 0)
    if len(_NEGOTIATED) < _NEGOTIATED_MAX:
        _NEGOTIATED[key] = result
    return result


def gzip_bytes(data: bytes | list[bytes], level: int = 6) -> bytes:
    """A whole gzip member (mtime 0: the same input gives the same bytes, so ETags are stable)."""
    c = zlib.compressobj(level, zlib.DEFLATED, 31)
    if isinstance(data, bytes):
        return c.compress(data) + c.flush()
    return b"".join([c.compress(piece) for piece in data]) + c.flush()


def _content_type(fields: bytes) -> bytes | None:
    for line in fields.split(b"\r\n"):
        if line[:13].lower() == b"content-type:":
            return line[13:].strip()
    return None


_ETAG_LINE = re.compile(rb'(?im)^ETag:[ \t]*(W/)?"([^"\r\n]*)"[ \t]*\r\n')
_VARY = b"Vary: Accept-Encoding\r\n"
_GZIP_FIELDS = b"Content-Encoding: gzip\r\n" + _VARY


def _suffix_etag(fields: bytes) -> bytes:
    """An ETag of the gzip form: the identity tag with ``-gzip`` added (a distinct
    representation must not share the identity form's tag)."""
    return _ETAG_LINE.sub(lambda m: b'ETag: %s"%s-gzip"\r\n' % (m.group(1) or b"", m.group(2)),
                          fields)


# Response header fields -> (the identity form's fields, the gzip form's fields), or
# _NOT_ELIGIBLE: handlers reuse a few field blocks (often one constant), so each is looked at
# once. Bounded: a handler that builds distinct headers per response pays the analysis each time.
_NOT_ELIGIBLE = (b"", b"")
_FORMS: dict[bytes, tuple[bytes, bytes]] = {}
_FORMS_MAX = 1024


_VARY_LINE = re.compile(rb"(?im)^(Vary:[ \t]*)([^\r\n]*)\r\n")


def _add_accept_encoding(m: re.Match[bytes]) -> bytes:
    """A handler's own Vary (``Origin``, ``Cookie``...) gains Accept-Encoding: a cache must
    never hand gzip bytes to a client that did not ask for them."""
    names = [n.strip().lower() for n in m.group(2).split(b",")]
    if b"*" in names or b"accept-encoding" in names:
        return m.group(0)
    value = m.group(2).rstrip(b" \t")
    return m.group(1) + (value + b", " if value else b"") + b"Accept-Encoding\r\n"


def _forms(fields: bytes) -> tuple[bytes, bytes]:
    lowered = fields.lower()
    kind = _content_type(fields)
    if b"content-encoding:" in lowered or b"no-transform" in lowered or kind is None \
            or not compressible(kind):
        forms = _NOT_ELIGIBLE
    elif b"vary:" in lowered:
        fields = _VARY_LINE.sub(_add_accept_encoding, fields)
        forms = (fields, _suffix_etag(fields) + b"Content-Encoding: gzip\r\n")
    else:
        forms = (fields + _VARY, _suffix_etag(fields) + _GZIP_FIELDS)
    if len(_FORMS) < _FORMS_MAX:
        _FORMS[fields] = forms
    return forms


def _key_size(key: Any) -> int:
    return len(key) if type(key) is bytes else sum(map(len, key))


class GzipCache:
    """Gzip forms of bodies made of the same bytes objects as before, bounded in entries and
    bytes; a body is admitted the second time it is seen."""

    def __init__(self, max_entries: int = 256, max_bytes: int = 16 << 20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes  # counts the keys (the uncompressed bodies) too
        self.entries: dict[Any, bytes] = {}
        self.size = 0
        self.seen: dict[int, int] = {}
        self.hits = 0

    def get(self, key: Any, body: bytes | list[bytes], level: int) -> bytes:
        entries = self.entries
        hit = entries.get(key)
        if hit is not None:
            self.hits += 1
            return hit
        data = gzip_bytes(body, level)
        h = hash(key)
        if self.seen.pop(h, None) is None:
            if len(self.seen) >= 4 * self.max_entries:
                self.seen.clear()  # bounded; the next sighting starts over
            self.seen[h] = 1
            return data
        # What an entry holds: its gzip form and its key, the uncompressed body itself.
        cost = len(data) + _key_size(key)
        if self.max_entries <= 0 or cost > self.max_bytes // 4:
            return data  # too big to keep beside others: compressed each time
        while entries and (len(entries) >= self.max_entries
                           or self.size + cost > self.max_bytes):
            old = next(iter(entries))
            self.size -= len(entries.pop(old)) + _key_size(old)
        entries[key] = data
        self.size += cost
        return data


STREAM_WINDOW_BITS = 12
STREAM_MEM_LEVEL = 4


class Gzip:
    """A handler wrapper: ``app.wrap(Gzip(level=6, min_size=1024))``. See the module rules."""

    def __init__(self, level: int = 6, min_size: int = 1024,
                 cache: GzipCache | None = None) -> None:
        if not 1 <= level <= 9:
            raise ValueError("gzip level is 1..9")
        self.level = level
        self.min_size = min_size
        self.cache = cache if cache is not None else GzipCache()

    def __call__(self, handler: Handler) -> Handler:
        filter_response = self.filter

        @wraps(handler)
        def gzipped(request: Request, **params: Any) -> Any:
            result = handler(request, **params)
            if type(result) is Later:
                return result  # answered later: not compressed (documented)
            return filter_response(request, to_response(result))

        return gzipped

    def filter(self, request: Request, response: Response) -> Response:
        """``response``, or a new Response with its gzip form. Never switches."""
        status = response.status
        if status < 200 or status in (204, 206, 304):
            return response
        fields = response.fields
        forms = _FORMS.get(fields)
        if forms is None:
            forms = _forms(fields)
        if forms is _NOT_ELIGIBLE:
            return response
        body = response.body
        if type(body) is bytes:
            size = len(body)
        elif type(body) is list:
            size = sum(map(len, body))
        elif hasattr(body, "__next__"):
            size = -1
        else:
            return response  # a file body: static mounts serve precompressed siblings instead
        coding, identity_refused = negotiate(request._head.header(b"accept-encoding"))
        identity_fields, gzip_fields = forms
        if coding is None or (0 <= size < self.min_size and not identity_refused):
            return response if identity_fields is fields \
                else _with_fields(response, identity_fields)
        if size < 0:
            if request._head.method == b"HEAD":
                return _with_fields(response, gzip_fields)  # never iterated: closed as it is
            return _with_fields(response, gzip_fields, self._stream(body))
        if status == 200 and b"etag:" in gzip_fields.lower():
            not_modified = _revalidated(request, gzip_fields)
            if not_modified is not None:
                return not_modified
        if type(body) is bytes:
            packed = self.cache.get(body, body, self.level)
        elif all(type(chunk) is bytes for chunk in body):
            packed = self.cache.get(tuple(body), body, self.level)
        else:  # bytearray or memoryview chunks: not hashable, compressed each time
            packed = gzip_bytes([bytes(chunk) for chunk in body], self.level)
        return _with_fields(response, gzip_fields, packed)

    def _stream(self, body: Iterator[bytes | str]) -> Iterator[bytes]:
        # A stream may live for hours (SSE): a 4 KiB window and a small memLevel keep its
        # deflate state near 24 KiB instead of zlib's default 256 KiB; small pieces, flushed
        # one by one, gain little from a larger window anyway.
        c = zlib.compressobj(self.level, zlib.DEFLATED, 16 + STREAM_WINDOW_BITS,
                             STREAM_MEM_LEVEL)
        try:
            for piece in body:
                if isinstance(piece, str):
                    piece = piece.encode()
                if piece:
                    yield c.compress(piece) + c.flush(zlib.Z_SYNC_FLUSH)
            yield c.flush()
        finally:
            close: Callable[[], None] | None = getattr(body, "close", None)
            if close is not None:
                close()


def _revalidated(request: Request, gzip_fields: bytes) -> Response | None:
    """A 304 when the client's If-None-Match names the gzip form's ETag. The handler compared
    it with its own (identity) tag and found no match; only this wrapper knows the suffixed
    tag, so only it can say "not modified" for the compressed representation."""
    if_none_match = request._head.header(b"if-none-match")
    if if_none_match is None:
        return None
    m = _ETAG_LINE.search(gzip_fields)
    tags = parse_etags(if_none_match)
    if m is None or tags is None or not weak_match(tags, b'"%s"' % m.group(2)):
        return None
    return bare_response(304, not_modified_fields(gzip_fields), b"")


def _with_fields(response: Response, fields: bytes, body: Any = None) -> Response:
    return bare_response(response.status, fields, response.body if body is None else body,
                         response.reason)
