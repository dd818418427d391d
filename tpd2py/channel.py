"""Channels: what a handler waits on in straight-line code (TPD2's message channel).

How it works:
- A ``Channel`` is a version number and its recent messages. Each ``publish`` makes one
  ``Message`` and bumps the version by one, so versions are consecutive and "what is newer than
  N" is a slice of the history. A waiter gives the version it has; if the channel is newer it
  returns at once, else only its greenlet parks until a publish (or its timeout, or its client
  hanging up).
- Encoding happens once per message, lazily: ``Message.json`` for long polling, ``Message.sse``
  for event streams. Waiters woken by the same publish with the same version share one
  ``Update``, whose encoded body (and, for the long-poll helper, whose whole Response) is built
  once. Every recipient's response reuses the same bytes objects; the connection adds only its
  own head.
- Waking is O(waiters): ``publish`` swaps the waiter table out and schedules each greenlet
  with its Update; nothing is encoded per waiter. The wake runs on the hub's next turn
  (``call_soon``), so several publishes in one turn wake each waiter once, with all of them.
- Timeouts are coarse buckets, not one heap timer per waiter: a deadline is rounded up to a
  multiple of ``TIMEOUT_GRANULARITY`` and all waiters of one bucket share one hub timer. A
  waiter is answered at most that much late, never early.
- A waiter that passes its ``request`` parks through ``Request.park`` with a hang-up hook (the
  connection sends earlier responses, lends its input buffer back and watches for a hang-up,
  which wakes the waiter with ``ClientDisconnected``). Each waiter is woken exactly once, by
  whichever comes first: a publish, its timeout, its hang-up, the connection closing.
- ``Channel.later`` parks no greenlet at all: it returns an ``app.Later``, the handler's
  greenlet goes back to the pool and the connection alone waits (its head, a waiter record: a
  few hundred bytes; a parked greenlet costs ~6 KB). A publish then hands each such connection
  its shared Response through the ``resume`` it gave ``attach``.
Rules: a channel reaches connections only through the handler contract (``Request.park``,
``Later``), never ``conn``. A channel belongs to the hub of the first thread that waits on it
(it may move to another hub only while nobody waits). ``publish`` is safe from any thread: it
takes the channel's lock, and the wake is handed to the hub with ``call_soon_threadsafe``. A
signal handler running in the hub's own thread must not take that lock: it calls
``hub.call_soon(channel.publish, data)`` instead (as the server does for SIGTERM).
Switch points: ``Channel.wait`` and ``Channel.updates``; nothing else here switches.
"""
from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from greenlet import getcurrent

from .app import JSON, Later, Response
from .errors import ClientDisconnected, HubError
from .hub import get_hub

if TYPE_CHECKING:
    from .app import Request
    from .hub import Hub

# Timeouts are answered up to this late: all waiters whose deadlines fall in one such slice share
# one hub timer (10,000 waiters arriving within a second need ~4 timers, not 10,000).
TIMEOUT_GRANULARITY = 0.25
# Messages a channel keeps for clients that come back with an older version (and for SSE's
# Last-Event-ID). Enough for a chat page's history; raise it for bursty publishers.
DEFAULT_HISTORY = 256
# A long poll is answered with 204 after this long: below the 60 s idle timeout common to load
# balancers and proxies, so they never cut a parked request first.
DEFAULT_POLL_TIMEOUT = 30.0
# An event stream sends a comment after this long without events, for the same proxies.
DEFAULT_HEARTBEAT = 15.0
# Distinct "after" versions whose Update a channel caches between two publishes.
_MAX_CACHED_UPDATES = 64

EVENT_STREAM = b"text/event-stream"
HEARTBEAT = b": keep-alive\n\n"
POLL_HEADERS = [("Cache-Control", "no-store")]


