"""Channels shared through Redis: ``RedisChannel`` (the ``redis`` extra: hiredis's parser).

What it is: a ``Channel`` whose messages go through a Redis stream, so that a message
published by any worker on any machine reaches every waiter on every worker, with the same
version numbers everywhere. Waiting, long polls, event streams and WebSocket subscriptions
are the in-process Channel's: only publishing and where messages come from differ.

How it works:
- One stream per channel (key ``tpd2py:channel:NAME``), entry ids ``0-V``: ``XADD key 0-*``
  makes Redis number the messages 1, 2, 3... atomically, so V is the channel's version on every
  worker, and "what comes after V" is ``XREAD ... 0-V`` whoever asks. ``MAXLEN ~`` keeps about
  the channel's ``history``. Why streams and not pub/sub: docs/redis.md.
- Per hub and Redis address, one ``_Link`` with two connections: the reader blocks in one
  ``XREAD BLOCK`` for all of this worker's channels (one subscription per worker, fanned out
  in-process by the Channel, never one connection per waiter) and hands what it reads to
  ``Channel._receive``; the other carries commands (``XADD``), pipelined: any greenlet writes
  its command and parks, one greenlet reads the replies in order and wakes them.
- ``publish`` waits for Redis's reply (so it may switch, unlike ``Channel.publish``) and
  returns the Message with Redis's version; the publisher's own waiters get it at once when
  it is the next version here, else when the reader reads it.
- A client's version may be ahead of this worker (it came from another worker whose reader
  was quicker): it waits until the reader gets there, instead of being told it is lost.
- Outage: any I/O error closes both connections; publish then fails at once with
  ``RedisUnavailable`` (a 503 with Retry-After: no traceback), waiting goes on, and the
  reader reconnects with backoff (``MIN_BACKOFF`` doubling to ``MAX_BACKOFF``). It reads from
  each channel's own version, so waiters get what was published meanwhile, as far as the
  stream kept it (older messages trimmed away: ``complete=False``). One log line when Redis is
  lost, one when it is back. On each connect, a stream Redis lost (a restart without
  persistence) is set to go on after the version this worker has (``XSETID``), so versions
  never go back.
Rules: publish from a greenlet of the hub (a handler); the channel's other methods are
Channel's. The hub's I/O goes through ``gsocket.Socket``; no thread, no blocking call.
Switch points: ``RedisChannel.publish``; the link's greenlets.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

import hiredis
from greenlet import getcurrent

from .channel import DEFAULT_HISTORY, Channel, Message, Update, check_event_name
from .errors import ConnectionClosed, HTTPError, HubError, Overloaded, Timeout
from .hub import Hub, get_hub
from .redisconn import CONNECT_TIMEOUT, RedisError, RespConnection
from .threads import run_in_thread

log = logging.getLogger("tpd2py.redis")

# Reconnection backoff: the first retry soon (a restart takes well under a second), then
# doubling to this cap so that a long outage costs one connect every few seconds per worker.
MIN_BACKOFF = 0.05
MAX_BACKOFF = 2.0
# A command (publish) with no reply after this long breaks the connection: Redis is hung.
COMMAND_TIMEOUT = 5.0
# How long one XREAD blocks: a safety net only (a new channel unblocks it at once).
READ_BLOCK_MS = 5000
# Entries one XREAD takes per stream; more are read by the next XREAD at once.
READ_COUNT = 1000
KEY_PREFIX = "tpd2py:channel:"

# Makes sure the stream exists and goes on after version ARGV[1] (a Redis that lost its data
# would otherwise number from 1 again). Never lowers the last id.
_FLOOR = b"""
local key, floor = KEYS[1], tonumber(ARGV[1])
if redis.call('EXISTS', key) == 0 then
  redis.call('XGROUP', 'CREATE', key, 'tpd2py', '$', 'MKSTREAM')
  redis.call('XGROUP', 'DESTROY', key, 'tpd2py')
end
local info = redis.call('XINFO', 'STREAM', key)
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then
    local ms, seq = string.match(info[i + 1], '^(%d+)%-(%d+)$')
    if tonumber(ms) == 0 and tonumber(seq) < floor then
      redis.call('XSETID', key, '0-' .. floor)
      return 1
    end
  end
