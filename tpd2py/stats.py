"""Stats and health: ``--stats-path`` (Prometheus text format, every worker's counters and
their sums) and ``--health-path`` (a cheap 200), both opt-in.

Rules:
- Nothing on the request path of a server without stats. Requests, send calls and connections
  by state are the counters the server keeps anyway (Context.requests, the connection
  registry), copied out once a second and when scraped. Responses by status class and their
  body bytes are counted through the access log's seam (``ResponseCounts`` takes the place of
  ``ctx.access_log`` and passes each line on to the real log, if any): the exchange already
  calls it once per response, with the status and the size, when it is set.
- Per worker and summed: the board is one anonymous shared mapping made by the master before
  it forks, one row per live worker (the master hands rows out), so a scrape answered by any
  worker reports all of them. The summed series carry no ``worker`` label (``sum()`` in
  Prometheus over them is right); per-worker series are ``tpd2py_worker_*{worker="PID"}``.
- Summed counters never go back: when a worker exits the master adds its last counts to a
  retired row before it frees the worker's row (a worker publishes once more as it stops
  gracefully; one killed loses at most its last second). A sequence number around that
  move lets a scrape never see a worker's counts twice or not at all.
- Never blocks, never switches.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from typing import Any

from .app import App, Request, Response

__all__ = ["Board", "ResponseCounts", "Stats"]

# pid, started (unix time), then the counters, in this order: first those that only grow
# (summed into the retired row when a worker exits), then gauges.
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
COUNTERS = ("requests", "send_calls", *(f"responses_{c}" for c in CLASSES), "body_bytes")
GAUGES = ("idle", "serving", "parked", "detached", "lingering")  # conn.State order
ROW = struct.Struct("=qd" + "q" * (len(COUNTERS) + len(GAUGES)))
SEQ = struct.Struct("=q")
TEXT = b"text/plain; version=0.0.4; charset=utf-8"
_FIRST = 2  # the counters' place in a row (after pid and started)
_GAUGE = _FIRST + len(COUNTERS)


class Board:
    """Rows of counters in memory shared across fork(): ``rows`` live rows, then the retired
    row (what exited workers counted), after a sequence number the master changes around
    ``retire``."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.mem = mmap.mmap(-1, SEQ.size + (rows + 1) * ROW.size)

    def _at(self, row: int) -> int:
        return SEQ.size + row * ROW.size

    def write(self, row: int, pid: int, started: float, values: list[int]) -> None:
        ROW.pack_into(self.mem, self._at(row), pid, started, *values)

    def clear(self, row: int) -> None:
        ROW.pack_into(self.mem, self._at(row), 0, 0.0, *([0] * (ROW.size // 8 - 2)))

    def retire(self, row: int) -> None:
        """The master, once the row's worker has exited: its counters join the retired row,
        its row is freed. Readers retry while the sequence number is odd or changed."""
        seq = SEQ.unpack_from(self.mem, 0)[0]
        SEQ.pack_into(self.mem, 0, seq + 1)
        gone = ROW.unpack_from(self.mem, self._at(row))
        kept = list(ROW.unpack_from(self.mem, self._at(self.rows)))
        for i in range(_FIRST, _GAUGE):
            kept[i] += gone[i]
        ROW.pack_into(self.mem, self._at(self.rows), 0, 0.0, *kept[_FIRST:])
        self.clear(row)
        SEQ.pack_into(self.mem, 0, seq + 2)

    def read(self) -> tuple[list[tuple[Any, ...]], tuple[Any, ...]]:
        """The live rows and the retired row, as one consistent picture of ``retire``."""
        for _ in range(1000):  # a retire takes a few µs; a master killed in one: give up
            seq = SEQ.unpack_from(self.mem, 0)[0]
            rows = [ROW.unpack_from(self.mem, self._at(i)) for i in range(self.rows + 1)]
            if not seq % 2 and SEQ.unpack_from(self.mem, 0)[0] == seq:
                break
        return [r for r in rows[:-1] if r[0]], rows[-1]


class ResponseCounts:
    """``ctx.access_log`` while stats are on: counts each response by status class and its
    body bytes (the size the log's line shows), then hands the line to the real log, if any."""

    __slots__ = ("log", "classes", "body_bytes")

    def __init__(self, log: Any) -> None:
        self.log = log
        self.classes = [0] * 10  # by status // 100 (a Response's status is 100..999)
        self.body_bytes = 0

    def write(self, conn: Any, head: Any, status: int, size: int) -> None:
        self.classes[status // 100] += 1
        self.body_bytes += size
        if self.log is not None:
            self.log.write(conn, head, status, size)

    def flush(self) -> None:
        if self.log is not None:
            self.log.flush()


# name, type, help, then each series' labels and its place among a row's values.
_FAMILIES = [
    ("requests_total", "counter", "Requests served.", [("", 0)]),
    ("responses_total", "counter", "Responses by status class.",
     [(f'class="{c}"', 2 + i) for i, c in enumerate(CLASSES)]),
    ("response_body_bytes_total", "counter",
     "Response body bytes (the access log's size: a HEAD's Content-Length too).", [("", 7)]),
    ("send_calls_total", "counter", "send/sendmsg calls on client sockets.", [("", 1)]),
    ("connections", "gauge", "Open client connections by state.",
     [(f'state="{g}"', len(COUNTERS) + i) for i, g in enumerate(GAUGES)]),
]


def _family(lines: list[str], name: str, kind: str, text: str) -> None:
    lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]


class Stats:
    """Install with ``install(app)`` (the routes) and ``attach(server, row)`` (in each worker)."""

    def __init__(self, stats_path: str | None, health_path: str | None,
                 board: Board | None = None) -> None:
        self.stats_path = stats_path
        self.health_path = health_path
        self.board = board or Board(1)
        self.server: Any = None
        self.counts: ResponseCounts | None = None
        self.row = 0
        self.started = time.time()

    def install(self, app: App) -> None:
        if self.stats_path:
            app.route(self.stats_path)(self.render)
        if self.health_path:
            app.route(self.health_path)(self.health)

    def attach(self, server: Any, row: int = 0) -> None:
        """Publish ``server``'s counters in ``row``, now and every second; count its responses
        (through its access log's seam: after anything that sets the log's ``client``)."""
        self.server = server
        self.row = row
        self.started = time.time()
        if self.stats_path:
            self.counts = server.ctx.access_log = ResponseCounts(server.ctx.access_log)
        self._tick()

    def _tick(self) -> None:
        self.publish()
        if not self.server.stopped:
            self.server.hub.call_later(1.0, self._tick)

    def health(self, request: Request) -> Response:
        return Response(b"ok\n", content_type=b"text/plain")

    def render(self, request: Request) -> Response:
        self.publish()
        rows, retired = self.board.read()
        lines = ["# HELP tpd2py_workers Worker processes reporting.",
                 "# TYPE tpd2py_workers gauge", f"tpd2py_workers {len(rows)}"]
        total = [sum(r[i] for r in rows) + (retired[i] if i < _GAUGE else 0)
                 for i in range(_FIRST, ROW.size // 8)]
        for name, kind, text, series in _FAMILIES:
            _family(lines, f"tpd2py_{name}", kind, text)
            lines += [f"tpd2py_{name}{{{labels}}} {total[i]}" if labels
                      else f"tpd2py_{name} {total[i]}" for labels, i in series]
            _family(lines, f"tpd2py_worker_{name}", kind, text[:-1] + ", per worker.")
            for r in rows:
                worker = f'worker="{r[0]}"'
                lines += [f"tpd2py_worker_{name}{{{worker}{',' + labels if labels else ''}}} "
                          f"{r[_FIRST + i]}" for labels, i in series]
        _family(lines, "tpd2py_worker_start_time_seconds", "gauge", "When the worker started.")
        lines += [f'tpd2py_worker_start_time_seconds{{worker="{r[0]}"}} {r[1]:.3f}'
                  for r in rows]
        return Response(("\n".join(lines) + "\n").encode("ascii"), content_type=TEXT)

    def publish(self) -> None:
        """Copy this worker's counters into its row of the board. Never switches."""
        server = self.server
        if server is None:
            return
        by_state = [0] * len(GAUGES)
        for conn in server.conns.values():
            state = int(conn.state)
            if state < len(by_state):
                by_state[state] += 1
        ctx = server.ctx
        counts = self.counts
        classes = counts.classes[1:6] if counts is not None else [0] * len(CLASSES)
        body_bytes = counts.body_bytes if counts is not None else 0
        self.board.write(self.row, os.getpid(), self.started,
                         [ctx.requests, ctx.sendmsg_calls, *classes, body_bytes, *by_state])
