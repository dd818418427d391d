"""The per-connection loop, top to bottom.

How it works:
- A connection with nothing to do holds no greenlet and no input buffer: just its socket,
  this object and its hub registration, whose ``on_readable`` wakes it (HTTP-DOHC's split of
  working and waiting connections). When bytes arrive, the server runs ``serve`` in the hub's
  loop greenlet with a buffer from its free list; ``serve`` returns the buffer when the
  connection is idle again. A new connection enters epoll only when it first waits or idles.
- ``serve`` parses every complete request already in the buffer, runs each handler in this
  greenlet, and appends each response to one SendBuf; only when the buffer has no complete
  request left does it flush, so pipelined requests get all their responses in one sendmsg
  (Antiweb). The buffer is the backpressure: no more bytes are read until those are answered.
- Deadlines are plain floats in ``deadline``, checked by the server's once-a-second sweep
  (O(1) per request): the header deadline is absolute from the first byte of a request (a
  trickle does not extend it); body reads must keep a minimum rate; idle keep-alive and writes
  have their own limits.
- A handler may return ``Later`` instead of a response (the Comet long poll does): the
  connection then waits with no greenlet and, when its buffer is empty, no input buffer, until
  someone calls ``resume(response)`` from the hub; it is sent from there, or the connection is
  dispatched to send it and go on.
Switch points: ``recv``, ``flush`` and whatever the handler calls. The parser never switches.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import bodies, parking, respond
from .app import Request, Response, to_response
from .bodies import _BODY_CHUNKED, _BODY_DONE, _INF
from .errors import (
    Cancelled,
    ConnectionClosed,
    HTTPError,
    ProtocolError,
    Timeout,
)
from .http11 import RequestHead
from .parking import Later, _call_hook, _Detached
from .sendbuf import DONTWAIT, IOV_MAX, LAST, SendBuf

if TYPE_CHECKING:
    from .chunked import ChunkedDecoder
    from .hub import FdRecord
    from .server import Server

log = logging.getLogger("tpd2py.conn")

# Flush early once this many responses or bytes wait in the SendBuf (pipelining backpressure).
MAX_QUEUED_RESPONSES = 64
MAX_QUEUED_BYTES = 256 * 1024
# After an error response: how long and how much unread input we read and drop before the close.
LINGER_SECONDS = 2.0
LINGER_BYTES = 256 * 1024

# Every recv and send on a client socket passes DONTWAIT (sendbuf.py): accepted fds are left
# in blocking mode (O_NONBLOCK would be one ioctl per connection), so a call without it would
# block the whole hub. LAST adds MSG_MORE: see flush(last=True).
# A fixed body this small is copied into its response head: one chunk, one iovec fewer for the
# kernel (bench/micro_sendbuf.py: per-iovec costs dominate tiny chunks), and `send` instead of
# `sendmsg` when it is the only response.
_JOIN_BODY_MAX = 1024
_STATUS_LINES = respond.STATUS_LINES
# Status line, fields, Content-Length, Date, Connection line (or b""), end of head.
_HEAD_FIXED = b"%s%sContent-Length: %d\r\n%s%s\r\n"


class _Close(BaseException):
    """Internal: stop serving this connection now (its error response, if any, is queued).
    BaseException: an application's ``except Exception`` around a flush must not take it."""


class _ClientTimeout(Timeout):
    """Internal: one of this connection's own deadlines passed while reading from the client
    (the sweep threw Timeout into its wait). Answered with 408; a Timeout from anything else a
    handler waited on is the application's error."""


