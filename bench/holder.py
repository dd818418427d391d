"""Idle-connection holder for the c10k scenario: N keep-alive connections, answered once, then idle.

Usage: python bench/holder.py --port PORT [--count 10000] [--path /]

Each connection sends one complete HTTP/1.1 request, reads the whole answer, and then stays silent,
as a browser's idle keep-alive connection does (with --connect-only it only connects and never
sends, as a browser's preconnected socket; "held" then means connected). Connections are opened
with a bounded number in flight (so the server's listen backlog never overflows and SYN retries
never skew the timing) and the phase has a deadline. The protocol with bench/run.py is one JSON
line per step on stdout:
  {"event": "held", ...}     every connection is answered, failed or timed out;
then the holder waits for a line on stdin (at most --max-hold seconds):
  "check"  -> {"event": "checked", ...}: how many are still open (a peek that does not disturb
              them), then how many still answer a second request (a probe), and exit;
  EOF      -> close everything and exit.

The holder raises its own open-file soft limit to the hard limit and, when even that is too low for
--count, says so in its output and holds as many as it can.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import resource
import select
import selectors
import socket
import sys
import time
from collections import Counter

SPARE_FDS = 64  # stdin/stdout/stderr, the selector, the interpreter's own files


def _raise_nofile(wanted: int) -> tuple[int, str | None]:
    """The number of sockets we may open, and a warning when it is fewer than wanted."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    allowed = hard - SPARE_FDS
    if wanted <= allowed:
        return wanted, None
    return allowed, (f"open-file limit is {hard} per process: holding {allowed} connections, "
                     f"not the {wanted} asked (raise it with `ulimit -n` / limits.conf)")


def _response_complete(buffer: bytes) -> int | None:
    """The status once a whole response is buffered, else None (answers carry Content-Length)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buffer[:end].split(b"\r\n")
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if len(buffer) < end + 4 + length:
        return None
    return int(head[0].split()[1])


def _send(sock: socket.socket, request: bytes, outcome: Counter) -> bool:
    """Send a small request on a fresh or idle socket; close it and count why if that fails."""
    try:
        sock.send(request)  # a few dozen bytes always fit an idle socket's buffer
    except OSError as exc:
        outcome[f"write: {exc.strerror or exc}"] += 1
        sock.close()
        return False
    return True


def _exchange(selector: selectors.BaseSelector, sockets: list[socket.socket], request: bytes,
              connect: tuple[str, int] | None, in_flight_max: int,
              deadline: float) -> tuple[list[socket.socket], Counter]:
    """Send `request` on each socket (connecting first when `connect` is given), read one answer.

    Returns the sockets that got a whole answer and a count of what happened to the others.
    """
    answered: list[socket.socket] = []
    outcome: Counter = Counter()
    todo = list(reversed(sockets))
    in_flight = 0
    while (todo or in_flight) and time.monotonic() < deadline:
        while todo and in_flight < in_flight_max:
            sock = todo.pop()
            if connect is not None:
                code = sock.connect_ex(connect)
                if code not in (0, errno.EINPROGRESS):
                    outcome[f"connect: {os.strerror(code)}"] += 1
                    sock.close()
                    continue
                selector.register(sock, selectors.EVENT_WRITE, [b"", False])
            else:
                if not _send(sock, request, outcome):
                    continue
                selector.register(sock, selectors.EVENT_READ, [b"", True])
            in_flight += 1
        for key, _mask in selector.select(0.2):
            sock, state = key.fileobj, key.data  # state: [received bytes, request sent]
            assert isinstance(sock, socket.socket)
            if not state[1]:
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    outcome[f"connect: {os.strerror(code)}"] += 1
                    selector.unregister(sock)
                    sock.close()
                    in_flight -= 1
                    continue
                if not request:  # --connect-only: a connection that never says anything
                    selector.unregister(sock)
                    in_flight -= 1
                    answered.append(sock)
                    continue
                if not _send(sock, request, outcome):
                    selector.unregister(sock)
                    in_flight -= 1
                    continue
                state[1] = True
                selector.modify(sock, selectors.EVENT_READ, state)
                continue
            try:
                chunk = sock.recv(65536)
            except OSError as exc:
                chunk, reason = b"", f"read: {exc.strerror or exc}"
            else:
                reason = "closed by the server before answering"
            if not chunk:
                outcome[reason] += 1
                selector.unregister(sock)
                sock.close()
                in_flight -= 1
                continue
            state[0] += chunk
            status = _response_complete(state[0])
            if status is not None:
                selector.unregister(sock)
                in_flight -= 1
                answered.append(sock)
                if status != 200:
                    outcome[f"answered {status}"] += 1
    for key in list(selector.get_map().values()):
        outcome["no answer before the deadline"] += 1
        selector.unregister(key.fileobj)
        key.fileobj.close()  # type: ignore[union-attr]
    for sock in todo:
        outcome["not attempted before the deadline"] += 1
        sock.close()
    return answered, outcome


def _still_open(sockets: list[socket.socket]) -> tuple[list[socket.socket], Counter]:
    """Peek at each idle socket without consuming anything: open, closed by the server, or reset."""
    open_sockets, outcome = [], Counter()
    for sock in sockets:
        try:
            data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            open_sockets.append(sock)
            continue
        except OSError as exc:
            outcome[f"error: {exc.strerror or exc}"] += 1
            sock.close()
            continue
        if data:
            outcome["unexpected data while idle"] += 1
            open_sockets.append(sock)
        else:
            outcome["closed by the server"] += 1
            sock.close()
    return open_sockets, outcome


def _say(event: str, **fields) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--path", default="/")
    parser.add_argument("--in-flight", type=int, default=256,
                        help="connections being set up at once (keep under the listen backlog)")
    parser.add_argument("--connect-deadline", type=float, default=60.0)
    parser.add_argument("--probe-deadline", type=float, default=20.0)
    parser.add_argument("--max-hold", type=float, default=600.0)
    parser.add_argument("--connect-only", action="store_true",
                        help="only connect: send no request (held = connected, not answered)")
    args = parser.parse_args()

    count, limit_warning = _raise_nofile(args.count)
    request = f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n\r\n".encode()
    selector = selectors.DefaultSelector()
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sockets.append(sock)
    started = time.monotonic()
    held, outcome = _exchange(selector, sockets, b"" if args.connect_only else request,
                              (args.host, args.port), args.in_flight,
                              started + args.connect_deadline)
    _say("held", requested=args.count, attempted=count, held=len(held),
         seconds=round(time.monotonic() - started, 2), problems=dict(outcome),
         limit_warning=limit_warning)

    ready, _, _ = select.select([sys.stdin], [], [], args.max_hold)
    line = sys.stdin.readline().strip() if ready else ""
    if line == "check":
        still_open, closed = _still_open(held)
        started = time.monotonic()
        answered, probe_problems = _exchange(selector, still_open, request, None, len(still_open),
                                             started + args.probe_deadline)
        _say("checked", held=len(held), open=len(still_open), closed=dict(closed),
             probe_answered=len(answered), probe_seconds=round(time.monotonic() - started, 2),
             probe_problems=dict(probe_problems))
    for sock in held:
        sock.close()


if __name__ == "__main__":
    main()
