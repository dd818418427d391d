"""The blocked-hub watchdog: names the handler that runs too long without switching.

One thread serves everyone, so a handler that calls something blocking (``time.sleep``, a
database driver, ``requests.get``, a long computation) stalls every other connection. The
watchdog finds it:
- In the hub's thread, ``greenlet.settrace`` records every switch: one attribute store per
  switch (the ``(origin, target)`` tuple greenlet passes, which is new each time).
- A monitor thread wakes every ``threshold / 4``. If no switch happened since its last look,
  the running greenlet is not the hub's own and it has run for ``threshold`` or more, it logs
  a warning with that greenlet's stack (``sys._current_frames``): the blocking call is at the
  bottom. One report per blocking episode.
Rules: off by default; ``Config.watchdog`` turns it on (``None`` = on at 100 ms in debug, i.e.
``python -X dev`` or the ``tpd2py`` logger at DEBUG). The hub itself (callbacks, timers, the
epoll wait) is never reported: only greenlets. Costs about one Python call per switch while on.
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
        seen: Any = None
        since = time.monotonic()
        reported = False
        while not self._stop.wait(interval):
            last = self._last
            now = time.monotonic()
            if last is not seen:
                seen, since, reported = last, now, False
                continue
            if reported or now - since < self.threshold:
                continue
            target = last[1] if type(last) is tuple and len(last) == 2 else None
            if target is None or target is self.hub.loop or target.parent is None:
                continue  # the hub (idle in epoll_wait, or its own callbacks) or the main one
            reported = True
            self._report(target, now - since)

    def _report(self, running: Any, elapsed: float) -> None:
        frame = sys._current_frames().get(self._thread_id)
        if frame is None:
            return
        stack = "".join(traceback.format_stack(frame))
        self.reports += 1
        self.log.warning(
            "the hub is blocked: a greenlet has run %.0f ms without switching (threshold "
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
