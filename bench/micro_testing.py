"""What a request through each of tpd2py.testing's clients costs: wall time per keep-alive GET
with ``TestClient`` (in-process, a socketpair in this thread's hub) and with ``TestServer``'s
client (a real server in a thread, loopback TCP). For the docs' "how fast is the in-process
client" line, not a server benchmark.

Run: .venv/bin/python bench/micro_testing.py [--number N] [--rounds R]
Interleaved rounds; the best of each is printed (µs per request).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from tpd2py import App, Request  # noqa: E402
from tpd2py.testing import TestClient, TestServer  # noqa: E402


def hello_app() -> App:
    app = App()

    @app.route("/")
    def hello(req: Request) -> bytes:
        return b"Hello, World!"

    return app


def per_request(client: object, number: int) -> float:
    get = client.get  # type: ignore[attr-defined]
    get("/")  # the connection is open before timing
    start = time.perf_counter()
    for _ in range(number):
        get("/")
    return (time.perf_counter() - start) / number * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    best: dict[str, float] = {}
    with TestClient(hello_app()) as in_process, TestServer(hello_app()) as server:
        over_tcp = server.client()
        for _ in range(args.rounds):
            for name, client in (("TestClient (in-process)", in_process),
                                 ("TestServer client (TCP)", over_tcp)):
                us = per_request(client, args.number)
                best[name] = min(best.get(name, us), us)
    for name, us in best.items():
        print(f"{name:26s} {us:8.1f} µs per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
