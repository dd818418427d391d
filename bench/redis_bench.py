"""Redis-backed channels: 10,000 long-poll waiters on 2 workers vs on one process, one run.

Usage (from the repo root; run under the exclusive bench lock):
  .venv/bin/python bench/redis_bench.py [--clients 10000] [--rounds 5]

Both servers are pinned to CPU 0 (the 2 workers share it: the same CPU as the single
process, so the ratio is the cost of the Redis path, not a parallel speed-up), this client and
redis-server to CPU 1. Interleaved, ``--rounds`` times each:
- single: one process, the in-process Channel (bench/peers/comet_tpd2py.py);
- redis: ``--workers 2 --reuse-port`` (an even spread of the connections), the RedisChannel
  (bench/peers/comet_tpd2py.py with TPD2PY_REDIS), a fresh redis-server on a unix socket.
For each: park N clients on ``GET /poll?after=V`` (in batches, confirmed parked), then time
from just before ``POST /publish`` is sent until every client holds its complete, checked
response (bench/comet_bench.py's Fleet), then all poll again. The figure is the median of the
rounds' "last answered" times; the target is redis <= 1.5 x single.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` as a package

from bench.comet_bench import (  # noqa: E402
    _LINGER_RST,
    BATCH,
    Fleet,
    control,
    free_port,
    poll_answer,
    read_response,
    stop_process,
    wait_started,
)
from bench.redisserver import RedisServer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERVER_CPU, CLIENT_CPU = "0", "1"
TIMEOUT = 120.0


def waiting_single(port: int) -> int:
    import json

    return int(json.loads(control(port, "GET", "/stats")[1])["waiting"])


def waiting_workers(port: int) -> list[int]:
    """Parked long polls per worker, from the shared stats board (each row refreshed once a
    second): detached connections are the waiters (Channel.later)."""
    text = control(port, "GET", "/_stats")[1].decode()
    return [int(v) for v in re.findall(r'state="detached"\} (\d+)', text)]


def wait_until(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def run(kind: str, clients: int, rounds: int) -> tuple[list[float], list[int]]:
    port = free_port()
    redis = None
    env = dict(os.environ)
    argv = ["taskset", "-c", SERVER_CPU, sys.executable, "-m", "tpd2py"]
    if kind == "single":
        env.pop("TPD2PY_REDIS", None)  # the in-process Channel
        argv += ["bench.peers.comet_tpd2py:app"]
    else:
        redis = RedisServer(persist=False)
        subprocess.run(["taskset", "-pc", CLIENT_CPU, str(redis.proc.pid)],  # type: ignore[union-attr]
                       check=True, capture_output=True)
        env["TPD2PY_REDIS"] = redis.socket
        argv += ["bench.peers.comet_tpd2py:app", "--workers", "2", "--reuse-port",
                 "--stats-path", "/_stats"]
    argv += ["--port", str(port), "--keepalive-timeout", "600", "--max-connections", "30000",
             "--log-level", "warning"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    fleet = Fleet(port)
    times: list[float] = []
    spread: list[int] = []
    try:
        wait_started(port, proc, 20, kind)
        if kind == "single":
            def parked() -> int:
                return waiting_single(port)
        else:
            def parked() -> int:
                return sum(waiting_workers(port))
        version = 0
        while len(fleet.socks) < clients:
            fleet.open(min(BATCH, clients - len(fleet.socks)), version)
            wait_until(lambda: parked() >= len(fleet.socks), "clients not parked")
        if kind == "redis":
            spread = waiting_workers(port)
        publisher = None
        for r in range(rounds):
            import json
            import socket

            if publisher is None:
                publisher = socket.create_connection(("127.0.0.1", port), timeout=10)
            message = f"message {r} to {clients} clients"
            expected_version = version + 1
            expected = poll_answer(expected_version, message)
            body = message.encode()
            started = time.perf_counter()
            publisher.sendall(b"POST /publish HTTP/1.1\r\nHost: bench\r\nContent-Length: %d"
                              b"\r\n\r\n%s" % (len(body), body))
            _first, last = fleet.collect(expected, started, started + TIMEOUT)
            _status, reply, _ = read_response(publisher)
            version = json.loads(reply)["version"]
            assert version == expected_version, (version, expected_version)
            times.append(last * 1000)
            if r + 1 < rounds:
                fleet.repoll(version)
                # The stats board lags by up to a second: wait for it to show them all again.
                wait_until(lambda: parked() >= clients, "clients not parked again")
        if publisher is not None:
            publisher.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            publisher.close()
    finally:
        fleet.close()
        stop_process(proc, 15)
        if redis is not None:
            redis.stop()
    return times, spread


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=2, help="single/redis runs, interleaved")
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    single: list[float] = []
    redis: list[float] = []
    for pair in range(args.pairs):
        s, _ = run("single", args.clients, args.rounds)
        r, spread = run("redis", args.clients, args.rounds)
        print(f"pair {pair + 1}: single {[round(t, 1) for t in s]} ms; redis (2 workers, "
              f"waiters per worker {spread}) {[round(t, 1) for t in r]} ms", flush=True)
        single += s
        redis += r
    ms, mr = statistics.median(single), statistics.median(redis)
    print(f"\n| {args.clients} long-poll waiters, one publish | median ms to the last answer "
          f"| rounds |\n| --- | ---: | ---: |\n| one process, in-process Channel | {ms:.1f} | "
          f"{len(single)} |\n| 2 workers, RedisChannel | {mr:.1f} | {len(redis)} |\n"
          f"ratio redis / single: {mr / ms:.2f} (target <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
