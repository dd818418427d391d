"""The chat demo with ``--workers 2`` and its channel on Redis, in two real Chromiums.

The two browsers must be served by different workers, or nothing would cross: while alice
opens the page (and its event stream) worker 2 is stopped (SIGSTOP), so worker 1 accepts all
her connections; then worker 1 is stopped while bob opens his (long polling), so worker 2
accepts his. Both are resumed, and a message typed in each page appears in the other: one of
the two streams is always on the other worker than the POST. Skipped, with the reason, when
Chromium, chromedriver, selenium, redis-server or hiredis is missing (``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from test_chat_browser import (  # noqa: E402
    browser,  # noqa: F401 - the fixture
    open_chat,
    post,
    wait_for_message,
)
from test_workers import Master  # noqa: E402

from bench.redisserver import RedisServer, find_redis  # noqa: E402

pytest.importorskip("hiredis", reason="needs hiredis (the redis extra; the test extra has it)")
pytestmark = pytest.mark.skipif(
    find_redis() is None,
    reason="needs redis-server (apt-get install redis-server; .ci/run does it)")


@pytest.fixture
def chat_workers(tmp_path: Path) -> Iterator[tuple[Master, list[int]]]:
    redis = RedisServer(persist=False, directory=str(tmp_path / "redis"))
    (tmp_path / "wapp.py").write_text("from demo.app import app  # noqa: F401\n")
    master = Master(tmp_path, "--workers", "2", "--port", "0",
                    env={"TPD2PY_REDIS": redis.socket})
    try:
        master.wait_for(r"master \d+: serving", since=0)
        workers = sorted(master.children())
        assert len(workers) == 2
        yield master, workers
    finally:
        for pid in master.children():
            os.kill(pid, signal.SIGCONT)
        master.proc.send_signal(signal.SIGTERM)
        master.proc.wait(15)
        redis.stop()


def opened_on(worker: int, others: list[int], driver: Any, port: int, mode: str,
              name: str) -> None:
    """Open the chat while every other worker is stopped: ``worker`` accepts its connections."""
    for pid in others:
        os.kill(pid, signal.SIGSTOP)
    try:
        open_chat(driver, port, mode, name)
    finally:
        for pid in others:
            os.kill(pid, signal.SIGCONT)


def test_a_message_crosses_workers_through_redis(
        chat_workers: tuple[Master, list[int]],
        browser: Callable[[], Any]) -> None:  # noqa: F811 - the imported fixture
    master, (first, second) = chat_workers
    port = master.address[1]
    alice, bob = browser(), browser()
    opened_on(first, [second], alice, port, "sse", "alice")
    opened_on(second, [first], bob, port, "poll", "bob")

    post(alice, "from the first worker")
    assert wait_for_message(bob, "from the first worker") == "alice:from the first worker"
    post(bob, "and back from the second")
    assert wait_for_message(alice, "and back") == "bob:and back from the second"
    for driver in (alice, bob):
        texts = [li.text for li in driver.find_elements("css selector", "#messages li")]
        assert sum("from the first worker" in t for t in texts) == 1, texts
        assert sum("and back" in t for t in texts) == 1, texts


def test_the_websocket_page_on_one_worker_chats_with_the_other(
        chat_workers: tuple[Master, list[int]],
        browser: Callable[[], Any]) -> None:  # noqa: F811 - the imported fixture
    # A WebSocket's message is published from a greenlet the demo spawns (on_message runs in
    # the hub, and a RedisChannel's publish waits for Redis).
    master, (first, second) = chat_workers
    port = master.address[1]
    carol, dave = browser(), browser()
    opened_on(first, [second], carol, port, "ws", "carol")
    opened_on(second, [first], dave, port, "sse", "dave")
    post(carol, "up the socket on the first worker")
    assert wait_for_message(dave, "up the socket") == "carol:up the socket on the first worker"
    post(dave, "down to the socket")
    assert wait_for_message(carol, "down to the socket") == "dave:down to the socket"
    assert wait_for_message(carol, "up the socket")  # its own, through Redis
