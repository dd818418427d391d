"""WebSocket (RFC 6455, RFC 7692) at the edge: ``@app.websocket(path)`` handlers that read top
to bottom, and Channel subscriptions that hold no greenlet (docs/websocket.md).

How it works:
- The route checks the handshake (wshandshake.py: a clear 400/403/426) and returns
  ``request.upgrade(head, ws)``: once the exchange is done the connection sends the 101 head
  and enters its UPGRADED state, in which this ``WebSocket`` (an ``app.Upgraded``) gets every
  input edge, the sweep's deadline, the shutdown and the close. HTTP is over for it.
- Input is read in the hub, never in a greenlet of its own: ``_pump`` reads what the socket
  has (a kernel socket into a new bytes object; TLS into a pooled buffer, lent for the read
  only, and a copy), feeds the sans-I/O ``FrameParser``, answers pings, runs the closing
  handshake and queues data messages for the handler, parked in ``receive`` and woken on the
  loop's next turn. At ``max_queue`` unread messages reading stops: TCP pushes back.
- Output goes through the connection's SendBuf and ``gsocket.send_queued`` (wsout.py, a base
  of ``WebSocket``), never waiting in the hub; the upgrade sets TCP_NODELAY, and a handler's
  answers to messages that came together are gathered into one write (``GATHER_MAX``). When
  the socket is full a flusher greenlet waits for room (at most the server's
  ``write_timeout``) and ``send`` waits for it: a handler goes at its client's pace. A
  subscription's frame cannot wait: past ``max_pending`` queued bytes the slow-reader policy
  applies (``"close"`` the socket, the default, or ``"drop"`` the frame).
- Subscriptions are ``Channel.watch(every=True)`` callbacks; an Update's frames are made once
  (``Message.encoded``/``Update.encoded``) and the same bytes go to every subscriber.
- Deadlines ride on the server's once-a-second sweep (``Connection.deadline``): pings, dead
  peers, ``read_timeout``, ``close_timeout``. No timer per socket.
Rules: reaches the connection only through the ``Upgraded`` contract, the hub and gsocket
(no ``conn`` import); never switches in the hub's callbacks. Closing: Close, half-close, drop
input until the client's FIN (or ``close_timeout``), close: no reset destroys the Close frame.
Switch points: ``receive``, ``receive_or``, iteration and ``send`` (only while the socket is
full); everything else never switches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial
from types import MappingProxyType
from typing import Any

from greenlet import getcurrent

from .gsocket import DONTWAIT, recv_bytes_nowait
from .wsframe import (
    ABNORMAL,
    BINARY,
    CLOSE,
    GOING_AWAY,
    INTERNAL_ERROR,
    NORMAL,
    PING,
    POLICY,
    PONG,
    SHORT_HEADS,
    TEXT,
    FrameParser,
    Inflater,
    WebSocketError,
    close_payload,
    data_frame,
    encode_frame,
    message_frame,
)
from .wshandshake import Deflate, Options, WebSocketClosed, handshake
from .wsout import CLOSED, CLOSING, CONNECTING, LINGER, OPEN, Output

log = logging.getLogger("tpd2py.conn")  # handler errors are logged as for HTTP handlers

__all__ = ["Options", "WebSocket", "WebSocketClosed", "route"]

INF = float("inf")
# Answers gathered for a burst before they are written: a burst as large as the kernel's
# receive buffer (MBs) would otherwise be answered whole into the server's memory first.
GATHER_MAX = 1 << 16
_TIMED_OUT = object()


def route(app: Any, pattern: str, **options: Any) -> Callable[[Callable[..., Any]],
                                                               Callable[..., Any]]:
    """``@app.websocket(pattern, **options)``: register ``handler(ws, **params)``."""
    opts = Options(**options)
    if opts.slow_reader not in ("close", "drop"):
        raise ValueError("slow_reader is 'close' or 'drop'")

    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        def upgrade(request: Any, **params: Any) -> Any:
            head, subprotocol, deflate = handshake(
                request.method, request.version, request.headers.get_all, opts.subprotocols,
                opts.origins, opts.compression)
            ws = WebSocket(request, handler, params, opts, subprotocol, deflate)
            return request.upgrade(head, ws)

        app.add_route(pattern, upgrade, ("GET",))
        return handler

    return register


_NO_PARAMS: Mapping[str, Any] = MappingProxyType({})


class _Subscription:
    """One channel forwarded to one WebSocket: the ``Channel.watch(every=True)`` callback
    itself (no bound method). An Update's frames are made once for every subscriber with
    the same ``key`` (encode, window bits). A socket's subscriptions chain through ``next``."""

    __slots__ = ("ws", "key", "cancel", "next")

    def __init__(self, ws: WebSocket, encode: Any, next: _Subscription | None) -> None:
        self.ws, self.next = ws, next
        self.cancel: Callable[[], None]  # set by subscribe() once the watch is made
        deflate = ws._deflate
        key = ("websocket", encode, None if deflate is None else deflate.server_window_bits)
        # One tuple for all with this key; bounded (an ``encode`` made per call would grow it).
        if len(_KEYS) >= 64:
            _KEYS.clear()
        self.key = _KEYS.setdefault(key, key)

    def __call__(self, update: Any) -> None:
        ws = self.ws
        if ws._state == OPEN and update:
            ws._post(update.encoded(self.key, self.frames))

    def frames(self, update: Any) -> bytes:
        _, encode, bits = key = self.key
        return b"".join(m.encoded(key, lambda m: message_frame(m, encode, bits)) for m in update)


