"""HTTPS side by side: tpd2py's TLS transport against uvicorn (--ssl-*), granian (--ssl-*) and
nginx (one worker, ssl_session_cache on), with the same certificate for every server.

Usage (from the repo root; needs wrk, nginx, the openssl command and the bench extra):
  .venv/bin/python bench/tls_bench.py [--key ec|rsa] [--rounds 3] [--duration 5]

Per round, every server in turn (the order rotates), server on --server-cpu, load on
--client-cpu:
  keepalive   wrk -c100 over https, GET / (hello world), keep-alive
  handshakes  wrk -c50 with `Connection: close`: a new TCP connection and a full TLS handshake
              per request (wrk does not resume sessions)
  resumed     `openssl s_time -reuse`: one client, sequential connections resuming one session
  full        `openssl s_time -new`: the same client, a full handshake each time
Targets (issue: HTTPS): keep-alive >= 1.5x uvicorn, ahead of granian, >= 0.6x nginx; handshakes
>= 0.7x nginx. Bounded: rounds <= 10, each point --duration seconds.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` as a package

from bench import loaders, machine, servers  # noqa: E402
from bench.files_bench import start  # noqa: E402

NGINX = """
daemon off; master_process on; worker_processes 1; pid {dir}/nginx-{port}.pid;
error_log stderr warn; worker_rlimit_nofile 65536;
events {{ worker_connections 30000; }}
http {{
    access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
    ssl_session_cache shared:SSL:10m; ssl_session_tickets on; ssl_protocols TLSv1.2 TLSv1.3;
    client_body_temp_path {dir}/cb; proxy_temp_path {dir}/p; fastcgi_temp_path {dir}/f;
    uwsgi_temp_path {dir}/u; scgi_temp_path {dir}/s;
    server {{
        listen 127.0.0.1:{port} ssl; ssl_certificate {cert}; ssl_certificate_key {key};
        location = / {{ default_type text/plain; return 200 "Hello, World!"; }}
    }}
}}
"""
NAMES = ["tpd2py", "uvicorn", "granian", "nginx"]
# Not TLS: tpd2py over plain HTTP, for the keep-alive point only (--only ... tpd2py-http):
# the ceiling the TLS transport works under (what is left when OpenSSL costs nothing).
PLAIN = "tpd2py-http"


def make_cert(work: Path, kind: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its PKCS#8 key (granian wants PKCS#8)."""
    key, cert = work / f"{kind}.key", work / f"{kind}.crt"
    algo = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ec" else \
        ["-newkey", "rsa:2048"]
    subprocess.run([loaders.tool("openssl"), "req", "-x509", *algo, "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def argv_for(name: str, port: int, work: Path, cert: Path, key: Path) -> list[str]:
    py = sys.executable
    host = ["--host", "127.0.0.1", "--port", str(port)]
    if name == PLAIN:
        return [py, "-m", "tpd2py", "bench.hello:app", *host, "--max-connections", "20000",
                "--keepalive-timeout", "300"]
    if name == "tpd2py":
        return [py, "-m", "tpd2py", "bench.hello:app", *host, "--certfile", str(cert),
                "--keyfile", str(key), "--max-connections", "20000",
                "--keepalive-timeout", "300"]
    if name == "uvicorn":
        return [py, "-m", "uvicorn", "bench.peers.uvicorn_app:app", *host, "--loop", "uvloop",
                "--http", "httptools", "--no-access-log", "--log-level", "warning",
                "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    if name == "granian":
        return [py, "-m", "granian", "--interface", "rsgi", "bench.peers.granian_app:app",
                *host, "--workers", "1", "--runtime-threads", "1", "--http", "1",
                "--no-access-log", "--log-level", "warning", "--ssl-certificate", str(cert),
                "--ssl-keyfile", str(key), "--ssl-protocol-min", "tls1.2"]
    if name == "nginx":
        conf = work / f"nginx-{port}.conf"
        conf.write_text(NGINX.format(dir=work, port=port, cert=cert, key=key))
        return [loaders.tool("nginx"), "-p", str(work), "-c", str(conf), "-e", "stderr"]
    raise KeyError(name)


def s_time(port: int, mode: str, seconds: float, cpu: int) -> float:
    """Connections per second from `openssl s_time` (-new: full handshakes; -reuse: resumed)."""
    out = subprocess.run(["taskset", "-c", str(cpu), loaders.tool("openssl"), "s_time",
                          "-connect", f"127.0.0.1:{port}", f"-{mode}", "-time",
                          str(max(1, round(seconds)))],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    m2 = re.search(r"(\d+) connections in ([\d.]+) real seconds", out)
    if m2 is None:
        return float("nan")
    return int(m2.group(1)) / float(m2.group(2))


async def _hold(port: int, count: int, ready: Any, release: Any) -> int:
    """``count`` TLS connections, each answered once, then idle until ``release`` is set."""
    import asyncio

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    gate = asyncio.Semaphore(200)
    held: list[Any] = []

    async def one() -> None:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
            writer.write(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
            await reader.readuntil(b"Hello, World!")
            held.append(writer)

    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    ready.set()
    while not release.is_set():
        await asyncio.sleep(0.1)
    for writer in held:
        writer.transport.abort()
    return sum(1 for r in results if not isinstance(r, BaseException))


def _run_holder(box: dict[str, int], port: int, count: int, ready: Any, release: Any) -> None:
    import asyncio

    box["held"] = asyncio.run(_hold(port, count, ready, release))


def idle(args: argparse.Namespace, work: Path, cert: Path, key: Path, env: dict[str, str]) -> None:
    """Server RSS per idle TLS keep-alive connection, and keep-alive throughput with them held
    against without, for each server in turn (the holder runs on the load core)."""
    import threading
    import time

    print(f"\n{args.idle} idle TLS keep-alive connections ({args.key} key)")
    print("| server | KiB per idle connection | req/s alone | req/s beside them | ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in args.only:
        port = servers.free_port()
        proc = start(argv_for(name, port, work, cert, key), port, args.server_cpu, env,
                     machine.ROOT)
        try:
            loaders.wrk(port, "/", 50, 2, args.client_cpu, scheme="https")  # warm up
            alone = loaders.wrk(port, "/", 100, args.duration, args.client_cpu,
                                scheme="https")["rps"]
            time.sleep(1.0)
            before = servers.rss_kib(proc.pid)
            ready, release = threading.Event(), threading.Event()
            box: dict[str, int] = {}
            holder = threading.Thread(target=_run_holder, daemon=True,
                                      args=(box, port, args.idle, ready, release))
            holder.start()
            ready.wait(300)
            time.sleep(2.0)
            after = servers.rss_kib(proc.pid)
            beside = loaders.wrk(port, "/", 100, args.duration, args.client_cpu,
                                 scheme="https")["rps"]
            release.set()
            holder.join(60)
        finally:
            proc.terminate()
            proc.wait(10)
        held = box.get("held", 0)
        per = (after - before) / max(held, 1)
        print(f"| {name} ({held} held) | {per:.1f} | {alone:,.0f} | {beside:,.0f} | "
              f"{beside / alone:.2f} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", choices=["ec", "rsa"], default="ec")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--only", nargs="*", default=NAMES, choices=[*NAMES, PLAIN])
    parser.add_argument("--idle", type=int, default=0,
                        help="instead: RSS per idle TLS connection with this many held")
    parser.add_argument("--keepalive-only", action="store_true",
                        help="only the keep-alive point (with tpd2py-http: the plain ceiling)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    args = parser.parse_args()
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be 1..10")
    machine.raise_nofile()
    work = Path(tempfile.mkdtemp(prefix="tls-bench-"))
    os.chmod(work, 0o755)
    cert, key = make_cert(work, args.key)
    for path in (cert, key):
        os.chmod(path, 0o644)
    env = dict(os.environ, PYTHONPATH=str(machine.ROOT))
    if args.idle:
        subprocess.run(["taskset", "-cp", str(args.client_cpu), str(os.getpid())],
                       capture_output=True, check=False)
        idle(args, work, cert, key, env)
        return 0
    names = args.only
    points = ["keepalive", "cpu_us", "handshakes", "full", "resumed"]
    rows: dict[tuple[str, str], list[float]] = {}
    print(f"TLS, {args.key} key; server on cpu {args.server_cpu}, load on cpu {args.client_cpu};"
          f" commit {machine.commit()}; load average {os.getloadavg()[0]:.2f}")
    for round_no in range(1, args.rounds + 1):
        shift = (round_no - 1) % len(names)
        for name in names[shift:] + names[:shift]:
            port = servers.free_port()
            proc = start(argv_for(name, port, work, cert, key), port, args.server_cpu, env,
                         machine.ROOT)
            try:
                scheme = "http" if name == PLAIN else "https"
                cpu_before = servers.cpu_seconds(proc.pid)
                got = {"keepalive": loaders.wrk(port, "/", 100, args.duration, args.client_cpu,
                                                scheme=scheme)["rps"]}
                # The server's CPU per keep-alive request (its whole process tree): steadier
                # than req/s when other processes take part of the server's core.
                got["cpu_us"] = (servers.cpu_seconds(proc.pid) - cpu_before) * 1e6 / max(
                    got["keepalive"] * round(args.duration), 1)
                if name != PLAIN and not args.keepalive_only:
                    got["handshakes"] = loaders.wrk(port, "/", 50, args.duration,
                                                    args.client_cpu,
                                                    headers=("Connection: close",),
                                                    scheme="https")["rps"]
                    got["full"] = s_time(port, "new", args.duration, args.client_cpu)
                    got["resumed"] = s_time(port, "reuse", args.duration, args.client_cpu)
                for point in points:
                    got.setdefault(point, float("nan"))
            finally:
                proc.terminate()
                proc.wait(10)
            for point, value in got.items():
                rows.setdefault((name, point), []).append(value)
            print(f"round {round_no} {name:11s} " + "  ".join(
                f"{p} {got[p]:9,.0f}/s" for p in points), flush=True)
    print(f"\n| server ({args.key}) | " + " | ".join(points) + " |")
    print("| --- |" + " ---: |" * len(points))
    med = {k: statistics.median(v) for k, v in rows.items()}
    for name in names:
        print(f"| {name} | " + " | ".join(f"{med[(name, p)]:,.0f}" for p in points) + " |")
    if "tpd2py" in names:
        for peer in names:
            if peer != "tpd2py" and not math.isnan(med[(peer, "keepalive")]):
                print(f"tpd2py/{peer}: " + ", ".join(
                    f"{p} {med[('tpd2py', p)] / med[(peer, p)]:.2f}x" for p in points))
    return 0


if __name__ == "__main__":
    sys.exit(main())
