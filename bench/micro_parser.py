"""Micro-benchmark of the request parser, no network: microseconds per parse_head call.

Run: .venv/bin/python bench/micro_parser.py [--number N]
Heads: the one wrk sends by default, and a 10-field browser-like GET. Each is parsed from a
bytearray (as the connection loop does) with the default limits; the best of several repeats is
printed, since the minimum is the figure least disturbed by the rest of the machine.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import timeit

from tpd2py.chunked import ChunkedDecoder
from tpd2py.http11 import Limits, parse_head

WRK_HEAD = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
BROWSER_HEAD = (
    b"GET /static/app.js?v=3 HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Referer: https://www.example.com/index.html\r\n"
    b"Connection: keep-alive\r\n"
    b"Cookie: session=3f9a8b7c6d5e4f3a2b1c; theme=dark; lang=en\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"Sec-Fetch-Dest: document\r\n"
    b"\r\n"
)
CHUNKED_BODY = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in [b"x" * 1000] * 16) + b"0\r\n\r\n"


def per_call_us(stmt, number: int, repeat: int = 40) -> float:
    # thread_time, not wall time: other processes on a shared machine then barely move the figure.
    times = timeit.repeat(stmt, number=number, repeat=repeat, timer=time.thread_time)
    return min(times) / number * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--number", type=int, default=20_000, help="calls per repeat (40 repeats)")
    args = ap.parse_args()
    limits = Limits()
    # The interpreter build matters as much as the code: a PGO+LTO CPython runs this ~20-25%
    # faster than a plain `./configure --enable-shared` build of the same version.
    print(f"{sys.executable} {sys.version.split()[0]} ({platform.python_compiler()})")
    for name, head in (("wrk GET", WRK_HEAD), ("browser GET, 10 fields", BROWSER_HEAD)):
        buf = bytearray(head + b"GET / HTTP/1.1\r\n")  # a pipelined tail, as in a real buffer
        end = len(buf)
        result = parse_head(buf, 0, end, limits)
        assert result is not None and result[1] == len(head)

        def call(buf=buf, end=end):
            return parse_head(buf, 0, end, limits)

        us = per_call_us(call, args.number)
        print(f"parse_head {name:24s} {len(head):4d} B  {us:6.2f} us/parse")
    compare_peers(args.number)
    # Not-yet-complete retry: what a partial head costs each time more bytes arrive.
    partial = bytearray(BROWSER_HEAD[:-30])
    us = per_call_us(lambda: parse_head(partial, 0, len(partial), limits), args.number)
    print(f"parse_head {'incomplete browser head':24s} {len(partial):4d} B  {us:6.2f} us/call")

    body = bytearray(CHUNKED_BODY)

    def decode():
        decoder = ChunkedDecoder(limits)
        decoder.feed(body, 0, len(body))
        assert decoder.done

    us = per_call_us(decode, args.number // 20)
    print(f"ChunkedDecoder 16 x 1000 B chunks        {len(body):5d} B  {us:6.2f} us/body")


def httptools_us(head: bytes, number: int) -> float:
    """httptools (llhttp in C) driven as uvicorn drives it: one parser per connection, callbacks
    collecting the url and lower-cased headers."""
    import httptools

    class Collect:
        def on_message_begin(self) -> None:
            self.headers: list[tuple[bytes, bytes]] = []

        def on_url(self, url: bytes) -> None:
            self.url = url

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name.lower(), value))

        def on_headers_complete(self) -> None:
            self.method = parser.get_method()

    parser = httptools.HttpRequestParser(Collect())
    return per_call_us(lambda: parser.feed_data(head), number)


def h11_us(head: bytes, number: int) -> float:
    """h11 (pure Python, sans-I/O): a new connection per head, up to the Request event."""
    import h11

    def parse() -> object:
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(head)
        return conn.next_event()

    return per_call_us(parse, number)


def compare_peers(number: int) -> None:
    """The same heads through httptools and h11 when installed: a yardstick that does not depend
    on how fast (or how busy) this machine is."""
    for label, timer, calls in (("httptools", httptools_us, number), ("h11", h11_us, number // 10)):
        for name, head in (("wrk GET", WRK_HEAD), ("browser GET, 10 fields", BROWSER_HEAD)):
            try:
                us = timer(head, calls)
            except ImportError:
                break
            print(f"{label:10s} {name:24s} {len(head):4d} B  {us:6.2f} us/parse")


if __name__ == "__main__":
    main()
