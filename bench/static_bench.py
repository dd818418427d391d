"""Static files and gzip side by side: tpd2py's folder mount against nginx, uvicorn + Starlette's
StaticFiles and granian's static mount; a 50 KB page plain, gzip-cached and gzip-dynamic against
nginx `gzip on`; and 1,000 slow downloads beside a hello-world load.

Usage (from the repo root; needs wrk, nginx and the bench extra):
  .venv/bin/python bench/static_bench.py small  [--rounds 3] [--duration 5]
  .venv/bin/python bench/static_bench.py gzip   [--rounds 3] [--duration 5]
  .venv/bin/python bench/static_bench.py slow   [--downloads 1000] [--size-mib 10]

small: a 1 KiB text file, wrk -c100 keep-alive, every server in turn each round (the order
rotates between rounds), plus tpd2py's hello world as the yardstick. Targets: >= 0.9x tpd2py's
hello world, >= 0.7x nginx, >= 3x uvicorn + StaticFiles.
gzip: a 50 KB HTML page, wrk -c100 with `Accept-Encoding: gzip`: tpd2py plain, tpd2py with the
gzip form from the cache, tpd2py compressing every response (level 6), nginx `gzip on` level 6;
with the compressed size. Target: cached >= 0.9x plain.
slow: --downloads clients each read a --size-mib file at about 1 MiB/s from tpd2py's mount (a
Python client on the load core, reading a bounded piece every 1/16 s) while wrk -c50 measures
hello world; reports wrk's p99 and the server's RSS growth per download. Targets: p99 < 20 ms,
<= 16 KiB per download.
Server on --server-cpu, load on --client-cpu. Bounded: rounds <= 10, durations in seconds.
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` as a package

from bench import loaders, machine, servers  # noqa: E402
from bench.files_bench import start  # noqa: E402

NGINX = """
daemon off; master_process on; worker_processes 1; pid {dir}/nginx-{port}.pid;
error_log stderr warn; worker_rlimit_nofile 65536;
events {{ worker_connections 4096; }}
http {{
    include {mime}; access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;
    etag on; gzip {gzip}; gzip_comp_level 6; gzip_min_length 1024; gzip_types text/html;
    client_body_temp_path {dir}/cb; proxy_temp_path {dir}/p; fastcgi_temp_path {dir}/f;
    uwsgi_temp_path {dir}/u; scgi_temp_path {dir}/s;
    server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
"""
MIME_TYPES = "/etc/nginx/mime.types"


def make_site(work: Path, size_mib: int) -> None:
    static = work / "static"
    static.mkdir(parents=True)
    line = b"tpd2py static bench: one kibibyte of text, served again and again.\n"
    (static / "one.txt").write_bytes((line * 20)[:1024])
    rows = b"".join(b"<tr><td>%d</td><td>item number %d</td><td>%s</td></tr>\n"
                    % (i, i * 7, b"in stock" if i % 3 else b"sold out") for i in range(700))
    page = b"<!DOCTYPE html><html><head><title>catalogue</title></head><body><table>\n" + \
        rows + b"</table></body></html>\n"
    (static / "page.html").write_bytes(page[:50_000] if len(page) > 50_000 else page)
    if size_mib:
        (static / "big.bin").write_bytes(os.urandom(size_mib << 20))
    for path in [work, static, *static.iterdir()]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def argv_for(name: str, port: int, work: Path) -> list[str]:
    py = sys.executable
    host = ["--host", "127.0.0.1", "--port", str(port)]
    if name in ("tpd2py-hello", "tpd2py-static"):
        return [py, "-m", "tpd2py", "bench.peers.static_tpd2py:app", *host,
                "--max-connections", "20000"]
    if name.startswith("nginx"):
        conf = work / f"nginx-{port}.conf"
        conf.write_text(NGINX.format(dir=work, port=port, root=work, mime=MIME_TYPES,
                                     gzip="on" if name == "nginx-gzip" else "off"))
        return [loaders.tool("nginx"), "-p", str(work), "-c", str(conf), "-e", "stderr"]
    if name == "uvicorn-staticfiles":
        return [py, "-m", "uvicorn", "bench.peers.static_starlette:app", *host, "--loop",
                "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
    if name == "granian-static":
        return [py, "-m", "granian", "--interface", "rsgi", "bench.peers.granian_app:app",
                *host, "--workers", "1", "--runtime-threads", "1", "--http", "1",
                "--no-access-log", "--log-level", "warning",
                "--static-path-route", "/static", "--static-path-mount", str(work / "static")]
    raise KeyError(name)


PATHS = {"tpd2py-hello": "/", "tpd2py-static": "/static/one.txt", "nginx": "/static/one.txt",
         "uvicorn-staticfiles": "/static/one.txt", "granian-static": "/static/one.txt"}
GZIP_POINTS = {"tpd2py-plain": ("tpd2py-static", "/page", False),
               "tpd2py-gzip-cached": ("tpd2py-static", "/gz/page", True),
               "tpd2py-gzip-dynamic": ("tpd2py-static", "/gz/dynamic", True),
               "nginx-plain": ("nginx", "/static/page.html", False),
               "nginx-gzip": ("nginx-gzip", "/static/page.html", True)}


def env_for(work: Path) -> dict[str, str]:
    return dict(os.environ, STATIC_BENCH_DIR=str(work), PYTHONPATH=str(machine.ROOT))


def fetch(port: int, path: str, gzip: bool) -> tuple[int, bytes]:
    """(status, body) of one GET, for the check that every server answers the same bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        extra = b"Accept-Encoding: gzip\r\n" if gzip else b""
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: b\r\n%sConnection: close\r\n\r\n"
                     % (path.encode(), extra))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():  # granian streams its files
        pieces, rest = [], body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if not size:
                break
            pieces.append(rest[:size])
            rest = rest[size + 2:]
        body = b"".join(pieces)
    return int(head.split()[1]), body


def side_by_side(args: argparse.Namespace, work: Path, names: list[str],
                 point: dict[str, tuple[str, str, bool]]) -> dict[str, list[dict]]:
    env = env_for(work)
    rows: dict[str, list[dict]] = {n: [] for n in names}
    for round_no in range(1, args.rounds + 1):
        shift = (round_no - 1) % len(names)
        for name in names[shift:] + names[:shift]:
            server, path, gzip = point[name]
            port = servers.free_port()
            proc = start(argv_for(server, port, work), port, args.server_cpu, env,
                         machine.ROOT)
            try:
                status, body = fetch(port, path, gzip)
                if status != 200:
                    raise SystemExit(f"{name}: {path} answered {status}")
                headers = ("Accept-Encoding: gzip",) if gzip else ()
                row = loaders.wrk(port, path, args.connections, args.duration, args.client_cpu,
                                  headers=headers)
            finally:
                proc.terminate()
                proc.wait(10)
            row["bytes"] = len(body)
            rows[name].append(row)
            print(f"round {round_no} {name:22s} {row['rps']:9,.0f} req/s  p99 "
                  f"{row.get('p99_ms')} ms  {len(body)} B", flush=True)
    return rows


def report(rows: dict[str, list[dict]], base: str, extra: dict[str, str]) -> None:
    med = {n: statistics.median(r["rps"] for r in rs) for n, rs in rows.items() if rs}
    print(f"\n| server | req/s (median) | vs {base} | body bytes |")
    print("| --- | ---: | ---: | ---: |")
    for name, rps in med.items():
        print(f"| {name} {extra.get(name, '')}| {rps:,.0f} | {rps / med[base]:.2f}x | "
              f"{rows[name][0]['bytes']} |")


def small(args: argparse.Namespace, work: Path) -> None:
    names = ["tpd2py-hello", "tpd2py-static", "nginx", "uvicorn-staticfiles", "granian-static"]
    point = {n: (n, PATHS[n], False) for n in names}
    rows = side_by_side(args, work, names, point)
    report(rows, "tpd2py-static", {})


def gzip_page(args: argparse.Namespace, work: Path) -> None:
    names = list(GZIP_POINTS)
    rows = side_by_side(args, work, names, GZIP_POINTS)
    report(rows, "tpd2py-plain", {})
    page = (work / "static" / "page.html").read_bytes()
    level6 = zlib.compressobj(6, zlib.DEFLATED, 31)
    size = len(level6.compress(page) + level6.flush())
    print(f"\npage {len(page)} B; gzip level 6 by zlib: {size} B ({size / len(page):.1%})")


# -- slow downloads -------------------------------------------------------------------------------

PIECE = 65536  # bytes a slow client reads per tick
TICKS_PER_S = 16  # 16 x 64 KiB = 1 MiB/s per client


def slow_clients(port: int, count: int, path: str, stop: threading.Event,
                 progress: dict[str, int]) -> None:
    """``count`` connections, each reading ``PIECE`` bytes per tick (about 1 MiB/s): a small
    receive buffer keeps the server's sends waiting on the client, as a slow link would."""
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 128 * 1024)
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET %s HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n" % path.encode())
        s.setblocking(False)
        socks.append(s)
    buf = bytearray(PIECE)
    live = set(socks)
    tick = 1.0 / TICKS_PER_S
    next_tick = time.monotonic()
    while live and not stop.is_set():
        for s in list(live):
            try:
                n = s.recv_into(buf, PIECE)
            except BlockingIOError:
                continue
            except OSError:
                n = 0
            if n == 0:
                live.discard(s)
                s.close()
                progress["done"] += 1
            else:
                progress["bytes"] += n
        next_tick += tick
        time.sleep(max(0.0, next_tick - time.monotonic()))
    for s in live:
        s.close()
    sel.close()


