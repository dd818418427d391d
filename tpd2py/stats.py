"""Stats and health: ``--stats-path`` (Prometheus text format, every worker's counters) and
``--health-path`` (a cheap 200), both opt-in.

Rules:
- Nothing on the request path: a worker copies its counters (requests, connections by state,
  send calls) into its row of a shared board once a second and when scraped; the counters
  themselves are the ones the server keeps anyway (Context.requests, the connection registry).
- Per worker and summed: the board is one anonymous shared mapping made by the master before
  it forks, one row per live worker (the master hands rows out and clears a dead worker's), so
  a scrape answered by any worker reports all of them. Prometheus sums with ``sum(...)``; the
  ``tpd2py_workers`` gauge counts the rows in use.
- Never blocks, never switches.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from typing import Any

from .app import App, Request, Response

__all__ = ["Board", "Stats"]

# pid, started (unix time), then the counters, in this order.
COUNTERS = ("requests", "send_calls", "idle", "serving", "parked", "detached", "lingering")
ROW = struct.Struct("=qd" + "q" * len(COUNTERS))
_STATE_NAMES = ("idle", "serving", "parked", "detached", "lingering")  # conn.State order
TEXT = b"text/plain; version=0.0.4; charset=utf-8"


class Board:
    """Rows of counters in memory shared across fork()."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.mem = mmap.mmap(-1, rows * ROW.size)

    def write(self, row: int, pid: int, started: float, values: list[int]) -> None:
        ROW.pack_into(self.mem, row * ROW.size, pid, started, *values)

    def clear(self, row: int) -> None:
        ROW.pack_into(self.mem, row * ROW.size, 0, 0.0, *([0] * len(COUNTERS)))

    def read(self) -> list[tuple[Any, ...]]:
        rows = [ROW.unpack_from(self.mem, i * ROW.size) for i in range(self.rows)]
        return [r for r in rows if r[0]]


class Stats:
    """Install with ``install(app)`` (the routes) and ``attach(server, row)`` (in each worker)."""

    def __init__(self, stats_path: str | None, health_path: str | None,
                 board: Board | None = None) -> None:
        self.stats_path = stats_path
        self.health_path = health_path
        self.board = board or Board(1)
        self.server: Any = None
        self.row = 0
        self.started = time.time()

    def install(self, app: App) -> None:
        if self.stats_path:
            app.route(self.stats_path)(self.render)
        if self.health_path:
            app.route(self.health_path)(self.health)

    def attach(self, server: Any, row: int = 0) -> None:
        """Publish ``server``'s counters in ``row``, now and every second."""
        self.server = server
        self.row = row
        self.started = time.time()
        self._tick()

    def _tick(self) -> None:
        self._refresh_own()
        if not self.server.stopped:
            self.server.hub.call_later(1.0, self._tick)

    def health(self, request: Request) -> Response:
        return Response(b"ok\n", content_type=b"text/plain")

    def render(self, request: Request) -> Response:
        self._refresh_own()
        rows = self.board.read()
        lines = ["# HELP tpd2py_workers Worker processes reporting.",
                 "# TYPE tpd2py_workers gauge", f"tpd2py_workers {len(rows)}",
                 "# HELP tpd2py_requests_total Requests served.",
                 "# TYPE tpd2py_requests_total counter"]
        lines += [f'tpd2py_requests_total{{worker="{r[0]}"}} {r[2]}' for r in rows]
        lines += ["# HELP tpd2py_send_calls_total send/sendmsg calls on client sockets.",
                  "# TYPE tpd2py_send_calls_total counter"]
        lines += [f'tpd2py_send_calls_total{{worker="{r[0]}"}} {r[3]}' for r in rows]
        lines += ["# HELP tpd2py_connections Open client connections by state.",
                  "# TYPE tpd2py_connections gauge"]
        for r in rows:
            for i, name in enumerate(_STATE_NAMES):
                lines.append(f'tpd2py_connections{{worker="{r[0]}",state="{name}"}} {r[4 + i]}')
        lines += ["# HELP tpd2py_worker_start_time_seconds When the worker started.",
                  "# TYPE tpd2py_worker_start_time_seconds gauge"]
        lines += [f'tpd2py_worker_start_time_seconds{{worker="{r[0]}"}} {r[1]:.3f}'
                  for r in rows]
        return Response(("\n".join(lines) + "\n").encode("ascii"), content_type=TEXT)

    def _refresh_own(self) -> None:
        server = self.server
        if server is None:
            return
        by_state = [0] * len(_STATE_NAMES)
        for conn in server.conns.values():
            state = int(conn.state)
            if state < len(by_state):
                by_state[state] += 1
        ctx = server.ctx
        self.board.write(self.row, os.getpid(), self.started,
                         [ctx.requests, ctx.sendmsg_calls, *by_state])
