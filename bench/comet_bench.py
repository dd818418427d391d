"""Comet bench: 10,000 parked long-poll clients on tpd2py, uvicorn and gevent.pywsgi, one run.

Usage (from the repository root): ``python -m bench.comet_bench [--clients 10000] [--rounds 5]
[--servers tpd2py,uvicorn,gevent] [--quick] [--json bench/out/comet.json]``.

For each server (one process pinned to CPU 0; this client and wrk pinned to CPU 1), all on
127.0.0.1 and serving the same contract (bench/peers/comet_*.py):
1. start it, warm it up, read its RSS (``/proc/PID/status``);
2. keep-alive hello-world throughput with ``wrk -t1 -c50`` (median of a few short runs);
3. park N clients on ``GET /poll?after=V`` (opened in batches, each batch confirmed parked
   through ``/stats`` so the listen backlog never overflows), read the RSS again: the
   difference over N is the server's memory per parked waiter (kernel socket buffers are not
   in RSS, for any server);
4. the same throughput run again, while the N clients stay parked;
5. ``rounds`` times: ``POST /publish`` and time, on this side, from just before the publish
   is sent until every one of the N clients holds its complete response (each is checked
   against the expected bytes); then all N poll again with the new version and park.
Then ``run_in_thread``'s round trip is timed against a plain ``ThreadPoolExecutor``, asyncio's
``run_in_executor`` and gevent's threadpool, each in its own subprocess.
Every phase is bounded in count and time; a server that misses a deadline is reported as
failed, not waited for. Figures go to stdout (a markdown table) and to ``--json``.
Rules: loopback only. Client sockets close with SO_LINGER 0 (RST), so that three runs of 10,000
connections never exhaust the ephemeral ports with TIME_WAIT.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER_CPU = 0
CLIENT_CPU = 1
BATCH = 1000  # connections opened before waiting for the server to park them
START_TIMEOUT = 20.0
PARK_TIMEOUT = 120.0  # for one batch to be parked
WAKE_TIMEOUT = 60.0  # for every client to have its response after a publish
WRK_CONNECTIONS = 50
_LINGER_RST = struct.pack("ii", 1, 0)


@dataclass
class Result:
    server: str
    clients: int = 0
    rss_base_kib: int = 0
    rss_parked_kib: int = 0
    bytes_per_waiter: float = 0.0
    park_seconds: float = 0.0
    hello_rps_idle: float = 0.0
    hello_rps_parked: float = 0.0
    hello_cpu_us_idle: float = 0.0  # server CPU per hello request, without the waiters
    hello_cpu_us_parked: float = 0.0  # ... and while they wait
    wake_ms: list[float] = field(default_factory=list)
    wake_cpu_ms: list[float] = field(default_factory=list)  # the server's CPU for that wake
    first_ms: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def wake_median_ms(self) -> float:
        return statistics.median(self.wake_ms) if self.wake_ms else float("nan")


def server_command(name: str, port: int) -> list[str]:
    py = sys.executable
    if name == "tpd2py":
        return [py, "-m", "tpd2py", "bench.peers.comet_tpd2py:app", "--port", str(port),
                "--keepalive-timeout", "600", "--max-connections", "30000",
                "--log-level", "error"]
    if name == "uvicorn":
        return [py, "-m", "uvicorn", "bench.peers.comet_uvicorn:app", "--loop", "uvloop",
                "--http", "httptools", "--no-access-log", "--port", str(port),
                "--backlog", "4096", "--timeout-keep-alive", "600", "--log-level", "error"]
    if name == "gevent":
        return [py, "bench/peers/comet_gevent.py", str(port)]
    raise SystemExit(f"unknown server {name!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# -- a minimal blocking HTTP client for control requests ------------------------------------------


def read_response(sock: socket.socket, buffer: bytes = b"") -> tuple[int, bytes, bytes]:
    """(status, body, rest) of one Content-Length (or bodiless) response."""
    while b"\r\n\r\n" not in buffer:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("closed before the response head")
        buffer += more
    head, _, rest = buffer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = content_length(head)
    while len(rest) < length:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("closed inside the body")
        rest += more
    return status, rest[:length], rest[length:]


def content_length(head: bytes) -> int:
    lower = head.lower()
    i = lower.find(b"\r\ncontent-length:")
    if i < 0:
        return 0
    end = lower.find(b"\r\n", i + 2)
    return int(lower[i + 17:end if end >= 0 else None])


def control(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"%s %s HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n\r\n%s"
                     % (method.encode(), path.encode(), len(body), body))
        status, data, _ = read_response(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        return status, data



def poll_answer(version: int, message: str) -> bytes:
    """The body every long-poll client must get when ``message`` is published as ``version``
    (the app's Update JSON: one message, the history complete)."""
    item = b'{"id":%d,"data":%s}' % (version, json.dumps(message).encode())
    return b'{"version":%d,"complete":true,"messages":[%s]}' % (version, item)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if ``proc`` is still there after ``timeout`` seconds; reaped."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def wait_started(port: int, proc: subprocess.Popen, timeout: float, name: str) -> None:
    """Until ``GET /hello`` answers on ``port`` (tried every 50 ms, at most ``timeout`` s);
    RuntimeError if ``proc`` exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            control(port, "GET", "/hello")
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start") from None
            time.sleep(0.05)

def stats(port: int) -> dict:
    return json.loads(control(port, "GET", "/stats")[1])  # type: ignore[no-any-return]


# -- the fleet of long-poll clients ---------------------------------------------------------------


class Fleet:
    """N keep-alive connections that long-poll; one epoll (level-triggered) reads them all."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.socks: list[socket.socket] = []
        self.epoll = select.epoll()

    def open(self, count: int, version: int) -> None:
        request = self.poll_request(version)
        for _ in range(count):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            sock.settimeout(10)
            sock.connect(("127.0.0.1", self.port))
            sock.sendall(request)
            sock.setblocking(False)
            self.epoll.register(sock.fileno(), select.EPOLLIN)
            self.socks.append(sock)

    def poll_request(self, version: int) -> bytes:
        return b"GET /poll?after=%d HTTP/1.1\r\nHost: bench\r\n\r\n" % version

    def repoll(self, version: int) -> None:
        request = self.poll_request(version)
        for sock in self.socks:
            sock.send(request)  # a few dozen bytes into an empty socket buffer: never short

    def collect(self, expected: bytes | None, started: float,
                deadline: float) -> tuple[float, float]:
        """Read until every socket holds one complete response; check each body (any 200
        when ``expected`` is None).

        Returns (seconds until the first, seconds until the last) since ``started``.
        """
        by_fd = {s.fileno(): s for s in self.socks}
        buffers: dict[int, bytes] = {}
        left = len(self.socks)
        first = 0.0
        poll = self.epoll.poll
        while left:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{left} of {len(self.socks)} clients got no response")
            for fd, _ in poll(1.0):
                sock = by_fd[fd]
                data = buffers.get(fd, b"") + sock.recv(65536)
                if not data:
                    raise ConnectionError("the server closed a parked connection")
                head_end = data.find(b"\r\n\r\n")
                if head_end < 0 or len(data) < head_end + 4 + content_length(data[:head_end]):
                    buffers[fd] = data
                    continue
                buffers.pop(fd, None)
                body = data[head_end + 4:]
                if not data.startswith(b"HTTP/1.1 200") or (expected is not None
                                                             and body != expected):
                    raise AssertionError(f"unexpected response {data[:300]!r}")
                self.epoll.unregister(fd)
                left -= 1
                if not first:
                    first = time.perf_counter() - started
        last = time.perf_counter() - started
        for sock in self.socks:
            self.epoll.register(sock.fileno(), select.EPOLLIN)
        return first, last

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks.clear()
        self.epoll.close()


def wait_parked(port: int, count: int, timeout: float, at_most: bool = False) -> None:
    """Poll /stats until ``count`` clients wait (or, ``at_most``, no more than that)."""
    deadline = time.monotonic() + timeout
    while True:
        waiting = stats(port)["waiting"]
        if (waiting <= count) if at_most else (waiting >= count):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {waiting} of {count} clients parked after {timeout:.0f} s")
        time.sleep(0.05)


# -- throughput with wrk --------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time the process's main thread has run, in ns precision (/proc/PID/schedstat).
    Every server here serves from its main thread (tpd2py's and gevent's hubs, uvloop)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def run_wrk(port: int, pid: int, seconds: float, runs: int) -> list[tuple[float, float]]:
    """``runs`` wrk runs of ``seconds`` each (keep-alive, GET /hello): for each, requests per
    second and the server's CPU microseconds per request. The second figure hardly depends on
    what other processes do with the CPUs, so it is the one to compare on a shared machine."""
    figures = []
    for _ in range(runs):
        argv = ["taskset", "-c", str(CLIENT_CPU), "wrk", "-t1", f"-c{WRK_CONNECTIONS}",
                "--timeout", "10s", f"-d{seconds:g}s", f"http://127.0.0.1:{port}/hello"]
        cpu = cpu_seconds(pid)
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
        cpu = cpu_seconds(pid) - cpu
        if "Non-2xx" in out:
            raise RuntimeError(f"wrk saw errors: {out}")
        rps = requests = None
        for line in out.splitlines():
            if line.startswith("Requests/sec:"):
                rps = float(line.split()[1])
            elif " requests in " in line:
                requests = int(line.split()[0])
        if rps is None or not requests:
            raise RuntimeError(f"wrk printed no figures: {out}")
        figures.append((rps, cpu / requests * 1e6))
    return figures


# -- one server -----------------------------------------------------------------------------------


def bench_server(name: str, clients: int, rounds: int, wrk_seconds: float,
                 wrk_runs: int) -> Result:
    result = Result(name, clients)
    port = free_port()
    argv = ["taskset", "-c", str(SERVER_CPU), *server_command(name, port)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    fleet = Fleet(port)
    try:
        wait_started(port, proc, START_TIMEOUT, name)
        version = stats(port)["version"]
        idle = run_wrk(port, proc.pid, wrk_seconds, wrk_runs)
        result.rss_base_kib = rss_kib(proc.pid)

        started = time.perf_counter()
        while len(fleet.socks) < clients:
            n = min(BATCH, clients - len(fleet.socks))
            fleet.open(n, version)
            wait_parked(port, len(fleet.socks), PARK_TIMEOUT)
        result.park_seconds = time.perf_counter() - started
        time.sleep(0.5)  # let the allocator settle before reading RSS (a figure, not a wait)
        result.rss_parked_kib = rss_kib(proc.pid)
        result.bytes_per_waiter = (result.rss_parked_kib - result.rss_base_kib) * 1024 / clients

        parked = run_wrk(port, proc.pid, wrk_seconds, 2 * wrk_runs)
        result.hello_rps_parked = statistics.median(f[0] for f in parked)
        result.hello_cpu_us_parked = statistics.median(f[1] for f in parked)
        if stats(port)["waiting"] != clients:
            raise RuntimeError("parked clients were lost during the throughput run")

        publisher = socket.create_connection(("127.0.0.1", port), timeout=10)
        for r in range(rounds):
            message = f"message {r} to {clients} clients"
            expected_version = version + 1
            expected = poll_answer(expected_version, message)
            body = message.encode()
            cpu = cpu_seconds(proc.pid)
            started = time.perf_counter()
            publisher.sendall(b"POST /publish HTTP/1.1\r\nHost: bench\r\nContent-Length: %d"
                              b"\r\n\r\n%s" % (len(body), body))
            first, last = fleet.collect(expected, started, started + WAKE_TIMEOUT)
            result.wake_cpu_ms.append((cpu_seconds(proc.pid) - cpu) * 1000)
            status, reply, _ = read_response(publisher)
            version = json.loads(reply)["version"]
            assert version == expected_version, (version, expected_version)
            result.first_ms.append(first * 1000)
            result.wake_ms.append(last * 1000)
            if r + 1 < rounds:
                fleet.repoll(version)
                wait_parked(port, clients, PARK_TIMEOUT)
        publisher.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        publisher.close()
        # Idle throughput again once the clients are gone: the figure without waiters is the
        # median of runs before and after, so that a drift in machine load does not pass for
        # the waiters' cost.
        fleet.repoll(version + 10**6)  # a version from the future: answered at once
        started = time.perf_counter()
        fleet.collect(None, started, started + WAKE_TIMEOUT)
        fleet.close()
        wait_parked(port, 0, PARK_TIMEOUT, at_most=True)
        idle += run_wrk(port, proc.pid, wrk_seconds, wrk_runs)
        result.hello_rps_idle = statistics.median(f[0] for f in idle)
        result.hello_cpu_us_idle = statistics.median(f[1] for f in idle)
    except Exception as e:  # noqa: BLE001 - reported in the table, the other servers still run
        result.error = f"{type(e).__name__}: {e}"
    finally:
        fleet.close()
        stop_process(proc)
        if result.error and proc.stderr is not None:
            result.error += " | stderr: " + proc.stderr.read().decode(errors="replace")[-500:]
    return result


# -- run_in_thread round trip ---------------------------------------------------------------------


def _noop() -> None:
    return None


def measure_threads(kind: str, calls: int) -> float:
    """Microseconds per round trip of a no-op through ``kind``'s thread offload."""
    if kind == "tpd2py":
        from tpd2py.hub import get_hub
        from tpd2py.threads import ThreadPool

        hub = get_hub()
        out: list[float] = []

        def main() -> None:
            pool = ThreadPool(max_threads=1)
            pool.run(_noop)
            start = time.perf_counter()
            for _ in range(calls):
                pool.run(_noop)
            out.append(time.perf_counter() - start)
            pool.shutdown(wait=False)
            hub.stop()

        hub.spawn(main)
        hub.run()
        return out[0] / calls * 1e6
    if kind == "executor":
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1) as executor:
            executor.submit(_noop).result()
            start = time.perf_counter()
            for _ in range(calls):
                executor.submit(_noop).result()
            return (time.perf_counter() - start) / calls * 1e6
    if kind == "asyncio":
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        import uvloop

        async def main() -> float:
            loop = asyncio.get_running_loop()
            with ThreadPoolExecutor(max_workers=1) as executor:
                await loop.run_in_executor(executor, _noop)
                start = time.perf_counter()
                for _ in range(calls):
                    await loop.run_in_executor(executor, _noop)
                return (time.perf_counter() - start) / calls * 1e6

        return uvloop.run(main())
    if kind == "gevent":
        import gevent.threadpool

        pool = gevent.threadpool.ThreadPool(1)
        pool.apply(_noop)
        start = time.perf_counter()
        for _ in range(calls):
            pool.apply(_noop)
        elapsed = time.perf_counter() - start
        pool.kill()
        return elapsed / calls * 1e6
    raise SystemExit(f"unknown thread kind {kind!r}")


THREAD_KINDS = [
    ("tpd2py", "tpd2py `run_in_thread` (ThreadPool.run, from a greenlet)"),
    ("executor", "plain `ThreadPoolExecutor.submit().result()` (blocking caller)"),
    ("asyncio", "asyncio (uvloop) `loop.run_in_executor`"),
    ("gevent", "gevent `threadpool.apply`"),
]


def thread_overheads(calls: int, repeats: int) -> dict[str, list[float]]:
    """µs per round trip of each kind, ``repeats`` samples each, the kinds interleaved (so that
    a burst of load from other users hits them alike); each sample in a fresh process."""
    samples: dict[str, list[float]] = {kind: [] for kind, _ in THREAD_KINDS}
    for _ in range(repeats):
        for kind, _ in THREAD_KINDS:
            out = subprocess.run([sys.executable, "-m", "bench.comet_bench", "--measure-threads",
                                  kind, "--calls", str(calls)], cwd=ROOT, capture_output=True,
                                 text=True, timeout=120)
            if out.returncode != 0:
                raise RuntimeError(f"{kind}: {out.stderr[-500:]}")
            samples[kind].append(float(out.stdout.strip()))
    return samples


# -- report ---------------------------------------------------------------------------------------


def report(results: list[Result], threads: dict[str, list[float]], clients: int) -> str:
    lines = [
        f"| server | bytes per parked waiter | publish -> all {clients} answered, ms "
        "(median; each round) | server CPU for that, ms (median) | first answer, ms "
        "| hello rps idle | hello rps with waiters (change) | server CPU µs per hello, "
        "idle -> with waiters (change) | time to park all, s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        if r.error:
            lines.append(f"| {r.server} | failed: {r.error[:300]} | | | | | | | |")
            continue
        change = (r.hello_rps_parked / r.hello_rps_idle - 1) * 100 if r.hello_rps_idle else 0
        rounds = ", ".join(f"{ms:.0f}" for ms in r.wake_ms)
        cpu_change = (r.hello_cpu_us_parked / r.hello_cpu_us_idle - 1) * 100 \
            if r.hello_cpu_us_idle else 0
        lines.append(
            f"| {r.server} | {r.bytes_per_waiter:,.0f} | **{r.wake_median_ms:.0f}** ({rounds}) "
            f"| {statistics.median(r.wake_cpu_ms):.0f} | {statistics.median(r.first_ms):.1f} "
            f"| {r.hello_rps_idle:,.0f} | "
            f"{r.hello_rps_parked:,.0f} ({change:+.1f}%) | {r.hello_cpu_us_idle:.1f} -> "
            f"{r.hello_cpu_us_parked:.1f} ({cpu_change:+.1f}%) | {r.park_seconds:.1f} |")
    ok = {r.server: r for r in results if not r.error}
    if "tpd2py" in ok:
        ours = ok["tpd2py"].wake_median_ms
        for peer in ("uvicorn", "gevent"):
            if peer in ok:
                cpu = statistics.median(ok["tpd2py"].wake_cpu_ms) / statistics.median(
                    ok[peer].wake_cpu_ms)
                lines.append(f"\ntpd2py wakes {clients} waiters in "
                             f"{ours / ok[peer].wake_median_ms:.2f}x the time {peer} needs "
                             f"({cpu:.2f}x its server CPU).")
    if threads:
        lines += ["", "| thread offload, no-op round trip | µs per call, best | median |",
                  "| --- | --- | --- |"]
        for kind, label in THREAD_KINDS:
            if kind in threads:
                lines.append(f"| {label} | {min(threads[kind]):.1f} | "
                             f"{statistics.median(threads[kind]):.1f} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import greenlet

    return (f"{cpu}, {os.cpu_count()} CPUs; Python {sys.version.split()[0]}, greenlet "
            f"{greenlet.__version__}; server on CPU {SERVER_CPU}, client and wrk on CPU "
            f"{CLIENT_CPU}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--servers", default="tpd2py,uvicorn,gevent")
    parser.add_argument("--wrk-seconds", type=float, default=3.0)
    parser.add_argument("--wrk-runs", type=int, default=3)
    parser.add_argument("--thread-calls", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="1,000 clients, short runs")
    parser.add_argument("--nice", type=int, default=0,
                        help="run this client, the servers and wrk at this niceness (negative "
                             "needs root): on a shared machine, other users' processes then "
                             "take less of the two CPUs from the measurement")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "comet.json")
    parser.add_argument("--measure-threads", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=20_000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_threads:
        print(measure_threads(args.measure_threads, args.calls))
        return
    if args.quick:
        args.clients, args.rounds, args.wrk_seconds, args.wrk_runs = 1000, 2, 1.0, 1
        args.thread_calls = 5000
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing (apt-get install wrk util-linux)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < args.clients + 100:
        raise SystemExit(f"the open-file limit ({hard}) is below {args.clients} clients")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {CLIENT_CPU})
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # inherited by the servers and wrk
    load_before = os.getloadavg()[0]
    print(f"# Comet bench: {args.clients} parked long-poll clients\n{machine()}; niceness "
          f"{os.getpriority(os.PRIO_PROCESS, 0)}\n", flush=True)
    results = []
    for name in args.servers.split(","):
        print(f"... {name}", file=sys.stderr, flush=True)
        results.append(bench_server(name, args.clients, args.rounds, args.wrk_seconds,
                                    args.wrk_runs))
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    print("... thread offload", file=sys.stderr, flush=True)
    threads = thread_overheads(args.thread_calls, 5)
    print(report(results, threads, args.clients))
    load_after = os.getloadavg()[0]
    print(f"\n1-minute load average: {load_before:.1f} before, {load_after:.1f} after the run "
          "(other users' processes share the two CPUs).")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "machine": machine(), "clients": args.clients, "niceness": args.nice,
        "load_average": [load_before, load_after],
        "results": [dict(asdict(r), wake_median_ms=r.wake_median_ms) for r in results],
        "thread_overhead_us": threads}, indent=2))


if __name__ == "__main__":
    main()