class Connection:
    __slots__ = (
        "server", "sock", "rec", "peer", "buf", "view", "start", "end", "out",
        "deadline", "worker", "head", "body_left", "decoder", "continue_sent",
        "response_started", "keep_alive", "queued", "park_hook", "later", "scan", "nodelay",
    )

    def __init__(self, server: Server, sock: Any, peer: Any = None) -> None:
        self.server = server
        self.sock = sock
        # The peer address is kept only when the access log needs it on every request;
        # otherwise ``address()`` asks the kernel on the rare occasions it is wanted.
        self.peer = peer
        self.buf: bytearray | None = None
        self.view: memoryview | None = None
        self.start = self.end = 0
        self.out = SendBuf()
        self.deadline = _INF
        self.worker: Any = None
        self.head: RequestHead | None = None
        self.body_left = _BODY_DONE
        self.decoder: ChunkedDecoder | None = None
        self.continue_sent = False
        self.response_started = False
        self.keep_alive = True
        self.queued = 0
        self.park_hook: Callable[[], None] | None = None
        self.later: Response | None = None
        # Where the next parse_head may start looking for the blank line: after a partial
        # head, the old end minus 3, so a trickled head is scanned once, not once per read.
        self.scan = 0
        # TCP_NODELAY is set only once a second write may follow an unacknowledged first one
        # (streaming, a partial write, flushing mid-pipeline): a single write per response
        # never meets Nagle's algorithm, and one setsockopt less per connection counts.
        self.nodelay = False
        # Not in epoll until something waits on it or it goes idle (Hub.register, armed).
        self.rec: FdRecord = server.hub.register(sock.fileno(), server.dispatch, armed=False)
        self.rec.owner = self

    def address(self) -> Any:
        """The peer's address (from accept, or getpeername when it was not kept)."""
        if self.peer is None:
            try:
                return self.sock.getpeername()
            except OSError:
                return None
        return self.peer

    # -- parking (parking.py): handlers that wait on something else than this socket -----
    before_park = parking.before_park
    after_park = parking.after_park
    release_buffer_if_empty = parking.release_buffer_if_empty
    _hangup_check = parking._hangup_check
    resume = parking.resume
    _wait_later = parking._wait_later

    # -- I/O helpers (switch points) ------------------------------------------------------------

    def _recv(self) -> int:
        """Read more bytes after ``end``. May switch to the hub. Returns 0 at EOF."""
        buf = self.buf
        assert buf is not None and self.view is not None
        if self.start == self.end:
            self.start = self.end = self.scan = 0
        elif self.end == len(buf):
            if self.start:
                # Compact: move the unparsed tail to the front (keeps offsets small).
                n = self.end - self.start
                buf[:n] = buf[self.start:self.end]
                self.scan = max(0, self.scan - self.start)
                self.start, self.end = 0, n
            else:
                self.server.grow_buffer(self)
                buf = self.buf
                assert buf is not None
        rec = self.rec
        recv_into = self.sock.recv_into
        view = self.view
        assert view is not None
        while True:
            if rec.closed:
                raise ConnectionClosed()
            rec.read_pending = False
            space = view[self.end:]
            try:
                n = recv_into(space, 0, DONTWAIT)
            except BlockingIOError:
                try:
                    self.server.hub.wait_readable(rec)
                except Timeout:
                    raise _ClientTimeout() from None
                continue
            if n == len(space):
                rec.read_pending = True  # maybe more in the kernel (see serve)
            self.end += n
            return n

    def flush(self, last: bool = False) -> None:
        """Send all queued output. May switch to the hub (only when the socket is full).

        ``last``: the connection closes right after (nothing can run in between). The send
        then says MSG_MORE, so that the kernel holds the final segment and the close puts
        the FIN on it: one packet instead of two, and the client reads the response and the
        end of it in one wake-up. (Anything that does not go in this first send is sent
        without the flag, which releases what was held.)"""
        self.queued = 0
        out = self.out
        if not out.size:
            return
        chunks = out.chunks
        if len(chunks) <= IOV_MAX:
            # The common case without the SendBuf.flush machinery: one sendmsg takes it all
            # (one send for one chunk: no iovec array to build).
            self.server.sendmsg_calls += 1
            try:
                if len(chunks) == 1:
                    sent = self.sock.send(chunks[0], LAST if last else DONTWAIT)
                else:
                    sent = self.sock.sendmsg(chunks, (), LAST if last else DONTWAIT)
            except BlockingIOError:
                sent = 0
            if sent == out.size:
                chunks.clear()
                out.size = 0
                return
            out.consume(sent)
        self.set_nodelay()  # what is left goes in more than one write
        self.server.sendmsg_calls += out.flush(self._sendmsg, self._wait_writable)

    def _sendmsg(self, chunks: Any) -> int:
        return self.sock.sendmsg(chunks, (), DONTWAIT)

    def set_nodelay(self) -> None:
        """Disable Nagle's algorithm on this connection (once). Never switches."""
        if not self.nodelay:
            self.nodelay = True
            with contextlib.suppress(OSError):  # not TCP (a Unix socket): nothing to do
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _wait_writable(self) -> None:
        server = self.server
        saved = self.deadline
        self.deadline = server.hub.now + server.config.write_timeout
        try:
            server.hub.wait_writable(self.rec)
        except Timeout:
            # Part of a response may be on the wire: nothing honest can follow it. Close.
            raise _Close() from None
        finally:
            self.deadline = saved

    # -- the loop -------------------------------------------------------------------------------

    def serve(self, worker: Any) -> None:
        """Serve until the connection is idle (returns, keeping it open) or closed.

        Runs in ``worker``, the loop's own greenlet (hub.py, leader/followers), which stays this
        connection's if a wait hands the loop off. The loop is the hot path of the server: it
        binds what it uses to locals.
        """
        server = self.server
        hub = server.hub
        config = server.config
        limits = config.limits
        header_timeout = config.header_timeout
        parse = server.parse_head
        if self.park_hook is not None:
            return  # detached (Later) and not resumed: a stale dispatch (e.g. from accept)
        rec = self.rec
        out = self.out
        rec.on_readable = None
        self.worker = worker
        if self.buf is None:
            self.buf, self.view = server.take_buffer()
            self.start = self.end = self.scan = 0
        try:
            if self.later is not None:
                response, self.later = self.later, None
                assert self.head is not None
                self._write_response(response, self.head.method == b"HEAD")
            if not self.keep_alive:
                # The last response (sent by resume(), maybe only in part) ends the connection.
                self.flush()
                if self.start < self.end or rec.read_pending:
                    self._linger_close()
                else:
                    self.close()
                return
            self.deadline = hub.now + header_timeout
            while True:
                if self.start == self.end:
                    if out.size:
                        self.flush()
                    if not rec.read_pending and not rec.hangup:
                        self._go_idle()
                        return
                    self.start = self.end = self.scan = 0
                    rec.read_pending = False
                    try:
                        n = self.sock.recv_into(self.view, 0, DONTWAIT)
                    except BlockingIOError:
                        self._go_idle()
                        return
                    if n == 0:
                        self.close()
                        return
                    if n == len(self.view):  # type: ignore[arg-type]
                        # Edge-triggered: a read that filled the buffer may have left bytes in
                        # the kernel, and no new edge will announce them.
                        rec.read_pending = True
                    self.end = n
                    self.deadline = hub.now + header_timeout
                result = parse(self.buf, self.start, self.end, limits, self.scan)
                if result is None:
                    self.scan = self.end - 3
                    if out.size:
                        self.set_nodelay()  # more responses may follow this write soon
                        self.flush()
                    if self._recv() == 0:
                        self.close()
                        return
                    continue
                head, self.start = result
                self.scan = 0
                handoffs = hub.handoffs
                keep = self._handle(head)
                if not rec.armed and hub.handoffs != handoffs:
                    # The handler waited on something else while this fd was not in epoll:
                    # no edge told us of input that came meanwhile. Watch it from now on and
                    # assume input is pending (one recv to learn otherwise).
                    hub.arm(rec)
                    rec.read_pending = True
                if not keep:
                    # MSG_MORE only when the client asked to close: it sends nothing more
                    # (RFC 9112 §9.6). When we chose to close (draining, ambiguous framing),
                    # input may have come unseen, the close may be a reset, and a reset
                    # discards what MSG_MORE still holds: the whole response.
                    self.flush(last=not head.keep_alive and not head.must_close)
                    if self.start < self.end or self.body_left != _BODY_DONE \
                            or rec.read_pending:
                        self._linger_close()  # unread input: do not let the close be a reset
                    else:
                        self.close()
                    return
                self.deadline = hub.now + header_timeout
                if self.queued >= MAX_QUEUED_RESPONSES or out.size >= MAX_QUEUED_BYTES:
                    self.set_nodelay()
                    self.flush()
        except ProtocolError as e:
            self._fail(e.status, e.reason)
        except _ClientTimeout:
            self._fail(408, "timeout")
        except Timeout:
            # Thrown by the sweep while serve itself waited (between requests): just close.
            self.close()
        except _Detached:
            return
        except (ConnectionClosed, ConnectionError, _Close, Cancelled):
            self.close()
        except OSError as e:
            log.debug("socket error on %s: %s", self.address(), e)
            self.close()
        finally:
            self.worker = None

    def _go_idle(self) -> None:
        server = self.server
        server.release_buffer(self)
        self.head = None  # an idle connection keeps nothing of its last request
        self.deadline = server.hub.now + server.config.keepalive_timeout
        if server.draining:
            self.close()
            return
        rec = self.rec
        rec.on_readable = server.dispatch
        if not rec.armed:
            server.hub.arm(rec)

    def _fail(self, status: int, reason: str) -> None:
        """Answer a protocol error with a canned response, after what is queued; then close,
        lingering so that unread input does not turn the close into a reset."""
        server = self.server
        if not self.response_started:
            if server.access_log is not None:
                server.log_access(self, self.head, status, 0)
            self.out.add(respond.error_response(status, server.date.line))
        try:
            self.flush(last=True)  # the lingering close follows at once
        except (OSError, Timeout, _Close):
            self.close()
            return
        self._linger_close()

    def _linger_close(self) -> None:
        """Half-close, then read and discard what the client still sends, for at most
        LINGER_SECONDS or LINGER_BYTES, then close (RFC 9112 §9.6). Closing with unread bytes
        in the kernel sends RST, which can destroy the response before the client reads it.
        May switch to the hub."""
        if self.rec.closed:
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self.deadline = self.server.hub.now + LINGER_SECONDS
        self.start = self.end = 0
        discarded = 0
        try:
            while discarded < LINGER_BYTES and self.buf is not None:
                self.start = self.end = 0
                n = self._recv()
                if n == 0:
                    break
                discarded += n
        except (OSError, Timeout, _Close, ConnectionClosed):
            pass
        self.close()

    def close(self) -> None:
        """Close now. Never switches (waiters on the fd are woken with ConnectionClosed)."""
        if self.rec.closed:
            return
        # The socket first: the FIN (and a final segment held by MSG_MORE) leaves before the
        # bookkeeping, which the client need not wait for. forget() checks identity, so an fd
        # number reused meanwhile (by another thread) is not touched.
        # Not contextlib.suppress: a context manager per connection is measurable here
        # (bench/instructions.py: 99.8k -> 96.1k per connection, with the FIN-first reordering).
        try:  # noqa: SIM105
            self.sock.close()
        except OSError:
            pass
        self.server.forget(self)
        self.out.clear()
        hook = self.park_hook
        if hook is not None:
            # A parked handler learns that its connection is gone (e.g. at shutdown).
            self.park_hook = None
            _call_hook(hook)

    # -- one request ----------------------------------------------------------------------------

    def _handle(self, head: RequestHead) -> bool:
        """Run the handler and queue its response. Returns whether to keep the connection."""
        server = self.server
        self.head = head
        if self.response_started or self.continue_sent:
            self.response_started = self.continue_sent = False
        self.keep_alive = head.keep_alive and not head.must_close and not server.draining
        if head.chunked:
            self.body_left = _BODY_CHUNKED
            self.decoder = None
        else:
            cl = head.content_length
            if cl > 0:
                if cl > server.config.max_body_size:
                    raise ProtocolError(413, "content too large")
                self.body_left = cl
            else:
                self.body_left = _BODY_DONE
        self.deadline = _INF
        request = Request(head, self)
        server.requests += 1
        app = server.app
        # Fast path: an exact route with a handler for this method; else the full router.
        route = app.exact.get(head.path)
        handler = route.handlers.get(head.method) if route is not None else None
        params: dict[str, Any] | None = None
        if handler is None:
            handler, params, status, allowed = app.match(head.method, head.path)
            if handler is None:
                extra = b"Allow: %s\r\n" % b", ".join(allowed) if allowed else b""
                return self._answer_error(status, extra)
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
                response = e.response()
            except (ValueError, TypeError):
                log.exception("bad HTTPError for %r", _request_line(head))
                return self._answer_error(500)
        except (ProtocolError, _ClientTimeout):
            raise  # the client's fault: 4xx and close
        except (Timeout, ConnectionClosed):
            if self.rec.closed:
                raise  # our own client is gone
            # Something else the handler waited on (an upstream socket) failed or timed out.
            log.exception("handler error for %r from %s", _request_line(head), self.address())
            return self._answer_error(500)
        except Exception:
            log.exception("handler error for %r from %s", _request_line(head), self.address())
            return self._answer_error(500)
        if response is None:
            response = self._wait_later(result)
        if self.body_left != _BODY_DONE:
            self._finish_body_or_close()
        # The common case inline: a fixed body (bytes) with a known status, no reason phrase.
        # It repeats what _write_response does for it, without its checks and calls: 2.13
        # against 2.47 µs per _handle of bench/hello.py's GET / (best of 5, 100k calls each).
        body = response.body
        status = response.status
        status_line = _STATUS_LINES.get(status)
        if type(body) is bytes and response.reason is None and status_line is not None \
                and status < 300 and status != 204 and status >= 200:
            keep = self.keep_alive
            if keep and head.version == 11:
                connection = b""
            else:
                connection = respond.KEEP_ALIVE if keep else respond.CLOSE
            out = self.out
            size = len(body)
            chunk = _HEAD_FIXED % (status_line, response.fields, size, server.date.line,
                                   connection)
            if size and head.method != b"HEAD":
                if size <= _JOIN_BODY_MAX:
                    out.chunks.append(chunk + body)
                else:
                    out.chunks.append(chunk)
                    out.chunks.append(body)
                out.size += len(chunk) + size
            else:
                out.chunks.append(chunk)
                out.size += len(chunk)
            self.queued += 1
            if server.access_log is not None:
                server.log_access(self, head, status, size)
            return keep
        try:
            self._write_response(response, head.method == b"HEAD")
        except (TypeError, ValueError):
            log.exception("bad response from the handler for %r", _request_line(head))
            return self._answer_error(500)
        return self.keep_alive

    def _answer_error(self, status: int, extra: bytes = b"") -> bool:
        """Queue a canned error for the current request; returns whether to keep the
        connection. Once a streamed response has started, closing is the only honest answer."""
        if self.response_started:
            raise _Close()
        self._finish_body_or_close()
        head = self.head
        data = respond.error_response(status, self.server.date.line, self._connection_header(),
                                      extra, head is None or head.method != b"HEAD")
        self.out.add(data)
        self.queued += 1
        if self.server.access_log is not None:
            self.server.log_access(self, head, status, len(data) - data.index(b"\r\n\r\n") - 4)
        return self.keep_alive

    def _connection_header(self) -> bytes:
        if not self.keep_alive:
            return respond.CLOSE
        if self.head is not None and self.head.version == 10:
            return respond.KEEP_ALIVE
        return b""

    def _write_response(self, response: Response, is_head: bool) -> None:
        server = self.server
        status = response.status
        body = response.body
        status_bytes = respond.STATUS_LINES.get(status) if response.reason is None else None
        if status_bytes is None:
            status_bytes = respond.status_line(status, response.reason)
        out = self.out
        body_type = type(body)
        if body_type is bytes or body_type is list:
            if status in respond.NO_BODY_STATUSES:
                size = 0
                out.add(respond.head(status_bytes, response.fields, -1, server.date.line,
                                     self._connection_header()))
            else:
                if body_type is list:
                    for chunk in body:
                        if not isinstance(chunk, (bytes, bytearray, memoryview)):
                            raise TypeError(f"response chunk of type {type(chunk).__name__}")
                size = len(body) if body_type is bytes else sum(map(len, body))
                out.add(respond.head(status_bytes, response.fields, size, server.date.line,
                                     self._connection_header()))
                if not is_head:
                    if body_type is bytes:
                        out.add(body)
                    else:
                        out.extend(body)
            self.queued += 1
            if server.access_log is not None:
                server.log_access(self, self.head, status, size)
            return
        self._stream(response, status_bytes, is_head)

    def _stream(self, response: Response, status_bytes: bytes, is_head: bool) -> None:
        """Send an iterator body as it is produced: chunked for 1.1, close-delimited for 1.0."""
        server = self.server
        assert self.head is not None
        body = response.body
        if response.status in respond.NO_BODY_STATUSES:
            # 1xx/204/304 end at the blank line (RFC 9112 §6.1, §6.3): no coding, no body.
            close = getattr(body, "close", None)
            if close is not None:
                close()
            self.out.add(respond.head(status_bytes, response.fields, -1, server.date.line,
                                      self._connection_header()))
            self.queued += 1
            return
        chunked = self.head.version == 11
        if not chunked:
            self.keep_alive = False
        fields = response.fields + respond.CHUNKED if chunked else response.fields
        self.out.add(respond.head(status_bytes, fields, -1, server.date.line,
                                  self._connection_header()))
        self.response_started = True
        size = 0
        self.set_nodelay()
        try:
            self.flush()
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
                    self.out.add(b"%x\r\n" % n)
                    self.out.add(piece)
                    self.out.add(respond.CRLF)
                else:
                    self.out.add(piece)
                self.flush()
            if chunked:
                self.out.add(respond.LAST_CHUNK)
        except (ConnectionClosed, ConnectionError, Timeout, _Close):
            raise
        except Exception:
            log.exception("error while streaming %r to %s", _request_line(self.head),
                          self.address())
            raise _Close() from None
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
            if server.access_log is not None:
                server.log_access(self, self.head, response.status, size)

    # -- request bodies (bodies.py) --------------------------------------------------------
    read_body = bodies.read_body
    _body_deadline_start = bodies._body_deadline_start
    _recv_body = bodies._recv_body
    _finish_body = bodies._finish_body
    _finish_body_or_close = bodies._finish_body_or_close


def _request_line(head: RequestHead | None) -> bytes:
    if head is None:
        return b"-"
    return b"%s %s HTTP/%s" % (head.method, head.target, b"1.1" if head.version == 11 else b"1.0")
