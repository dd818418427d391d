"""Instructions per WebSocket echo message in the real server, counted by valgrind (repeatable,
unlike time): the echo figure of bench/ws_bench.py without its noise.

Run: .venv/bin/python bench/ws_instructions.py [--number 2000] [--size 32] (needs valgrind)

Starts ``python -m tpd2py bench.peers.ws_tpd2py:app`` under ``valgrind --tool=callgrind``,
opens one WebSocket to ``/echo`` and runs a closed loop of ``--number`` masked text messages
of ``--size`` bytes (each sent once the last echo is back whole), closes it and stops the
server; then again with twice the messages. Prints (instructions(2N) - instructions(N)) / N:
the server's user-space instructions for one message (its epoll wake-up, read, parse, the
handler's turn, the echo's send), start-up, the handshake and shutdown excluded. One
connection, so no batching: every message pays a whole turn of the loop. Kernel work is not
counted. Loopback only; bounded (each run stops at ``DEADLINE`` seconds).
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from bench.comet_bench import free_port, wait_started  # noqa: E402
from bench.ws_bench import REQUEST, masked_text  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 300.0


def run(number: int, size: int) -> int:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out",
             sys.executable, "-m", "tpd2py", "bench.peers.ws_tpd2py:app", "--port", str(port),
             "--log-level", "error"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        try:
            wait_started(port, proc, 120, "tpd2py under valgrind")
            echo(port, number, size)
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


def echo(port: int, number: int, size: int) -> None:
    message = masked_text(b"m" * size)
    reply = 2 + size if size < 126 else 4 + size
    deadline = time.monotonic() + DEADLINE
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(REQUEST.format(path="/echo").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = s.recv(4096)
            if not data:
                raise SystemExit("closed during the handshake")
            head += data
        if not head.startswith(b"HTTP/1.1 101"):
            raise SystemExit(f"handshake refused: {head[:80]!r}")
        for _ in range(number):
            if time.monotonic() > deadline:
                raise SystemExit("the echo loop ran out of time")
            s.sendall(message)
            got = 0
            while got < reply:
                data = s.recv(65536)
                if not data:
                    raise SystemExit("echo socket closed")
                got += len(data)
        s.sendall(b"\x88\x82" + b"\x01\x02\x03\x04" + bytes((0x03 ^ 1, 0xE8 ^ 2)))  # Close 1000
        while s.recv(4096):
            pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--size", type=int, default=32, help="payload bytes (under 126)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is missing: apt-get install valgrind")
        return 2
    if not 0 < args.size < 126:
        parser.error("--size must be 1-125 (masked_text makes 7-bit lengths only)")
    once = run(args.number, args.size)
    twice = run(2 * args.number, args.size)
    print(f"ws echo ({args.size} B text): {(twice - once) / args.number:,.0f} instructions "
          "per message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
