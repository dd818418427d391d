"""Micro-benchmark of the SendBuf alone: no network, no hub.

Run: .venv/bin/python bench/micro_sendbuf.py [--number N]

1. Gathering: the cost of adding a response's chunks (head + body) and of a 16-response
   pipelined batch, per response.
2. Flushing: 16 pipelined responses sent over a socketpair as the SendBuf does it (one sendmsg
   of 32 chunks) against one send per response and against joining first; the reader drains
   the other end each round, so the kernel buffer never fills.
3. Partial writes: a sink that takes 1,000 bytes a call; the cost of resuming by memoryview
   (SendBuf.consume) per call.
Figures are CPU time (thread_time), best of several repeats.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from tpd2py.sendbuf import SendBuf  # noqa: E402

HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
        b"Date: Sat, 28 Nov 2026 11:00:00 GMT\r\n\r\n")
BODY = b"Hello, World!"
BATCH = 16


def best_us(fn: Callable[[], None], number: int, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time()
        for _ in range(number):
            fn()
        best = min(best, time.thread_time() - start)
    return best / number * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()
    n = args.number

    buf = SendBuf()

    def gather_batch() -> None:
        for _ in range(BATCH):
            buf.add(HEAD)
            buf.add(BODY)
        buf.clear()

    print(f"gather {BATCH} responses (2 chunks each)   "
          f"{best_us(gather_batch, n // 4) / BATCH:7.3f} us/response")

    a, b = socket.socketpair()
    a.setblocking(False)
    sink = bytearray(1 << 20)
    total = (len(HEAD) + len(BODY)) * BATCH

    def drain() -> None:
        got = 0
        while got < total:
            got += b.recv_into(sink)

    def one_sendmsg() -> None:
        for _ in range(BATCH):
            buf.add(HEAD)
            buf.add(BODY)
        buf.flush(a.sendmsg, lambda: None)
        drain()

    def send_each() -> None:
        for _ in range(BATCH):
            a.send(HEAD + BODY)
        drain()

    def join_then_send() -> None:
        a.send(b"".join([HEAD, BODY] * BATCH))
        drain()

    rounds = n // 10
    for label, fn in (("SendBuf: one sendmsg", one_sendmsg), ("one send() each", send_each),
                      ("join, then one send()", join_then_send)):
        print(f"{BATCH} responses, {label:24s} {best_us(fn, rounds):7.2f} us/batch")

    chunks = [HEAD, BODY] * 64
    size = sum(map(len, chunks))

    def partial() -> None:
        pbuf = SendBuf()
        pbuf.extend(chunks)
        pbuf.flush(lambda batch: min(1000, pbuf.size), lambda: None)

    calls = -(-size // 1000)
    print(f"partial writes, 1000 B a call ({calls} calls)  "
          f"{best_us(partial, n // 20) / calls:7.2f} us/call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
