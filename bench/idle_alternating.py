"""Do idle keep-alive connections slow the active ones? Alternate runs without and with them.

Usage (from the repo root):
  .venv/bin/python bench/idle_alternating.py [--server tpd2py] [--rounds 3] [--idle 10000]
      [--duration 5] [--connections 100] [--src DIR]

ONE server is started (pinned to --server-cpu) and kept for the whole run, so that both sides of
every ratio are taken from the same process, seconds apart. After a short unrecorded warm-up, each
round is: a wrk run (100 keep-alive connections, GET /) with no idle connection; then
bench/holder.py opens --idle connections, each sending one complete request and reading its
answer before falling silent (a browser's idle keep-alive connection, as in the c10k scenario);
the same wrk run beside them; then the holder closes them all and we wait until the server has
let go of them (its open fds fall back) before the next round. wrk and the holder are pinned to
--client-cpu. Per round it prints the two rates, the ratio and the server's CPU µs per request
(steadier than the rate on a shared machine), and at the end the median ratio.

--src DIR runs the server from another checkout (its tpd2py package and bench/hello.py), e.g. an
older commit unpacked with `git archive`, so that old and new code can be measured alternately
with the same harness.

Bounded: --rounds × (2 × --duration + the holder's 60 s connect deadline + a 30 s release wait),
and every wrk run has its own timeout (bench/loaders.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` as a package

from bench import loaders, machine, servers  # noqa: E402
from bench.scenarios import Context, Holder  # noqa: E402

WARMUP_S = 1.0
RELEASE_TIMEOUT_S = 30.0  # the server closes 10,000 connections in well under a second
FD_MARGIN = 200


# Kernel counters (/proc/net/netstat) that show connections the listener lost or deferred.
LISTEN_COUNTERS = ("ListenOverflows", "TCPDeferAcceptDrop", "SyncookiesSent")


def tcp_counters() -> dict[str, int]:
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return {}
    found = {}
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        found.update(zip(names.split()[1:], map(int, values.split()[1:]), strict=False))
    return {name: found.get(name, 0) for name in LISTEN_COUNTERS}


def counters_since(before: dict[str, int]) -> str:
    after = tcp_counters()
    moved = {name: after[name] - before.get(name, 0) for name in after
             if after[name] != before.get(name, 0)}
    return ", ".join(f"{name} +{delta}" for name, delta in moved.items()) or "none"


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def wait_fds_at_most(pid: int, limit: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if 0 <= open_fds(pid) <= limit:
            return True
        time.sleep(0.1)
    return False


def load(server: servers.Running, args: argparse.Namespace) -> tuple[float, float, float]:
    """One wrk run: requests/s, server CPU µs per request, and the share of the server's core
    that other processes (or the hypervisor's other guests) took meanwhile."""
    cpu_before, cores_before = server.cpu_seconds(), machine.core_ticks()[args.server_cpu]
    started = time.monotonic()
    result = loaders.wrk(server.port, "/", args.connections, args.duration, args.client_cpu)
    elapsed = time.monotonic() - started
    cpu = server.cpu_seconds() - cpu_before
    tasks, stolen, total = (after - before for after, before in
                            zip(machine.core_ticks()[args.server_cpu], cores_before, strict=True))
    others = max(0.0, tasks / total - cpu / elapsed) + stolen / total if total else 0.0
    if result["errors"]:
        print(f"    wrk errors: {result['error_detail']}", flush=True)
    return result["rps"], cpu * 1e6 / max(1, result["requests"]), others


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="tpd2py", choices=sorted(servers.SPECS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--idle-mode", choices=("request", "connect"), default="request",
                        help="request: each idle connection is answered once first (default); "
                             "connect: it only connects and never sends")
    parser.add_argument("--src", type=Path, default=None,
                        help="run the server from this checkout (tpd2py only)")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 50:
        parser.error("--rounds must be 1..50")

    _, nofile = machine.raise_nofile()
    if args.idle + args.connections + FD_MARGIN > nofile:
        args.idle = max(0, nofile - args.connections - FD_MARGIN)
        print(f"open-file limit {nofile}: holding {args.idle} idle connections", flush=True)
    logs = Path(tempfile.mkdtemp(prefix="idle-alternating-"))
    options = servers.Options(python=sys.executable, nofile=nofile,
                              max_connections=args.idle + args.connections + FD_MARGIN,
                              tpd2py_flags=servers.tpd2py_flags(sys.executable))
    server = servers.start(args.server, options, logs, "idle", args.server_cpu, cwd=args.src)
    ctx = Context(dry=False, duration=args.duration, connections=args.connections,
                  idle=args.idle, client_cpu=args.client_cpu, python=sys.executable, logs=logs,
                  say=print)
    src = args.src or f"{machine.ROOT}, commit {machine.commit()}"
    print(f"{args.server} (from {src}) on cpu {args.server_cpu}; "
          f"wrk -c{args.connections} {args.duration:g} s and {args.idle} idle connections on "
          f"cpu {args.client_cpu}; logs in {logs}", flush=True)
    ratios = []
    try:
        with contextlib.suppress(loaders.LoadError):
            loaders.wrk(server.port, "/", args.connections, WARMUP_S, args.client_cpu)
        baseline_fds = open_fds(server.pid)
        for round_no in range(1, args.rounds + 1):
            counters = tcp_counters()
            without, cpu_without, others_without = load(server, args)
            holder = Holder(ctx, server, *(["--connect-only"] if args.idle_mode == "connect"
                                           else []))
            try:
                held = holder.event(60.0 + 30)
                if held is None:
                    print(f"round {round_no}: the holder reported nothing (see {logs})")
                    return 1
                fds_before = open_fds(server.pid)
                with_idle, cpu_with, others_with = load(server, args)
                fds_after = open_fds(server.pid)
            finally:
                holder.close()
            if not wait_fds_at_most(server.pid, baseline_fds + 10, RELEASE_TIMEOUT_S):
                print(f"  the server still holds {open_fds(server.pid)} fds", flush=True)
            ratio = with_idle / without
            ratios.append(ratio)
            print(f"round {round_no}: without {without:9,.0f} req/s ({cpu_without:5.1f} µs/req)  "
                  f"with {held['held']:,} idle {with_idle:9,.0f} req/s ({cpu_with:5.1f} µs/req)  "
                  f"ratio {ratio:.3f}", flush=True)
            print(f"  others on the server core {others_without:.0%} / {others_with:.0%}; "
                  f"server fds during the idle run {fds_before}->{fds_after}; "
                  f"kernel listen counters: {counters_since(counters)}", flush=True)
            if not server.alive():
                print(f"the server died:\n{server.log_tail()}")
                return 1
    finally:
        server.stop()
    print(f"median ratio {statistics.median(ratios):.3f} over {len(ratios)} rounds "
          f"({', '.join(f'{r:.3f}' for r in ratios)})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
