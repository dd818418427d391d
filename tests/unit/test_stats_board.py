"""stats.Board: rows shared across fork, the retired row that keeps exited workers' counters in
the sums, and ResponseCounts (the access log's seam)."""

from __future__ import annotations

import logging
import os

import pytest

from tpd2py import App
from tpd2py.stats import COUNTERS, GAUGES, SEQ, Board, ResponseCounts, Stats
from tpd2py.workers import Master, WorkerOptions


def values(counter: int, gauge: int) -> list[int]:
    return [counter] * len(COUNTERS) + [gauge] * len(GAUGES)


def test_retire_moves_counters_not_gauges():
    board = Board(3)
    board.write(0, 101, 1.5, values(10, 2))
    board.write(1, 102, 2.5, values(7, 1))
    board.retire(0)
    rows, retired = board.read()
    assert [r[0] for r in rows] == [102]
    assert list(retired[2:]) == values(10, 0)  # its gauges left with it
    board.write(0, 103, 3.5, values(1, 1))  # the row is reused by a new worker
    board.retire(1)
    board.retire(0)
    rows, retired = board.read()
    assert rows == [] and list(retired[2:]) == values(18, 0)
    assert SEQ.unpack_from(board.mem, 0)[0] == 6  # even: no retire in progress


def test_rows_are_shared_across_fork():
    board = Board(2)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        board.write(1, os.getpid(), 1.0, values(5, 5))
        os._exit(0)
    os.waitpid(pid, 0)
    rows, _ = board.read()
    assert [(r[0], r[2]) for r in rows] == [(pid, 5)]


def test_response_counts_pass_lines_on():
    class Log:
        def __init__(self) -> None:
            self.lines: list[tuple] = []
            self.flushed = 0

        def write(self, conn, head, status, size) -> None:
            self.lines.append((conn, head, status, size))

        def flush(self) -> None:
            self.flushed += 1

    log = Log()
    counts = ResponseCounts(log)
    for status, size in [(200, 13), (101, 0), (404, 9), (503, 0), (204, 0)]:
        counts.write("conn", None, status, size)
    counts.flush()
    assert counts.classes[1:6] == [1, 2, 0, 1, 1]
    assert counts.body_bytes == 22
    assert len(log.lines) == 5 and log.flushed == 1
    alone = ResponseCounts(None)  # stats without a log
    alone.write("conn", None, 302, 5)
    alone.flush()
    assert alone.classes[3] == 1 and alone.body_bytes == 5


def test_read_gives_up_on_a_retire_that_never_ends():
    # A master killed between the two halves of a retire leaves the number odd: a scrape
    # still answers (with what is there) instead of failing.
    board = Board(1)
    board.write(0, 101, 1.0, values(3, 1))
    SEQ.pack_into(board.mem, 0, 7)
    rows, retired = board.read()
    assert [r[0] for r in rows] == [101] and retired[2] == 0


def test_a_failed_fork_gives_its_row_back(monkeypatch: pytest.MonkeyPatch) -> None:
    master = Master(WorkerOptions(make_app=App, stats=Stats("/_stats", None, Board(2))), [])

    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    with pytest.raises(OSError):
        master._spawn(0, 1)
    assert master._free_rows == [0, 1]  # not lost: the next worker gets it


def test_a_worker_without_a_row_is_said_not_silent(monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    master = Master(WorkerOptions(make_app=App, stats=Stats("/_stats", None, Board(1))), [])
    master._free_rows = []  # every row held (generations still draining)
    monkeypatch.setattr(os, "fork", lambda: 4242)  # the master's side of a fork only
    with caplog.at_level(logging.WARNING, logger="tpd2py.workers"):
        master._spawn(0, 1)
    assert master.workers[4242].row == -1
    assert any("no free row" in r.getMessage() and "4242" in r.getMessage()
               for r in caplog.records)
