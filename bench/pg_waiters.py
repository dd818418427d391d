"""What a handler waiting for the database costs: N handlers queued on a small tpd2py.pg pool.

    .venv/bin/python bench/pg_waiters.py [--handlers 10000] [--pool 20] [--parked]

A throwaway PostgreSQL (bench/pgcluster.py, pinned to --client-cpu) and a tpd2py server (its
own process, pinned to --server-cpu, the watchdog on at 50 ms). The harness holds an advisory
lock; N clients connect (RSS measured: the baseline, idle connections) and each sends
``GET /wait``, whose handler takes a pool connection and waits for the lock inside PostgreSQL:
--pool of them hold a connection, the rest wait in the pool's FIFO queue. Once the server says
so (``/stats``), RSS is measured again: (after - before) / N is the cost of one waiting
handler. Meanwhile ``GET /hello`` is timed (the hub must keep serving), then the lock is
released and every client must get its 200. With ``--parked`` the handler waits inside
``request.park()`` (its input buffer goes back to the pool while it waits).
The server mode (``--serve PORT``) is what the harness starts.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LOCK_KEY = 7


def serve(port: int, handlers: int) -> None:
    from tpd2py import App, Request, get_hub
    from tpd2py.pg import Pool
    from tpd2py.server import Config, Server

    db = Pool(os.environ["PGW_DSN"], size=int(os.environ.get("PGW_POOL", "20")),
              checkout_timeout=600)
    app = App()

    def wait_for_lock() -> None:
        with db.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (LOCK_KEY,))

    @app.route("/wait")
    def wait(req: Request) -> bytes:
        wait_for_lock()
        return b"done"

    @app.route("/wait-parked")
    def wait_parked(req: Request) -> bytes:
        with req.park():
            wait_for_lock()
        return b"done"

    @app.route("/hello")
    def hello(req: Request) -> bytes:
        return b"hello"

    @app.route("/stats")
    def stats(req: Request) -> dict:
        return {"pool": db.statistics(), "hub": get_hub().statistics()}

    config = Config(watchdog=0.05, max_connections=handlers + 1000, keepalive_timeout=600,
                    header_timeout=600)
    server = Server(app, config)
    server.listen_tcp("127.0.0.1", port, backlog=4096)
    print("serving", flush=True)
    server.serve_forever()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def get(port: int, path: str) -> tuple[int, bytes, float]:
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body, time.perf_counter() - start


def stats(port: int) -> dict[str, Any]:
    return json.loads(get(port, "/stats")[1])


def until(check: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--handlers", type=int, default=10_000)
    parser.add_argument("--pool", type=int, default=20)
    parser.add_argument("--parked", action="store_true")
    parser.add_argument("--server-cpu", type=int, default=1)
    parser.add_argument("--client-cpu", type=int, default=0)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.handlers)
        return 0
    import psycopg

    from bench.machine import raise_nofile
    from bench.pgcluster import Cluster
    from bench.servers import free_port

    raise_nofile()
    os.sched_setaffinity(0, {args.client_cpu})
    n = args.handlers
    path = "/wait-parked" if args.parked else "/wait"
    with Cluster(cpu=args.client_cpu) as cluster:
        holder = psycopg.connect(cluster.conninfo, autocommit=True)
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        port = free_port()
        env = dict(os.environ, PGW_DSN=cluster.conninfo, PGW_POOL=str(args.pool))
        log = open(cluster.dir / "server.log", "w+")  # noqa: SIM115 - read back at the end
        server = subprocess.Popen(
            ["taskset", "-c", str(args.server_cpu), sys.executable, __file__, "--serve",
             str(port), "--handlers", str(n)], env=env, stdout=subprocess.PIPE, stderr=log)
        try:
            assert server.stdout is not None
            server.stdout.readline()
            clients: list[socket.socket] = []
            base = stats(port)["hub"]["fds"]
            while len(clients) < n:  # in batches: a full accept queue drops connections
                for _ in range(min(1000, n - len(clients))):
                    clients.append(socket.create_connection(("127.0.0.1", port)))
                until(lambda: stats(port)["hub"]["fds"] >= base + len(clients),
                      f"{len(clients)} connections accepted")
            before = rss_kib(server.pid)
            request = f"GET {path} HTTP/1.1\r\nHost: b\r\n\r\n".encode()
            for sock in clients:
                sock.sendall(request)
            until(lambda: stats(port)["pool"]["waiting"] >= n - args.pool,
                  f"{n - args.pool} handlers waiting in the pool")
            after = rss_kib(server.pid)
            state = stats(port)
            hello = [get(port, "/hello") for _ in range(200)]
            assert all(status == 200 for status, _, _ in hello)
            times = sorted(t for _, _, t in hello)
            started = time.perf_counter()
            holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
            ok = 0
            for sock in clients:
                sock.settimeout(120)
                data = b""
                while b"done" not in data:
                    more = sock.recv(4096)
                    if not more:
                        break
                    data += more
                ok += data.startswith(b"HTTP/1.1 200") and b"done" in data
                sock.close()
            drained = time.perf_counter() - started
            log.seek(0)
            blocked = log.read().count("the hub is blocked")  # before shutdown's own work
        finally:
            server.terminate()
            server.wait(30)
    print(json.dumps({
        "handlers": n, "pool": args.pool, "parked": args.parked,
        "rss_idle_kib": before, "rss_waiting_kib": after,
        "kib_per_waiting_handler": round((after - before) / n, 2),
        "pool_stats": state["pool"], "hub_stats": state["hub"],
        "hello_p50_ms": round(times[len(times) // 2] * 1000, 2),
        "hello_p99_ms": round(times[int(len(times) * 0.99)] * 1000, 2),
        "answered_200": ok, "drain_s": round(drained, 2), "watchdog_reports": blocked,
        "load": os.getloadavg()[0],
    }, indent=1))
    return 0 if ok == n and not blocked else 1


if __name__ == "__main__":
    sys.exit(main())
