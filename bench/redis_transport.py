"""Redis Streams vs pub/sub for a channel's fan-out, measured (the choice in docs/redis.md).

Usage: ``.venv/bin/python bench/redis_transport.py [--messages 2000] [--burst 10000]``
(under the exclusive bench lock). A fresh redis-server on a unix socket, pinned to CPU 1 with
this client (one Python process, blocking sockets, hiredis's parser); two subscribers stand
for two workers. Two figures per transport:
- latency: one message at a time, from the publish until both subscribers have it (streams:
  each subscriber's ``XREAD BLOCK`` is already waiting, as the reader's is, and is sent
  again after each delivery; pub/sub: ``SUBSCRIBE``d connections);
- burst: ``--burst`` publishes pipelined, until both subscribers have all of them (streams:
  ``XREAD COUNT 1000`` batches; MAXLEN above the burst, so nothing is trimmed unread).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import hiredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.redisserver import RedisServer  # noqa: E402


class Conn:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.reader = hiredis.Reader()

    def send(self, *args: object) -> None:
        self.sock.sendall(hiredis.pack_command(args))

    def send_many(self, commands: list[tuple]) -> None:
        self.sock.sendall(b"".join(hiredis.pack_command(c) for c in commands))

    def reply(self) -> object:
        while True:
            value = self.reader.gets()
            if value is not False:
                return value
            self.reader.feed(self.sock.recv(1 << 16))


def streams(path: str, messages: int, burst: int) -> tuple[list[float], float]:
    pub, subs = Conn(path), [Conn(path), Conn(path)]
    last = [b"0-0", b"0-0"]
    latencies = []
    for i in range(messages):
        for s, sub in enumerate(subs):
            sub.send(b"XREAD", b"COUNT", 1000, b"BLOCK", 0, b"STREAMS", b"s", last[s])
        time.sleep(0)  # nothing to wait for: the XREADs are on their way
        started = time.perf_counter()
        pub.send(b"XADD", b"s", b"MAXLEN", b"~", 100_000, b"0-*", b"d", b"m%d" % i)
        pub.reply()
        for s, sub in enumerate(subs):
            entries = sub.reply()[0][1]  # type: ignore[index]
            last[s] = entries[-1][0]
        latencies.append((time.perf_counter() - started) * 1e6)
    started = time.perf_counter()
    pub.send_many([(b"XADD", b"s", b"MAXLEN", b"~", 100_000, b"0-*", b"d", b"b%d" % i)
                   for i in range(burst)])
    for s, sub in enumerate(subs):
        got = 0
        while got < burst:
            sub.send(b"XREAD", b"COUNT", 1000, b"BLOCK", 0, b"STREAMS", b"s", last[s])
            entries = sub.reply()[0][1]  # type: ignore[index]
            got += len(entries)
            last[s] = entries[-1][0]
    for _ in range(burst):
        pub.reply()
    return latencies, (time.perf_counter() - started) * 1000


def pubsub(path: str, messages: int, burst: int) -> tuple[list[float], float]:
    pub, subs = Conn(path), [Conn(path), Conn(path)]
    for sub in subs:
        sub.send(b"SUBSCRIBE", b"c")
        sub.reply()
    latencies = []
    for i in range(messages):
        started = time.perf_counter()
        pub.send(b"PUBLISH", b"c", b"m%d" % i)
        pub.reply()
        for sub in subs:
            sub.reply()
        latencies.append((time.perf_counter() - started) * 1e6)
    started = time.perf_counter()
    pub.send_many([(b"PUBLISH", b"c", b"b%d" % i) for i in range(burst)])
    for sub in subs:
        for _ in range(burst):
            sub.reply()
    for _ in range(burst):
        pub.reply()
    return latencies, (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    redis = RedisServer(persist=False)
    try:
        subprocess.run(["taskset", "-pc", "1", str(redis.proc.pid)],  # type: ignore[union-attr]
                       check=True, capture_output=True)
        rows = []
        for name, fn in (("streams", streams), ("pub/sub", pubsub)) * args.rounds:
            redis.command("FLUSHALL")
            latencies, burst_ms = fn(redis.socket, args.messages, args.burst)
            rows.append((name, statistics.median(latencies),
                         sorted(latencies)[int(len(latencies) * 0.99)], burst_ms))
        print(f"| transport | latency median µs | p99 µs | burst of {args.burst}, ms |\n"
              "| --- | ---: | ---: | ---: |")
        for name, median, p99, burst_ms in rows:
            print(f"| {name} | {median:.0f} | {p99:.0f} | {burst_ms:.0f} |")
    finally:
        redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