def rss_kib(pid: int) -> int:
    return servers.rss_kib(pid)


def slow(args: argparse.Namespace, work: Path) -> None:
    env = env_for(work)
    port = servers.free_port()
    proc = start(argv_for("tpd2py-static", port, work), port, args.server_cpu, env,
                 machine.ROOT)
    try:
        loaders.wrk(port, "/", 50, 2, args.client_cpu)  # warm up: pools, caches
        quiet = loaders.wrk(port, "/", 50, args.duration, args.client_cpu)
        before = rss_kib(proc.pid)
        stop = threading.Event()
        progress = {"bytes": 0, "done": 0}
        clients = threading.Thread(target=slow_clients, daemon=True,
                                   args=(port, args.downloads, "/static/big.bin", stop, progress))
        subprocess.run(["taskset", "-cp", str(args.client_cpu), str(os.getpid())],
                       capture_output=True, check=False)
        started = time.monotonic()
        clients.start()
        time.sleep(2.0)  # all connected and sending
        busy = loaders.wrk(port, "/", 50, args.duration, args.client_cpu)
        during = rss_kib(proc.pid)
        elapsed = time.monotonic() - started
        rate = progress["bytes"] / elapsed / args.downloads / (1 << 20)
        stop.set()
        clients.join(30)
    finally:
        proc.terminate()
        proc.wait(10)
    growth = (during - before) / args.downloads
    print(f"\n{args.downloads} downloads of {args.size_mib} MiB at {rate:.2f} MiB/s each "
          f"(client-side mean over {elapsed:.0f} s)")
    print("| hello world, wrk -c50 | req/s | p50 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: |")
    for label, row in (("alone", quiet), ("beside the downloads", busy)):
        print(f"| {label} | {row['rps']:,.0f} | {row.get('p50_ms')} | {row.get('p99_ms')} |")
    print(f"\nserver RSS {before} KiB before, {during} KiB during: {growth:.1f} KiB per download")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=["small", "gzip", "slow"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--downloads", type=int, default=1000)
    parser.add_argument("--size-mib", type=int, default=10)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    args = parser.parse_args()
    if not 1 <= args.rounds <= 10 or not 1 <= args.downloads <= 5000:
        parser.error("--rounds must be 1..10 and --downloads 1..5000")
    machine.raise_nofile()
    work = Path(tempfile.mkdtemp(prefix="static-bench-"))
    os.chmod(work, 0o755)
    make_site(work, args.size_mib if args.scenario == "slow" else 0)
    print(f"{args.scenario}: server on cpu {args.server_cpu}, load on cpu {args.client_cpu}; "
          f"commit {machine.commit()}; load average {os.getloadavg()[0]:.2f}")
    {"small": small, "gzip": gzip_page, "slow": slow}[args.scenario](args, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
