"""The c10k benchmark: tpd2py against the servers a user would pick instead, on one core each.

Usage (from the repo root): make bench  |  make bench-quick  |  .venv/bin/python bench/run.py --help

For each scenario in turn, each server is started fresh (one worker, pinned to the server core,
access log off), its answers are checked against the bench contract, and then it is loaded by wrk or
ab pinned to the other core. See bench/README.md for what each scenario means and why. Results go to
bench/out/ (results.json, results.csv, one PNG per scenario) and the summary table to stdout.

--dry replaces wrk and ab with a pure-Python load generator and skips pinning and kernel tuning, so
the whole harness runs anywhere (CI) in seconds; its figures measure the generator, not the server.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` as a package

from bench import contract, machine, report, servers  # noqa: E402
from bench.scenarios import SCENARIOS, SETTLE_S, Context, failed_row  # noqa: E402

DEFAULT_SERVERS = [name for name, spec in servers.SPECS.items() if spec.default]
# Figures per mode: (seconds per point, idle connections for c10k).
FULL = (5.0, 10_000)
QUICK = (2.0, 2_000)
DRY = (1.0, 100)
FD_MARGIN = 200  # listening sockets, logs, the interpreter's own files


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="tpd2py's c10k benchmark against its peers (see bench/README.md)")
    parser.add_argument("--servers", default=None,
                        help=f"comma-separated, from {','.join(servers.SPECS)} "
                             f"(default: {','.join(DEFAULT_SERVERS)}; with --dry: tpd2py)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated, from {','.join(SCENARIOS)} (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK[0]:.0f} s per point, "
                             f"{QUICK[1]:,} idle connections")
    parser.add_argument("--dry", action="store_true",
                        help="pure-Python load generator, no wrk/ab/nginx/taskset/sysctl (for CI)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per measured point")
    parser.add_argument("--idle", type=int, default=None, help="idle connections held in c10k")
    parser.add_argument("--connections", type=int, default=100, help="keep-alive load connections")
    parser.add_argument("--server-cpu", type=int, default=1)
    parser.add_argument("--client-cpu", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure each point N times on the same server and keep the median "
                             "(all rates are kept in results.json)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every scenario N times, cycling through the servers each "
                             "round (a fresh server each time), and keep each server's median "
                             "round: drift of a shared machine then hits all servers alike")
    parser.add_argument("--attempts", type=int, default=1,
                        help="on a shared machine: measure a point up to N times while other "
                             "processes take >10%% of the server core, and keep the quietest")
    parser.add_argument("--nice", type=int, default=0,
                        help="on a shared machine: run the harness, servers and load generators "
                             "at this niceness (negative needs root), so other users' processes "
                             "take less of the two cores")
    parser.add_argument("--no-sysctl", action="store_true",
                        help="do not widen the ephemeral port range or enable tcp_tw_reuse")
    parser.add_argument("--out", type=Path, default=machine.ROOT / "bench" / "out")
    args = parser.parse_args(argv)
    duration, idle = DRY if args.dry else QUICK if args.quick else FULL
    args.duration = args.duration or duration
    args.idle = args.idle if args.idle is not None else idle
    chosen = args.servers or ("tpd2py" if args.dry else ",".join(DEFAULT_SERVERS))
    args.servers = [name.strip() for name in chosen.split(",") if name.strip()]
    args.scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    for name in args.servers:
        if name not in servers.SPECS:
            parser.error(f"unknown server {name!r}; choose from {', '.join(servers.SPECS)}")
    for name in args.scenarios:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    return args


def say(text: str) -> None:
    print(text, flush=True)


def pinning(args: argparse.Namespace, tools: dict) -> tuple[int | None, int | None]:
    """(server core, client core), or no pinning when dry, single-core or without taskset."""
    if args.dry:
        return None, None
    cores = os.sched_getaffinity(0)
    if not tools.get("taskset"):
        say(f"warning: {machine.install_hint('taskset')}; running unpinned")
        return None, None
    if len(cores) < 2 or {args.server_cpu, args.client_cpu} - cores:
        say(f"warning: cores {args.server_cpu} and {args.client_cpu} are not both available "
            f"(have {sorted(cores)}); running unpinned: server and load generator will compete")
        return None, None
    if args.server_cpu == args.client_cpu:
        say("warning: server and client pinned to the same core")
    return args.server_cpu, args.client_cpu


def fit_idle_to_limits(args: argparse.Namespace, nofile: int) -> None:
    """The server and the holder each need one descriptor per idle connection, plus the load's."""
    allowed = nofile - args.connections - FD_MARGIN
    if "c10k" in args.scenarios and args.idle > allowed:
        say(f"warning: the open-file limit is {nofile} per process, so the server can hold at "
            f"most {allowed} idle connections beside the load: c10k uses {allowed}, not "
            f"{args.idle} (raise the hard limit with `ulimit -Hn` / limits.conf to hold more)")
        args.idle = max(0, allowed)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if sys.platform != "linux":
        say("bench/run.py needs Linux (/proc, taskset, epoll)")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / "logs"
    logs.mkdir(exist_ok=True)
    started = time.monotonic()
    _, nofile = machine.raise_nofile()
    fit_idle_to_limits(args, nofile)
    tools = {tool: machine.which(tool) for tool in machine.PACKAGES}
    if not args.dry:
        for tool in ("wrk", "ab", "nginx"):
            if not tools[tool]:
                say(f"warning: {machine.install_hint(tool)}")
    server_cpu, client_cpu = pinning(args, tools)
    restore_niceness = machine.set_niceness(args.nice, say) if args.nice else (lambda: None)
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})  # the harness itself never runs on the server core
    ctx = Context(dry=args.dry, duration=args.duration, connections=args.connections,
                  idle=args.idle, client_cpu=client_cpu, python=sys.executable, logs=logs, say=say,
                  settle=0.2 if args.dry else SETTLE_S, attempts=args.attempts,
                  repeat=args.repeat)
    options = servers.Options(python=sys.executable, nofile=nofile,
                              max_connections=args.idle + args.connections + FD_MARGIN)
    if "tpd2py" in args.servers:
        options.tpd2py_flags = servers.tpd2py_flags(sys.executable)

    runnable = []
    for name in args.servers:
        problems = servers.missing_requirements(servers.SPECS[name], tools)
        if problems:
            for problem in problems:
                say(f"skipping {name}: {problem}")
            for scenario in args.scenarios:
                ctx.rows.append(failed_row(scenario, name, problems[0], status="skipped"))
        else:
            runnable.append(name)

    # Only the non-keep-alive runs (ab) need the wide port range and TIME_WAIT reuse.
    needs_ports = "fremlin" in args.scenarios and tools["ab"] and not args.dry
    restore = machine.tune_network(say) if needs_ports and not args.no_sysctl else (lambda: None)
    meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(part) for part in sys.argv),
        "mode": "dry" if args.dry else "quick" if args.quick else "full",
        "machine": machine.describe(tools),
        "settings": {"duration_s": args.duration, "idle": args.idle,
                     "connections": args.connections, "server_cpu": server_cpu,
                     "client_cpu": client_cpu, "attempts": args.attempts,
                     "repeat": args.repeat, "rounds": args.rounds,
                     "niceness": os.getpriority(os.PRIO_PROCESS, 0)},
    }
    say(f"bench: {meta['mode']} run, {args.duration:g} s per point, servers "
        f"{', '.join(runnable) or 'none'}; server core {server_cpu}, load core {client_cpu}; "
        f"open-file limit {nofile}; commit {meta['machine']['commit']}")
    try:
        for scenario_name in args.scenarios:
            scenario = SCENARIOS[scenario_name]
            say(f"\n== {scenario.name}: {scenario.summary}")
            missing = [tool for tool in scenario.tools if not args.dry and not tools[tool]]
            if missing:
                for name in runnable:
                    why = "; ".join(machine.install_hint(tool) for tool in missing)
                    say(f"  {name}: skipped, {why}")
                    ctx.rows.append(failed_row(scenario.name, name, why, status="skipped"))
                continue
            rounds: list[list[dict]] = []
            for number in range(max(1, args.rounds)):
                if args.rounds > 1:
                    say(f"  round {number + 1} of {args.rounds}")
                rows = []
                for name in runnable:
                    rows.extend(run_one(ctx, scenario, name, options, logs, server_cpu))
                rounds.append(rows)
            ctx.rows.extend(merge_rounds(rounds))
    except KeyboardInterrupt:
        say("\ninterrupted: reporting what was measured")
    finally:
        restore()
        restore_niceness()

    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    meta["commands"] = ctx.commands
    say("\n" + report.table(ctx.rows))
    written = report.write_raw(args.out, meta, ctx.rows)
    titles = {scenario.name: scenario.summary for scenario in SCENARIOS.values()}
    titles["c10k"] = f"{args.idle:,} idle keep-alive connections held, keep-alive load beside them"
    titles.update({"fremlin-c1": "ab -c 1, GET /test?name=John, new connection per request",
                   "fremlin-c10": "ab -c 10, GET /test?name=John, new connection per request"})
    charts = report.charts(args.out, ctx.rows, titles)
    if isinstance(charts, str):
        say(charts)
    else:
        written += charts
    say(f"\nwrote {', '.join(str(path) for path in written)}")
    say(f"total time {meta['elapsed_s']:.0f} s")
    failed = [row for row in ctx.rows if row["status"] == "failed"]
    return 1 if failed else 0