def _json_bytes(data: Any) -> bytes:
    """A message's JSON text: bytes are taken as already-encoded JSON, anything else is dumped."""
    if isinstance(data, bytes):
        return data
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _text_bytes(data: Any) -> bytes:
    """A message's text for an event stream: str and bytes as they are, the rest as JSON."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    return _json_bytes(data)


def check_event_name(event: str) -> str:
    """``event``, or ValueError when it cannot be an event stream's ``event:`` field (CR or LF
    would end the field and let the rest be read as other fields). Never switches."""
    if "\n" in event or "\r" in event:
        raise ValueError("an event name cannot contain CR or LF")
    return event


def sse_event(data: Any = None, *, event: str | None = None, id: int | str | None = None,
              retry: int | None = None) -> bytes:
    """One Server-Sent Events frame (HTML Living Standard §9.2.5), as bytes.

    ``data`` may be str or bytes (sent as text, one ``data:`` line per line) or anything JSON
    can encode. ``event``, ``id`` and ``retry`` (milliseconds) are optional fields. Never switches.
    """
    parts = []
    if id is not None:
        ident = str(id).encode()
        if b"\n" in ident or b"\r" in ident or b"\0" in ident:
            raise ValueError("an event id cannot contain CR, LF or NUL")
        parts.append(b"id: %s\n" % ident)
    if event is not None:
        parts.append(b"event: %s\n" % check_event_name(event).encode())
    if retry is not None:
        parts.append(b"retry: %d\n" % retry)
    if data is not None:
        text = _text_bytes(data)
        lines = text.splitlines() or [b""]
        if text.endswith((b"\n", b"\r")):
            lines.append(b"")
        parts.extend(b"data: %s\n" % line for line in lines)
    parts.append(b"\n")
    return b"".join(parts)


class _EncodedOnce:
    """``encoded(key, encode)`` for Message and Update: ``encode(self)``, made once per
    ``key`` and kept with the object, so another transport's framing (a WebSocket frame) is
    made once however many clients get it. Never switches."""

    __slots__ = ("_encoded",)
    _encoded: dict[Any, Any] | None

    def encoded(self, key: Any, encode: Callable[[Any], Any]) -> Any:
        cache = self._encoded
        if cache is None:
            cache = self._encoded = {}
        value = cache.get(key)
        if value is None:
            value = cache[key] = encode(self)
        return value


class Message(_EncodedOnce):
    """One published message: its version, its data and its encodings (each made once)."""

    __slots__ = ("version", "data", "event", "_json", "_sse")

    def __init__(self, version: int, data: Any, event: str | None = None) -> None:
        self.version = version
        self.data = data
        self.event = event
        self._json: bytes | None = None
        self._sse: bytes | None = None
        self._encoded: dict[Any, Any] | None = None

    @property
    def json(self) -> bytes:
        """``{"id": version, "event": ..., "data": ...}`` as JSON bytes, encoded on first use."""
        if self._json is None:
            event = b"" if self.event is None else b',"event":' + _json_bytes(self.event)
            self._json = b'{"id":%d%s,"data":%s}' % (self.version, event, _json_bytes(self.data))
        return self._json

    @property
    def sse(self) -> bytes:
        """The event-stream frame (``id:`` is the version), encoded on first use."""
        if self._sse is None:
            self._sse = sse_event(self.data, event=self.event, id=self.version)
        return self._sse

    def __repr__(self) -> str:
        return f"Message({self.version}, {self.data!r})"


class Update(_EncodedOnce):
    """What a waiter gets: the messages after its version, and the version to ask from next.

    Falsy when empty (a timeout or heartbeat). ``complete`` is False when the channel no longer
    had every message asked for (the client fell further behind than the history, or came
    with a version this channel never had, e.g. from before a restart). Shared by every waiter
    woken with the same version: treat it as read-only.
    """

    __slots__ = ("version", "messages", "complete", "_json", "_sse", "_response")

    def __init__(self, version: int, messages: tuple[Message, ...] = (),
                 complete: bool = True) -> None:
        self.version = version
        self.messages = messages
        self.complete = complete
        self._json: bytes | None = None
        self._sse: bytes | None = None
        self._response: Response | None = None
        self._encoded: dict[Any, Any] | None = None

    def __len__(self) -> int:
        return len(self.messages)

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    def __bool__(self) -> bool:
        return bool(self.messages)

    def __getitem__(self, index: int) -> Message:
        return self.messages[index]

    def json_body(self) -> bytes:
        """``{"version": N, "complete": bool, "messages": [...]}``, joined once per Update."""
        if self._json is None:
            self._json = b'{"version":%d,"complete":%s,"messages":[%s]}' % (
                self.version, b"true" if self.complete else b"false",
                b",".join(m.json for m in self.messages))
        return self._json

    def sse_body(self) -> bytes:
        """The messages' event-stream frames, joined once; a heartbeat comment when empty."""
        if self._sse is None:
            self._sse = b"".join(m.sse for m in self.messages) if self.messages else HEARTBEAT
        return self._sse

    def response(self) -> Response:
        """A 200 JSON Response with ``json_body()``, built once and shared: do not modify it."""
        if self._response is None:
            self._response = Response(self.json_body(), content_type=JSON,
                                      headers=POLL_HEADERS)
        return self._response

    def __repr__(self) -> str:
        return f"Update(version={self.version}, messages={len(self.messages)})"


