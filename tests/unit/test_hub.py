"""The hub on its own: spawn order, sleep order, timers, error isolation, the one-reader rule,
closing wakes waiters, BaseException cancellation, and cross-thread wake-ups."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time

import greenlet
import pytest

from tpd2py.errors import ConnectionClosed, HubError, Timeout
from tpd2py.hub import MAX_SPARES, Hub

LIMIT = 10.0


def run_until(hub: Hub, limit: float = LIMIT) -> None:
    """Run the hub until something calls ``hub.stop()``; fail if ``limit`` passes first."""
    expired = []
    timer = hub.call_later(limit, lambda: (expired.append(1), hub.stop()))
    hub.run()
    timer.cancel()
    assert not expired, f"the hub ran for {limit}s without being stopped"


def test_spawn_runs_greenlets_in_fifo_order_with_their_arguments(hub):
    order = []
    for name in "abc":
        hub.spawn(order.append, name)
    hub.spawn(hub.stop)
    run_until(hub)
    assert order == ["a", "b", "c"]


def test_sleep_zero_yields_to_other_ready_greenlets(hub):
    order = []

    def worker(name):
        for i in range(3):
            order.append(f"{name}{i}")
            hub.sleep(0)

    hub.spawn(worker, "a")
    hub.spawn(worker, "b")
    hub.spawn(lambda: (hub.sleep(0), hub.sleep(0), hub.sleep(0), hub.stop()))
    run_until(hub)
    assert order == ["a0", "b0", "a1", "b1", "a2", "b2"]


def test_sleepers_wake_in_deadline_order(hub):
    order = []

    def sleeper(seconds):
        hub.sleep(seconds)
        order.append(seconds)
        if len(order) == 4:
            hub.stop()

    for seconds in (0.04, 0.01, 0.03, 0.02):
        hub.spawn(sleeper, seconds)
    run_until(hub)
    assert order == [0.01, 0.02, 0.03, 0.04]


def test_call_later_runs_in_deadline_order_and_cancel_prevents_it(hub):
    fired = []
    hub.call_later(0.02, fired.append, "second")
    cancelled = hub.call_later(0.01, fired.append, "cancelled")
    hub.call_later(0.005, fired.append, "first")
    hub.call_later(0.03, hub.stop)
    cancelled.cancel()
    run_until(hub)
    assert fired == ["first", "second"]


def test_sleep_interrupted_by_throw_cancels_its_timer(hub):
    seen = []

    def sleeper():
        try:
            hub.sleep(5)
        except Timeout:
            seen.append("timeout")
        hub.sleep(0.01)
        seen.append("slept again")
        hub.stop()

    g = hub.spawn(sleeper)
    hub.call_soon(hub.throw, g, Timeout())
    run_until(hub)
    assert seen == ["timeout", "slept again"]
    assert all(t.cancelled for t in hub.timers if t.when > hub.now + 1)


def test_an_erroring_greenlet_does_not_kill_the_hub(hub, caplog):
    after = []

    def broken():
        raise ValueError("expected by the test")

    hub.spawn(broken)
    hub.spawn(lambda: (hub.sleep(0.01), after.append("ran"), hub.stop()))
    with caplog.at_level(logging.ERROR, logger="tpd2py.hub"):
        run_until(hub)
    assert after == ["ran"]
    assert any("expected by the test" in (r.exc_text or "") or
               "ValueError" in (r.exc_text or "") for r in caplog.records)


def test_an_error_after_a_switch_does_not_kill_the_hub(hub, caplog):
    after = []

    def broken_later():
        hub.sleep(0.005)
        raise KeyError("expected by the test")

    hub.spawn(broken_later)
    hub.spawn(lambda: (hub.sleep(0.02), after.append("ran"), hub.stop()))
    with caplog.at_level(logging.ERROR, logger="tpd2py.hub"):
        run_until(hub)
    assert after == ["ran"]


def test_a_raising_callback_or_timer_does_not_kill_the_hub(hub, caplog):
    # Regression (BUG #16): callbacks ran unguarded, so an app's get_hub().call_later(...)
    # that raised ended serve_forever.
    ran = []

    def broken():
        raise ValueError("expected by the test")

    hub.call_soon(broken)
    hub.call_later(0.005, broken)
    hub.call_later(0.01, lambda: (ran.append("later"), hub.stop()))
    with caplog.at_level(logging.ERROR, logger="tpd2py.hub"):
        run_until(hub)
    assert ran == ["later"]
    assert sum("ValueError" in (r.exc_text or "") for r in caplog.records) == 2


def test_two_readers_on_one_fd_raise_hub_error(hub):
    a, b = socket.socketpair()
    rec = hub.register(a.fileno())
    result = []

    def first_reader():
        hub.wait_readable(rec)
        result.append("first woke")
        hub.stop()

    def second_reader():
        try:
            hub.wait_readable(rec)
        except HubError as e:
            result.append(f"second refused: {e}")
            b.send(b"x")

    hub.spawn(first_reader)
    hub.spawn(second_reader)
    run_until(hub)
    assert result[0].startswith("second refused")
    assert result[1] == "first woke"
    hub.unregister(rec)
    a.close()
    b.close()


def test_two_writers_on_one_fd_raise_hub_error(hub):
    a, b = socket.socketpair()
    a.setblocking(False)
    with pytest.raises(BlockingIOError):
        for _ in range(100_000):
            a.send(b"w" * 65536)
    rec = hub.register(a.fileno())
    result = []

    def first_writer():
        hub.wait_writable(rec)
        result.append("first woke")
        hub.stop()

    def second_writer():
        try:
            hub.wait_writable(rec)
        except HubError:
            result.append("second refused")
            b.setblocking(False)
            while True:
                try:
                    b.recv(1 << 20)
                except BlockingIOError:
                    break

    hub.spawn(first_writer)
    hub.spawn(second_writer)
    run_until(hub)
    assert result == ["second refused", "first woke"]
    hub.unregister(rec)
    a.close()
    b.close()


def test_unregister_wakes_waiters_with_connection_closed(hub):
    a, b = socket.socketpair()
    rec = hub.register(a.fileno())
    result = []

    def reader():
        try:
            hub.wait_readable(rec)
        except ConnectionClosed:
            result.append("closed")
        hub.stop()

    hub.spawn(reader)
    hub.spawn(hub.unregister, rec)
    run_until(hub)
    assert result == ["closed"]
    with pytest.raises(ConnectionClosed):
        hub.wait_readable(rec)
    a.close()
    b.close()


def test_a_ready_fd_wakes_its_reader(hub):
    a, b = socket.socketpair()
    a.setblocking(False)
    rec = hub.register(a.fileno())
    got = []

    def reader():
        while True:
            try:
                got.append(a.recv(100))
                break
            except BlockingIOError:
                hub.wait_readable(rec)
        hub.stop()

    hub.spawn(reader)
    hub.call_later(0.01, b.send, b"hello")
    run_until(hub)
    assert got == [b"hello"]
    hub.unregister(rec)
    a.close()
    b.close()


def test_timeout_and_cancel_are_not_swallowed_by_except_exception(hub):
    seen = []

    def app_code():
        try:
            hub.sleep(5)
        except Exception:  # noqa: BLE001 - the point: this must not catch it
            seen.append("swallowed")
        seen.append("went on")

    def watcher(g):
        hub.sleep(0)
        hub.throw(g, Timeout())
        hub.sleep(0.01)
        hub.stop()

    g = hub.spawn(app_code)
    hub.spawn(watcher, g)
    run_until(hub)
    assert seen == []
    assert g.dead


def test_a_callback_that_waits_hands_the_loop_to_a_spare(hub):
    """Leader/followers: code running in the loop's own greenlet may wait; the loop goes on
    in a spare greenlet meanwhile, and the waiter returns to the spare pool when done."""
    order = []
    leader = hub.leader

    def in_hub():
        assert greenlet.getcurrent() is leader
        hub.sleep(0.05)
        order.append("callback woke")
        assert hub.leader is not leader  # the loop moved on without us
        hub.schedule(parked, "value")
        order.append(("parked got", hub.park()))

    def other():
        order.append("other ran")

    def stopper():
        hub.sleep(0.2)
        hub.stop()

    hub.call_soon(in_hub)
    hub.call_soon(hub.spawn, other)
    parked = leader
    hub.spawn(stopper)
    run_until(hub)
    assert order == ["other ran", "callback woke", ("parked got", "value")]
    assert hub.statistics()["handoffs"] == 1  # the sleep; the park came after, as a follower
    assert leader in hub.spares  # done: back in the pool, not dead
    assert not leader.dead


def test_chained_handoffs_do_not_grow_the_stack(hub):
    """Regression: a spare started by the greenlet that hands off begins at that greenlet's
    stack depth, so a chain of hand-offs (each new leader waiting in turn) hit Python's
    recursion limit after a few hundred. Spares are started by a factory at a fixed depth."""
    count = 1500  # well past the default recursion limit of 1000
    woke = []

    def waits(i):
        hub.sleep(0.01)
        woke.append(i)
        if len(woke) == count:
            hub.stop()

    for i in range(count):
        hub.call_soon(waits, i)
    run_until(hub)
    assert sorted(woke) == list(range(count))
    stats = hub.statistics()
    assert stats["handoffs"] >= count
    hub.call_soon(hub.stop)
    run_until(hub)  # let the displaced leaders finish returning to the pool
    assert len(hub.spares) <= MAX_SPARES
    assert all(not g.dead for g in hub.spares)


def test_call_soon_threadsafe_from_another_thread_wakes_the_hub(hub):
    # A far timer keeps epoll_wait asleep for LIMIT seconds unless the wake-up pipe works.
    called_in = []

    def from_thread():
        hub.call_soon_threadsafe(lambda: (called_in.append(threading.get_ident()), hub.stop()))

    hub.call_soon(lambda: threading.Thread(target=from_thread).start())
    run_until(hub)
    assert called_in == [threading.get_ident()], "the callback runs in the hub's thread"


def test_many_threadsafe_calls_all_run_once(hub):
    results = []
    n = 1000

    def spam(base):
        for i in range(n):
            hub.call_soon_threadsafe(results.append, base + i)

    def stop_when_done():
        if len(results) == 4 * n:
            hub.stop()
        else:
            hub.call_later(0.001, stop_when_done)

    threads = [threading.Thread(target=spam, args=(k * n,)) for k in range(4)]
    hub.call_soon(lambda: [t.start() for t in threads])
    hub.call_soon(stop_when_done)
    run_until(hub)
    for t in threads:
        t.join(LIMIT)
    assert sorted(results) == list(range(4 * n))


def test_statistics_reports_registered_fds(hub):
    a, b = socket.socketpair()
    base = hub.statistics()["fds"]
    rec = hub.register(a.fileno())
    assert hub.statistics()["fds"] == base + 1
    hub.unregister(rec)
    assert hub.statistics()["fds"] == base
    a.close()
    b.close()


def test_a_spawned_greenlet_ends_into_the_current_leader(hub):
    """A greenlet ends by switching to its parent; the leader may have changed since it was
    spawned (a hand-off), so its parent is set to the current leader as it ends."""
    first = hub.leader
    g = hub.spawn(lambda: hub.sleep(0.05))
    assert g.parent is first

    def hand_off():
        hub.sleep(0.2)  # displaces the first leader while g sleeps and ends

    def stopper():
        hub.sleep(0.3)
        hub.stop()

    hub.call_soon(hand_off)
    hub.spawn(stopper)
    run_until(hub)
    assert g.dead
    assert hub.statistics()["handoffs"] >= 1


def test_an_unarmed_record_enters_epoll_when_waited_on_and_sees_earlier_input(hub):
    """register(armed=False) keeps the fd out of epoll (a request-per-connection client costs
    no epoll_ctl); wait_readable arms it, and input that arrived before arming still wakes
    the reader (epoll reports existing readiness when an fd is added)."""
    a, b = socket.socketpair()
    a.setblocking(False)
    rec = hub.register(a.fileno(), armed=False)
    assert not rec.armed
    assert a.fileno() not in hub.records
    b.send(b"before")  # no edge can be seen yet: the fd is not watched
    got = []

    def reader():
        hub.wait_readable(rec)  # arms; the data already there wakes us on the next poll
        got.append(a.recv(100))
        hub.stop()

    hub.spawn(reader)
    run_until(hub)
    assert got == [b"before"]
    assert rec.armed and hub.records[a.fileno()] is rec
    hub.arm(rec)  # idempotent
    hub.unregister(rec)
    a.close()
    b.close()


def test_a_callback_that_waits_and_is_cancelled_ends_quietly(hub, caplog):
    """Review finding: a call_soon callback that waited (so the loop was handed off) and then
    got Timeout or Cancelled thrown in used to kill its loop greenlet and come out of run()."""
    from tpd2py.errors import Cancelled

    ended = []

    def waits_then_times_out():
        me = greenlet.getcurrent()
        hub.call_later(0.01, hub.throw, me, Timeout())
        hub.park()
        ended.append("not reached")

    def waits_then_is_cancelled():
        me = greenlet.getcurrent()
        hub.call_later(0.02, hub.throw, me, Cancelled())
        hub.park()

    def stopper():
        hub.sleep(0.1)
        ended.append("stopped")
        hub.stop()

    hub.call_soon(waits_then_times_out)
    hub.call_soon(waits_then_is_cancelled)
    hub.spawn(stopper)
    with caplog.at_level(logging.ERROR, logger="tpd2py.hub"):
        run_until(hub)
    assert ended == ["stopped"]
    assert not caplog.records
    assert not hub.running


def test_run_recovers_after_an_error_and_resets_its_flags(hub):
    """HubError from a callback ends run() with the error (the loop greenlet dies); running is
    reset, and the next run() starts a new loop greenlet and goes on."""
    def broken():
        raise HubError("deliberate")

    hub.call_soon(broken)
    with pytest.raises(HubError):
        hub.run()
    assert not hub.running and not hub.polling
    done = []
    hub.call_soon(lambda: (done.append(1), hub.stop()))
    run_until(hub)
    assert done == [1]


def test_a_callback_that_raises_greenlet_exit_does_not_end_run(hub, caplog):
    def exits():
        raise greenlet.GreenletExit()

    def stopper():
        hub.sleep(0.05)
        hub.stop()

    hub.call_soon(exits)
    hub.spawn(stopper)
    with caplog.at_level(logging.ERROR, logger="tpd2py.hub"):
        run_until(hub)  # returns only through stop()
    assert any("ended unexpectedly" in r.getMessage() for r in caplog.records)


def test_a_stray_wake_up_of_a_spare_is_dropped_and_logged(hub, caplog):
    """Before: a spare in the pool dropped a stray throw (meant for an earlier wait of its
    greenlet) with a bare ``except BaseException: continue``, and said nothing. It still drops
    it, and stray values too, but logs each at debug level; the spare stays usable."""
    leader = hub.leader

    def in_hub():
        hub.sleep(0.01)  # hands the loop to a spare; `leader` joins the pool when this returns
        hub.call_soon(hub.stop)

    def stopper():
        hub.sleep(0)
        hub.stop()

    hub.call_soon(in_hub)
    run_until(hub)
    assert leader in hub.spares
    with caplog.at_level(logging.DEBUG, logger="tpd2py.hub"):
        hub.schedule(leader, "stray value")
        hub.spawn(stopper)
        run_until(hub)
        hub.throw(leader, ValueError("stray error"))
        hub.spawn(stopper)
        run_until(hub)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("dropped a stray wake-up 'stray value'" in m for m in messages), messages
    assert any("dropped a stray ValueError('stray error')" in m for m in messages), messages
    assert leader in hub.spares and not leader.dead


def test_close_releases_epoll_and_wake_pipe_once():
    hub = Hub()
    wake_w = hub.wake_w
    hub.close()
    assert hub.epoll.closed
    with pytest.raises(OSError):
        os.fstat(wake_w)
    hub.close()  # idempotent: nothing left to close, nothing raised


def test_close_while_running_is_refused(hub):
    refused = []

    def closer():
        with pytest.raises(HubError):
            hub.close()
        refused.append(True)
        hub.stop()

    hub.call_soon(closer)
    run_until(hub)
    assert refused == [True] and not hub.epoll.closed


def test_refresh_now_sets_and_returns_the_monotonic_clock(hub):
    before = time.monotonic()
    now = hub.refresh_now()
    assert now == hub.now and before <= now <= time.monotonic()


@pytest.mark.parametrize("event", ["readable", "writable"])
def test_wait_readable_or_writable_wakes_on_either(hub, event):
    """pg.py's wait for libpq's flush: parked as reader and writer at once, woken by the first
    of input or write space, and both slots are free again afterwards."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    with pytest.raises(BlockingIOError):  # a can neither read nor write now
        for _ in range(100_000):
            a.send(b"w" * 65536)
    rec = hub.register(a.fileno())
    result = []

    def waiter():
        hub.wait_readable_or_writable(rec)
        result.append((rec.reader, rec.writer))
        hub.stop()

    def second():
        for wait in (hub.wait_readable, hub.wait_writable, hub.wait_readable_or_writable):
            with pytest.raises(HubError):
                wait(rec)
        result.append("refused")
        if event == "readable":
            b.send(b"x")
        else:
            with contextlib.suppress(BlockingIOError):
                while b.recv(1 << 20):
                    pass

    hub.spawn(waiter)
    hub.spawn(second)
    run_until(hub)
    assert result == ["refused", (None, None)]
    hub.unregister(rec)
    a.close()
    b.close()