def merge_rounds(rounds: list[list[dict]]) -> list[dict]:
    """One row per (point, server): the round with the median rate (a failed round wins, so a
    failure is never hidden). Every round's rates go to `rps_runs`, `rounds` says how many."""
    if len(rounds) == 1:
        return rounds[0]
    groups: dict[tuple[str, str], list[dict]] = {}
    for rows in rounds:
        for row in rows:
            groups.setdefault((row["scenario"], row["server"]), []).append(row)
    merged = []
    for runs in groups.values():
        failed = [run for run in runs if run["status"] != "ok"]
        if failed:
            merged.append(failed[0])
            continue
        runs.sort(key=lambda run: run["rps"])
        row = dict(runs[len(runs) // 2])
        row["rps_runs"] = sorted(rate for run in runs
                                 for rate in run.get("rps_runs", [round(run["rps"])]))
        row["rounds"] = len(runs)
        merged.append(row)
    return merged


def run_one(ctx: Context, scenario, name: str, options: servers.Options, logs: Path,
            server_cpu: int | None) -> list[dict]:
    """Start one server, check its contract, run one scenario on it, stop it."""
    try:
        running = servers.start(name, options, logs, scenario.name, server_cpu)
    except servers.StartError as exc:
        say(f"  {name}: FAILED to start: {exc}")
        return [failed_row(scenario.name, name, f"failed to start: {exc}")]
    ctx.commands[name] = " ".join(running.argv).replace(str(running.port), "PORT")
    try:
        problems = contract.check(running.port)
        waived = servers.SPECS[name].deviations
        for check in problems.keys() & waived.keys():
            say(f"  {name}: contract check '{check}' fails, a known deviation: {waived[check]}")
        real = {check: why for check, why in problems.items() if check not in waived}
        if real:
            why = "; ".join(f"{check}: {detail}" for check, detail in real.items())
            say(f"  {name}: FAILED the bench contract, not loaded: {why}")
            return [failed_row(scenario.name, name, f"contract: {why}")]
        rows = scenario.run(ctx, running)
    finally:
        running.stop()
    for row in rows:
        if row["status"] == "ok":
            say(f"  {name:12s} {row['scenario']:12s} {row['rps']:>12,.0f} req/s  "
                f"p50 {report.millis(row.get('p50_ms'))} ms  "
                f"p99 {report.millis(row.get('p99_ms'))} ms  errors {row['errors']}  "
                f"RSS {row['rss_kib'] / 1024:.1f} MiB  server CPU {row['server_cpu']:.0%} "
                f"({report.millis(row.get('cpu_us_per_request'))} µs/req)"
                + (f"  [{report.notes(row)}]" if report.notes(row) else ""))
        else:
            say(f"  {name:12s} {row['scenario']:12s} {row['status'].upper()}: {row.get('note')}")
    return rows


if __name__ == "__main__":
    sys.exit(main())
