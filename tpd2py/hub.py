"""The hub: one thread, one epoll, many greenlets.

The only module that imports ``select.epoll``; everything else waits through ``wait_readable``,
``wait_writable``, ``sleep`` or a waiter built on ``park``/``schedule``.

Registration strategy (why edge-triggered, registered once):
- Every fd is registered at most once, for ``EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET``, when it
  enters the hub or (``register(armed=False)``, accepted connections) when something first has
  to wait on it, and unregistered once, when closed. No ``epoll_ctl(MOD)`` ever runs, so waiting
  costs no syscall: a greenlet that got EAGAIN records itself as the fd's reader (or writer)
  and switches to the hub.
- Edge-triggered is correct only because callers *try the syscall first* and wait only after
  EAGAIN: the kernel then owes us a new edge for any byte that arrives later, and since we are
  one thread, the ``epoll_wait`` that collects it runs only after the waiter recorded itself.
- An edge that arrives while nobody waits is remembered in ``FdRecord.read_pending`` or passed
  to the fd's ``on_readable`` callback (how an idle keep-alive connection with no greenlet is
  woken). Readers clear the flag before each ``recv``.
- EPOLLOUT edges are rare on TCP: Linux only signals write space to a socket that ran out of
  it, so a registration that covers both directions costs nothing in the common case.
- Listening sockets are the exception: level-triggered, input only (``register(level=True)``).
  The server accepts one connection per loop turn; the level trigger brings it back while more
  are queued, so no accept is made only to learn EAGAIN.
- An fd closed and reused within one batch of events may receive a stale event; every waiter
  retries its syscall, so it costs at worst one ``recv`` that returns EAGAIN.

How it works (leader/followers, docs/design.md has the measurements): whichever greenlet runs the
loop is the *leader* (``Hub.leader``) and runs callbacks directly, so a connection is served in
the loop's own greenlet, with no switch, when nothing blocks (two switches less per keep-alive
request). If code in the leader waits, it first hands the loop to a *spare* greenlet (pooled,
made on demand) that carries on with the current batch of events; once resumed and done with its
callback, it no longer leads and goes back to the pool. The loop's state (callbacks, ready queue,
timers, the batch and the position in it) lives on the hub, not in a greenlet's frame, so a new
leader picks up where the last one left. Consequences: waiting is allowed anywhere in the hub's
thread (a callback that waits and is then cancelled or times out ends quietly, like a spawned
greenlet); greenlets that end return to the current leader (their parent is set when they end); a
request that waits once costs 3 switches (hand-off, resume, return to the pool), one less than
with a separate worker greenlet, and 4 more when a new spare has to be made.

Rules: a second reader or writer on one fd is a bug and raises; a greenlet or callback that
raises never kills the hub (its error is logged). Cancellation and timeouts thrown into
greenlets derive from ``BaseException``.
Switch points: ``wait_readable``, ``wait_writable``, ``wait_readable_or_writable``, ``park``
and ``sleep`` (and ``run``, which is called from outside the hub). ``FdRecord`` and ``Timer``
live in ``_hub_records``.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

import greenlet

from ._hub_records import FdRecord, Timer
from .errors import Cancelled, ConnectionClosed, HubError, Timeout

log = logging.getLogger("tpd2py.hub")

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
_READ_EVENTS = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR | select.EPOLLRDHUP
_WRITE_EVENTS = select.EPOLLOUT | select.EPOLLHUP | select.EPOLLERR
_HANGUP_EVENTS = select.EPOLLHUP | select.EPOLLERR | select.EPOLLRDHUP
_REGISTER_MASK = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET
_LEVEL_MASK = select.EPOLLIN
# How many events one epoll_wait may return; more simply wait for the next round.
MAX_EVENTS = 1024
# Spare loop greenlets kept for hand-offs; more are created on demand and end when not needed.
MAX_SPARES = 512
# Timers in the heap before cancelled ones are first swept out (see _compact_timers).
_COMPACT_MIN = 1024


class Hub:
    """The run loop. Create one per thread (``get_hub()``), then ``run()``."""

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.records: dict[int, FdRecord] = {}
        self.ready: collections.deque[tuple[greenlet.greenlet, Any]] = collections.deque()
        # The entry each greenlet in ``ready`` is waiting for (see _wake).
        self.wakes: dict[greenlet.greenlet, tuple[greenlet.greenlet, Any]] = {}
        self.callbacks: collections.deque[tuple[Callable[..., Any], tuple]] = collections.deque()
        self.timers: list[Timer] = []
        self._compact_at = _COMPACT_MIN  # heap size at which cancelled timers are dropped
        self.now = time.monotonic()
        # Greenlets end by switching to their parent; ours all have this thread's main greenlet
        # (or the caller of run()) above the leader, never a greenlet that might be parked.
        root = greenlet.getcurrent()
        while root.parent is not None:
            root = root.parent
        self._runner: greenlet.greenlet = root
        self.leader: greenlet.greenlet = self._new_leader()
        self.spares: list[greenlet.greenlet] = []
        self._factory: greenlet.greenlet | None = None  # starts spares (see _new_spare)
        # The current batch of epoll events and how far the leaders got through it.
        self._batch: list[tuple[int, int]] = []
        self._batch_pos = 0
        self.running = False
        self.polling = False  # True only while the loop sleeps in epoll_wait (the watchdog)
        self._stop = False
        # Cross-thread wake-ups (and signals, via signal.set_wakeup_fd) arrive on this pipe.
        self._threadsafe: collections.deque[tuple[Callable[..., Any], tuple]] = collections.deque()
        self._wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wake_sent = False
        self._wake_lock = threading.Lock()
        self.register(self._wake_r, self._drain_wakeups)
        self.polls = 0
        self.calls = 0  # callbacks run by the loop: the watchdog's measure of progress
        self.handoffs = 0

    # -- registration ---------------------------------------------------------------------------

    def register(self, fd: int, on_readable: Callable[[FdRecord], None] | None = None,
                 level: bool = False, armed: bool = True) -> FdRecord:
        """Watch ``fd``. With ``level``, it is watched for input only and level-triggered:
        ``on_readable`` is called on every loop turn while input is pending (a listening
        socket: accept one connection per turn, no EAGAIN-probing accept needed).

        With ``armed=False`` the record is made but the fd does not enter epoll until
        ``arm(rec)``, which ``wait_readable``/``wait_writable`` do themselves: a connection
        that is answered and closed without ever waiting (a request per connection) costs no
        ``epoll_ctl`` at all. Until armed, no event sets ``read_pending`` or calls
        ``on_readable``; arming reports whatever the fd is already ready for.
        """
        rec = FdRecord(fd, on_readable)
        if armed:
            self.epoll.register(fd, _LEVEL_MASK if level else _REGISTER_MASK)
            self.records[fd] = rec
            rec.armed = True
        return rec

    def arm(self, rec: FdRecord) -> None:
        """Put a record made with ``armed=False`` into epoll (once; edge-triggered, in and out).
        Readiness the fd already has is reported by the next ``epoll_wait``. Never switches."""
        if rec.armed or rec.closed:
            return
        self.epoll.register(rec.fd, _REGISTER_MASK)
        self.records[rec.fd] = rec
        rec.armed = True

    def pause_level(self, rec: FdRecord, paused: bool) -> None:
        """Stop (or restart) reporting a level-triggered fd, e.g. a listener at its
        connection limit, so that pending input does not wake the loop in vain."""
        if not rec.closed:
            self.epoll.modify(rec.fd, 0 if paused else _LEVEL_MASK)

    def unregister(self, rec: FdRecord, exc: BaseException | None = None,
                   closing: bool = False) -> None:
        """Mark closed, wake waiters with ``exc`` (default ConnectionClosed), forget the fd.

        The caller closes the fd afterwards; with ``closing`` it promises to do so at once
        and the ``epoll_ctl(DEL)`` is skipped (closing the only descriptor of an open file
        removes it from epoll: one syscall less per connection). Does not switch.
        """
        if rec.closed:
            return
        rec.closed = True
        if self.records.get(rec.fd) is rec:
            del self.records[rec.fd]
            if not closing:
                with contextlib.suppress(OSError, ValueError):
                    self.epoll.unregister(rec.fd)
        for g in (rec.reader, rec.writer):
            if g is not None:
                self._wake(g, _Throw(exc or ConnectionClosed()))
        rec.reader = rec.writer = None
        rec.on_readable = None

    # -- waiting (these may switch to the hub) -------------------------------------------------

    def wait_readable(self, rec: FdRecord) -> None:
        """Park until ``rec`` may be readable. May switch to the hub."""
        if rec.reader is not None:
            raise HubError(f"fd {rec.fd} already has a reader")
        if rec.closed:
            raise ConnectionClosed()
        if not rec.armed:
            self.arm(rec)
        rec.reader = g = greenlet.getcurrent()
        try:
            self._switch_out(g)
        finally:
            if rec.reader is g:
                rec.reader = None

    def wait_writable(self, rec: FdRecord) -> None:
        """Park until ``rec`` may be writable. May switch to the hub."""
        if rec.writer is not None:
            raise HubError(f"fd {rec.fd} already has a writer")
        if rec.closed:
            raise ConnectionClosed()
        if not rec.armed:
            self.arm(rec)
        rec.writer = g = greenlet.getcurrent()
        try:
            self._switch_out(g)
        finally:
            if rec.writer is g:
                rec.writer = None

    def wait_readable_or_writable(self, rec: FdRecord) -> None:
        """Park until ``rec`` may be readable or writable, whichever comes first: for a
        protocol that must read while it waits to write (libpq's flush, pg.py). The caller
        retries both. May switch to the hub."""
        if rec.reader is not None or rec.writer is not None:
            raise HubError(f"fd {rec.fd} already has a reader or a writer")
        if rec.closed:
            raise ConnectionClosed()
        if not rec.armed:
            self.arm(rec)
        rec.reader = rec.writer = g = greenlet.getcurrent()
        try:
            self._switch_out(g)
        finally:
            if rec.reader is g:
                rec.reader = None
            if rec.writer is g:
                rec.writer = None

    def park(self) -> Any:
        """Switch to the hub until someone calls ``schedule`` for this greenlet. May switch."""
        return self._switch_out(greenlet.getcurrent())

    def sleep(self, seconds: float) -> None:
        """Let other greenlets run for at least ``seconds``. May switch to the hub."""
        g = greenlet.getcurrent()
        if seconds <= 0:
            self._wake(g, None)
            self._switch_out(g)
            return
        timer = self.call_later(seconds, self.schedule, g, None)
        try:
            self._switch_out(g)
        finally:
            timer.cancel()

    def _switch_out(self, g: greenlet.greenlet) -> Any:
        """Park ``g`` (the current greenlet) and let the loop run; return what resumes it.
        When ``g`` is the leader itself, a spare greenlet takes over the loop first."""
        leader = self.leader
        if g is not leader:
            return leader.switch()
        spare = None
        spares = self.spares
        while spares:
            spare = spares.pop()
            if not spare.dead:
                break
            spare = None
        if spare is None:
            spare = self._new_spare()
        elif self.wakes:
            self.wakes.pop(spare, None)
        self.leader = spare
        self.handoffs += 1
        return spare.switch(_PROMOTE)

    def _new_leader(self) -> greenlet.greenlet:
        return greenlet.greenlet(self._lead_main, parent=self._runner)

    def _new_spare(self) -> greenlet.greenlet:
        """A new spare, started by the factory greenlet. A greenlet's stack and Python
        recursion depth begin where it is first switched into: spares started by the (deep)
        greenlets that hand the loop off would each start deeper than the last."""
        factory = self._factory
        if factory is None or factory.dead:
            factory = self._factory = greenlet.greenlet(self._factory_main, parent=self._runner)
        return factory.switch(greenlet.getcurrent())

    def _factory_main(self, requester: greenlet.greenlet) -> None:
        while True:
            spare = greenlet.greenlet(self._lead_main, parent=self._runner)
            spare.switch(_SPARE)  # it starts here, at this fixed depth, and switches back
            requester = requester.switch(spare)

    # -- scheduling (never switch) --------------------------------------------------------------

    def throw(self, g: greenlet.greenlet, exc: BaseException) -> None:
        """Raise ``exc`` inside ``g`` on the next loop iteration."""
        self._wake(g, _Throw(exc))

    def spawn(self, fn: Callable[..., Any], *args: Any) -> greenlet.greenlet:
        """Run ``fn(*args)`` in a new greenlet, soon. Its exceptions are logged, never fatal."""
        g = greenlet.greenlet(_guarded, parent=self.leader)
        self.ready.append((g, _Start((self, fn, args))))  # a start, not a wake-up: never dropped
        return g

    def schedule(self, g: greenlet.greenlet, value: Any = None) -> None:
        """Resume ``g`` with ``value`` on the next loop iteration (unless it is woken first).
        A park is woken once: the first wake-up queued wins and later ones are dropped (a
        hang-up and a timer in the same turn, say); a greenlet resumed directly by its fd
        first makes its queued wake-up stale. Without this a stray wake-up would resume the
        greenlet later, parked somewhere else."""
        if g in self.wakes:
            return
        entry = (g, value)
        self.wakes[g] = entry
        self.ready.append(entry)

    _wake = schedule  # the loop's own name for it (one call less than a wrapper: per message)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn(*args)`` from the loop itself, soon. If it waits, the loop goes on in
        another greenlet meanwhile (see the module docstring)."""
        self.callbacks.append((fn, args))

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        timer = Timer(time.monotonic() + delay, fn, args)
        timers = self.timers
        if len(timers) >= self._compact_at:
            self._compact_timers()
        heapq.heappush(timers, timer)
        return timer

    def _compact_timers(self) -> None:
        """Drop cancelled timers from the heap (in place: the loop holds the list). A cancel
        only marks a timer, so a wait that sets a long timeout and ends early, once per
        message (``receive(timeout=...)``), would otherwise leave one per message in the heap
        for the whole timeout. Run when the heap has doubled since the last compaction:
        amortized O(1) per ``call_later``."""
        timers = self.timers
        timers[:] = [t for t in timers if not t.cancelled]
        heapq.heapify(timers)
        self._compact_at = max(_COMPACT_MIN, 2 * len(timers))

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        """From any thread: call ``fn(*args)`` in the hub soon. Wakes a sleeping epoll_wait."""
        self._threadsafe.append((fn, args))
        with self._wake_lock:
            if self._wake_sent:
                return
            self._wake_sent = True
        with contextlib.suppress(BlockingIOError):
            os.write(self.wake_w, b"\0")

    def _drain_wakeups(self, rec: FdRecord) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        with self._wake_lock:
            self._wake_sent = False
        while self._threadsafe:
            self.callbacks.append(self._threadsafe.popleft())

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> None:
        """Run the loop until ``stop()``. Call from outside the hub (the main greenlet)."""
        self._runner = runner = greenlet.getcurrent()
        self._stop = False
        try:
            while True:
                leader = self.leader
                if leader.dead:
                    # The batch stays: its position is past the event that was being handled,
                    # and dropping the rest would strand edge-triggered fds.
                    self.leader = leader = self._new_leader()
                with contextlib.suppress(ValueError):  # a cyclic chain: keep the old parent
                    leader.parent = runner
                leader.switch()
                if self._stop:
                    return
                # A loop greenlet ended into us without stop(): a handler served in the loop's
                # own greenlet raised GreenletExit, say. The loop goes on.
                log.error("a loop greenlet ended unexpectedly; the loop goes on")
        finally:
            self.running = self.polling = False

    def stop(self) -> None:
        self._stop = True

    def close(self) -> None:
        """Close the epoll fd and the wake-up pipe; once the loop is not running (``run()`` has
        returned or never ran). Calling it again does nothing. Never switches."""
        if self.running:
            raise HubError("close() while the loop runs")
        if self.epoll.closed:
            return
        self.epoll.close()
        os.close(self._wake_r)
        os.close(self.wake_w)

    def refresh_now(self) -> float:
        """Set ``now`` (the loop's clock, read once per poll) to the monotonic clock now, and
        return it: for code that needs a fresh deadline base between polls. Never switches."""
        self.now = now = time.monotonic()
        return now

    def _lead_main(self, start: Any = None) -> None:
        """The body of every loop greenlet: lead until displaced, then wait as a spare."""
        me = greenlet.getcurrent()
        if start is _SPARE:
            self._await_promotion(self._factory)  # made by _new_spare for a hand-off
        while True:
            self._lead(me)
            # Displaced while running a callback that waited; it has returned now.
            spares = self.spares
            if len(spares) >= MAX_SPARES:
                me.parent = self.leader  # end by returning to the loop
                return
            spares.append(me)
            self._await_promotion(None)

    def _await_promotion(self, first: greenlet.greenlet | None) -> None:
        """Park as a spare: switch to ``first`` (or the leader) until _switch_out promotes us.
        Stray wake-ups (meant for an earlier wait of this greenlet) are ignored."""
        while True:
            target = first or self.leader
            first = None
            try:
                value = target.switch()
            except greenlet.GreenletExit:
                raise
            except BaseException as exc:  # a stray throw: dropped, but not silently
                log.debug("spare %r dropped a stray %r", greenlet.getcurrent(), exc)
                continue
            if value is _PROMOTE:
                return
            log.debug("spare %r dropped a stray wake-up %r", greenlet.getcurrent(), value)

    def _lead(self, me: greenlet.greenlet) -> None:
        """Run the loop while ``me`` is the leader. Returns once ``me`` was displaced (a
        callback it ran waited, another greenlet took the loop over) and that callback is done.
        """
        # Hot loop: locals instead of attribute lookups.
        ready = self.ready
        wakes = self.wakes
        callbacks = self.callbacks
        timers = self.timers
        records = self.records
        poll = self.epoll.poll
        monotonic = time.monotonic
        heappop = heapq.heappop
        self.running = True
        while True:
            if self._stop:
                self.running = False
                self._runner.switch()  # back to run(); the next run() resumes here
                self.running = True
                continue
            while callbacks:
                fn, args = callbacks.popleft()
                self._call(fn, args)
                if self.leader is not me:
                    return
            while ready:
                entry = ready.popleft()
                g, value = entry
                if type(value) is _Start:
                    _resume(g, value.args)
                    continue
                if wakes.get(g) is not entry:
                    continue  # stale: woken otherwise since
                del wakes[g]
                if g is not me:  # a wake-up for the running leader is stale too
                    _resume(g, value)
            batch = self._batch
            i = self._batch_pos
            if i >= len(batch):
                if callbacks or ready:
                    timeout = 0.0
                elif timers:
                    timeout = max(0.0, timers[0].when - monotonic())
                else:
                    timeout = 1.0
                if self._stop:
                    continue
                self.polling = True
                batch = self._batch = poll(timeout, MAX_EVENTS)
                self.polling = False
                i = 0
                self.polls += 1
                self.now = monotonic()
            n = len(batch)
            while i < n:
                fd, ev = batch[i]
                i += 1
                rec = records.get(fd)
                if rec is None:
                    continue
                if ev & _WRITE_EVENTS:
                    g = rec.writer
                    if g is not None:
                        rec.writer = None
                        if wakes:
                            wakes.pop(g, None)
                        _resume(g, None)
                if ev & _READ_EVENTS:
                    if ev & _HANGUP_EVENTS:
                        rec.hangup = True
                    g = rec.reader
                    if g is not None:
                        rec.reader = None
                        if wakes:
                            wakes.pop(g, None)
                        _resume(g, None)
                    elif rec.on_readable is not None:
                        rec.read_pending = True
                        self._batch_pos = i  # a successor goes on from the next event
                        # _call inline: this is once per request.
                        self.calls += 1
                        try:
                            rec.on_readable(rec)
                        except HubError:
                            raise
                        except _QUIET:
                            pass
                        except Exception:
                            log.exception("callback %r failed", rec.on_readable)
                        if self.leader is not me:
                            return
                    else:
                        rec.read_pending = True
            self._batch_pos = i
            now = self.now
            while timers and timers[0].when <= now:
                timer = heappop(timers)
                if not timer.cancelled:
                    self._call(timer.callback, timer.args)
                    if self.leader is not me:
                        return

    def _call(self, fn: Callable[..., Any], args: tuple) -> None:
        """Run a callback from the loop. HubError ends the loop; a callback that waited and was
        then cancelled or timed out ends quietly (its own business); any other error is
        logged (an app's call_soon or timer must not end the server)."""
        self.calls += 1
        try:
            fn(*args)
        except HubError:
            raise
        except _QUIET:
            pass
        except Exception:
            log.exception("callback %r failed", fn)

    def statistics(self) -> dict[str, int]:
        return {
            "fds": len(self.records),
            "ready": len(self.ready),
            "timers": len(self.timers),
            "polls": self.polls,
            "handoffs": self.handoffs,
            "spares": len(self.spares),
        }


_PROMOTE = object()  # resumes a spare greenlet as the new leader
# Raised out of a callback that waited (hub.throw, a socket timeout): it ends that callback
# quietly, as _guarded ends a spawned greenlet, instead of ending the loop.
_QUIET = (Cancelled, Timeout)
_SPARE = object()  # starts a loop greenlet as a spare (from the factory)


class _Start:
    __slots__ = ("args",)

    def __init__(self, args: tuple) -> None:
        self.args = args


class _Throw:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _resume(g: greenlet.greenlet, value: Any) -> None:
    """Switch into ``g`` from the hub; a greenlet's escaped error is logged, not fatal."""
    if g.dead:
        return
    try:
        if type(value) is _Throw:
            g.throw(value.exc)
        elif type(value) is tuple and not g:
            g.switch(*value)
        else:
            g.switch(value)
    except greenlet.GreenletExit:
        pass
    except HubError:
        raise
    except BaseException:
        log.exception("greenlet %r died with an error", g)


def _guarded(hub: Hub, fn: Callable[..., Any], args: tuple) -> Any:
    """A spawned greenlet's run, given ``(hub, fn, args)`` at its start. A module function
    rather than a closure per spawn, and ``fn()`` rather than ``fn(*())``, which CPython
    inlines: a parked greenlet (a WebSocket handler) keeps no closure and cells and one C
    eval frame less on its saved stack (bench/greenlet_floor.py: ~0.5 KB together)."""
    try:
        return fn(*args) if args else fn()
    except (greenlet.GreenletExit, Cancelled, ConnectionClosed, Timeout):
        return None
    except Exception:
        log.exception("unhandled error in %s", getattr(fn, "__qualname__", fn))
        return None
    finally:
        # Ending switches to the parent: make that the loop's current greenlet.
        with contextlib.suppress(ValueError):
            greenlet.getcurrent().parent = hub.leader


_local = threading.local()


def get_hub() -> Hub:
    """The hub of this thread, created on first use."""
    hub = getattr(_local, "hub", None)
    if hub is None:
        hub = _local.hub = Hub()
    return hub


def sleep(seconds: float) -> None:
    """Sleep cooperatively. May switch to the hub."""
    get_hub().sleep(seconds)


def spawn(fn: Callable[..., Any], *args: Any) -> greenlet.greenlet:
    return get_hub().spawn(fn, *args)