class _Waiter:
    """One waiter: a parked greenlet, or (``detached``) a connection parked without one.

    ``target`` is the greenlet, or the detached connection's ``resume`` (or, with ``raw``, a
    ``watch`` callback, given the Update itself), and becomes None once the waiter has been
    woken: whoever clears it (publish, timeout, hang-up) is the only one to wake it.
    """

    __slots__ = ("channel", "target", "after", "bucket", "detached", "raw", "every")

    def __init__(self, channel: Channel, target: Any, after: int,
                 detached: bool = False, raw: bool = False) -> None:
        self.channel = channel
        self.target: Any = target
        self.after = after
        self.bucket: set[_Waiter] | None = None
        self.detached = detached
        self.raw = raw
        self.every = False  # a watch(every=True): stays registered, its version moves on

    def hang_up(self) -> None:
        """The connection's hang-up hook (runs in the hub): a greenlet gets
        ClientDisconnected; a detached connection closes itself, so it is only forgotten."""
        target = self.target
        if target is None:
            return
        self.target = None
        channel = self.channel
        channel._forget(self)
        if self.detached:
            return
        hub = channel._hub
        assert hub is not None
        hub.throw(target, ClientDisconnected())

    __call__ = hang_up  # what watch() returns: the waiter itself, no bound method kept


