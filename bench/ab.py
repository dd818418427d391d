"""Interleaved A/B of two tpd2py checkouts: keep-alive, pipelined and Fremlin's protocol.

Usage (from the repo root):
  git worktree add --detach /tmp/before HEAD~1        # or any commit: the "A" side
  .venv/bin/python bench/ab.py --old /tmp/before [--rounds 3] [--duration 5] \
      [--server-args '--access-log /dev/null']

Each round starts a fresh server from each checkout in turn (the order alternates between
rounds, so drift on a shared machine hits both alike), pinned to --server-cpu, and measures it
with the load on --client-cpu: wrk -c100 keep-alive GET /, wrk -c100 pipelined 16 deep, and ab
-c 10 and -c 1 with a new connection per request (Fremlin's protocol). It prints each
measurement as it comes (requests/s, the server's CPU µs per request, and how much of the server
core other processes took), then per point the median of each side and the ratio new/old.
The CPU µs per request is the steadier figure on a shared machine.
Bounded: rounds (at most 20) × 2 servers × 4 points × (--duration + the loaders' grace).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` as a package

from bench import machine, servers  # noqa: E402
from bench.scenarios import PIPELINE_DEPTH, Context, measure_once  # noqa: E402

FREMLIN_PATH = "/test?name=John"


def points(ctx: Context, port: int) -> dict[str, object]:
    from bench import loaders

    cpu = ctx.client_cpu
    return {
        "keepalive": lambda: loaders.wrk(port, "/", ctx.connections, ctx.duration, cpu),
        f"pipeline-{PIPELINE_DEPTH}": lambda: loaders.wrk(port, "/", ctx.connections,
                                                          ctx.duration, cpu, PIPELINE_DEPTH),
        "fremlin-c10": lambda: loaders.ab(port, FREMLIN_PATH, 10, ctx.duration, cpu),
        "fremlin-c1": lambda: loaders.ab(port, FREMLIN_PATH, 1, ctx.duration, cpu),
    }


def run_rounds(args: argparse.Namespace, options: servers.Options, logs: Path, ctx: Context,
               sides: dict[str, Path], rows: dict[tuple[str, str], list[dict]]) -> None:
    for round_no in range(1, args.rounds + 1):
        order = ["old", "new"] if round_no % 2 else ["new", "old"]
        for side in order:
            server = servers.start("tpd2py", options, logs, f"{side}{round_no}", args.server_cpu,
                                   cwd=sides[side])
            try:
                for point, load in points(ctx, server.port).items():
                    row = measure_once(point, server, load)  # type: ignore[arg-type]
                    rows.setdefault((point, side), []).append(row)
                    others = row.get("server_core_others")
                    print(f"round {round_no} {side:3s} {point:12s} {row.get('rps', 0):9,.0f} "
                          f"req/s  {row.get('cpu_us_per_request')} µs/req"
                          + (f"  others {others:.0%}" if isinstance(others, float) else ""),
                          flush=True)
            finally:
                server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="the A checkout")
    parser.add_argument("--new", type=Path, default=None, help="the B checkout (default: here)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--server-args", default="", metavar="ARGS",
                        help="more tpd2py flags for both sides, e.g. '--access-log /dev/null' "
                             "or '--stats-path /_stats'")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be 1..20")
    _, nofile = machine.raise_nofile()
    logs = Path(tempfile.mkdtemp(prefix="ab-"))
    options = servers.Options(python=sys.executable, nofile=nofile,
                              max_connections=args.connections + 200,
                              tpd2py_flags=servers.tpd2py_flags(sys.executable),
                              tpd2py_extra=shlex.split(args.server_args))
    ctx = Context(dry=False, duration=args.duration, connections=args.connections, idle=0,
                  client_cpu=args.client_cpu, python=sys.executable, logs=logs, say=print)
    sides = {"old": args.old.resolve(), "new": (args.new or machine.ROOT).resolve()}
    print(f"old {sides['old']}, new {sides['new']} (commit {machine.commit()}); server on cpu "
          f"{args.server_cpu}, load on cpu {args.client_cpu}; logs in {logs}"
          + (f"; server args {args.server_args}" if args.server_args else ""), flush=True)
    rows: dict[tuple[str, str], list[dict]] = {}
    # Fremlin's protocol makes a connection per request: widen the ephemeral ports and reuse
    # TIME_WAIT ones, as bench/run.py does (restored at the end).
    restore = machine.tune_network(print)
    try:
        run_rounds(args, options, logs, ctx, sides, rows)
    finally:
        restore()
    print(f"\n{'point':12s} {'old req/s':>10s} {'new req/s':>10s} {'ratio':>6s} "
          f"{'old µs/req':>10s} {'new µs/req':>10s}")
    for point in points(ctx, 0):
        med = {}
        for side in ("old", "new"):
            ok = [r for r in rows.get((point, side), []) if r.get("status") == "ok"]
            med[side] = (statistics.median(r["rps"] for r in ok) if ok else 0.0,
                         statistics.median(r["cpu_us_per_request"] or 0 for r in ok) if ok
                         else 0.0)
        ratio = med["new"][0] / med["old"][0] if med["old"][0] else float("nan")
        print(f"{point:12s} {med['old'][0]:10,.0f} {med['new'][0]:10,.0f} {ratio:6.3f} "
              f"{med['old'][1]:10.1f} {med['new'][1]:10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
