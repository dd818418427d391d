"""Memory per WebSocket for permessage-deflate's receiving side: the frame parser after one
compressed message, with and without the client's context takeover.

Usage: ``python bench/ws_deflate_memory.py [--count 2000]`` (no server; about a second).
Per parser: bytes allocated through Python's allocators (tracemalloc: zlib's state and its
32 KiB window are allocated through them) and the RSS growth (the window's pages are touched
only as far as messages have filled it). The server side keeps no compressor (it always
answers ``server_no_context_takeover``), so this is the whole per-socket cost of compression.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tpd2py.wsframe import TEXT, FrameParser, Inflater  # noqa: E402

MASK = b"\x01\x02\x03\x04"


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def compressed_frame(text: bytes) -> bytes:
    """A masked, compressed (RSV1) text frame as a browser sends it."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = (z.compress(text) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]
    payload = bytes(b ^ MASK[i % 4] for i, b in enumerate(data))
    return bytes((0xC1, 0x80 | len(payload))) + MASK + payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    frame = compressed_frame(b"hello hello hello " * 20)
    print("| client context takeover | traced B/socket | RSS B/socket |")
    print("| --- | ---: | ---: |")
    for takeover in (True, False):
        gc.collect()
        tracemalloc.start()
        before = rss_bytes()
        kept = []
        for _ in range(args.count):
            p = FrameParser(1 << 20, 1 << 20, Inflater(15, takeover))
            assert p.feed(frame)[0][0] == TEXT
            kept.append(p)
        traced = tracemalloc.get_traced_memory()[0] / args.count
        rss = (rss_bytes() - before) / args.count
        tracemalloc.stop()
        print(f"| {'yes' if takeover else 'no'} | {traced:,.0f} | {max(rss, 0):,.0f} |")
        del kept


if __name__ == "__main__":
    main()