class Channel:
    """A version number and the recent messages; handlers wait for news, anyone publishes.

    ``history`` is how many recent messages are kept (at least; up to twice that between trims).
    """

    def __init__(self, history: int = DEFAULT_HISTORY, name: str = "") -> None:
        if history < 1:
            raise ValueError("a channel keeps at least one message")
        self.name = name
        self.history = history
        self._version = 0
        self._messages: list[Message] = []
        self._lock = threading.Lock()
        self._waiters: dict[_Waiter, None] = {}
        self._buckets: dict[int, set[_Waiter]] = {}
        self._updates: dict[int | None, Update] = {}
        self._hub: Hub | None = None
        self._thread: int | None = None
        self._wake_scheduled = False

    def __repr__(self) -> str:
        return f"<Channel {self.name!r} version={self._version} waiting={len(self._waiters)}>"

    @property
    def version(self) -> int:
        """The version of the newest message (0 before the first publish)."""
        return self._version

    @property
    def waiting(self) -> int:
        """How many waiters (parked greenlets and waiting long polls) the channel has now."""
        return len(self._waiters)

    # -- publishing (any thread; never switches) ------------------------------------------------

    def publish(self, data: Any, event: str | None = None) -> Message:
        """Append a message and wake every waiter (on the hub's next turn). Never switches.

        ``data`` is str, bytes (taken as already-encoded JSON for long polls, as text for event
        streams) or anything ``json.dumps`` takes; it is encoded once, when first needed.
        Safe from any thread; see the module header for signal handlers.
        """
        if event is not None:
            check_event_name(event)  # refused now, not when a stream frames it for a client
        with self._lock:
            version = self._version + 1
            message = Message(version, data, event)
            messages = self._messages
            messages.append(message)
            if len(messages) >= 2 * self.history:
                del messages[: len(messages) - self.history]
            self._version = version
            self._updates = {}
            schedule = self._claim_wake()
        if schedule is not None:
            schedule(self._wake)
        return message

    def _claim_wake(self) -> Callable[[Callable[[], None]], Any] | None:
        """Under the lock, after new messages: how to have the hub wake the waiters (its
        ``call_soon``, or ``call_soon_threadsafe`` from another thread), or None when no one
        waits or a wake is scheduled already. Never switches."""
        hub = self._hub
        if hub is None or not self._waiters or self._wake_scheduled:
            return None
        self._wake_scheduled = True
        return hub.call_soon if threading.get_ident() == self._thread \
            else hub.call_soon_threadsafe

    def _receive(self, messages: list[Message]) -> None:
        """The backend seam: add ``messages`` whose versions a backend gave (a Redis stream's
        ids), consecutive and newer than ours, and wake waiters as ``publish`` does. A first
        version past ``version + 1`` (the backend trimmed what this process never saw) starts
        the history anew, so a client behind it gets ``complete=False``. Never switches."""
        with self._lock:
            kept = self._messages
            if messages[0].version != self._version + 1:
                kept = self._messages = []
            kept.extend(messages)
            if len(kept) >= 2 * self.history:
                del kept[: len(kept) - self.history]
            self._version = messages[-1].version
            self._updates = {}
            schedule = self._claim_wake()
        if schedule is not None:
            schedule(self._wake)

    # -- reading (never switches) ---------------------------------------------------------------

    def since(self, after: int | None) -> Update:
        """The messages newer than version ``after``, at once. Never switches.

        ``after=None`` means "I have nothing": the recent history. A version this channel never
        reached (from before a restart) also gets the recent history, with ``complete=False``.
        """
        with self._lock:
            return self._since_locked(after)

    def _since_locked(self, after: int | None) -> Update:
        cached = self._updates.get(after)
        if cached is not None:
            return cached
        version = self._version
        messages = self._messages
        complete = True
        if after is None or after > version or after < 0:
            picked = tuple(messages)
            complete = after is None
        elif after == version:
            picked = ()
        else:
            start = after - messages[0].version + 1 if messages else 0
            if start < 0:
                start = 0
                complete = False
            picked = tuple(messages[start:])
        update = Update(version, picked, complete)
        if len(self._updates) < _MAX_CACHED_UPDATES:
            self._updates[after] = update
        return update

    # -- waiting (may switch) -------------------------------------------------------------------

    def wait(self, after: int | None, timeout: float | None = DEFAULT_POLL_TIMEOUT,
             request: Request | None = None) -> Update:
        """Return the messages newer than ``after``; if there are none yet, park until there are.

        Returns an empty (falsy) Update when ``timeout`` seconds pass first (``None``: no
        timeout; answered up to ``TIMEOUT_GRANULARITY`` late). ``after=None`` never waits: it
        returns the recent history (possibly empty) and the version to wait after next.
        Pass the handler's ``request`` so that a client hanging up wakes this greenlet at once
        with ``ClientDisconnected`` (a BaseException: let it propagate, or catch it to clean
        up) and so that the connection lends its input buffer back while parked. Only this
        greenlet waits.
        May switch to the hub.
        """
        hub = self._bind()
        update = self.since(after)
        if update or after is None or (timeout is not None and timeout <= 0):
            return update
        waiter = _Waiter(self, getcurrent(), after)
        try:
            if request is None:
                return self._park(hub, waiter, after, timeout)
            # Sends earlier pipelined responses (may switch), lends the input buffer back and
            # watches for a hang-up, which calls waiter.hang_up from the hub.
            with request.park(waiter.hang_up):
                if waiter.target is None:
                    hub.park()  # the hang-up was already seen: take its ClientDisconnected
                return self._park(hub, waiter, after, timeout)
        finally:
            if waiter.target is not None:
                # Left by an exception thrown in by someone else (Cancelled, Timeout).
                waiter.target = None
                self._forget(waiter)

    def _park(self, hub: Hub, waiter: _Waiter, after: int, timeout: float | None) -> Update:
        with self._lock:
            update = self._since_locked(after)
            if update:
                waiter.target = None
                return update
            self._waiters[waiter] = None
        if timeout is not None:
            self._add_to_bucket(hub, waiter, timeout)
        result: Update = hub.park()
        return result

    def later(self, after: int, timeout: float | None = DEFAULT_POLL_TIMEOUT) -> Later:
        """What ``long_poll`` returns when it must wait: the connection then waits for news
        with no greenlet at all (a few hundred bytes instead of a parked greenlet's ~6 KB).
        When news comes it is answered with ``Update.response()``, on timeout with ``204``;
        a client hang-up closes it. Never switches."""

        waiter = _Waiter(self, None, after, detached=True)

        def attach(resume: Callable[[Response], None]) -> Response | None:
            hub = self._bind()
            with self._lock:
                update = self._since_locked(after)
                if update:
                    return update.response()
                waiter.target = resume
                self._waiters[waiter] = None
            if timeout is not None:
                self._add_to_bucket(hub, waiter, timeout)
            return None

        return Later(attach, waiter.hang_up)

    def watch(self, after: int, callback: Callable[[Update], None],
              every: bool = False) -> Callable[[], None]:
        """Call ``callback(update)`` once, from the hub, with the messages newer than ``after``
        as soon as there are any (on the hub's next turn if there are already): a waiter with
        no greenlet and no connection. With ``every``, with each Update after that too, until
        cancelled: the waiter stays registered and only its version moves on (a WebSocket
        subscription; nothing is made per delivery). Returns the function that cancels the
        watch. Never switches."""
        hub = self._bind()
        waiter = _Waiter(self, callback, after, detached=True, raw=True)
        waiter.every = every
        with self._lock:
            update = self._since_locked(after)
            if update and every:
                waiter.after = update.version
            if not update or every:
                self._waiters[waiter] = None
        if update:
            if not every:
                waiter.target = None
            hub.call_soon(callback, update)
        return waiter

    def updates(self, after: int | None, heartbeat: float | None = None,
                request: Request | None = None) -> Iterator[Update]:
        """Yield every Update after ``after``, forever; with ``heartbeat``, also an empty Update
        whenever that many seconds pass without news. ``after=None`` starts with the recent
        history (when there is any). May switch to the hub."""
        if after is None:
            first = self.since(None)
            after = first.version
            if first:
                yield first
        while True:
            update = self.wait(after, heartbeat, request)
            if update:
                after = update.version
                yield update
            elif heartbeat is not None:
                yield update

    # -- internals (run in the hub thread) ------------------------------------------------------

    def _bind(self) -> Hub:
        hub = get_hub()
        if self._hub is not hub:
            with self._lock:
                if self._hub is not None and self._waiters:
                    raise HubError(f"{self!r} has waiters on another hub")
                self._hub = hub
                self._thread = threading.get_ident()
                self._buckets = {}
                self._wake_scheduled = False
        return hub

    def _forget(self, waiter: _Waiter) -> None:
        with self._lock:
            self._waiters.pop(waiter, None)
        bucket = waiter.bucket
        if bucket is not None:
            bucket.discard(waiter)
            waiter.bucket = None

    def _add_to_bucket(self, hub: Hub, waiter: _Waiter, timeout: float) -> None:
        tick = math.ceil((time.monotonic() + timeout) / TIMEOUT_GRANULARITY)
        bucket = self._buckets.get(tick)
        if bucket is None:
            bucket = self._buckets[tick] = set()
            hub.call_later(tick * TIMEOUT_GRANULARITY - time.monotonic(), self._expire,
                           tick, bucket)
        bucket.add(waiter)
        waiter.bucket = bucket

    def _expire(self, tick: int, bucket: set[_Waiter]) -> None:
        """Hub timer: answer every waiter still in ``bucket`` with an empty Update."""
        if self._buckets.get(tick) is bucket:
            del self._buckets[tick]
        hub = self._hub
        if hub is None or not bucket:
            return
        schedule = hub.schedule
        resume: list[tuple[Callable[[Any], None], Any]] = []
        with self._lock:
            waiters = self._waiters
            for waiter in bucket:
                target = waiter.target
                if target is None:
                    continue
                waiter.target = None
                waiter.bucket = None
                waiters.pop(waiter, None)
                update = self._since_locked(waiter.after)
                if waiter.raw:
                    resume.append((target, update))
                elif waiter.detached:
                    resume.append((target, update.response() if update else NO_NEWS))
                else:
                    schedule(target, update)
        bucket.clear()
        for resume_one, response in resume:
            resume_one(response)

    def _wake(self) -> None:
        """Hub callback after a publish: give every waiter its Update. O(waiters), no encoding."""
        hub = self._hub
        assert hub is not None
        schedule = hub.schedule
        resume: list[tuple[Callable[[Any], None], Any]] = []
        with self._lock:
            self._wake_scheduled = False
            waiters = self._waiters
            self._waiters = {}
            version = self._version
            since = self._since_locked
            for waiter in waiters:
                target = waiter.target
                if target is None:
                    continue
                if waiter.after == version:
                    # Registered after the publish with the newest version: keeps waiting.
                    self._waiters[waiter] = None
                    continue
                if waiter.every:
                    resume.append((target, since(waiter.after)))
                    waiter.after = version
                    self._waiters[waiter] = None
                    continue
                waiter.target = None
                bucket = waiter.bucket
                if bucket is not None:
                    bucket.discard(waiter)
                    waiter.bucket = None
                if waiter.raw:
                    resume.append((target, since(waiter.after)))
                elif waiter.detached:
                    resume.append((target, since(waiter.after).response()))
                else:
                    schedule(target, since(waiter.after))
        # Outside the lock: a resumed connection may publish on this channel.
        for resume_one, response in resume:
            resume_one(response)


# A long poll's answer when its timeout passes first: the client asks again with its version.
NO_NEWS = Response(b"", status=204, headers=POLL_HEADERS)
