"""One request on a connection: route it, run the handler, read its body, queue its response.

Rules:
- One ``Exchange`` per connection, reset per request (no allocation per request). It holds
  what belongs to the current request: the head, the body framing and its decoder, whether
  ``100 Continue`` or any response bytes went out, and the keep-alive decision.
- It talks to its connection (conn.py) through a few methods: ``recv`` (more input, may
  switch), ``flush`` (send what is queued, may switch), ``set_nodelay``, ``address``, and
  ``detach`` for a handler that answers ``Later``. Response bytes come from ``wire`` and go
  into the connection's SendBuf; the connection decides when to send them.
- ``handle`` returns an outcome: ``KEEP`` (serve the next request), ``CLOSE_AFTER`` (send what
  is queued and close) or ``DETACHED`` (the connection waits for ``Later``'s response with no
  greenlet). The one control-flow exception is ``CloseConnection``, for an error after a
  streamed response has started (nothing honest can follow it). Client protocol errors propagate as
  ``ProtocolError``/``ClientTimeout`` (the connection answers 4xx and closes); a client gone
  mid-body propagates as ``ClientDisconnected`` (closed silently).
- A handler's exception is logged once, with the request line and the peer, and answered 500
  when nothing of its response was sent yet; else the connection closes.
- A body the handler left unread is drained (up to ``MAX_DRAIN``) before a whole response is
  queued, so a malformed one is still answered 400 (RFC 9112 §7.1): nothing of the handler's
  response has left by then. A streamed response's generator may read the body itself: what it
  leaves is drained after it, when the connection is to be kept (else the close lingers).
Switch points: ``handle`` (it runs the handler, and may read the body and flush),
``read_body`` and ``finish_body``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from . import wire
from .app import (
    FileBody,
    Later,
    Request,
    RequestConnection,
    Response,
    http_error_response,
    to_response,
)
from .chunked import ChunkedDecoder
from .errors import (
    ClientDisconnected,
    ClientTimeout,
    CloseConnection,
    ConnectionClosed,
    HTTPError,
    ProtocolError,
    Timeout,
)
from .wire import (
    CHUNKED,
    CLOSE,
    CONTINUE,
    CRLF,
    KEEP_ALIVE,
    LAST_CHUNK,
    NO_BODY_STATUSES,
    STATUS_LINES,
    chunk_frame,
    connection_line,
    fixed,
    request_line,
    status_line,
)

if TYPE_CHECKING:
    from .context import Context
    from .http11 import RequestHead
    from .sendbuf import SendBuf

log = logging.getLogger("tpd2py.conn")

# What handle() returns (bools and None: the common outcome is the keep-alive decision itself).
KEEP = True
CLOSE_AFTER = False
DETACHED = None

# Response bodies that never read the request body (the rest are generators: see handle).
_FIXED_BODIES = (bytes, list, FileBody)

# A handler that left at most this much of its request body unread gets it drained so the
# connection can be reused; a larger remainder is cheaper to close on.
MAX_DRAIN = 65536

INF = float("inf")
# Exchange.body_left: bytes still to read, or one of these.
BODY_DONE = 0
BODY_CHUNKED = -2
BODY_FAILED = -3  # its framing was bad (Exchange.failed): raised again on every read


class Connection(RequestConnection, Protocol):
    """What the exchange uses of its connection (conn.Connection): what a Request uses, its
    shared context, its input buffer and offsets (the body is read from them), its output
    SendBuf, its deadline, and the calls below. Declared here so that the exchange depends on
    no more than this."""

    ctx: Context
    out: SendBuf
    buf: bytearray | None
    start: int
    end: int
    deadline: float
    queued: int
    closed: bool

    def recv(self) -> int: ...  # more input after ``end`` (0 at EOF); may switch
    def flush(self, last: bool = False) -> None: ...  # send what is queued; may switch
    def set_nodelay(self) -> None: ...
    def address(self) -> Any: ...
    def send_file(self, body: FileBody) -> None: ...  # queued output, then the file; may switch
    def detach(self, on_hangup: Callable[[], None]) -> None: ...  # wait for Later's response
    def resumer(self) -> Callable[[Response], None]: ...  # the resume Later.attach gets


class Exchange:
    __slots__ = ("head", "body_left", "decoder", "continue_sent", "response_started",
                 "keep_alive", "later", "failed", "detaches", "body_limit")
    body_limit: int

    def __init__(self) -> None:
        self.head: RequestHead | None = None
        self.body_left = BODY_DONE
        self.decoder: ChunkedDecoder | None = None
        self.continue_sent = False
        self.response_started = False
        self.keep_alive = True
        # The response Later promised, once resume() has it (the connection sends it).
        self.later: Any = None
        # With body_left == BODY_FAILED: the framing error met reading this request's body.
        self.failed: ProtocolError | None = None
        # How often a handler's Later detached this connection: tells a stale resume apart.
        self.detaches = 0
        # body_limit, a chunked body's limit (the route's max_body_size or the server's), is
        # set with body_left = BODY_CHUNKED and read only then: not here (a store less per
        # connection, bench/instructions.py).

    # -- one request ----------------------------------------------------------------------------

    def handle(self, conn: Connection, head: RequestHead) -> bool | None:
        """Run the handler for ``head`` and queue its response. May switch to the hub."""
        ctx = conn.ctx
        self.head = head
        if self.response_started or self.continue_sent:
            self.response_started = self.continue_sent = False
        self.keep_alive = head.keep_alive and not head.must_close and not ctx.draining
        app = ctx.app
        # Fast path: an exact route with a handler for this method; else the full router.
        route = app.exact.get(head.path)
        handler = route.handlers.get(head.method) if route is not None else None
        if handler is None:
            handler, params, status, allowed = app.match(head.method, head.path)
            if handler is None:
                return self._answer_unrouted(conn, head, status, allowed)
        else:
            params = None
        # Routed first: a route may have its own body limit (app.body_limits, looked up only
        # for a request that has a body).
        if head.chunked:
            self.body_left = BODY_CHUNKED
            self.decoder = None
            self.body_limit = app.body_limits.get(handler, ctx.config.max_body_size) \
                if app.body_limits else ctx.config.max_body_size
        else:
            cl = head.content_length
            if cl > 0:
                if cl > (app.body_limits.get(handler, ctx.config.max_body_size)
                         if app.body_limits else ctx.config.max_body_size):
                    raise ProtocolError(413, "content too large")
                self.body_left = cl
            else:
                self.body_left = BODY_DONE
        conn.deadline = INF
        request = Request(head, conn)
        ctx.requests += 1
        response: Response | None
        try:
            if params:
                request.params = params
                result = handler(request, **params)
            else:
                result = handler(request)
            if type(result) is Response:
                response = result
            elif type(result) is Later:
                response = None
            else:
                response = to_response(result)
        except HTTPError as e:
            try:
                response = http_error_response(e)
            except (ValueError, TypeError):
                log.exception("bad HTTPError for %r", request_line(head))
                return self.answer_error(conn, 500)
        except (ProtocolError, ClientTimeout):
            raise  # the client's fault: 4xx and close
        except (Timeout, ConnectionClosed):
            if conn.closed:
                raise  # our own client is gone
            # Something else the handler waited on (an upstream socket) failed or timed out.
            log.exception("handler error for %r from %s", request_line(head), conn.address())
            return self.answer_error(conn, 500)
        except Exception:
            log.exception("handler error for %r from %s (in %s)", request_line(head),
                          conn.address(), getattr(handler, "__qualname__", handler))
            return self.answer_error(conn, 500)
        if response is None:
            response = self._wait_later(conn, result)
            if response is None:
                return DETACHED
        elif self.body_left != BODY_DONE and type(response.body) in _FIXED_BODIES:
            # Drained before the response is queued, so a malformed body is still a 400. A
            # streamed body may read the request body as it goes: drained after it (below).
            self.finish_body(conn)
        # The common case: a fixed body (bytes) with a known 2xx status and no reason phrase.
        body = response.body
        status = response.status
        status_bytes = STATUS_LINES.get(status)
        if type(body) is bytes and response.reason is None and status_bytes is not None \
                and status < 300 and status != 204 and status >= 200:
            keep = self.keep_alive
            connection = b"" if keep and head.version == 11 else KEEP_ALIVE if keep else CLOSE
            out = conn.out
            out.size += fixed(out.chunks, status_bytes, response.fields, body, ctx.date.line,
                              connection, head.method != b"HEAD")
            conn.queued += 1
            if ctx.access_log is not None:
                ctx.access_log.write(conn, head, status, len(body))
            return keep
        try:
            self.write_response(conn, response, head.method == b"HEAD")
        except (TypeError, ValueError):
            log.exception("bad response from the handler for %r", request_line(head))
            return self.answer_error(conn, 500)
        if self.body_left != BODY_DONE and self.keep_alive \
                and type(body) not in _FIXED_BODIES:
            # After a streamed response: what its generator left unread. The response is out,
            # so bad framing or a stalled body can only close the connection.
            self._drain_after_stream(conn)
        return self.keep_alive

    def _drain_after_stream(self, conn: Connection) -> None:
        """What a streamed response's producer left of the request body, read and dropped;
        a body that fails now can only close the connection (the response is out, it stays
        queued and is sent, then the close). May switch to the hub."""
        try:
            self.finish_body(conn)
        except (ProtocolError, ClientTimeout, ClientDisconnected):
            self.keep_alive = False

    def _answer_unrouted(self, conn: Connection, head: RequestHead, status: int,
                         allowed: list[bytes]) -> bool:
        """No route (404, 405 with Allow, 501): the body is framed as in ``handle``, with the
        server's limit, so that an unread one is drained or closed on. May switch to the hub."""
        self._frame_body(conn, head)
        extra = b"Allow: %s\r\n" % b", ".join(allowed) if allowed else b""
        return self.answer_error(conn, status, extra)

    def _frame_body(self, conn: Connection, head: RequestHead) -> None:
        """The body's framing with the server's limit (413 past it), and the request counted:
        what ``handle`` does inline on the router's hot path, for the other exchanges (no
        route; WSGI). Never switches."""
        ctx = conn.ctx
        if head.chunked:
            self.body_left = BODY_CHUNKED
            self.decoder = None
            self.body_limit = ctx.config.max_body_size
        elif head.content_length > 0:
            if head.content_length > ctx.config.max_body_size:
                raise ProtocolError(413, "content too large")
            self.body_left = head.content_length
        else:
            self.body_left = BODY_DONE
        conn.deadline = INF
        ctx.requests += 1

    def _wait_later(self, conn: Connection, later: Later) -> Response | None:
        """Later's response if it is ready; else the connection detaches (None). May switch
        to the hub (drains the request body, sends earlier responses) before attaching."""
        if self.body_left != BODY_DONE:
            self.finish_body(conn)
        if conn.out.size:
            conn.set_nodelay()  # the later response will be a second write
        conn.flush()
        # From here until the connection has detached nothing switches, so resume() cannot
        # come before it waits.
        response = later.attach(conn.resumer())
        if response is None:
            conn.detach(later.on_hangup)
        return response

    def answer_error(self, conn: Connection, status: int, extra: bytes = b"") -> bool:
        """Queue a canned error for the current request. Once a streamed response has started,
        closing is the only honest answer."""
        if self.response_started:
            raise CloseConnection()
        if self.body_left != BODY_DONE:
            self.finish_body(conn)
        head = self.head
        ctx = conn.ctx
        data = wire.error_response(status, ctx.date.line, self.connection_line(), extra,
                                   head is None or head.method != b"HEAD")
        conn.out.add(data)
        conn.queued += 1
        if ctx.access_log is not None:
            ctx.access_log.write(conn, head, status,
                                 len(data) - data.index(b"\r\n\r\n") - 4)
        return self.keep_alive

    def connection_line(self) -> bytes:
        head = self.head
        return connection_line(self.keep_alive, head.version if head is not None else 11)

    def write_response(self, conn: Connection, response: Response, is_head: bool) -> None:
        """Queue any response: a whole body (bytes, a list of chunks, a file) after a head with
        its Content-Length; a file is then sent by the kernel, and an iterator as it is produced
        (both may switch to the hub)."""
        status = response.status
        body = response.body
        status_bytes = STATUS_LINES.get(status) if response.reason is None else None
        if status_bytes is None:
            status_bytes = status_line(status, response.reason)
        body_type = type(body)
        if body_type is not bytes and body_type is not list and body_type is not FileBody:
            self._stream(conn, response, status_bytes, is_head)
            return
        try:
            if status in NO_BODY_STATUSES:
                size = -1  # no Content-Length, no body (RFC 9110 §8.6)
            elif body_type is bytes:
                size = len(body)
            elif body_type is list:
                for chunk in body:
                    if not isinstance(chunk, (bytes, bytearray, memoryview)):
                        raise TypeError(f"response chunk of type {type(chunk).__name__}")
                size = sum(map(len, body))
            else:
                size = body.length
            ctx = conn.ctx
            out = conn.out
            out.add(wire.head(status_bytes, response.fields, size, ctx.date.line,
                              self.connection_line()))
            conn.queued += 1
            if ctx.access_log is not None:
                ctx.access_log.write(conn, self.head, status, max(size, 0))
            if is_head or size <= 0:
                return
            if body_type is bytes:
                out.add(body)
            elif body_type is list:
                out.extend(body)
            else:
                self.response_started = True  # from here on only a close can end it early
                conn.send_file(body)
        finally:
            if body_type is FileBody:
                body.close()  # sent, or never to be: the fd goes either way

    def _stream(self, conn: Connection, response: Response, status_bytes: bytes,
                is_head: bool) -> None:
        """Send an iterator body as it is produced: chunked for 1.1, close-delimited for 1.0."""
        ctx = conn.ctx
        head = self.head
        assert head is not None
        body = response.body
        out = conn.out
        if response.status in NO_BODY_STATUSES:
            # 1xx/204/304 end at the blank line (RFC 9112 §6.1, §6.3): no coding, no body.
            close = getattr(body, "close", None)
            if close is not None:
                close()
            out.add(wire.head(status_bytes, response.fields, -1, ctx.date.line,
                                  self.connection_line()))
            conn.queued += 1
            if ctx.access_log is not None:
                ctx.access_log.write(conn, head, response.status, 0)
            return
        chunked = head.version == 11
        if not chunked:
            self.keep_alive = False
        fields = response.fields + CHUNKED if chunked else response.fields
        out.add(wire.head(status_bytes, fields, -1, ctx.date.line, self.connection_line()))
        self.response_started = True
        size = 0
        conn.set_nodelay()
        try:
            conn.flush()
            if is_head:
                return
            for piece in body:
                if isinstance(piece, str):
                    piece = piece.encode()
                n = len(piece)
                if not n:
                    continue
                size += n
                if chunked:
                    out.add(chunk_frame(n))
                    out.add(piece)
                    out.add(CRLF)
                else:
                    out.add(piece)
                conn.flush()
            if chunked:
                out.add(LAST_CHUNK)
        except (ConnectionClosed, ConnectionError, Timeout, CloseConnection):
            raise
        except ProtocolError as e:
            # The generator read a bad request body: the client's fault, and the response has
            # started, so closing is the only answer.
            log.debug("bad request body while streaming to %s: %s", conn.address(), e)
            raise CloseConnection() from None
        except Exception:
            log.exception("error while streaming %r to %s", request_line(head), conn.address())
            raise CloseConnection() from None
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
            if ctx.access_log is not None:
                ctx.access_log.write(conn, head, response.status, size)

    # -- the request body -----------------------------------------------------------------------

    def read_body(self, conn: Connection) -> Iterator[bytes]:
        """Yield the current request's body in chunks (copies, never views of the buffer).

        May switch to the hub. Sends ``100 Continue`` first when the client asked for it and
        no body byte has arrived yet. A malformed or oversized body raises ProtocolError; a
        client that hangs up or resets meanwhile raises ClientDisconnected.
        """
        head = self.head
        if head is None or self.body_left == BODY_DONE:
            return
        if self.body_left == BODY_FAILED:
            assert self.failed is not None
            raise self.failed
        config = conn.ctx.config
        if head.expect_continue and not self.continue_sent and conn.start == conn.end \
                and not self.response_started:
            self.continue_sent = True
            conn.out.add(CONTINUE)
            try:
                conn.flush()
            except ConnectionError:
                raise ClientDisconnected() from None  # reset while sending: a normal event
        if conn.deadline == INF:
            conn.deadline = conn.ctx.hub.now + config.body_timeout
        try:
            if self.body_left == BODY_CHUNKED:
                yield from self._read_chunked(conn, self.body_limit)
                return
            while self.body_left > 0:
                if conn.start == conn.end:
                    self._recv_body(conn)
                take = min(self.body_left, conn.end - conn.start)
                assert conn.buf is not None
                piece = bytes(conn.buf[conn.start:conn.start + take])
                conn.start += take
                self.body_left -= take
                yield piece
        except ProtocolError as e:
            self.failed = e
            self.body_left = BODY_FAILED
            raise
        self.body_left = BODY_DONE
        conn.deadline = INF

    def _read_chunked(self, conn: Connection, max_size: int) -> Iterator[bytes]:
        decoder = self.decoder
        if decoder is None:
            decoder = self.decoder = ChunkedDecoder(conn.ctx.config.limits)
        while True:
            if conn.start < conn.end:
                before = conn.start
                conn.start = decoder.feed(conn.buf, conn.start, conn.end)  # type: ignore[arg-type]
                if decoder.total > max_size:
                    raise ProtocolError(413, "content too large")
                if decoder.out:
                    pieces = decoder.out
                    decoder.out = []
                    for p in pieces:
                        yield bytes(p)
                if decoder.done:
                    self.body_left = BODY_DONE
                    self.decoder = None
                    conn.deadline = INF
                    return
                if conn.start < conn.end and conn.start != before:
                    continue  # more complete input to decode
            # Buffer empty, or it ends in an incomplete chunk line: read more.
            self._recv_body(conn)

    def _recv_body(self, conn: Connection) -> None:
        try:
            n = conn.recv()
        except ConnectionError:
            raise ClientDisconnected() from None  # reset mid-body: a normal event
        if n == 0:
            raise ClientDisconnected()  # EOF mid-body: the client gave up
        # Minimum progress: each byte buys 1/min_rate seconds, never more than body_timeout
        # ahead, so a trickle runs out of time while a steady upload never does.
        config = conn.ctx.config
        now = conn.ctx.hub.now
        conn.deadline = min(now + config.body_timeout,
                            max(conn.deadline, now) + n / config.min_body_rate)

    def finish_body(self, conn: Connection) -> None:
        """Before the response is queued: discard an unread body if small enough, else stop
        keeping the connection. Malformed framing raises ProtocolError (answered 400: nothing
        of this response has been sent). May switch to the hub."""
        if self.body_left == BODY_DONE:
            return
        if self.body_left == BODY_FAILED:
            assert self.failed is not None
            raise self.failed
        head = self.head
        if head is not None and head.expect_continue and not self.continue_sent:
            # The client may still send the body, or may not: the stream cannot be trusted
            # for another request, so answer and close (RFC 9110 §10.1.1).
            self.keep_alive = False
            return
        if self.body_left > MAX_DRAIN:
            self.keep_alive = False
            return
        drained = 0
        for piece in self.read_body(conn):
            drained += len(piece)
            if drained > MAX_DRAIN:
                self.keep_alive = False
                return
