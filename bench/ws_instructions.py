"""Instructions per WebSocket echo message in the real server, counted by valgrind (repeatable,
unlike time): the echo figure of bench/ws_bench.py without its noise.

Run: .venv/bin/python bench/ws_instructions.py [--number 1000] [--size 32] [--connections 1]
(needs valgrind)

Starts ``python -m tpd2py bench.peers.ws_tpd2py:app`` under ``valgrind --tool=callgrind``,
opens ``--connections`` WebSockets to ``/echo`` and runs ``--number`` rounds: one masked text
message of ``--size`` bytes on every socket, then every echo read back whole. It closes them
and stops the server; then again with twice the rounds. Prints (instructions(2N) -
instructions(N)) / (N x connections): the server's user-space instructions for one message
(its share of an epoll wake-up, the read, the parse, the handler's turn, the echo's send),
start-up, handshakes and shutdown excluded. With one connection every message pays a whole
turn of the loop; with more, a turn serves them all (the server, slowed by valgrind, finds
every socket readable at once), as in bench/ws_bench.py's echo under load. Kernel work is
not counted. Loopback only; bounded (each run stops at ``DEADLINE`` seconds).
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from bench.comet_bench import free_port, wait_started  # noqa: E402
from bench.ws_bench import masked_text, open_sockets  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 300.0


def run(number: int, size: int, connections: int, tree: Path = ROOT,
        keep: str | None = None) -> int:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={keep or tmp + '/out'}",
             sys.executable, "-m", "tpd2py", "bench.peers.ws_tpd2py:app", "--port", str(port),
             "--log-level", "error"],
            cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        try:
            wait_started(port, proc, 120, "tpd2py under valgrind")
            echo(port, number, size, connections)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    found = re.search(r"Collected : (\d+)", err)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{err[-2000:]}")
    return int(found.group(1))


def echo(port: int, number: int, size: int, connections: int) -> None:
    message = masked_text(b"m" * size)
    reply = 2 + size
    deadline = time.monotonic() + DEADLINE
    socks = open_sockets(port, "/echo", connections)  # upgraded, each handshake read whole
    try:
        for s in socks:
            s.settimeout(60)
        for _ in range(number):
            if time.monotonic() > deadline:
                raise SystemExit("the echo loop ran out of time")
            for s in socks:
                s.sendall(message)
            for s in socks:
                got = 0
                while got < reply:
                    data = s.recv(65536)
                    if not data:
                        raise SystemExit("echo socket closed")
                    got += len(data)
        for s in socks:  # Close 1000, masked
            s.sendall(b"\x88\x82" + b"\x01\x02\x03\x04" + bytes((0x03 ^ 1, 0xE8 ^ 2)))
        for s in socks:
            while s.recv(4096):
                pass
    finally:
        for s in socks:
            s.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=1000, help="rounds")
    parser.add_argument("--size", type=int, default=32, help="payload bytes (under 126)")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--keep", metavar="FILE",
                        help="keep the longer run's callgrind output (for callgrind_annotate)")
    parser.add_argument("--tree", type=Path, default=ROOT,
                        help="the checkout whose tpd2py to run (an A/B against a worktree); "
                        "it must have bench/peers/ws_tpd2py.py")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is missing: apt-get install valgrind")
        return 2
    if not 0 < args.size < 126:
        parser.error("--size must be 1-125 (masked_text makes 7-bit lengths only)")
    once = run(args.number, args.size, args.connections, args.tree)
    twice = run(2 * args.number, args.size, args.connections, args.tree, args.keep)
    per = (twice - once) / (args.number * args.connections)
    print(f"ws echo ({args.size} B text, {args.connections} connection(s)): {per:,.0f} "
          "instructions per message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
