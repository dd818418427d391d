"""Blocking work off the hub: ``run_in_thread`` and a bounded thread pool with admission control.

How it works:
- ``ThreadPool.run(fn, *args)`` puts a job on a queue and parks only the calling greenlet.
  A pool thread runs ``fn`` and hands the job back with ``hub.call_soon_threadsafe``; the hub
  then resumes the greenlet with the result, or raises the exception (with the thread's
  traceback) in it. The rest of the server keeps serving meanwhile.
- Threads are started on demand, up to ``max_threads``, and then live until ``shutdown``
  (blocked on the queue, they cost no CPU).
- Admission control (SEDA): at most ``max_threads`` jobs run and ``max_queue`` wait. One more
  raises ``Overloaded``, which the server answers with ``503`` and ``Retry-After``: a
  saturated pool sheds load at once instead of letting latency grow without limit.
Rules: the pool belongs to one hub (the creating thread's); ``run`` is called from greenlets of
that hub. A job cannot be interrupted: a greenlet that is thrown out of ``run`` (Cancelled)
leaves its job to finish, and the result is dropped. Outside a running hub (a script, a test)
``run`` calls ``fn`` inline, since nothing else would be kept waiting.
Switch points: ``run`` and ``run_in_thread`` (they park the caller until the job is done).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from greenlet import getcurrent

from .errors import HubError, Overloaded
from .hub import Hub, get_hub

T = TypeVar("T")

# Blocking work is mostly I/O (files, database drivers) that releases the GIL, so more threads
# than cores pay off; the same default as concurrent.futures.ThreadPoolExecutor.
DEFAULT_THREADS = min(32, (os.cpu_count() or 1) + 4)
# Jobs allowed to wait for a thread: a queued job waits about QUEUE_FACTOR job durations at
# most. Beyond that a client is better served by a 503 it can retry elsewhere or later.
QUEUE_FACTOR = 4


class _Job:
    __slots__ = ("fn", "args", "kwargs", "greenlet", "ok", "value")

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict, greenlet: Any) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.greenlet = greenlet
        self.ok = False
        self.value: Any = None


class ThreadPool:
    """A bounded pool of threads for blocking calls, bound to one hub."""

    def __init__(self, max_threads: int = DEFAULT_THREADS, max_queue: int | None = None,
                 hub: Hub | None = None, name: str = "tpd2py-thread",
                 retry_after: int = 1) -> None:
        if max_threads < 1:
            raise ValueError("a pool needs at least one thread")
        self.max_threads = max_threads
        self.max_queue = QUEUE_FACTOR * max_threads if max_queue is None else max_queue
        if self.max_queue < 0:
            raise ValueError("max_queue must not be negative")
        self.hub = hub or get_hub()
        self.name = name
        self.retry_after = retry_after
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._closed = False
        # Counted in the hub thread only: submitted and not yet delivered back.
        self.in_flight = 0
        self.completed = 0
        self.rejected = 0

    def statistics(self) -> dict[str, int]:
        running = min(self.in_flight, len(self._threads))
        return {"threads": len(self._threads), "running": running,
                "queued": self.in_flight - running, "completed": self.completed,
                "rejected": self.rejected}

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in a pool thread; only the calling greenlet waits.

        Returns its result or raises its exception. Raises ``Overloaded`` (a 503 for the
        client) when ``max_threads`` jobs run and ``max_queue`` wait already.
        May switch to the hub.
        """
        hub = self.hub
        if not hub.running:
            return fn(*args, **kwargs)
        job = self.start(fn, *args, **kwargs)
        try:
            done = hub.park()
        finally:
            if job.greenlet is not None:
                job.greenlet = None  # thrown out of the wait: the result will be dropped
        if done is not job:
            raise HubError(f"run_in_thread resumed with {done!r} instead of its result")
        return self.result(job)

    def start(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> _Job:
        """Queue ``fn(*args, **kwargs)`` for a pool thread and return its job at once, with
        ``run``'s admission control (``Overloaded``). When it is done, the hub resumes the
        calling greenlet with the job (what its ``hub.park()`` returns; ``result(job)`` then
        gives the value or raises); setting ``job.greenlet = None`` first drops it instead.
        For a greenlet that serves the job while it runs (wsgi.py's thread mode). Never
        switches; the hub must be running."""
        if self._closed:
            raise RuntimeError(f"{self.name} pool is shut down")
        if self.in_flight >= self.max_threads + self.max_queue:
            self.rejected += 1
            raise Overloaded(retry_after=self.retry_after)
        job = _Job(fn, args, kwargs, getcurrent())
        self.in_flight += 1
        if self.in_flight > len(self._threads) and len(self._threads) < self.max_threads:
            self._start_thread()
        self._queue.put(job)
        return job

    @staticmethod
    def result(job: _Job) -> Any:
        """A finished job's value, or its exception raised (once: the job forgets both)."""
        value = job.value
        job.value = None
        if job.ok:
            return value
        try:
            raise value
        finally:
            value = None

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._thread_main,
                                  name=f"{self.name}-{len(self._threads)}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _thread_main(self) -> None:
        get = self._queue.get
        deliver = self._deliver
        call_soon_threadsafe = self.hub.call_soon_threadsafe
        while True:
            job = get()
            if job is None:
                return
            try:
                job.value = job.fn(*job.args, **job.kwargs)
                job.ok = True
            except BaseException as e:  # noqa: BLE001 - handed to the waiting greenlet
                job.value = e
            job.fn = job.args = job.kwargs = None  # type: ignore[assignment]
            call_soon_threadsafe(deliver, job)
            job = None

    def _deliver(self, job: _Job) -> None:
        """Hub callback: resume the job's greenlet with it (unless it left the wait)."""
        self.in_flight -= 1
        self.completed += 1
        g = job.greenlet
        if g is None:
            job.value = None
            return
        job.greenlet = None
        self.hub.schedule(g, job)

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop the threads once the jobs already queued are done. Never switches; with
        ``wait``, blocks this thread until they exit (call it after the hub stopped)."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join(timeout)


_local = threading.local()


def get_pool() -> ThreadPool:
    """The thread pool of this thread's hub, made on first use with the default bounds."""
    pool = getattr(_local, "pool", None)
    if pool is None or pool.hub is not get_hub():
        pool = _local.pool = ThreadPool()
    return pool


def configure_pool(max_threads: int = DEFAULT_THREADS, max_queue: int | None = None,
                   retry_after: int = 1) -> ThreadPool:
    """Replace this hub's default pool (the old one finishes its jobs, then its threads exit)."""
    old = getattr(_local, "pool", None)
    _local.pool = ThreadPool(max_threads, max_queue, retry_after=retry_after)
    if old is not None:
        old.shutdown(wait=False)
    return _local.pool


def run_in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking ``fn(*args, **kwargs)`` (file I/O, a database driver, CPU work) in this
    hub's bounded thread pool; only the calling greenlet waits for its result or exception.

    Raises ``Overloaded`` (answered 503 + Retry-After) when the pool and its queue are full.
    May switch to the hub.
    """
    return get_pool().run(fn, *args, **kwargs)
