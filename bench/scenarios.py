"""The scenarios: what load each puts on a running server, and the result rows it records.

A scenario is run for every server before the next scenario starts, each server freshly started, so
that the figures compared side by side were taken minutes apart on a machine in the same state.
Each row records the load generator's figures plus the server's RSS (whole process tree) after the
load, the share of its core it used and its CPU time per request (near 100 % less the kernel's
interrupt time the server is the bottleneck; well below, the load generator or the round trip is,
and the rate is a lower bound), and how much of the core other processes took meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import select
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import loaders, machine, pyload
from bench.loaders import LoadError
from bench.machine import ROOT
from bench.servers import Running

HOLDER = ROOT / "bench" / "holder.py"
FREMLIN_PATH = "/test?name=John"
PIPELINE_DEPTH = 16
LATENCY_CONNECTIONS = 10
SETTLE_S = 1.0  # lets a server finish freeing and allocating before its RSS is read
HOLDER_CONNECT_DEADLINE_S = 60.0
HOLDER_PROBE_DEADLINE_S = 60.0
WARMUP_S = 1.0
INTERFERENCE_WARNING = 0.10  # share of the server core used by others that makes a point suspect


@dataclass
class Context:
    dry: bool  # pure-Python load instead of wrk/ab, no pinning: for CI
    duration: float  # seconds per measured point
    connections: int  # keep-alive load
    idle: int  # idle connections held in c10k
    client_cpu: int | None
    python: str
    logs: Path
    say: Callable[[str], None]
    settle: float = SETTLE_S
    attempts: int = 1  # per point, while others take more than INTERFERENCE_WARNING of the core
    repeat: int = 1  # runs per point, the median kept
    commands: dict[str, str] = field(default_factory=dict)  # server -> command line, for the record
    rows: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    tools: tuple[str, ...]  # needed unless dry
    run: Callable[[Context, Running], list[dict]]


def _keepalive_load(ctx: Context, port: int, path: str, connections: int, depth: int = 1,
                    duration: float | None = None) -> dict:
    duration = duration or ctx.duration
    if ctx.dry:
        return pyload.run(port, path, connections, duration, depth=depth)
    return loaders.wrk(port, path, connections, duration, ctx.client_cpu, depth)


def _close_load(ctx: Context, port: int, path: str, concurrency: int) -> dict:
    if ctx.dry:
        return pyload.run(port, path, concurrency, ctx.duration, keepalive=False)
    return loaders.ab(port, path, concurrency, ctx.duration, ctx.client_cpu)


def failed_row(point: str, server: str, why: str, status: str = "failed") -> dict:
    return {"scenario": point, "server": server, "status": status, "note": why}


def measure_once(point: str, server: Running, load: Callable[[], dict]) -> dict:
    cpu_before, cores_before = server.cpu_seconds(), machine.core_ticks()
    started = time.monotonic()
    try:
        result = load()
    except LoadError as exc:
        return failed_row(point, server.name, str(exc))
    elapsed = max(time.monotonic() - started, 1e-9)
    cpu = (server.cpu_seconds() - cpu_before) / elapsed
    row = {"scenario": point, "server": server.name, "status": "ok", **result,
           "rss_kib": server.rss_kib(), "server_cpu": round(cpu, 3),
           # The cost of a request in server CPU time: steadier than requests/s when the server
           # does not get its whole core, and the talk's measure of a design.
           "cpu_us_per_request": round(cpu * 1e6 / result["rps"], 1) if result["rps"] else None}
    if server.cpu is not None:
        # Whatever else ran on the server's core (other users of a shared machine, other guests
        # of the hypervisor) took time the server would have used: the point is suspect.
        tasks, stolen, total = (after - before for after, before in
                                zip(machine.core_ticks()[server.cpu], cores_before[server.cpu],
                                    strict=True))
        if total:
            row["server_core_others"] = round(max(0.0, tasks / total - cpu) + stolen / total, 3)
    if not server.alive():
        row["status"] = "failed"
        row["note"] = f"the server died during the run\n{server.log_tail()}"
    elif result["requests"] == 0:
        row["status"] = "failed"
        row["note"] = "no request was answered"
    return row


def _quietest(ctx: Context, point: str, server: Running, load: Callable[[], dict]) -> dict:
    """One run of a point; while others disturb it, retry up to ctx.attempts, keep the quietest."""
    tries = []
    for _ in range(max(1, ctx.attempts)):
        row = measure_once(point, server, load)
        tries.append(row)
        if row["status"] != "ok" or row.get("server_core_others", 0.0) <= INTERFERENCE_WARNING:
            break
    row = min(tries, key=lambda each: each.get("server_core_others", 0.0))
    row["attempts"] = len(tries)
    return row


def _measure(ctx: Context, point: str, server: Running, load: Callable[[], dict]) -> dict:
    """Measure a point ctx.repeat times on the same server and keep the median run by requests/s.

    The rates of every run are kept in `rps_runs`, so the spread is on record.
    """
    runs = [_quietest(ctx, point, server, load) for _ in range(max(1, ctx.repeat))]
    failed = [run for run in runs if run["status"] != "ok"]
    if failed:
        return failed[0]
    runs.sort(key=lambda run: run["rps"])
    row = runs[len(runs) // 2]
    if len(runs) > 1:
        row["rps_runs"] = [round(run["rps"]) for run in runs]
    others = row.get("server_core_others", 0.0)
    if others > INTERFERENCE_WARNING:
        row["note"] = (f"other processes or guests took ~{others:.0%} of the server core "
                       "during this point")
    return row


def keepalive(ctx: Context, server: Running) -> list[dict]:
    return [_measure(ctx, "keepalive", server,
                     lambda: _keepalive_load(ctx, server.port, "/", ctx.connections))]


def pipeline(ctx: Context, server: Running) -> list[dict]:
    return [_measure(ctx, "pipeline", server, lambda: _keepalive_load(
        ctx, server.port, "/", ctx.connections, depth=PIPELINE_DEPTH))]


def latency(ctx: Context, server: Running) -> list[dict]:
    return [_measure(ctx, "latency", server,
                     lambda: _keepalive_load(ctx, server.port, "/", LATENCY_CONNECTIONS))]


def fremlin(ctx: Context, server: Running) -> list[dict]:
    return [_measure(ctx, f"fremlin-c{concurrency}", server,
                     lambda c=concurrency: _close_load(ctx, server.port, FREMLIN_PATH, c))
            for concurrency in (1, 10)]


class Holder:
    """bench/holder.py in a subprocess, driven over its stdin/stdout JSON lines."""

    def __init__(self, ctx: Context, server: Running, *options: str) -> None:
        argv = [ctx.python, str(HOLDER), "--port", str(server.port), "--count", str(ctx.idle),
                "--connect-deadline", str(HOLDER_CONNECT_DEADLINE_S),
                "--probe-deadline", str(HOLDER_PROBE_DEADLINE_S), *options]
        if ctx.client_cpu is not None:
            argv = [machine.tool("taskset"), "-c", str(ctx.client_cpu), *argv]
        with open(ctx.logs / f"holder-{server.name}.log", "wb") as log:
            self.process = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=log, text=True)

    def event(self, timeout: float) -> dict | None:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        return json.loads(line) if line.strip() else None

    def check(self, timeout: float) -> dict | None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write("check\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            return None
        return self.event(timeout)

    def close(self) -> None:
        try:
            if self.process.stdin:
                self.process.stdin.close()
            self.process.wait(10)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            self.process.kill()
            self.process.wait()


def c10k(ctx: Context, server: Running) -> list[dict]:
    # The rate without idle connections is measured right here, on the same process, just before
    # the holder connects: a figure from another scenario minutes ago would carry other noise. A
    # short unrecorded warm-up first, or the first of the two runs pays the fresh process's costs
    # (pools and buffers growing) and the ratio leans above 1.
    with contextlib.suppress(LoadError):  # the measured run below reports it
        _keepalive_load(ctx, server.port, "/", ctx.connections, duration=WARMUP_S)
    baseline = keepalive(ctx, server)[0]
    rate_without = baseline["rps"] if baseline["status"] == "ok" else None
    time.sleep(ctx.settle)
    rss_before = server.rss_kib()
    holder = Holder(ctx, server)
    try:
        held = holder.event(HOLDER_CONNECT_DEADLINE_S + 30)
        if held is None:
            return [failed_row("c10k", server.name, "the holder reported nothing (see "
                               f"{ctx.logs}/holder-{server.name}.log)")]
        if held.get("limit_warning"):
            ctx.say(f"  holder: {held['limit_warning']}")
        ctx.say(f"  holder: {held['held']}/{held['requested']} idle connections answered in "
                f"{held['seconds']} s" + (f"; {held['problems']}" if held["problems"] else ""))
        time.sleep(ctx.settle)
        rss_idle = server.rss_kib()
        row = _measure(ctx, "c10k", server,
                       lambda: _keepalive_load(ctx, server.port, "/", ctx.connections))
        checked = holder.check(HOLDER_PROBE_DEADLINE_S + 30) or {}
    finally:
        holder.close()
    row.update({
        "idle_requested": held["requested"],
        "idle_held": held["held"],
        "idle_setup_s": held["seconds"],
        "idle_problems": held["problems"],
        "idle_open_end": checked.get("open"),
        "idle_answered_end": checked.get("probe_answered"),
        "idle_probe_s": checked.get("probe_seconds"),
        "idle_closed_end": checked.get("closed"),
        "rss_before_kib": rss_before,
        "rss_idle_kib": rss_idle,
        "bytes_per_idle": (round((rss_idle - rss_before) * 1024 / held["held"])
                           if held["held"] else None),
        "rps_no_idle": rate_without,
        "cpu_us_per_request_no_idle": baseline.get("cpu_us_per_request"),
        "server_core_others_no_idle": baseline.get("server_core_others"),
        "idle_ratio": (round(row["rps"] / rate_without, 3)
                       if rate_without and row.get("rps") else None),
    })
    if held["held"] < held["requested"] and row["status"] == "ok":
        row["note"] = f"only {held['held']} of {held['requested']} idle connections were answered"
    return [row]


SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        Scenario("keepalive", "keep-alive, 100 connections, GET /", ("wrk",), keepalive),
        Scenario("pipeline", f"pipelined {PIPELINE_DEPTH} deep, 100 connections, GET /",
                 ("wrk",), pipeline),
        Scenario("c10k", "idle keep-alive connections held (10,000 by default), "
                 "then keep-alive load",
                 ("wrk",), c10k),
        Scenario("fremlin", "Fremlin's protocol: ab -c 1 and -c 10, GET /test?name=John, "
                            "a new connection per request", ("ab",), fremlin),
        Scenario("latency", f"latency: keep-alive, {LATENCY_CONNECTIONS} connections, GET /",
                 ("wrk",), latency),
    )
}
