"""The blocked-hub watchdog: names the handler that runs too long without switching.

One thread serves everyone, so a handler that calls something blocking (``time.sleep``, a
database driver, ``requests.get``, a long computation) stalls every other connection. The
watchdog finds it:
- Progress is a loop turn (``Hub.polls``), a callback the loop runs (``Hub.calls``: the
  server's dispatch of one connection is one) or a greenlet switch: in the hub's thread,
  ``greenlet.settrace`` records every switch (one attribute store per switch: the
  ``(origin, target)`` tuple greenlet passes, which is new each time). Handlers often run in
  the loop's own greenlet without any switch (hub.py, "leader/followers"), so switches alone
  would miss them.
- A monitor thread wakes every ``threshold / 4``. If there was no progress since its last
  look, the loop is running and not asleep in ``epoll_wait`` (``Hub.polling``), and that has
  lasted ``threshold`` or more, it logs a warning with the thread's stack
  (``sys._current_frames``): the blocking call is at the bottom. One report per episode.
Rules: off by default; ``Config.watchdog`` turns it on (``None`` = on at 100 ms in debug, i.e.
``python -X dev`` or the ``tpd2py`` logger at DEBUG). Costs about one Python call per switch
while on. The loop's own work between callbacks (the epoll wait, the event bookkeeping) is
never reported.
Nothing here switches.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from typing import Any

import greenlet

from .hub import Hub

log = logging.getLogger("tpd2py.watchdog")

# Debug default: long enough that a busy but cooperative handler (a template, a JSON dump of
# a few thousand items) passes, short enough that users notice a 100 ms stall as a lag.
DEBUG_THRESHOLD = 0.1


def debug_enabled() -> bool:
    """True in Python's development mode or when the ``tpd2py`` logger shows DEBUG records."""
    return bool(sys.flags.dev_mode) or logging.getLogger("tpd2py").isEnabledFor(logging.DEBUG)


class Watchdog:
    """Watch one hub; ``start()`` from the hub's own thread (where greenlets switch)."""

    def __init__(self, hub: Hub, threshold: float = DEBUG_THRESHOLD,
                 logger: logging.Logger = log) -> None:
        if threshold <= 0:
            raise ValueError("the threshold must be positive")
        self.hub = hub
        self.threshold = threshold
        self.log = logger
        self.reports = 0
        self._last: Any = None
        self._previous: Any = None
        self._thread_id = 0
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None

    def _trace(self, event: str, args: Any) -> None:
        self._last = args
        previous = self._previous
        if previous is not None:
            previous(event, args)

    def start(self) -> Watchdog:
        """Install the switch tracer in this (the hub's) thread and start the monitor."""
        if self._monitor is not None:
            return self
        self._thread_id = threading.get_ident()
        self._last = (None, greenlet.getcurrent())
        self._previous = greenlet.settrace(self._trace)
        self._monitor = threading.Thread(target=self._watch, name="tpd2py-watchdog",
                                         daemon=True)
        self._monitor.start()
        return self

    def stop(self) -> None:
        """Stop the monitor and remove the tracer (call from the hub's thread)."""
        self._stop.set()
        if self._monitor is not None:
            if threading.get_ident() == self._thread_id:
                greenlet.settrace(self._previous)
            self._monitor.join(1.0)
            self._monitor = None

    def _watch(self) -> None:
        interval = self.threshold / 4
        hub = self.hub
        seen: Any = None
        seen_polls = -1
        since = time.monotonic()
        reported = False
        while not self._stop.wait(interval):
            last = self._last
            polls = hub.polls + hub.calls
            now = time.monotonic()
            if last is not seen or polls != seen_polls or hub.polling or not hub.running:
                seen, seen_polls, since, reported = last, polls, now, False
                continue
            if reported or now - since < self.threshold:
                continue
            reported = True
            self._report(now - since)

    def _report(self, elapsed: float) -> None:
        frame = sys._current_frames().get(self._thread_id)
        if frame is None:
            return
        stack = "".join(traceback.format_stack(frame))
        self.reports += 1
        self.log.warning(
            "the hub is blocked: a handler has run %.0f ms without yielding (threshold "
            "%.0f ms), so every other connection waits. Make the call cooperative or move it "
            "to run_in_thread(). It is here:\n%s",
            elapsed * 1000, self.threshold * 1000, stack)


def for_config(hub: Hub, setting: float | None) -> Watchdog | None:
    """The watchdog ``Config.watchdog`` asks for, started; None when off.

    ``setting``: seconds; 0 or negative: off; None: ``DEBUG_THRESHOLD`` when ``debug_enabled()``.
    Call from the hub's thread.
    """
    if setting is None:
        setting = DEBUG_THRESHOLD if debug_enabled() else 0.0
    if setting <= 0:
        return None
    return Watchdog(hub, setting).start()
