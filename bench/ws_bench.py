"""WebSocket bench: idle memory, echo rate and broadcast fan-out, tpd2py next to uvicorn (with
its ``websockets`` implementation), aiohttp, socketify (uWebSockets, C++) and granian, in one
run (the peers are in the ``bench`` extra).

Usage (from the repository root, under the bench lock): ``python -m bench.ws_bench [--idle
10000] [--echo-seconds 3] [--servers tpd2py,uvicorn,aiohttp,socketify,granian] [--client
c|python] [--inflight N] [--echo-rounds N] [--json out.json]``.

For each server (one process pinned to CPU 0; this client pinned to CPU 1), serving the same
routes (bench/peers/ws_tpd2py.py, ws_asgi.py, ws_aiohttp.py, ws_socketify.py), compression off
everywhere:
1. echo: 100 connections, each a closed loop of 32-byte text messages for ``--echo-seconds``:
   messages per second, the server's CPU µs per message, and the client's CPU share (near
   100 % means the client, not the server, set the pace). The client is bench/wsload.c
   (built with cc into bench/out/; ``--client python`` is the Python loop of this file, which
   needs about as much CPU per message as the servers). One message in flight per socket;
   ``--inflight N`` adds a run with N, which keeps the server busy; ``--echo-rounds N`` runs
   only the echo, N interleaved rounds, and prints medians;
2. idle: ``--idle`` WebSockets opened to ``/idle`` (a handler waiting in ``for message in ws``)
   and, on a fresh process, to ``/sub`` (tpd2py: ``ws.subscribe``, no greenlet; the ASGI and
   aiohttp apps: a task waiting in ``receive``; socketify: a topic subscription, and no
   handler waits in either mode, its API being callbacks); the server's RSS growth over their
   number, once the server says (``/stats``) it holds them all (kernel socket buffers are
   not in RSS, for any server);
3. fan-out, with the ``/sub`` sockets still open: ``POST /publish`` and time, on this side,
   from just before the request until every socket holds the whole frame; median of 3.
Every phase is bounded in time; a server that misses a deadline is reported as failed.
Rules: loopback only; client sockets close with SO_LINGER 0 (no TIME_WAIT pile-up).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.comet_bench import control, free_port, stop_process, wait_started  # noqa: E402
from bench.servers import cpu_seconds, rss_kib  # noqa: E402  (whole process trees: granian forks)

ROOT = Path(__file__).resolve().parent.parent
SERVER_CPU, CLIENT_CPU = 0, 1
BATCH = 500
DEADLINE = 120.0
_LINGER_RST = struct.pack("ii", 1, 0)
REQUEST = ("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n")
MASK = b"\x01\x02\x03\x04"


def masked_text(payload: bytes) -> bytes:
    key = (MASK * (len(payload) // 4 + 1))[:len(payload)]
    body = bytes(a ^ b for a, b in zip(payload, key, strict=True))
    return bytes((0x81, 0x80 | len(payload))) + MASK + body


def server_command(name: str, port: int) -> list[str]:
    py = sys.executable
    if name == "tpd2py":
        return [py, "-m", "tpd2py", "bench.peers.ws_tpd2py:app", "--port", str(port),
                "--keepalive-timeout", "600", "--max-connections", "30000",
                "--log-level", "error"]
    if name in ("uvicorn", "uvicorn-wsproto"):
        impl = "wsproto" if name.endswith("wsproto") else "websockets"
        return [py, "-m", "uvicorn", "bench.peers.ws_asgi:app", "--loop", "uvloop", "--http",
                "httptools", "--ws", impl, "--ws-per-message-deflate", "false",
                "--no-access-log", "--port", str(port), "--backlog", "4096",
                "--log-level", "error"]
    if name == "granian":
        return [py, "-m", "granian", "--interface", "asgi", "--port", str(port),
                "--workers", "1", "--backlog", "4096", "--log-level", "error",
                "bench.peers.ws_asgi:app"]
    if name == "aiohttp":
        return [py, "-m", "bench.peers.ws_aiohttp", str(port)]
    if name == "socketify":
        return [py, "-m", "bench.peers.ws_socketify", str(port)]
    raise SystemExit(f"unknown server {name!r}")


class Server:
    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        argv = ["taskset", "-c", str(SERVER_CPU), *server_command(name, self.port)]
        # The server's log goes to a file: a pipe nobody reads fills up and stops a server
        # that logs every reset connection (aiohttp does, after the echo client's close).
        (ROOT / "bench" / "out").mkdir(exist_ok=True)
        self.log = open(ROOT / "bench" / "out" / f"ws_{name}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=self.log, start_new_session=True)
        wait_started(self.port, self.proc, 20, name)

    def stats(self) -> dict[str, int]:
        status, body = control(self.port, "GET", "/stats")
        return json.loads(body)  # type: ignore[no-any-return]

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


def open_sockets(port: int, path: str, count: int) -> list[socket.socket]:
    """``count`` upgraded WebSockets, opened in batches, each handshake read whole."""
    request = REQUEST.format(path=path).encode()
    socks: list[socket.socket] = []
    while len(socks) < count:
        batch = []
        for _ in range(min(BATCH, count - len(socks))):
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(request)
            s.setblocking(False)
            batch.append(s)
        pending = {s.fileno(): [s, b""] for s in batch}
        ep = select.epoll()
        for fd in pending:
            ep.register(fd, select.EPOLLIN)
        deadline = time.monotonic() + DEADLINE
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} handshakes unanswered")
            for fd, _ in ep.poll(1.0):
                entry = pending.get(fd)
                if entry is None:
                    continue
                data = entry[0].recv(4096)
                if not data:
                    raise RuntimeError("closed during the handshake")
                entry[1] += data
                if b"\r\n\r\n" in entry[1]:
                    if not entry[1].startswith(b"HTTP/1.1 101"):
                        raise RuntimeError(f"handshake refused: {entry[1][:80]!r}")
                    ep.unregister(fd)
                    del pending[fd]
        ep.close()
        socks += batch
    return socks


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


def wait_stat(server: Server, key: str, count: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while server.stats()[key] < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name}: {key} never reached {count}")
        time.sleep(0.05)


def build_wsload() -> Path | None:
    """bench/wsload.c built into bench/out/ (rebuilt when the source is newer); None when
    there is no C compiler."""
    source = ROOT / "bench" / "wsload.c"
    binary = ROOT / "bench" / "out" / "wsload"
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    binary.parent.mkdir(exist_ok=True)
    subprocess.run([compiler, "-O2", "-o", str(binary), str(source)], check=True)
    return binary


def echo_c(server: Server, seconds: float, binary: Path, connections: int = 100,
           inflight: int = 1) -> dict[str, float]:
    """The echo phase with bench/wsload.c as the client (pinned to the client CPU, as this
    process is), ``inflight`` messages in flight per socket. The server's CPU includes the
    100 handshakes (against ~10^5 messages)."""
    cpu = cpu_seconds(server.proc.pid)
    done = subprocess.run([str(binary), str(server.port), "/echo", str(connections),
                           str(seconds), "32", str(inflight)], capture_output=True, text=True,
                          timeout=seconds + DEADLINE)
    if done.returncode != 0:
        raise RuntimeError(f"wsload: {done.stderr.strip()}")
    cpu = cpu_seconds(server.proc.pid) - cpu
    result = json.loads(done.stdout)
    count = result["messages"]
    return {"echo_per_s": count / result["elapsed"], "echo_server_us": cpu / count * 1e6,
            "echo_client_cpu": result["cpu"] / result["elapsed"]}


def echo(server: Server, seconds: float, connections: int = 100) -> dict[str, float]:
    socks = open_sockets(server.port, "/echo", connections)
    message = masked_text(b"m" * 32)
    reply = 2 + 32
    ep = select.epoll()
    got = {s.fileno(): 0 for s in socks}
    by_fd = {s.fileno(): s for s in socks}
    for s in socks:
        ep.register(s.fileno(), select.EPOLLIN)
        s.send(message)
    count = 0
    cpu, client = cpu_seconds(server.proc.pid), time.process_time()
    started = time.perf_counter()
    end = started + seconds
    while time.perf_counter() < end:
        for fd, _ in ep.poll(1.0):
            s = by_fd[fd]
            data = s.recv(65536)
            if not data:
                raise RuntimeError("echo socket closed")
            total = got[fd] + len(data)
            done, got[fd] = divmod(total, reply)
            count += done
            if done:
                s.send(message * done)
    elapsed = time.perf_counter() - started
    cpu, client = cpu_seconds(server.proc.pid) - cpu, time.process_time() - client
    ep.close()
    close_all(socks)
    return {"echo_per_s": count / elapsed, "echo_server_us": cpu / count * 1e6,
            "echo_client_cpu": client / elapsed}


def fan_out(server: Server, socks: list[socket.socket], rounds: int = 3) -> list[float]:
    times = []
    ep = select.epoll()
    by_fd = {s.fileno(): s for s in socks}
    for s in socks:
        ep.register(s.fileno(), select.EPOLLIN)
    for i in range(rounds):
        text = b"fan-out message %04d" % i
        frame = bytes((0x81, len(text))) + text
        got = dict.fromkeys(by_fd, 0)
        left = len(socks)
        started = time.perf_counter()
        control(server.port, "POST", "/publish", text)
        deadline = time.monotonic() + DEADLINE
        while left:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{left} subscribers never got the message")
            for fd, _ in ep.poll(1.0):
                data = by_fd[fd].recv(4096)
                before = got[fd]
                got[fd] = before + len(data)
                if before < len(frame) <= got[fd]:
                    left -= 1
        times.append(time.perf_counter() - started)
    ep.close()
    return times


def bench(name: str, idle: int, echo_seconds: float, wsload: Path | None = None,
          inflight: int = 1) -> dict[str, Any]:
    result: dict[str, Any] = {"server": name, "idle": idle}
    server = Server(name)
    try:
        if wsload is None:
            result.update(echo(server, echo_seconds))
        else:
            echo_c(server, 1.0, wsload)  # warm-up
            result.update(echo_c(server, echo_seconds, wsload))
            if inflight > 1:  # the same with the server saturated
                result.update({k + "_sat": v for k, v in
                               echo_c(server, echo_seconds, wsload, inflight=inflight).items()})
        base = rss_kib(server.proc.pid)
        socks = open_sockets(server.port, "/idle", idle)
        wait_stat(server, "idle", idle)
        result["idle_handler_b"] = (rss_kib(server.proc.pid) - base) * 1024 / idle
        close_all(socks)
    finally:
        server.stop()
    server = Server(name)
    try:
        control(server.port, "POST", "/publish", b"warm-up")
        base = rss_kib(server.proc.pid)
        socks = open_sockets(server.port, "/sub", idle)
        wait_stat(server, "subscribers", idle)
        result["idle_sub_b"] = (rss_kib(server.proc.pid) - base) * 1024 / idle
        result["fanout_s"] = statistics.median(fan_out(server, socks))
        close_all(socks)
    finally:
        server.stop()
    return result


def echo_rounds(names: list[str], rounds: int, seconds: float, wsload: Path,
                inflight: int) -> None:
    """The echo alone, ``rounds`` times over every server in turn; medians and ranges."""
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names:
            server = Server(name)
            try:
                echo_c(server, 1.0, wsload, inflight=inflight)  # warm-up
                row = echo_c(server, seconds, wsload, inflight=inflight)
            finally:
                server.stop()
            rows[name].append(row)
            print(f"round {i + 1} {name}: {row['echo_per_s']:,.0f} msg/s, "
                  f"{row['echo_server_us']:.1f} µs, client {row['echo_client_cpu']:.0%}",
                  file=sys.stderr, flush=True)
    print(f"| server | echo msg/s, median of {rounds} (range) | server µs/msg, median "
          "| client CPU |")
    print("| --- | ---: | ---: | ---: |")
    for name, got in rows.items():
        rates = [r["echo_per_s"] for r in got]
        print(f"| {name} | {statistics.median(rates):,.0f} ({min(rates):,.0f}-"
              f"{max(rates):,.0f}) | {statistics.median(r['echo_server_us'] for r in got):.1f} "
              f"| {statistics.median(r['echo_client_cpu'] for r in got):.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--echo-seconds", type=float, default=3.0)
    parser.add_argument("--servers", default="tpd2py,uvicorn,aiohttp,socketify,granian")
    parser.add_argument("--client", choices=("c", "python"), default="c",
                        help="the echo client: bench/wsload.c (built with cc; the default) or "
                        "the Python one in this file")
    parser.add_argument("--inflight", type=int, default=1,
                        help="(--client c) also run the echo with this many messages in "
                        "flight per socket, which keeps the server busy (the issue's figure "
                        "is one)")
    parser.add_argument("--echo-rounds", type=int, default=0, metavar="N",
                        help="only the echo (--client c), in N interleaved rounds of every "
                        "server (a fresh process each), with medians: the steadier figure "
                        "on a machine that moves")
    parser.add_argument("--json")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {CLIENT_CPU})
    wsload = None
    if args.client == "c":
        wsload = build_wsload()
        if wsload is None:
            raise SystemExit("no C compiler for bench/wsload.c: apt-get install gcc, or "
                             "--client python")
    if args.echo_rounds:
        if wsload is None:
            raise SystemExit("--echo-rounds needs --client c")
        echo_rounds(args.servers.split(","), args.echo_rounds, args.echo_seconds, wsload,
                    args.inflight)
        return
    results = []
    for name in args.servers.split(","):
        try:
            results.append(bench(name, args.idle, args.echo_seconds, wsload, args.inflight))
        except (RuntimeError, OSError) as e:
            results.append({"server": name, "failed": str(e)})
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print("| server | echo msg/s | server µs/msg | client CPU | idle B/socket (handler) "
          "| idle B/socket (subscribed) | fan-out to all (ms) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        if "failed" in r:
            print(f"| {r['server']} | failed: {r['failed']} | | | | | |")
            continue
        print(f"| {r['server']} | {r['echo_per_s']:,.0f} | {r['echo_server_us']:.1f} "
              f"| {r['echo_client_cpu']:.0%} | {r['idle_handler_b']:,.0f} "
              f"| {r['idle_sub_b']:,.0f} | {r['fanout_s'] * 1000:,.1f} |")
    if any("echo_per_s_sat" in r for r in results):
        print(f"\nEcho with {args.inflight} messages in flight per socket:\n")
        print("| server | echo msg/s | server µs/msg | client CPU |")
        print("| --- | ---: | ---: | ---: |")
        for r in results:
            if "echo_per_s_sat" in r:
                print(f"| {r['server']} | {r['echo_per_s_sat']:,.0f} "
                      f"| {r['echo_server_us_sat']:.1f} | {r['echo_client_cpu_sat']:.0%} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
