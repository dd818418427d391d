"""Which TLS layer under the connection: tpd2py's SSLObject-over-memory-BIOs transport against a
non-blocking SSLSocket behind the same seam, on the same server and app.

Usage (from the repo root; needs wrk and the openssl command):
  .venv/bin/python bench/tls_transports.py [--rounds 3] [--duration 5]
  .venv/bin/python bench/tls_transports.py --old-tls OLD/tpd2py/tls.py   # A/B of two tls.py

Each round starts the hello-world server once per transport (the order alternates), pinned to
--server-cpu, and runs wrk -c100 over https (keep-alive) and wrk -c50 with `Connection: close`
(a handshake per request) from --client-cpu. The SSLSocket adapter here is for measuring only:
it maps SSLWantRead/WriteError to BlockingIOError and is fine for small responses, but a
non-blocking SSLSocket must retry a refused write with the same buffer, which the connection's
send path does not promise (see docs/tls.md). Bounded: rounds <= 10.

Run as `python bench/tls_transports.py --serve KIND --port P --cert C --key K` it is the server.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` as a package

from bench import loaders, machine, servers  # noqa: E402
from bench.files_bench import start  # noqa: E402
from bench.tls_bench import make_cert  # noqa: E402


class SSLSocketTransport:
    """A non-blocking ``ssl.SSLSocket`` with the transport seam's methods (bench only)."""

    __slots__ = ("sock",)
    scheme = "https"

    def __init__(self, raw: Any, context: ssl.SSLContext) -> None:
        plain = socket.socket(fileno=raw.detach())
        plain.setblocking(False)
        self.sock = context.wrap_socket(plain, server_side=True,
                                        do_handshake_on_connect=False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def getpeername(self) -> Any:
        return self.sock.getpeername()

    def setsockopt(self, *args: Any) -> None:
        self.sock.setsockopt(*args)

    def recv_into(self, view: Any, nbytes: int = 0, flags: int = 0) -> int:
        try:
            return self.sock.recv_into(view)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError() from None
        except ssl.SSLZeroReturnError:
            return 0

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self.sock.pending():
            return b"\0"
        return socket.socket.recv(self.sock, bufsize, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        try:
            return self.sock.send(data)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError() from None

    def sendmsg(self, chunks: list[Any], ancdata: Any = (), flags: int = 0) -> int:
        return self.send(b"".join(chunks), flags)

    def shutdown(self, how: int) -> None:
        socket.socket.shutdown(self.sock, how)

    def close(self) -> None:
        self.sock.close()


def serve(kind: str, port: int, cert: str, key: str, old_tls: str | None = None) -> None:
    from bench.hello import app
    from tpd2py.server import Config, Server
    from tpd2py.tls import TLSSettings

    if kind == "sslobject-old":  # tpd2py/tls.py of another checkout (it imports no tpd2py)
        import importlib.util

        spec = importlib.util.spec_from_file_location("old_tls", old_tls or "")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        TLSSettings = module.TLSSettings  # noqa: N806
    settings = TLSSettings(cert, key)
    transport = settings.wrap if kind.startswith("sslobject") else \
        (lambda raw: SSLSocketTransport(raw, settings.context))
    server = Server(app, Config(keepalive_timeout=300, max_connections=20000))
    server.listen_tcp("127.0.0.1", port, transport=transport)
    server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--serve", choices=["sslobject", "sslsocket", "sslobject-old"])
    parser.add_argument("--old-tls", help="A/B instead: this tls.py (another checkout's) "
                        "against ours, both SSLObject")
    parser.add_argument("--port", type=int)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.cert, args.key, args.old_tls)
        return 0
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be 1..10")
    work = Path(tempfile.mkdtemp(prefix="tls-transports-"))
    cert, key = make_cert(work, "ec")
    env = dict(os.environ, PYTHONPATH=str(machine.ROOT))
    rows: dict[tuple[str, str], list[float]] = {}
    compared = ["sslobject-old", "sslobject"] if args.old_tls else ["sslobject", "sslsocket"]
    print(f"server on cpu {args.server_cpu}, wrk on cpu {args.client_cpu}; commit "
          f"{machine.commit()}; load average {os.getloadavg()[0]:.2f}")
    for round_no in range(1, args.rounds + 1):
        kinds = [*compared] if round_no % 2 else [*reversed(compared)]
        for kind in kinds:
            port = servers.free_port()
            extra = ["--old-tls", str(Path(args.old_tls).resolve())] if args.old_tls else []
            proc = start([sys.executable, __file__, "--serve", kind, "--port", str(port),
                          "--cert", str(cert), "--key", str(key), *extra], port,
                         args.server_cpu, env, machine.ROOT)
            try:
                cpu_before = servers.cpu_seconds(proc.pid)
                keep = loaders.wrk(port, "/", 100, args.duration, args.client_cpu,
                                   scheme="https")["rps"]
                # Server CPU per keep-alive request: steadier than req/s on a shared machine.
                rows.setdefault((kind, "us"), []).append(
                    (servers.cpu_seconds(proc.pid) - cpu_before) * 1e6
                    / max(keep * round(args.duration), 1))
                shake = loaders.wrk(port, "/", 50, args.duration, args.client_cpu,
                                    headers=("Connection: close",), scheme="https")["rps"]
            finally:
                proc.terminate()
                proc.wait(10)
            rows.setdefault((kind, "keepalive"), []).append(keep)
            rows.setdefault((kind, "handshakes"), []).append(shake)
            print(f"round {round_no} {kind:13s} keep-alive {keep:9,.0f}/s "
                  f"({rows[(kind, 'us')][-1]:.1f} us CPU each)  handshakes {shake:7,.0f}/s",
                  flush=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    print("\n| transport | keep-alive req/s | CPU us per request | handshakes/s |\n"
          "| --- | ---: | ---: | ---: |")
    for kind in compared:
        print(f"| {kind} | {med[(kind, 'keepalive')]:,.0f} | {med[(kind, 'us')]:.1f} | "
              f"{med[(kind, 'handshakes')]:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
