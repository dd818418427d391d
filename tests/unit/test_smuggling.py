"""Request smuggling and parser-security regressions: peers.md section 7, at the parser level.

Each test is named after the bug it reproduces (CVE, advisory or issue in a peer server) and
checks what RFC 9112/9110 require. A small sans-I/O driver, `Wire`, plays the connection loop:
it parses heads and bodies one after another from the same buffer and stops where a server
would close. Every scenario runs with all bytes at once and again one byte at a time.

Cases of section 7 that are not the parser's (responses, logging, timeouts, sockets: 36, 38-40,
42, and the timing half of 41) are tested with the modules that own them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tpd2py.chunked import ChunkedDecoder
from tpd2py.errors import ProtocolError
from tpd2py.http11 import (
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_REQUEST_LINE,
    Limits,
    RequestHead,
    parse_head,
)

LIMITS = Limits()


@dataclass
class Seen:
    """What a server would have dispatched: one entry per complete request."""

    requests: list[tuple[bytes, bytes, bytes]] = field(default_factory=list)  # method, path, body
    heads: list[RequestHead] = field(default_factory=list)
    status: int | None = None  # the error answered before closing, if any
    closed: bool = False  # the server stops reading (error, Connection: close, must_close)


class Wire:
    """A minimal connection loop over the sans-I/O parser, fed bytes in any slices."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.start = 0
        self.seen = Seen()
        self.head: RequestHead | None = None
        self.decoder: ChunkedDecoder | None = None
        self.scan_from = 0  # parse_head's retry hint: no b"\r\n\r\n" starts before this

    def feed(self, data: bytes) -> None:
        self.buf += data
        try:
            while not self.seen.closed and self._step():
                pass
        except ProtocolError as exc:
            self.seen.status = exc.status
            self.seen.closed = True

    def _step(self) -> bool:
        end = len(self.buf)
        if self.head is None:
            if self.start >= end:
                return False
            result = parse_head(self.buf, self.start, end, LIMITS, self.scan_from)
            if result is None:
                self.scan_from = end - 3
                return False
            self.head, self.start = result
            self.scan_from = 0
            if self.head.chunked:
                self.decoder = ChunkedDecoder(LIMITS)
            return True
        head = self.head
        if self.decoder is not None:
            self.start = self.decoder.feed(self.buf, self.start, end)
            if not self.decoder.done:
                return False
            body = b"".join(self.decoder.out)
        else:
            length = max(head.content_length, 0)
            if end - self.start < length:
                return False
            body = bytes(self.buf[self.start : self.start + length])
            self.start += length
        self.seen.requests.append((head.method, head.path, body))
        self.seen.heads.append(head)
        if not head.keep_alive or head.must_close:
            self.seen.closed = True
        self.head = None
        self.decoder = None
        return True


def run(raw: bytes) -> Seen:
    """Run raw whole and one byte at a time; both must see the same; return what was seen."""
    whole = Wire()
    whole.feed(raw)
    bytewise = Wire()
    for i in range(len(raw)):
        bytewise.feed(raw[i : i + 1])
        if bytewise.seen.closed:
            break
    assert bytewise.seen.requests == whole.seen.requests
    assert bytewise.seen.status == whole.seen.status
    assert bytewise.seen.closed == whole.seen.closed
    return whole.seen


def rejected(raw: bytes, status: int = 400) -> None:
    seen = run(raw)
    assert seen.status == status, seen
    assert seen.closed


def post(headers: bytes, body: bytes = b"") -> bytes:
    return b"POST / HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n" + body


NEXT = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"


# --- Framing: Content-Length / Transfer-Encoding ------------------------------------------------


def test_meinheld_cve_2020_7658_differing_content_lengths() -> None:
    """#1, also waitress GHSA-4ppp-gpcr-7qf6: RFC 9112 §6.3 item 5."""
    rejected(post(b"Content-Length: 1\r\nContent-Length: 3\r\n", b"abc"))
    rejected(post(b"Content-Length: 1, 3\r\n", b"abc"))


@pytest.mark.parametrize(
    "value",
    [b"+10", b"1_0", b"0x0a", b"-1", b"", b" ", "١٠".encode(), b"1e1", b"1.0", b"10 10", b"\xa010"],
)
def test_waitress_cve_2022_24761_content_length_not_digits(value: bytes) -> None:
    """#2, also gunicorn #2810, aiohttp CVE-2023-47627 / CVE-2025-69224: 1*DIGIT only."""
    rejected(post(b"Content-Length: " + value + b"\r\n", b"x" * 10))