_KEYS: dict[tuple[str, Any, int | None], tuple[str, Any, int | None]] = {}


class WebSocket(Output):
    """One WebSocket connection: what a handler gets, and the connection's protocol."""

    __slots__ = ("request", "params", "subprotocol", "close_code", "close_reason", "_handler",
                 "_options", "_deflate", "_conn", "_hub", "_state", "_parser",
                 "_inbox", "_waiter", "_blocked", "_watches", "_on_message",
                 "_last_input", "_ping_due", "_partial_since", "_runner", "_error")

    def __init__(self, request: Any, handler: Callable[..., Any] | None, params: dict[str, Any],
                 options: Options, subprotocol: str | None = None,
                 deflate: Deflate | None = None) -> None:
        self.request = request
        self.params = params or _NO_PARAMS
        self.subprotocol = subprotocol
        self.close_code = ABNORMAL
        self.close_reason = ""
        self._handler = handler
        self._options = options
        self._deflate = deflate
        self._conn: Any = None
        self._hub: Any = None
        self._state = CONNECTING
        # Made on first use (most idle subscribers never send: a few hundred bytes less each).
        self._parser: FrameParser | None = None
        self._inbox: list[str | bytes] | None = None
        self._waiter: Any = None
        # While a flusher waits for room: the greenlets blocked in send (else None).
        self._blocked: list[Any] | None = None
        self._watches: _Subscription | None = None  # the last subscribed; see its next
        self._on_message: Callable[[str | bytes], None] | None = None
        self._last_input = 0.0
        self._ping_due = 0.0
        self._partial_since = 0.0
        self._runner: Any = None
        # A violation that came behind messages the handler has not read yet: the Close goes
        # out once it has read them (what came whole before the bad frame is not lost).
        self._error: tuple[int, str] | None = None

    # -- the handler's API ------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        return self._state == OPEN

    def __iter__(self) -> WebSocket:
        """Every message until the client closes (then the loop ends). The WebSocket is its
        own iterator: a waiting handler keeps no generator object. May switch."""
        return self

    def __next__(self) -> str | bytes:
        while True:  # receive(), its common case inline: once per message
            inbox = self._inbox
            if inbox:
                message = inbox.pop(0)
                if len(inbox) == self._options.max_queue - 1:
                    self._pump()  # reading had stopped at max_queue
                return message
            if self._state != OPEN or self._error is not None:
                try:
                    return self.receive()
                except WebSocketClosed:
                    raise StopIteration from None
            self._park(None)

    def receive(self, timeout: float | None = None) -> Any:
        """The next message: str (text) or bytes (binary). None when ``timeout`` seconds pass
        first; WebSocketClosed once the WebSocket is closed. May switch to the hub."""
        while True:
            inbox = self._inbox
            if inbox:
                message = inbox.pop(0)
                if len(inbox) == self._options.max_queue - 1:
                    self._pump()  # reading had stopped at max_queue
                return message
            if self._error is not None:
                self._fail(*self._error)
            if self._state != OPEN:
                raise WebSocketClosed(self.close_code, self.close_reason)
            if self._park(timeout) is _TIMED_OUT:
                return None

    def receive_or(self, channel: Any, after: int, timeout: float | None = None) -> Any:
        """The next message from the client, or the channel's ``Update`` of the messages
        newer than ``after``, whichever comes first (a message first when both are there);
        None when ``timeout`` passes first. May switch to the hub."""
        while True:
            if self._inbox or self._state != OPEN or self._error is not None:
                return self.receive()
            update = channel.since(after)
            if update:
                return update
            cancel = channel.watch(after, partial(self._hub.schedule, getcurrent()))
            try:
                value = self._park(timeout)
            finally:
                cancel()
            if value is _TIMED_OUT:
                return None
            if value is not None:
                return value

    def send(self, data: str | bytes | bytearray | memoryview) -> None:
        """Send one message: text for str, binary for bytes. Waits while the socket is full (a
        handler goes at its client's pace). WebSocketClosed once closed. May switch."""
        if self._state != OPEN:
            raise WebSocketClosed(self.close_code, self.close_reason)
        frame: Any = self._frame(data)
        conn = self._conn
        if self._inbox and self._blocked is None and not conn.closed \
                and conn.out.size < GATHER_MAX:
            # More messages wait for the handler, which sends its answers to them before it
            # waits: gather the frames into one write (TCP_NODELAY sends each write at once)
            # with the send that finds the inbox empty, or a callback on the loop's next turn
            # should the handler wait on something else first. At GATHER_MAX they go out (or
            # the handler waits for room), as without more messages waiting.
            if not conn.out.size:
                self._hub.call_soon(self._send_queued)
            conn.out.add(frame)
            return
        if not conn.out.size and self._blocked is None and not conn.closed:
            # An echo's common case: one send, no SendBuf (_send_now, inline).
            try:
                sent = conn.sock.send(frame, DONTWAIT)
            except BlockingIOError:
                sent = 0
            except OSError:
                conn.close()
                return
            conn.ctx.sendmsg_calls += 1
            if sent == len(frame):
                return
            frame = memoryview(frame)[sent:]
        self._queue(frame)
        blocked = self._blocked
        if blocked is not None:
            blocked.append(getcurrent())
            self._hub.park()
            self._check_open()

    def send_nowait(self, data: str | bytes | bytearray | memoryview) -> bool:
        """Queue one message without ever waiting (for hub callbacks such as ``on_message``);
        the slow-reader policy applies. False if it was dropped. Never switches."""
        self._check_open()
        return self._post(self._frame(data))

    def send_frame(self, frame: bytes) -> bool:
        """Queue a frame made by ``wsframe.encode_frame`` once for many sockets (the
        slow-reader policy applies). False if it was dropped. Never switches."""
        self._check_open()
        return self._post(frame)

    def ping(self, data: bytes = b"") -> None:
        """Send a ping (the client answers with a pong). Never switches."""
        self._check_open()
        self._queue(encode_frame(PING, bytes(data[:125])))

    def close(self, code: int = NORMAL, reason: str = "") -> None:
        """Start the closing handshake: send Close and stop accepting messages; the
        connection closes when the client answers (or after ``close_timeout``). Never
        switches; closing twice does nothing."""
        if self._state not in (OPEN, CONNECTING):
            return
        payload = close_payload(code, reason)  # ValueError for a code we may not send
        self.close_code, self.close_reason = code, reason
        self._queue(encode_frame(CLOSE, payload))
        self._state = CLOSING
        self._conn.deadline = self._hub.now + self._options.close_timeout
        self._cancel_watches()
        self._wake()

    def subscribe(self, channel: Any, after: int | None = None,
                  encode: Callable[[Any], str | bytes] | None = None,
                  on_message: Callable[[str | bytes], None] | None = None) -> None:
        """Forward ``channel``'s messages newer than ``after`` (default: from now on) to the
        client, from the hub: no greenlet is held, and the socket stays open after the handler
        returns. Each message is sent as ``encode(message)`` (str: a text frame, bytes:
        binary), by default its JSON ``{"id", "data"}`` as text, framed once for every
        subscriber. ``on_message`` is called from the hub with each message the client sends
        once no handler reads them (it must not switch: ``send_nowait``, ``publish``);
        without it they are dropped. Never switches."""
        self._check_open()
        if on_message is not None:
            self._on_message = on_message
        subscription = _Subscription(self, encode, self._watches)
        subscription.cancel = channel.watch(channel.version if after is None else after,
                                            subscription, every=True)
        self._watches = subscription  # linked once it can be cancelled

    # -- app.Upgraded: the connection's side (from the hub; never switches) ---------------------

    def start(self, conn: Any, pending: bytes) -> None:
        self._conn = conn
        # Every message is its own write: with Nagle's algorithm a second frame sent before
        # the client acknowledged the first waited for its delayed ACK (~40 ms).
        conn.set_nodelay()
        hub = self._hub = conn.ctx.hub
        self._state = OPEN
        self._last_input = hub.now
        self._set_deadline()
        if self._handler is not None:
            self._runner = hub.spawn(self._run)  # starts on the hub's next turn
        self._send_queued()  # the 101 head
        if conn.ctx.draining:  # upgraded while the server shuts down (its drain came first)
            self.close(GOING_AWAY, "server shutting down")
        if pending:
            self._feed(pending)
        self._pump()

    @staticmethod
    def on_readable(conn: Any) -> None:
        # Static: the connection keeps it as its hub callback (a bound method: 64 B a socket).
        conn.upgraded._pump()

    def expire(self) -> None:
        conn = self._conn
        now = self._hub.now
        if self._state != OPEN:
            conn.close()  # the closing handshake or the linger took too long
            return
        options = self._options
        inbox = self._inbox
        if self._runner is not None and inbox is not None and len(inbox) >= options.max_queue \
                and (conn.read_pending or conn.hangup):
            # Reading stopped for a handler that is behind, with input left in the kernel (a
            # pong, the rest of a message): the silence is the server's, not the client's.
            self._last_input = now
            self._ping_due = 0.0
            if self._partial_since:
                self._partial_since = now
            self._set_deadline()
            return
        if self._ping_due and now >= self._ping_due:
            log.debug("websocket %s: no pong within %.0f s: closing", conn.address(),
                      options.ping_timeout)
            self.close_code = ABNORMAL
            conn.close()
            return
        if self._partial_since and now - self._partial_since >= options.read_timeout:
            self._fail(POLICY, "message took too long to arrive")
            return
        if options.ping_interval is not None and not self._ping_due \
                and now - self._last_input >= options.ping_interval:
            self._queue(encode_frame(PING, b""))
            self._ping_due = now + options.ping_timeout
        self._set_deadline()

    def drain(self) -> None:
        if self._state == OPEN:
            self.close(GOING_AWAY, "server shutting down")
        else:
            self._conn.close()

    def closed(self) -> None:
        self._state = CLOSED
        self._cancel_watches()
        self._wake()
        blocked = self._blocked
        if blocked:  # the flusher ends too (the connection is closed)
            for g in blocked:
                self._hub.schedule(g, None)
            blocked.clear()

    # -- internals ---------------------------------------------------------------------------------

    def _run(self) -> None:
        """The handler's greenlet. When the handler returns, the WebSocket closes normally,
        unless it subscribed to a channel (then it stays open with no greenlet)."""
        handler = self._handler
        assert handler is not None
        try:
            if self.params:
                handler(self, **self.params)
            else:
                handler(self)  # no **: one C-level call less on the greenlet's saved stack
        except WebSocketClosed:
            pass
        except Exception:
            log.exception("handler error in WebSocket %r from %s", self.request.path,
                          self._conn.address())
            if self._state == OPEN:
                self.close(INTERNAL_ERROR, "internal error")
        finally:
            self._runner = None
            self.request = None  # an idle subscriber keeps nothing of its request
            if self._error is not None:
                self._fail(*self._error)
            if self._state == OPEN and self._watches is None:
                self.close()
            elif self._on_message is not None:
                inbox, self._inbox = self._inbox, None
                for message in inbox or ():  # came before the handler returned
                    if self._state == OPEN:
                        self._deliver(message)
                self._pump()  # reading may have stopped at max_queue

    def _check_open(self) -> None:
        if self._state != OPEN:
            raise WebSocketClosed(self.close_code, self.close_reason)

    def _park(self, timeout: float | None) -> Any:
        """Wait for input, a close, ``timeout`` or a channel (receive_or). May switch."""
        if self._waiter is not None:
            raise RuntimeError("two greenlets receive on one WebSocket")
        hub = self._hub
        me = self._waiter = getcurrent()
        if timeout is None:
            try:
                return hub.park()
            finally:
                self._waiter = None
        timer = hub.call_later(timeout, hub.schedule, me, _TIMED_OUT)
        try:
            return hub.park()
        finally:
            self._waiter = None
            timer.cancel()

    def _wake(self) -> None:
        if self._waiter is not None:
            self._hub.schedule(self._waiter, None)

    def _frame(self, data: str | bytes | bytearray | memoryview) -> bytes:
        if isinstance(data, str):
            opcode, payload = TEXT, data.encode()
        else:
            opcode, payload = BINARY, bytes(data)
        if self._deflate is None and len(payload) < 126:
            return SHORT_HEADS[opcode][len(payload)] + payload  # data_frame's, inline (-1%)
        return data_frame(opcode, payload, None if self._deflate is None
                           else self._deflate.server_window_bits)

    def _cancel_watches(self) -> None:
        subscription, self._watches = self._watches, None
        while subscription is not None:
            subscription.cancel()
            subscription = subscription.next

    def _pump(self) -> None:
        """Read what the socket has and act on it (input never waits for a greenlet)."""
        conn = self._conn
        options = self._options
        while not conn.closed and self._error is None:
            if not conn.read_pending and not conn.hangup:
                return  # the last read did not fill the buffer: the next edge says when (gsocket)
            inbox = self._inbox
            if self._runner is not None and inbox is not None and len(inbox) >= options.max_queue:
                return  # the handler is behind: leave the rest in the kernel
            try:
                data = recv_bytes_nowait(conn, conn.sock, conn.ctx.buffers)  # bytes: see gsocket
            except OSError:
                data = b""
            if data is None:
                return  # nothing there yet
            n = len(data)
            if n and self._state != LINGER:
                try:
                    self._feed(data)
                except OSError:
                    n = 0
            if n == 0:
                if self._state == OPEN:
                    self.close_code = ABNORMAL  # gone without a Close frame
                conn.close()
                return
            if not conn.read_pending and not conn.hangup:
                return  # as at the top, without the loop's other tests: once per message

    def _feed(self, data: Any) -> None:
        """Act on input. A handler waiting for it is woken on the loop's next turn (not
        switched into from here: see docs/websocket.md, "Echo speed")."""
        now = self._hub.now
        self._last_input = now
        self._ping_due = 0.0
        error = None
        parser = self._parser
        if parser is None:
            # Inflating with the largest window reads whatever window the client used.
            deflate, options = self._deflate, self._options
            inflater = None if deflate is None else Inflater(15, deflate.client_takeover)
            parser = self._parser = FrameParser(options.max_frame, options.max_message, inflater)
        try:
            events = parser.feed(data)
        except WebSocketError as e:
            events, error = e.events, e  # what came before the violation is handled first
        if parser.message or parser.buf or parser.state:  # parser.in_message, inline
            if not self._partial_since:
                self._partial_since = now
                conn = self._conn
                conn.deadline = min(conn.deadline, now + self._options.read_timeout)
        else:
            self._partial_since = 0.0
        woke = False
        runner = self._runner  # the loop never switches: it stays
        for opcode, payload in events:
            if opcode < CLOSE:  # TEXT or BINARY
                if self._state != OPEN:
                    continue  # after our Close: dropped (RFC 6455 §1.4)
                if runner is not None:
                    inbox = self._inbox
                    if inbox is None:
                        inbox = self._inbox = []
                    inbox.append(payload)
                    woke = True
                elif self._on_message is not None:
                    self._deliver(payload)
            elif opcode == PING:
                if self._state == OPEN:
                    self._queue(encode_frame(PONG, payload))
            elif opcode == CLOSE:
                self._closed_by_client(*payload)
                return
        if error is not None:
            log.debug("websocket %s: %s", self._conn.address(), error)
            if self._runner is not None and self._inbox:
                self._error = (error.code, error.reason)  # see receive()
            else:
                self._fail(error.code, error.reason)
        if woke and self._waiter is not None:
            self._hub.schedule(self._waiter, None)

    def _deliver(self, message: str | bytes) -> None:
        try:
            self._on_message(message)  # type: ignore[misc]
        except Exception:
            log.exception("handler error in WebSocket on_message for %s", self._conn.address())
            self._fail(INTERNAL_ERROR, "internal error")

    def _closed_by_client(self, code: int, reason: str) -> None:
        """A Close frame came: answer it (echoing the code) unless we sent ours, then end."""
        if self._state == OPEN:
            self.close_code, self.close_reason = code, reason
            self._conn.out.add(encode_frame(CLOSE, close_payload(code)))  # b"" for NO_STATUS
        self._linger()

    def _fail(self, code: int, reason: str) -> None:
        """_Fail the WebSocket Connection_ (RFC 6455 §7.1.7): Close with ``code``, then end."""
        self._error = None
        if self._state in (OPEN, CONNECTING):
            self.close_code, self.close_reason = code, reason
            self._conn.out.add(encode_frame(CLOSE, close_payload(code, reason)))
        self._linger()

    def _linger(self) -> None:
        """Send what is queued, half-close, drop input until the client's FIN (or
        ``close_timeout``), close: the server closes first (RFC 6455 §7.1.1) without a reset."""
        if self._state in (LINGER, CLOSED):
            return
        self._state = LINGER
        self._cancel_watches()
        self._conn.deadline = self._hub.now + self._options.close_timeout
        self._wake()
        self._send_queued()  # then half-closes (or the flusher does, once done)

    def _set_deadline(self) -> None:
        options = self._options
        deadline = INF
        if self._ping_due:
            deadline = self._ping_due
        elif options.ping_interval is not None:
            deadline = self._last_input + options.ping_interval
        if self._partial_since:
            deadline = min(deadline, self._partial_since + options.read_timeout)
        self._conn.deadline = deadline
