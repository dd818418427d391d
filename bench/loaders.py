"""Load generators: wrk (keep-alive, pipelined) and ApacheBench (a new connection per request).

Each runner returns the same fields as bench/pyload.py: tool, requests, seconds, rps, p50_ms,
p99_ms, errors, error_detail. Every run is bounded twice: by the tool's own limit (-d for wrk, -t
and -n for ab) and by a subprocess timeout a little longer, after which the tool is killed and the
point is reported as failed.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from bench.machine import ROOT, tool

PIPELINE_SCRIPT = ROOT / "bench" / "pipeline.lua"
AB_MAX_REQUESTS = 2_000_000
GRACE_S = 20.0  # beyond the tool's own time limit: startup, the last responses, reporting
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


class LoadError(Exception):
    pass


def _pinned(argv: list[str], cpu: int | None) -> list[str]:
    return argv if cpu is None else [tool("taskset"), "-c", str(cpu), *argv]


def _run(argv: list[str], timeout: float) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"{' '.join(argv)} did not finish in {timeout:.0f} s and was "
                        "killed") from exc
    if done.returncode != 0:
        raise LoadError(f"{' '.join(argv)} exited {done.returncode}: "
                        f"{(done.stderr or done.stdout).strip()[-300:]}")
    return done.stdout


def _wrk_ms(text: str) -> float | None:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        return None
    value = float(match.group(1)) * UNITS_MS[match.group(2)]
    return value or None  # wrk prints 0.00us for a percentile it has no sample for


def parse_wrk(output: str) -> dict:
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", output)
    if not total:
        raise LoadError(f"unexpected wrk output: {output.strip()[-300:]}")
    requests = int(total.group(1))
    seconds = float(total.group(2)) * UNITS_MS[total.group(3)] / 1000
    percentiles = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)$", output, re.MULTILINE))
    detail = {}
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        for kind, count in zip(("connect", "read", "write", "timeout"), socket_errors.groups(),
                               strict=True):
            if int(count):
                detail[kind] = int(count)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        detail["status"] = int(non_2xx.group(1))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    return {
        "tool": "wrk",
        "requests": requests,
        "seconds": seconds,
        "rps": float(rps.group(1)) if rps else requests / seconds,
        "p50_ms": _wrk_ms(percentiles.get("50", "")),
        "p99_ms": _wrk_ms(percentiles.get("99", "")),
        "errors": sum(detail.values()),
        "error_detail": detail,
    }


def wrk(port: int, path: str, connections: int, duration: float, cpu: int | None,
        depth: int = 1, headers: tuple[str, ...] = (), scheme: str = "http") -> dict:
    """Keep-alive load with one wrk thread; depth > 1 pipelines through bench/pipeline.lua;
    ``headers`` ("Name: value") are added to every request; ``scheme="https"`` for TLS."""
    argv = [tool("wrk"), "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
            "--timeout", "5s"]
    for header in headers:
        argv += ["-H", header]
    if depth > 1:
        argv += ["-s", str(PIPELINE_SCRIPT)]
    argv.append(f"{scheme}://127.0.0.1:{port}{path}")
    if depth > 1:
        argv += ["--", str(depth), path]
    return parse_wrk(_run(_pinned(argv, cpu), duration + GRACE_S))


def parse_ab(output: str, percentiles_csv: str) -> dict:
    def number(label: str) -> float | None:
        match = re.search(rf"^{label}:\s+([\d.]+)", output, re.MULTILINE)
        return float(match.group(1)) if match else None

    complete = number("Complete requests")
    seconds = number("Time taken for tests")
    if complete is None or seconds is None:
        raise LoadError(f"unexpected ab output: {output.strip()[-300:]}")
    detail = {}
    failed = number("Failed requests")
    if failed:
        detail["failed"] = int(failed)
    non_2xx = number("Non-2xx responses")
    if non_2xx:
        detail["status"] = int(non_2xx)
    # ab -e writes one row per percent with fractional milliseconds; its text table rounds to 1 ms.
    table = {}
    for line in percentiles_csv.splitlines()[1:]:
        percent, _, millis = line.partition(",")
        try:
            table[int(float(percent))] = float(millis)
        except ValueError:
            continue
    return {
        "tool": "ab",
        "requests": int(complete),
        "seconds": seconds,
        "rps": number("Requests per second") or complete / seconds,
        "p50_ms": table.get(50),
        "p99_ms": table.get(99),
        "errors": sum(detail.values()),
        "error_detail": detail,
    }


def ab(port: int, path: str, concurrency: int, duration: float, cpu: int | None) -> dict:
    """Fremlin's protocol: HTTP/1.0, no keep-alive, a new TCP connection per request."""
    with tempfile.NamedTemporaryFile("r", suffix=".csv") as percentiles:
        # -t first: it implies -n 50000, and the later -n lifts that cap. -r: count receive errors
        # instead of aborting the run on the first one.
        argv = [tool("ab"), "-q", "-r", "-t", str(max(1, round(duration))),
                "-n", str(AB_MAX_REQUESTS), "-c", str(concurrency), "-s", "5",
                "-e", percentiles.name, f"http://127.0.0.1:{port}{path}"]
        output = _run(_pinned(argv, cpu), duration + GRACE_S)
        return parse_ab(output, Path(percentiles.name).read_text())
