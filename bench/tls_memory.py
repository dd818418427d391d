"""Where the bytes of an idle TLS keep-alive connection are: tpd2py's server holding N idle
connections (each answered once), plain HTTP against HTTPS, measured inside the server.

Usage (from the repo root; needs the openssl command):
  .venv/bin/python bench/tls_memory.py [--connections 5000] [--key ec|rsa] [--variants ...]

For each variant a server is started (pinned to --server-cpu; the client runs on --client-cpu),
warmed with a few hundred connections, then asked for its figures (GET /memory on a fresh
connection), then N connections are opened, each sends one request and reads its answer, and
stay open; the server is asked again. Per connection, the difference of:
  rss        VmRSS of the server process
  malloc     bytes glibc malloc has handed out and not got back (mallinfo2 uordblks)
  python     bytes CPython's allocator holds for objects (tracemalloc; started by the
             server with PYTHONTRACEMALLOC=1 only in the `traced` variants, it slows handshakes)
  openssl    malloc - python: what OpenSSL (and the rest of C) keeps
Variants: plain (HTTP), tls (the server as shipped), and the probes named in docs/tls.md.
Bounded: --connections <= 20000.

Run as `python bench/tls_memory.py --serve VARIANT --port P --cert C --key-file K` it is the server.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` as a package

from bench import machine, servers  # noqa: E402
from bench.files_bench import start  # noqa: E402
from bench.tls_bench import argv_for, make_cert  # noqa: E402

VARIANTS = ["plain", "tls", "tls-traced", "plain-traced", "nginx"]
BIG = b"x" * (1024 * 1024)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]


def _figures(trim: bool) -> dict[str, int]:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    if trim:
        libc.malloc_trim(0)
    info = libc.mallinfo2()
    import tracemalloc

    rss = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return {"rss": rss, "malloc": int(info.uordblks) + int(info.hblkhd),
            "python": tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0}


def serve(variant: str, port: int, cert: str, key: str) -> None:
    from tpd2py import App, Request, Response
    from tpd2py.server import Config, Server
    from tpd2py.tls import TLSSettings

    app = App()

    @app.route("/")
    def hello(req: Request) -> Response:
        return Response(b"Hello, World!", content_type=b"text/plain")

    @app.route("/big")
    def big(req: Request) -> Response:
        return Response(BIG, content_type=b"application/octet-stream")

    @app.route("/memory")
    def memory(req: Request) -> Response:
        return Response(json.dumps(_figures("trim" in req.query)).encode(),
                        content_type=b"application/json")

    transport = None
    if variant.startswith("tls"):
        settings = TLSSettings(cert, key)
        transport = settings.wrap
    server = Server(app, Config(keepalive_timeout=600, max_connections=30000))
    server.listen_tcp("127.0.0.1", port, transport=transport)
    server.serve_forever()


def _client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def ask(port: int, tls: bool, trim: bool = False) -> dict[str, int]:
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{port}/memory" + ("?trim=1" if trim else "")
    with urllib.request.urlopen(url, timeout=30,
                                context=_client_context() if tls else None) as answer:
        return dict(json.loads(answer.read()))


async def _hold(port: int, count: int, tls: bool, path: str) -> list[Any]:
    ctx = _client_context() if tls else None
    gate = asyncio.Semaphore(100)
    held: list[Any] = []
    end = b"Hello, World!" if path == "/" else BIG[-64:]

    async def one() -> None:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
            writer.write(b"GET %s HTTP/1.1\r\nHost: b\r\n\r\n" % path.encode())
            await reader.readuntil(end)
            held.append(writer)

    await asyncio.gather(*(one() for _ in range(count)))
    return held


def measure(variant: str, args: argparse.Namespace, work: Path, cert: Path, key: Path
            ) -> dict[str, float]:
    tls = variant.startswith("tls")
    env = dict(os.environ, PYTHONPATH=str(machine.ROOT))
    if "traced" in variant:
        env["PYTHONTRACEMALLOC"] = "1"
    port = servers.free_port()
    argv = [sys.executable, __file__, "--serve", variant, "--port", str(port),
            "--cert", str(cert), "--key-file", str(key)]
    if variant == "nginx":  # RSS only (of its master and worker)
        tls = True
        argv = argv_for("nginx", port, work, cert, key)
    proc = start(argv, port, args.server_cpu, env, machine.ROOT)
    figures = (lambda trim=False: {"rss": servers.rss_kib(proc.pid) * 1024, "malloc": 0,
                                   "python": 0}) if variant == "nginx" else \
        (lambda trim=False: ask(port, tls, trim))
    try:
        loop = asyncio.new_event_loop()
        for writer in loop.run_until_complete(_hold(port, 300, tls, "/")):
            writer.transport.abort()  # warm: the first handshakes' one-off allocations
        time.sleep(0.5)
        before = figures()
        held = loop.run_until_complete(_hold(port, args.connections, tls, args.path))
        time.sleep(1.0)
        after = figures()
        trimmed = figures(True)
        for writer in held:
            writer.transport.abort()
        loop.close()
    finally:
        proc.terminate()
        proc.wait(10)
    n = args.connections
    row = {k: (after[k] - before[k]) / n for k in before}
    row["openssl"] = row["malloc"] - row["python"] if "traced" in variant else float("nan")
    row["rss_trimmed"] = (trimmed["rss"] - before["rss"]) / n
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--key", choices=["ec", "rsa"], default="ec")
    parser.add_argument("--variants", nargs="*", default=VARIANTS)
    parser.add_argument("--path", default="/", help="what each connection asks once (/big: 1 MiB)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--serve")
    parser.add_argument("--port", type=int)
    parser.add_argument("--cert")
    parser.add_argument("--key-file")
    args, rest = parser.parse_known_args()
    if args.serve:
        serve(args.serve, args.port, args.cert, args.key_file)
        return 0
    if not 1 <= args.connections <= 20000:
        parser.error("--connections must be 1..20000")
    machine.raise_nofile()
    subprocess.run(["taskset", "-cp", str(args.client_cpu), str(os.getpid())],
                   capture_output=True, check=False)
    work = Path(tempfile.mkdtemp(prefix="tls-memory-"))
    cert, key = make_cert(work, args.key)
    print(f"{args.connections} idle connections, {args.key} key, each asked {args.path} once; "
          f"commit {machine.commit()}; load average {os.getloadavg()[0]:.2f}")
    print("| variant | RSS B/conn | RSS after malloc_trim | malloc B/conn | Python B/conn | "
          "C (OpenSSL) B/conn |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for variant in args.variants:
        row = measure(variant, args, work, cert, key)
        print(f"| {variant} | {row['rss']:,.0f} | {row['rss_trimmed']:,.0f} | "
              f"{row['malloc']:,.0f} | {row['python']:,.0f} | {row['openssl']:,.0f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