def test_a_park_is_woken_once_by_the_first_wake_up(hub):
    """schedule (the loop's _wake itself): of two wake-ups queued for one park, the first
    wins and the second is dropped; it does not resume the greenlet's next park."""
    got = []

    def parker():
        got.append(hub.park())
        got.append(hub.park())

    g = hub.spawn(parker)

    def wake_twice():
        hub.schedule(g, "first")
        hub.schedule(g, "second")  # same turn: dropped
        hub.throw(g, Timeout())  # dropped too

    hub.call_soon(wake_twice)
    hub.call_later(0.02, hub.schedule, g, "third")  # after the first was delivered: a new park
    hub.call_later(0.05, hub.stop)
    run_until(hub)
    assert got == ["first", "third"]


def test_a_wake_up_is_stale_once_the_fd_resumed_the_greenlet(hub):
    """A wake-up queued for a greenlet that its fd then resumes directly (later in the same
    batch of events) is stale: dropped, it does not end the greenlet's next park."""
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    a.setblocking(False)
    got = []

    def reader():
        hub.wait_readable(rec)
        got.append(a.recv(10))
        got.append(hub.park())  # the stale wake-up must not end this park

    g = hub.spawn(reader)
    # c's event comes first in the batch (it became ready first): its callback queues a
    # wake-up for g; a's event then resumes g directly, in the same batch.
    other = hub.register(c.fileno(), lambda rec: hub.schedule(g, "stale"))
    rec = hub.register(a.fileno())
    hub.call_later(0.01, lambda: (d.send(b"y"), b.send(b"x")))
    hub.call_later(0.1, hub.schedule, g, "fresh")
    hub.call_later(0.15, hub.stop)
    run_until(hub)
    assert got == [b"x", "fresh"]
    hub.unregister(rec)
    hub.unregister(other)
    for s in (a, b, c, d):
        s.close()


def test_cancelled_timers_do_not_pile_up_and_live_ones_still_fire(hub):
    """A cancel only marks a timer; a timeout armed and cancelled per message (a long one)
    must not keep one timer per message in the heap until it would have fired."""
    fired = []
    live = [hub.call_later(0.01 * (i + 1), fired.append, i) for i in range(3)]
    for _ in range(20_000):
        hub.call_later(3600, fired.append, "cancelled").cancel()
    assert len(hub.timers) < 3000
    assert all(not t.cancelled for t in live)
    hub.call_later(0.1, hub.stop)
    run_until(hub)
    assert fired == [0, 1, 2]