def test_h11_181_content_length_with_thousands_of_digits() -> None:
    """#3: a huge numeral is refused by its length, never handed to int()."""
    rejected(post(b"Content-Length: " + b"1" * 5000 + b"\r\n"))
    rejected(post(b"Content-Length: " + b"9" * 19 + b"\r\n"))


def test_classic_cl_te_is_chunked_and_closes() -> None:
    """#4, eventlet / waitress #464: TE wins over CL and the connection closes (§6.3 item 3)."""
    seen = run(post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n") + NEXT)
    assert seen.requests == [(b"POST", b"/", b"")]
    head = seen.heads[0]
    assert head.chunked and head.content_length == -1 and head.must_close
    assert not head.keep_alive and seen.closed


def test_te_cl_order_does_not_matter() -> None:
    seen = run(post(b"Transfer-Encoding: chunked\r\nContent-Length: 40\r\n", b"0\r\n\r\n") + NEXT)
    assert seen.requests == [(b"POST", b"/", b"")] and seen.heads[0].must_close and seen.closed


@pytest.mark.parametrize(
    "te", [b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
           b"Transfer-Encoding: chunked, gzip\r\n"]
)
def test_gunicorn_cve_2024_1135_chunked_not_final(te: bytes) -> None:
    """#5: chunked must be the final coding of a request (RFC 9112 §6.3 item 4) -> 400."""
    rejected(post(te, b"0\r\n\r\n"))


def test_gunicorn_cve_2024_6827_unknown_coding_never_falls_back_to_cl() -> None:
    """#6: a final coding that is not chunked leaves the body unframed: 400 and close (RFC 9112
    §6.3 item 4), even with a Content-Length to fall back on."""
    rejected(post(b"Transfer-Encoding: chunkedx\r\nContent-Length: 5\r\n", b"hello"), 400)
    rejected(post(b"Transfer-Encoding: chunkedx\r\n", b"0\r\n\r\n"), 400)


@pytest.mark.parametrize(("coding", "status"), [
    (b"gzip, chunked", 501), (b"identity, chunked", 501),  # chunked final: §6.1, 501
    (b"identity", 400), (b"deflate", 400), (b"chunk", 400), (b'"chunked"', 400),  # §6.3 item 4
])
def test_waitress_cve_2019_16786_unsupported_codings(coding: bytes, status: int) -> None:
    """#7: we decode only chunked; anything else is refused and the connection closed: 400 when
    chunked is not the final coding (RFC 9112 §6.3 item 4), else 501 for the coding we do not
    decode (§6.1)."""
    rejected(post(b"Transfer-Encoding: " + coding + b"\r\n", b"0\r\n\r\n"), status)


@pytest.mark.parametrize(
    "te", [b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
           b"Transfer-Encoding: chunked, chunked\r\n", b"Transfer-Encoding: chunked,,Chunked\r\n"]
)
def test_aiohttp_pr_12137_chunked_applied_twice(te: bytes) -> None:
    """#8, also Tornado (http-garden bug 11): chunked MUST NOT be applied twice (§6.1)."""
    rejected(post(te, b"0\r\n\r\n"))


def test_gunicorn_3087_empty_list_member_before_chunked() -> None:
    """#9: ",chunked" is chunked (RFC 9110 §5.6.1); CL is ignored; close afterwards."""
    seen = run(post(b"Transfer-Encoding: ,chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n") + NEXT)
    assert seen.requests == [(b"POST", b"/", b"")]
    assert seen.heads[0].must_close and seen.closed


def test_gunicorn_3364_vertical_tab_around_chunked() -> None:
    """#10, http-garden bug 12: VT is a CTL, not OWS (RFC 9110 §5.6.3) -> refused."""
    rejected(post(b"Transfer-Encoding: \x0bchunked\x0b\r\n", b"0\r\n\r\n"), 400)


def test_http_garden_46_nbsp_around_chunked() -> None:
    """#10: NBSP is obs-text, not OWS, so the final coding is not chunked -> 400, never chunked."""
    rejected(post(b"Transfer-Encoding: \xa0chunked\xa0\r\n", b"0\r\n\r\n"), 400)


def test_gunicorn_2810_transfer_encoding_in_http10() -> None:
    """#11: HTTP/1.0 with TE has faulty framing even with a CL (RFC 9112 §6.1)."""
    rejected(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc")


# --- Chunked body -------------------------------------------------------------------------------


def chunked(body: bytes) -> bytes:
    return post(b"Transfer-Encoding: chunked\r\n", body)


@pytest.mark.parametrize(
    "body",
    [b"0x5\r\nhello\r\n0\r\n\r\n", b"+5\r\nhello\r\n0\r\n\r\n",
     b"1_0\r\n" + b"x" * 10 + b"\r\n0\r\n\r\n", b"-0\r\n\r\n", b" 5\r\nhello\r\n0\r\n\r\n",
     b"5 5\r\nhello\r\n0\r\n\r\n",
     "５\r\nhello\r\n0\r\n\r\n".encode(), b"f" * 16 + b"\r\n"],
)
def test_gunicorn_3047_chunk_size_not_hexdig(body: bytes) -> None:
    """#12, aiohttp CVE-2023-47627, waitress CVE-2022-24761, Tornado: chunk-size = 1*HEXDIG."""
    rejected(chunked(body))


def test_h11_cve_2025_43859_chunk_data_not_followed_by_crlf() -> None:
    """#13 (same shape in eventlet): chunk-data MUST be followed by CRLF (RFC 9112 §7.1)."""
    rejected(chunked(b"5\r\nhelloXX0\r\n\r\n"))
    rejected(chunked(b"5\r\nhello\rX0\r\n\r\n"))
    rejected(chunked(b"5\r\nhello\n0\r\n\r\n"))


def test_aiohttp_cve_2024_52304_lf_in_chunk_extension() -> None:
    """#14, gunicorn PR #3327: a bare LF inside a chunk line is invalid (§2.2, §7.1.1)."""
    rejected(chunked(b"5;a\nb\r\nhello\r\n0\r\n\r\n"))


def test_llhttp_http_garden_31_bare_cr_in_chunk_line() -> None:
    """#14: a CR not followed by LF inside a chunk line is invalid."""
    rejected(chunked(b"5\r\r;a\r\nhello\r\n0\r\n\r\n"))


def test_rfc9112_7_1_1_chunk_extensions_are_bounded() -> None:
    """#14: total chunk-extension length is capped with a 4xx."""
    rejected(chunked(b"5;" + b"a" * 10_000 + b"\r\nhello\r\n0\r\n\r\n"))


def test_gevent_cve_2023_41419_trailer_is_not_a_request() -> None:
    """#15, aiohttp CVE-2025-53643, eventlet CVE-2025-58068, Puma CVE-2023-40175."""
    # "X:POST / HTTP/1.1" is a well-formed trailer field: it must be taken as one, not as a request
    seen = run(chunked(b"0\r\nX:POST / HTTP/1.1\r\n\r\n"))
    assert seen.requests == [(b"POST", b"/", b"")] and seen.status is None
    # A request line in the trailer section has no colon: a broken trailer, 400, never a request.
    seen = run(chunked(b"0\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert seen.requests == [] and seen.status == 400 and seen.closed


def test_gunicorn_3382_message_incomplete_until_trailer_crlf() -> None:
    """#16: after "0\\r\\n" the request is not complete; following bytes are trailer lines."""
    seen = run(chunked(b"5\r\nhello\r\n0\r\n"))
    assert seen.requests == [] and seen.status is None and not seen.closed
    # The "next request" right after "0\r\n" is parsed as trailer section, and refused.
    seen = run(chunked(b"5\r\nhello\r\n0\r\n") + NEXT)
    assert seen.requests == [] and seen.status == 400


def test_aiohttp_cve_2025_69229_many_one_byte_chunks_linear() -> None:
    """#17: 100k one-byte chunks decode in linear time; the total is tracked for body limits."""
    body = b"1\r\nx\r\n" * 100_000 + b"0\r\n\r\n"
    decoder = ChunkedDecoder(LIMITS)
    buf = bytearray(body)
    start = 0
    for cut in range(0, len(buf), 65536):  # as recv() would deliver it
        start = decoder.feed(buf, start, min(len(buf), cut + 65536))
    assert decoder.done and decoder.total == 100_000 and start == len(buf)


def test_aiohttp_cve_2026_22815_huge_trailer_block() -> None:
    """#18: trailers obey field count and size limits (431)."""
    many = b"".join(b"T%d: v\r\n" % i for i in range(MAX_HEADERS + 1))
    rejected(chunked(b"0\r\n" + many + b"\r\n"), 431)
    rejected(chunked(b"0\r\nT: " + b"v" * 20_000 + b"\r\n\r\n"), 431)


# --- Request line and header fields --------------------------------------------------------------


def test_aiohttp_cve_2023_47627_space_before_colon() -> None:
    """#19, waitress #273, http-garden bug 3: MUST reject whitespace before colon (§5.1)."""
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 34\r\n\r\n" + b"x" * 34)
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n")


@pytest.mark.parametrize(
    "line", [b"Content-Length\x85: 10", b"Transfer-Encoding\xa0: chunked", b"\xa0Host: b"]
)
def test_gunicorn_3091_non_tchar_in_field_name(line: bytes) -> None:
    """#20: \\x85 and \\xa0 are not tchar; names are never Unicode-stripped."""
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\n" + line + b"\r\n\r\n" + b"x" * 10)


@pytest.mark.parametrize(
    "line", [b"Header: v\x00alue", b"X-Abc: \rxTransfer-Encoding: chunked", b"Header: va\rlue",
             b"Header: va\nlue"]
)
def test_aiohttp_cve_2023_37276_cr_lf_nul_in_value(line: bytes) -> None:
    """#21, llhttp CVE-2023-30589, gunicorn #3144: CR, LF, NUL in a value are rejected."""
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\n" + line + b"\r\n\r\n")


def test_waitress_cve_2019_16785_bare_lf_line_endings() -> None:
    """#22, aiohttp PR #13136: strict mode, only CRLF ends a line -> 400 (not a hang)."""
    rejected(b"GET / HTTP/1.1\nHost: a\n\n")
    rejected(b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n")
    # Not even after a good request: the first is answered, the bare-LF one refused.
    seen = run(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\nHost: a\n\n")
    assert seen.requests == [(b"GET", b"/1", b"")] and seen.status == 400


def test_gunicorn_23_obs_fold_rejected() -> None:
    """#23 (gunicorn permit_obsolete_folding): obs-fold is rejected (RFC 9112 §5.2)."""
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n")


def test_passenger_http_garden_37_name_split_by_crlf() -> None:
    """#23: "Transfer-\\r\\nEncoding: chunked" is a line without a colon -> 400."""
    rejected(post(b"Transfer-\r\nEncoding: chunked\r\n", b"0\r\n\r\n"))


def test_aiohttp_http_garden_4_whitespace_before_first_field() -> None:
    """#24: a whitespace-led first field line is refused, not merged into the request line."""
    rejected(b"GET / HTTP/1.1\r\n\tContent-Length: 1\r\nHost: a\r\n\r\nX")
    rejected(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n")


def test_gunicorn_3104_empty_field_name() -> None:
    """#25, http-garden bug 18: field-name is a token of at least one tchar."""
    rejected(b"GET / HTTP/1.1\r\n: x\r\nHost: a\r\n\r\n")


def test_gunicorn_3144_lf_is_not_ows() -> None:
    """#26, http-garden bug 19: an LF after the colon is a line break, not whitespace."""
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\nUseless:\n\nGET /x HTTP/1.1\r\n\r\n")
    rejected(b"Useless:\n\nGET / HTTP/1.1\r\n\r\n")


@pytest.mark.parametrize(
    ("line", "status"),
    [(b"GET / HTTP/1.32", 400), (b"GET / HTTP/0.2.1.0", 400), ("GET / HTTP/1.𝟙".encode(), 400),
     (b"\x00 / HTTP/1.1", 400), (b"GET / HTTP/2.0", 505), (b"GET / HTTP/3.0", 505),
     (b"GET / HTTP/1", 400), (b"GET / HTTPS/1.1", 400), (b"GET / HTTP/1.1.", 400)],
)
def test_aiohttp_cve_2024_23829_http_version_and_method(line: bytes, status: int) -> None:
    """#27, aiohttp http-garden bug 5, gunicorn #2810, waitress PR #423 (RFC 9112 §2.3)."""
    rejected(line + b"\r\nHost: a\r\n\r\n", status)


@pytest.mark.parametrize(
    "raw", [b'G=":<>(e),[T];?" /get HTTP/1.1\r\nHost: a\r\n\r\n', b"GET /\nHTTP/1.1\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n"]
)
def test_aiohttp_http_garden_6_9_request_line_grammar(raw: bytes) -> None:
    """#28: method is a token, single SP separators, no LF inside the request line."""
    rejected(raw)


@pytest.mark.parametrize(
    "raw", [b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-Host: a\r\n\r\n"]
)
def test_aiohttp_cve_2026_34525_host_count(raw: bytes) -> None:
    """#29: exactly one Host in HTTP/1.1 (RFC 9112 §3.2)."""
    rejected(raw)


def test_aiohttp_cve_2026_54277_limits_count_across_reads() -> None:
    """#30, gevent 414 path: limits count buffered bytes across reads; 8000-octet lines work."""
    long_target = b"/" + b"a" * 7990
    seen = run(b"GET " + long_target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert seen.requests == [(b"GET", long_target, b"")]
    rejected(b"GET /" + b"a" * MAX_REQUEST_LINE + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414)
    fields = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 1000) for i in range(70))
    assert len(fields) > MAX_HEADER_BYTES
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n", 431)
    # Trickled without ever ending: refused once past the limit, not at the end.
    wire = Wire()
    wire.feed(b"GET /")
    for _ in range(MAX_REQUEST_LINE):
        wire.feed(b"a")
        if wire.seen.closed:
            break
    assert wire.seen.status == 414


def test_cve_2015_0219_underscore_names_stay_distinct() -> None:
    """#31 (bjoern, eventlet, gunicorn header_map): the parser keeps "_" and "-" apart so the
    WSGI adapter can drop underscore names; it never maps one onto the other."""
    seen = run(b"GET / HTTP/1.1\r\nHost: a\r\nX-Auth_User: admin\r\nX-Auth-User: bob\r\n\r\n")
    assert seen.heads[0].headers == [
        (b"host", b"a"), (b"x-auth_user", b"admin"), (b"x-auth-user", b"bob")
    ]


def test_waitress_432_only_sp_htab_stripped_from_values() -> None:
    """#32, http-garden bug 41: obs-text around a value is kept verbatim."""
    seen = run(b"GET / HTTP/1.1\r\nHost: a\r\nHeader: \x85admin\xa0\r\n\r\n")
    assert seen.heads[0].header(b"header") == b"\x85admin\xa0"


def test_waitress_ghsa_73m2_3pwg_5fgc_no_backtracking_on_whitespace() -> None:
    """#33: long alternating whitespace in values and chunk lines costs linear time."""
    import time

    value = b" \t" * 30_000 + b"x" + b"\t " * 1000
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + value + b"\r\n\r\n"
    started = time.perf_counter()
    result = parse_head(raw, 0, len(raw), LIMITS)
    assert result is not None and result[0].header(b"x") == b"x"
    bad = chunked(b"5" + b" \t" * 2000 + b"x\r\nhello\r\n0\r\n\r\n")
    with pytest.raises(ProtocolError):
        head, start = parse_head(bad, 0, len(bad), LIMITS) or (None, 0)
        ChunkedDecoder(LIMITS).feed(bad, start, len(bad))
    assert time.perf_counter() - started < 0.5  # generous: quadratic would take seconds


# --- Connection handling (the parser's part) ------------------------------------------------------


def test_waitress_cve_2024_49768_connection_close_stops_pipeline() -> None:
    """#34: after "Connection: close" the server answers and closes; /b is never processed."""
    seen = run(b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
               b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n")
    assert seen.requests == [(b"GET", b"/a", b"")] and seen.closed and seen.status is None


def test_uvicorn_http_garden_45_error_after_good_request() -> None:
    """#35: the first request is complete and dispatched; the garbage after it gets 400."""
    seen = run(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nINVALID\r\n\r\n")
    assert seen.requests == [(b"GET", b"/", b"")] and seen.status == 400


def test_gevent_2075_expect_100_continue_only_for_http11() -> None:
    """#37: 100-continue is flagged for HTTP/1.1 only (RFC 9110 §10.1.1); the conn loop decides
    when (and whether) to send it."""
    seen = run(post(b"Expect: 100-continue\r\nContent-Length: 5\r\n", b"hello"))
    assert seen.heads[0].expect_continue
    seen = run(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello")
    assert not seen.heads[0].expect_continue


def test_slowloris_uvicorn_157_endless_head_refused_at_limit() -> None:
    """#41 (parser half): an endless head is refused as soon as it passes its size limit."""
    wire = Wire()
    wire.feed(b"GET / HTTP/1.1\r\nHost: a\r\n")
    sent = 0
    while not wire.seen.closed and sent < 2 * MAX_HEADER_BYTES:
        wire.feed(b"X-Slow: " + b"z" * 90 + b"\r\n")
        sent += 100
    assert wire.seen.status == 431 and sent <= MAX_HEADER_BYTES + 100


def test_pipelined_requests_with_bodies_stay_in_order() -> None:
    """Framing sanity for all of the above: CL and chunked bodies never leak into the next head."""
    raw = (post(b"Content-Length: 5\r\n", b"hello")
           + post(b"Transfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\r\nT: 1\r\n\r\n")
           + b"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    seen = run(raw)
    assert seen.requests == [(b"POST", b"/", b"hello"), (b"POST", b"/", b"abc"),
                             (b"GET", b"/last", b"")]
    assert seen.status is None and seen.closed
