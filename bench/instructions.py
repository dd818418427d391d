"""Instructions per request on the connection path, counted by valgrind (repeatable, unlike time).

Run: .venv/bin/python bench/instructions.py [--mode conn|keep|client] [--access-log] [--stats]
(needs valgrind)

Runs one of bench/micro_conn.py's paths under `valgrind --tool=callgrind` twice, with N and 2N
iterations, and prints (instructions(2N) - instructions(N)) / N: the user-space instructions of
one iteration, start-up excluded. Modes:
  conn    a new connection's whole life as Fremlin's protocol has it (Connection made,
          dispatched, `GET /test?name=John HTTP/1.0` parsed and answered, closed)
  keep    one keep-alive `GET /` on an open connection, dispatch to idle
  client  the client's socketpair, send and closes alone, to subtract from `conn` by hand
Client-side work is included in `conn` and `keep`. Kernel work is not counted.
`--app static --mode keep`: the keep-alive request is `GET /static/one.txt` for a 1 KiB file
from a `StaticFiles` mount (bench/peers/static_tpd2py.py, the site of bench/static_bench.py).
`--app json --mode keep`: `GET /json` of bench/techempower/tpd2py_app.py (no database needed).
"""

from __future__ import annotations

import argparse
import atexit
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

MODES = {"conn": "connection", "keep": "keepalive", "client": "client"}


def workload(mode: str, number: int, kind: str = "native", extras: str = "") -> None:
    import os

    from bench.hello import app
    from bench.micro_conn import paths
    from tpd2py.server import Server

    # --access-log: lines to /dev/null through the usual 64 KiB buffer; --stats: the stats
    # view attached as deploy.py does (it counts responses through the log's seam).
    log = open(os.devnull, "w", buffering=65536) if "log" in extras else None  # noqa: SIM115
    keepalive = None
    if kind == "static":  # a 1 KiB file from a folder mount, in a temporary site
        from bench.static_bench import make_site

        site = Path(tempfile.mkdtemp())  # removed when this process ends (atexit)
        atexit.register(shutil.rmtree, site, True)
        make_site(site, 0)
        os.environ["STATIC_BENCH_DIR"] = str(site)
        from bench.peers.static_tpd2py import app as static_app

        server = Server(static_app, access_log=log)
        keepalive = b"GET /static/one.txt HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
    elif kind == "json":  # TechEmpower's json test on bench/techempower/tpd2py_app.py
        from bench.techempower.tpd2py_app import make_app

        server = Server(make_app(None), access_log=log)  # type: ignore[arg-type]  # no database
        keepalive = b"GET /json HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
    elif kind == "wsgi":  # the same requests, answered by a raw WSGI hello world
        from bench.peers.wsgi_hello import app as wsgi_app
        from tpd2py.wsgi import WSGI

        server = Server(WSGI(wsgi_app), access_log=log)
    else:
        server = Server(app, access_log=log)
    if "stats" in extras:
        from tpd2py.stats import Stats

        Stats("/_stats", None).attach(server)
    fn = (paths(server) if keepalive is None else paths(server, keepalive))[MODES[mode]]

    def measure() -> None:
        for _ in range(number):
            fn()
        server.hub.stop()

    server.hub.call_soon(measure)  # serve() runs from the hub, as in the server
    server.hub.run()


def count(mode: str, number: int, kind: str = "native", extras: str = "") -> int:
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out",
             sys.executable, __file__, "--run", mode, str(number), kind, extras],
            capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> int:
    if len(sys.argv) == 6 and sys.argv[1] == "--run":
        workload(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=tuple(MODES), default="conn")
    parser.add_argument("--number", type=int, default=1000)
    parser.add_argument("--app", choices=("native", "wsgi", "static", "json"),
                        default="native",
                        help="bench/hello.py, a raw WSGI hello world through tpd2py.wsgi, "
                        "(keep) a 1 KiB file from a StaticFiles mount, or (keep) the "
                        "TechEmpower json test")
    parser.add_argument("--access-log", action="store_true",
                        help="with an access log (to /dev/null)")
    parser.add_argument("--stats", action="store_true",
                        help="with the stats view attached (tpd2py.stats)")
    args = parser.parse_args()
    extras = ",".join(name for name, on in (("log", args.access_log), ("stats", args.stats))
                      if on)
    if shutil.which("valgrind") is None:
        print("valgrind is missing: apt-get install valgrind")
        return 2
    once = count(args.mode, args.number, args.app, extras)
    twice = count(args.mode, 2 * args.number, args.app, extras)
    print(f"{args.mode} ({args.app}{', ' + extras if extras else ''}): "
          f"{(twice - once) / args.number:,.0f} instructions per iteration")
    return 0


if __name__ == "__main__":
    sys.exit(main())
