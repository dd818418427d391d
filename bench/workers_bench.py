"""--workers figures: master overhead, shared socket vs SO_REUSEPORT, reload and kill -9 under load.

Usage (from the repo root; run under the exclusive bench lock):
  .venv/bin/python bench/workers_bench.py [--duration 5] [--rounds 3] [--only overhead,...]

Points (wrk -t1 keep-alive GET / of bench.hello:app):
- overhead: one plain process vs a master + 1 worker, both pinned to --server-cpu, wrk on
  --client-cpu, interleaved --rounds times: the rate ratio (the master must cost nothing).
- accept: 2 workers with one shared socket vs one SO_REUSEPORT socket per worker, unpinned (the
  machine's 2 cores are shared by the workers and wrk: throughput scale-out cannot be measured
  honestly here), and each worker's share of the CPU time and of the connections with 4 workers.
- reload: 50 keep-alive connections for --reload-duration seconds across 3 SIGHUPs: wrk's
  errors and non-2xx count (the target is 0).
- kill: SIGKILL of one of 2 workers under load: how long until the master has a replacement
  ready (from its log) and wrk's errors.
Bounded: every wrk run is --duration (or --reload-duration) plus the loaders' grace.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` as a package

from bench import loaders, servers  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def start(args: argparse.Namespace, extra: list[str], cpu: int | None, logs: Path,
          tag: str) -> servers.Running:
    port = servers.free_port()
    argv = [sys.executable, "-m", "tpd2py", "bench.hello:app", "--port", str(port),
            "--keepalive-timeout", "600", "--log-level", "info", *extra]
    workdir = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    running = servers.Running(tag, argv, port, logs / f"{tag}.log", workdir, cpu, ROOT)
    running.wait_ready()
    if "--workers" in extra:
        n = int(extra[extra.index("--workers") + 1])
        wait_log(running, r"master \d+: serving")
        assert len(workers_of(running)) == n
    return running


def workers_of(running: servers.Running) -> list[int]:
    """The master's worker pids (the master is the child of taskset's exec, i.e. the pid)."""
    return [p for p in servers.tree_pids(running.pid) if p != running.pid]


def wait_log(running: servers.Running, pattern: str, since: int = 0, timeout: float = 10.0
             ) -> tuple[float, str]:
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = running.log_path.read_text(errors="replace")[since:]
        m = regex.search(text)
        if m:
            return time.monotonic(), m.group(0)
        time.sleep(0.01)
    raise TimeoutError(f"{pattern!r} not in the log:\n{running.log_tail()}")


def cpu_of(pid: int) -> float:
    fields = Path("/proc", str(pid), "stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sockets_of(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


def overhead(args: argparse.Namespace, logs: Path) -> None:
    rates: dict[str, list[float]] = {"single": [], "master+1": []}
    for r in range(args.rounds):
        order = [("single", []), ("master+1", ["--workers", "1"])]
        for name, extra in order if r % 2 == 0 else order[::-1]:
            srv = start(args, extra, args.server_cpu, logs, f"overhead-{name}-{r}")
            try:
                res = loaders.wrk(srv.port, "/", 50, args.duration, args.client_cpu)
            finally:
                srv.stop()
            rates[name].append(res["rps"])
            print(f"overhead round {r} {name:9s} {res['rps']:9,.0f} req/s "
                  f"errors {res['errors']}", flush=True)
    a, b = statistics.median(rates["single"]), statistics.median(rates["master+1"])
    print(f"| overhead | single {a:,.0f} req/s | master + 1 worker {b:,.0f} req/s | "
          f"ratio {b / a:.3f} |", flush=True)


def accept(args: argparse.Namespace, logs: Path) -> None:
    for name, extra in (("shared", []), ("reuseport", ["--reuse-port"])):
        rates = []
        shares = []
        for r in range(args.rounds):
            srv = start(args, ["--workers", "2", *extra], None, logs, f"accept-{name}-{r}")
            try:
                pids = workers_of(srv)
                before = [cpu_of(p) for p in pids]
                res = loaders.wrk(srv.port, "/", 100, args.duration, None)
                used = [cpu_of(p) - b for p, b in zip(pids, before, strict=True)]
            finally:
                srv.stop()
            rates.append(res["rps"])
            shares.append(min(used) / max(sum(used), 1e-9))
            print(f"accept {name:9s} round {r} {res['rps']:9,.0f} req/s  CPU seconds per "
                  f"worker {[round(u, 2) for u in used]}  errors {res['errors']}", flush=True)
        print(f"| accept, 2 workers | {name} | {statistics.median(rates):,.0f} req/s | "
              f"smaller worker's CPU share {statistics.median(shares):.0%} |", flush=True)
        # Connections spread over 4 workers: open 100 keep-alive connections, count sockets.
        srv = start(args, ["--workers", "4", *extra], None, logs, f"spread-{name}")
        try:
            pids = workers_of(srv)
            idle = {p: sockets_of(p) for p in pids}
            counts: dict[int, int] = {}
            done = threading.Event()

            def load(port: int = srv.port, done: threading.Event = done) -> None:
                loaders.wrk(port, "/", 100, 3, None)
                done.set()

            threading.Thread(target=load, daemon=True).start()
            time.sleep(1.5)  # wrk has connected (this is a measurement, not a test)
            counts = {p: sockets_of(p) - idle[p] for p in pids}
            done.wait(30)
        finally:
            srv.stop()
        total = sum(counts.values())
        worst = max(abs(c - total / 4) / (total / 4) for c in counts.values()) if total else 0
        print(f"| spread, 4 workers, 100 connections | {name} | {sorted(counts.values())} | "
              f"worst deviation from an even share {worst:.0%} |", flush=True)


def reload(args: argparse.Namespace, logs: Path) -> None:
    srv = start(args, ["--workers", "2"], None, logs, "reload")
    try:
        result: dict = {}

        def load() -> None:
            result.update(loaders.wrk(srv.port, "/", 50, args.reload_duration, None))

        t = threading.Thread(target=load)
        t.start()
        step = args.reload_duration / 4
        for i in range(3):
            time.sleep(step)
            since = len(srv.log_path.read_bytes())
            os.kill(srv.pid, signal.SIGHUP)
            wait_log(srv, r"reload: generation \d+ serving", since)
            print(f"reload {i + 1} done", flush=True)
        t.join()
    finally:
        srv.stop()
    print(f"| reload x3, 50 keep-alive connections, {args.reload_duration:.0f} s | "
          f"{result['requests']:,} requests | errors {result['errors']} "
          f"{result['error_detail']} |", flush=True)


def kill(args: argparse.Namespace, logs: Path) -> None:
    srv = start(args, ["--workers", "2"], None, logs, "kill")
    try:
        result: dict = {}

        def load() -> None:
            result.update(loaders.wrk(srv.port, "/", 50, args.duration, None))

        t = threading.Thread(target=load)
        t.start()
        time.sleep(args.duration / 2)
        victim = workers_of(srv)[0]
        since = len(srv.log_path.read_bytes())
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        ready, _ = wait_log(srv, r"worker \d+ ready", since)
        t.join()
    finally:
        srv.stop()
    print(f"| kill -9 of 1 of 2 workers under 50 connections | replacement ready after "
          f"{(ready - killed) * 1000:.0f} ms (log poll 10 ms) | {result['requests']:,} requests |"
          f" errors {result['errors']} {result['error_detail']} |", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--reload-duration", type=float, default=20.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument("--only", default="overhead,accept,reload,kill")
    args = p.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="workers-bench-logs-"))
    print(f"logs in {logs}; {subprocess.run(['uptime'], capture_output=True, text=True).stdout}",
          flush=True)
    for name in args.only.split(","):
        {"overhead": overhead, "accept": accept, "reload": reload, "kill": kill}[name](args, logs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