end
return 0
"""

_BYTES, _TEXT, _JSON = b"b", b"s", b"j"


class RedisUnavailable(HTTPError):
    """Redis cannot be reached (or did not answer): the message was not published (``sent``:
    it was sent before the connection broke, so Redis may have it). Answered ``503 Service
    Unavailable`` with Retry-After when a handler lets it propagate."""

    def __init__(self, address: str, reason: str, sent: bool = False) -> None:
        outcome = "it may not have been published" if sent else "the message was not published"
        super().__init__(503, f"503 Service Unavailable: Redis at {address} is unreachable "
                              f"({reason}); {outcome}\n", {"Retry-After": "1"})
        self.address = address
        self.reason = reason


def _encode(data: Any) -> tuple[bytes, bytes]:
    if isinstance(data, bytes):
        return _BYTES, data
    if isinstance(data, str):
        return _TEXT, data.encode()
    return _JSON, json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _decode(kind: bytes, raw: bytes) -> Any:
    if kind == _JSON:
        return json.loads(raw)
    if kind == _TEXT:
        return raw.decode()
    return raw


def _version_of(ident: bytes) -> int | None:
    """The version in an entry id ``0-V``; None for an id not made by us."""
    ms, _, seq = ident.partition(b"-")
    if ms != b"0" or not seq.isdigit():
        return None
    return int(seq)


class _Link:
    """One worker's (hub's) connections to one Redis: the reader and the command pipeline."""

    def __init__(self, hub: Hub, address: str | tuple[str, int]) -> None:
        self.hub = hub
        self.address = address
        self.label = address if isinstance(address, str) else f"{address[0]}:{address[1]}"
        self.channels: dict[bytes, list[RedisChannel]] = {}
        self.generation = 0  # bumped when the set of channels changes
        self.read_generation = -1  # the generation of the XREAD in flight
        self.reader: RespConnection | None = None
        self.commands: RespConnection | None = None
        self.reader_id = 0
        self.state = "starting"  # "up", "down"
        self.down_since = 0.0
        self.down_reason = ""
        self.back = False  # connected after an outage, not yet said (a read has not worked)
        self.delay = MIN_BACKOFF
        self.worked = False  # the connection's first read worked (retry at once if it breaks)
        self.up_at = 0.0
        self.last_command = 0.0  # when the command connection last sent (keepalive())
        self.starters: list[Any] = []  # greenlets waiting for the first connect
        hub.spawn(self._run)

    # -- channels -------------------------------------------------------------------------------

    def add(self, channel: RedisChannel) -> None:
        channels = self.channels.setdefault(channel.key, [])
        if channel in channels:
            return
        channels.append(channel)
        self.generation += 1
        if self.state == "up":
            self.hub.spawn(self._unblock)

    def _unblock(self) -> None:
        """Make the reader's XREAD return so that the next one includes the new channel."""
        while self.state == "up" and self.read_generation != self.generation:
            commands, reader_id = self.commands, self.reader_id
            if commands is None:
                return
            try:
                if self.call(b"CLIENT", b"UNBLOCK", reader_id):
                    return
            except (RedisUnavailable, RedisError):
                return
            # The XREAD was sent but not yet blocked in Redis: try again in a moment.
            self.hub.sleep(0.005)

    # -- commands (any greenlet) ------------------------------------------------------------------

    def call(self, *args: Any) -> Any:
        """One command on the pipelined connection; its reply. May switch to the hub."""
        if self.state == "starting":
            me = getcurrent()
            self.starters.append(me)
            timer = self.hub.call_later(CONNECT_TIMEOUT, self.hub.schedule, me, None)
            try:
                self.hub.park()
            finally:
                timer.cancel()
                if me in self.starters:
                    self.starters.remove(me)
        commands = self.commands
        if self.state != "up" or commands is None:
            raise RedisUnavailable(self.label, self.down_reason or "not connected yet")
        me = getcurrent()
        commands.pending.append(me)
        commands.send(*args)  # a send error breaks the link: this caller is woken with it
        self.last_command = self.hub.now
        timer = self.hub.call_later(COMMAND_TIMEOUT, self._timed_out, commands)
        try:
            result = self.hub.park()
        except BaseException:
            # Thrown in from elsewhere (a deadline, a shutdown): the reply, when it comes, goes
            # to no one; a wake-up must never reach this greenlet parked somewhere else.
            pending = commands.pending
            for i, g in enumerate(pending):
                if g is me:
                    pending[i] = None
                    break
            raise
        finally:
            timer.cancel()
        if isinstance(result, BaseException):
            raise result
        return result

    def _timed_out(self, commands: RespConnection) -> None:
        if commands is self.commands:
            self._break(Timeout(f"no reply within {COMMAND_TIMEOUT:g} s"))

    def _read_replies(self, commands: RespConnection) -> None:
        """The command connection's reply reader: wakes each caller in order."""
        try:
            while True:
                try:
                    value: Any = commands.reply()
                except RedisError as e:
                    value = e
                if not commands.pending:
                    raise ConnectionClosed("a reply nobody asked for")
                caller = commands.pending.popleft()
                if caller is not None:
                    self.hub.schedule(caller, value)
        except (OSError, ConnectionClosed, hiredis.ProtocolError) as e:
            if commands is self.commands:
                self._break(e)

    def _send_failed(self, conn: RespConnection, exc: BaseException) -> None:
        if conn is self.commands or conn is self.reader:
            self._break(exc)
        else:
            conn.close()  # not in use yet (connecting) or any more: its reader sees EOF

    def _break(self, exc: BaseException) -> None:
        """Close both connections (the reader loop reconnects) and fail every pending call."""
        if self.state == "up" and not self.down_reason:
            self.down_reason = _reason(exc)  # the first failure says why, not its echoes
        for conn in (self.commands, self.reader):
            if conn is None:
                continue
            pending = conn.pending
            while pending:
                caller = pending.popleft()
                if caller is not None:
                    self.hub.schedule(caller, RedisUnavailable(self.label, _reason(exc),
                                                               sent=True))
            conn.close()
        self.commands = None

    # -- the reader loop ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                self._connect()
            except (OSError, ConnectionClosed, Timeout, RedisError,
                    hiredis.ProtocolError) as e:
                self._down(e)
            else:
                self._up()
                try:
                    self._read()
                except (OSError, ConnectionClosed, Timeout, RedisError,
                        hiredis.ProtocolError) as e:
                    self._break(e)
                    self._down(e)
            # Backoff until a read works (``_working``), not a connect: a Redis that answers the
            # read with an error (-LOADING, WRONGTYPE) is no tight loop. A connection that
            # worked for a while is retried at once.
            if self.worked and self.hub.now - self.up_at >= MAX_BACKOFF:
                self.worked = False
                continue
            self.worked = False
            self.hub.sleep(self.delay)
            self.delay = min(self.delay * 2, MAX_BACKOFF)

    def _connect(self) -> None:
        reader = commands = None
        family, address = self._resolve()
        try:
            reader = RespConnection(self.hub, family, address, self._send_failed)
            reader.sock.timeout = COMMAND_TIMEOUT  # a Redis that accepts but hangs
            self.reader_id = reader.request(b"CLIENT", b"ID")
            commands = RespConnection(self.hub, family, address, self._send_failed)
            for key, channels in list(self.channels.items()):
                version = max(max(c.version, c._skipped) for c in channels)
                if version:
                    reader.request(b"EVAL", _FLOOR, 1, key, version)
        except BaseException:
            for conn in (reader, commands):
                if conn is not None:
                    conn.close()
            raise
        self.reader, self.commands = reader, commands
        self.hub.spawn(self._read_replies, commands)

    def _resolve(self) -> tuple[int, Any]:
        """The family and address to connect to; a host name is resolved in a thread at each
        connect (getaddrinfo blocks: a slow DNS would stop the worker). May switch to the hub."""
        address = self.address
        if isinstance(address, str):
            return socket.AF_UNIX, address
        host, port = address
        with contextlib.suppress(ValueError):  # a numeric address needs no resolver
            ip = ipaddress.ip_address(host)
            return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), (host, port)
        try:
            infos = run_in_thread(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
        except Overloaded:
            raise OSError(f"no thread free to resolve {host}") from None
        return infos[0][0], infos[0][4]

    def _up(self) -> None:
        self.back = self.state == "down"  # said by _working, once a read works
        self.up_at = self.hub.now
        self.state = "up"
        self.down_reason = ""
        for g in self.starters:
            self.hub.schedule(g, None)
        self.starters.clear()

    def _keepalive(self) -> None:
        """PING the command connection after READ_BLOCK_MS unused (its reply goes to no one):
        Redis's ``timeout`` closes idle clients, an outage to a worker that only reads."""
        commands = self.commands
        if commands is not None and self.hub.now - self.last_command >= READ_BLOCK_MS / 1000:
            self.last_command = self.hub.now
            commands.pending.append(None)
            commands.send(b"PING")

    def _working(self) -> None:
        """The connection's first read worked: the backoff starts anew; Redis is back."""
        self.delay = MIN_BACKOFF
        self.worked = True
        if self.back:
            self.back = False
            log.warning("redis at %s is reachable again after %.1f s: publishing works, "
                        "channels catch up", self.label, time.monotonic() - self.down_since)

    def _down(self, exc: BaseException) -> None:
        reason = self.down_reason or _reason(exc)
        self.down_reason = reason
        if self.state != "down" and not self.back:  # not back yet: the same outage
            self.down_since = time.monotonic()
            log.error("redis at %s is unreachable (%s): publishing fails with 503 until it is "
                      "back; reconnecting", self.label, reason)
        self.state = "down"
        self.back = False
        for g in self.starters:
            self.hub.schedule(g, None)
        self.starters.clear()

    def _read(self) -> None:
        """XREAD all of this worker's streams from each channel's version, forever."""
        reader = self.reader
        assert reader is not None
        # Every XREAD is answered within READ_BLOCK_MS: silence past that and COMMAND_TIMEOUT
        # is a hung Redis or a machine gone without a reset (an idle reader would wait forever).
        reader.sock.timeout = READ_BLOCK_MS / 1000 + COMMAND_TIMEOUT
        first = True  # the connection's first XREAD does not block: it says if reading works
        while True:
            self.read_generation = self.generation
            keys = list(self.channels)
            ids = [b"0-%d" % max(max(c.version, c._skipped) for c in self.channels[k])
                   for k in keys]
            if keys:
                block = () if first else (b"BLOCK", READ_BLOCK_MS)
                reply = reader.request(b"XREAD", b"COUNT", READ_COUNT, *block,
                                       b"STREAMS", *keys, *ids)
            else:  # nothing to read yet: wait for a channel (add() unblocks this)
                reply = reader.request(b"BLPOP", b"tpd2py:nothing", READ_BLOCK_MS / 1000)
                reply = None
            if first:
                first = False
                self._working()
            self._keepalive()
            if reply is None:
                continue
            for key, entries in reply:
                for channel in self.channels.get(key, ()):
                    channel._from_redis(entries)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"{exc.args[-1]}"  # its errno is getaddrinfo's, not one os.strerror knows
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    if isinstance(exc, ConnectionClosed):
        return str(exc) or "the connection was lost"
    return str(exc) or type(exc).__name__


_links: dict[tuple[Hub, Any], _Link] = {}


def _link(hub: Hub, address: str | tuple[str, int]) -> _Link:
    link = _links.get((hub, address))
    if link is None:
        link = _links[(hub, address)] = _Link(hub, address)
    return link


def parse_address(text: str) -> str | tuple[str, int]:
    """``/path/to/redis.sock``, ``unix:///path``, ``redis://host:port`` or ``host:port``."""
    if text.startswith("unix://"):
        return text[len("unix://"):]
    if text.startswith("/"):
        return text
    if text.startswith("redis://"):
        text = text[len("redis://"):].rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"a Redis address is a socket path or host:port, not {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class RedisChannel(Channel):
    """A Channel shared by every worker and machine that uses the same Redis and ``name``.

    ``address``: a unix socket path, or ``host:port`` / ``redis://host:port`` (or a
    ``(host, port)`` tuple). ``history``: as for Channel, and about what the stream keeps.
    """

    def __init__(self, address: str | tuple[str, int], name: str,
                 history: int = DEFAULT_HISTORY) -> None:
        super().__init__(history, name)
        if not name:
            raise ValueError("a RedisChannel needs a name (its stream's key)")
        self.address = parse_address(address) if isinstance(address, str) else address
        self.key = (KEY_PREFIX + name).encode()
        self._link: _Link | None = None
        self._undecodable = False  # an entry that did not decode was logged
        self._skipped = 0  # the last version read and skipped: the reader reads after it

    def _linked(self) -> _Link:
        hub = get_hub()
        link = self._link
        # Not to a hub that is not running (a thread's: run_in_thread, WSGI): it would never
        # read, and the channel would move there and back at every call.
        if link is None or (link.hub is not hub and hub.running):
            link = self._link = _link(hub, self.address)
            link.add(self)
        return link

    def since(self, after: int | None) -> Update:
        self._linked()
        return super().since(after)

    def _bind(self) -> Hub:
        self._linked()
        return super()._bind()

    def _since_locked(self, after: int | None) -> Update:
        if after is not None and after > self._version:
            # Ahead of this worker: the reader has not read it yet. Wait for it.
            return Update(self._version)
        return super()._since_locked(after)

    def _wake(self) -> None:
        """Channel._wake, but waiters ahead of this worker's version (from a client of another
        worker) are left out of it: they keep waiting for the version they asked after."""
        with self._lock:
            version = self._version
            ahead = [w for w in self._waiters if w.after > version]
            for waiter in ahead:
                del self._waiters[waiter]
        super()._wake()
        if ahead:
            with self._lock:
                for waiter in ahead:
                    if waiter.target is not None:  # not hung up meanwhile
                        self._waiters[waiter] = None

    def publish(self, data: Any, event: str | None = None) -> Message:
        """Publish through Redis and return the Message with its version (the same on every
        worker). Raises ``RedisUnavailable`` (a 503) when Redis cannot be reached: nothing was
        published. Call it from a greenlet of the hub (a handler). May switch to the hub."""
        link = self._linked()
        if not link.hub.running:
            raise HubError("RedisChannel.publish waits for Redis: call it from a greenlet of a "
                           "running hub (a handler), not from another thread")
        if event is not None:
            check_event_name(event)  # in Redis, a bad one would reach every worker's streams
        kind, raw = _encode(data)
        args: list[Any] = [b"XADD", self.key, b"MAXLEN", b"~", self.history, b"0-*",
                           b"t", kind, b"d", raw]
        if event is not None:
            args += [b"e", event.encode()]
        known = self._version  # an intact stream numbers this message above it
        try:
            ident = link.call(*args)
            version = _version_of(ident)
            if version is not None and version <= known:
                # The stream went while we were connected (FLUSHALL, DEL, eviction): no one
                # past this version would read it. Floor the stream, drop the stray, again.
                link.call(b"EVAL", _FLOOR, 1, self.key, self._version)
                link.call(b"XDEL", self.key, ident)
                version = _version_of(link.call(*args))
        except RedisError as e:
            raise RedisUnavailable(link.label, str(e)) from None
        if version is None:
            raise RedisUnavailable(link.label, f"stream {self.key!r} has foreign ids")
        message = Message(version, data, event)
        if version == self._version + 1:
            self._receive([message])
        return message

    def _from_redis(self, entries: Sequence[Any]) -> None:
        """The reader's delivery: the stream's entries newer than ours, in runs of
        consecutive versions (a gap starts the history anew: see ``Channel._receive``)."""
        run: list[Message] = []
        last = self._version
        for ident, fields in entries:
            version = _version_of(ident)
            if version is None or version <= last:
                continue
            if run and version != last + 1:
                self._receive(run)
                run = []
            try:
                values = dict(zip(fields[::2], fields[1::2], strict=True))
                event = values.get(b"e")
                message = Message(version, _decode(values.get(b"t", _BYTES),
                                                   values.get(b"d", b"")),
                                  None if event is None else check_event_name(event.decode()))
            except ValueError as e:  # bad JSON or UTF-8, odd fields, an event name with CR/LF:
                # not ours. Skipped (its waiters see a gap), never the reader's end; said once.
                if not self._undecodable:
                    self._undecodable = True
                    log.warning("redis stream %r: skipping entry %r that does not decode "
                                "(%s); said once per channel", self.key, ident, e)
                self._skipped = max(self._skipped, version)
                continue
            run.append(message)
            last = version
        if run:
            self._receive(run)
