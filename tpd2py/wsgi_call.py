"""One WSGI call (PEP 3333): ``start_response``, ``write()``, the response's framing, and the
app's errors. Used by wsgi.py, which builds the environ and runs one ``Call`` per request.

Rules:
- ``start_response`` checks the status (``"200 OK"``: three digits, a space, a reason
  phrase without control bytes; 1xx is refused, a WSGI app cannot send an interim response)
  and the headers (a list of (str, str) tuples; token names; no CR, LF, NUL or other control
  byte in a value; no hop-by-hop header, PEP 3333 "Other HTTP Features"; one Content-Length)
  and encodes them once; the checks of a header line seen before are a dict lookup. A second
  call needs ``exc_info``; once the head is sent, ``exc_info`` is raised again.
- The head is queued with the first non-empty body block (or at the end), never before.
  Framing: a list or tuple (or anything whose ``len()`` is 1) is a whole body with
  Content-Length (the app's, which must match, or computed); any other iterable or
  ``write()`` streams: with the app's Content-Length (never more bytes than it said; fewer
  close the connection), else chunked on HTTP/1.1 or close-delimited on 1.0. HEAD, 1xx, 204
  and 304 send the head only; the app may set Date (then ours is left out).
- A body block is flushed at once unless it completes a Content-Length body (the server's
  loop sends that with any other queued responses: one sendmsg for pipelined requests).
- ``wsgi.file_wrapper`` (``FileWrapper``) over a regular file is sent by the kernel
  (``Connection.send_file``, as tpd2py's FileResponse); other file-likes are iterated.
- Errors: an exception from the app, its iterable or its ``close()`` is logged once (the
  request line and the peer) and becomes a 500 when nothing was sent; after that the
  connection closes (a close-delimited body is ended by a reset, so that the client cannot
  take a truncated body for a whole one). The iterable's ``close()`` is always called, also
  when the client hangs up. The connection's own errors (the client gone, a bad request
  body) pass through the app untouched, and are told apart from the app's by the state
  they leave (``io_failed``, ``BODY_FAILED``).
- Thread mode (``ThreadCall``): the same code runs in a pool thread, and everything that
  touches the connection (reads, flushes, sendfile, draining the body) is a call into the
  connection's greenlet through the hub (``in_hub``), which the thread waits for.
Switch points: ``Call.run`` (the app, and through it ``wsgi.input`` reads and ``write``).
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from . import wire
from .app import FileBody
from .errors import ClientTimeout, ConnectionClosed, ProtocolError, Timeout
from .exchange import BODY_DONE, BODY_FAILED
from .wire import (
    CHUNKED,
    CLOSE,
    CRLF,
    JOIN_BODY_MAX,
    KEEP_ALIVE,
    LAST_CHUNK,
    NO_BODY_STATUSES,
    chunk_frame,
)

if TYPE_CHECKING:
    from .exchange import Connection, Exchange
    from .http11 import RequestHead
    from .hub import Hub

log = logging.getLogger("tpd2py.wsgi")

# Call.framing
UNSENT = 0
WHOLE = 1  # Content-Length known before the head was queued
LENGTH = 2  # streamed with the app's Content-Length
CHUNKED_BODY = 3
CLOSE_DELIMITED = 4  # HTTP/1.0 without Content-Length: the close ends the body
HEAD_ONLY = 5  # HEAD, 1xx, 204, 304

_STATUS = re.compile(r"([1-9][0-9][0-9]) ([^\x00-\x08\x0a-\x1f\x7f]*)\Z")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# RFC 9110 §5.5: field values are VCHAR, obs-text, SP and HTAB; every other control byte is out.
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# PEP 3333: an application must not set hop-by-hop headers (RFC 9110 §7.6.1); the server frames.
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate",
                         b"proxy-authorization", b"proxy-connection", b"te", b"trailer",
                         b"trailers", b"transfer-encoding", b"upgrade"})
_CACHE_MAX = 4096  # header lines and statuses: an app has few distinct ones
_CACHED_VALUE_MAX = 256  # longer values (cookies, tokens) are rarely repeated: not cached
_statuses: dict[str, tuple[bytes, int]] = {}
_headers: dict[tuple[str, str], tuple[bytes, int, bool]] = {}
_header_lists: dict[tuple[tuple[str, str], ...], tuple[bytes, int, bool]] = {}


def status_line(status: Any) -> tuple[bytes, int]:
    """(status line bytes, code) for a WSGI status string; TypeError/ValueError if invalid."""
    cached = _statuses.get(status) if type(status) is str else None
    if cached is not None:
        return cached
    if type(status) is not str:
        raise TypeError(f"status must be a str like '200 OK', not {type(status).__name__}")
    m = _STATUS.match(status)
    if m is None:
        raise ValueError(f"bad status {status!r}: three digits, a space and a reason phrase")
    code = int(m.group(1))
    if code < 200:
        raise ValueError(f"status {code} is interim: a WSGI app cannot send it")
    reason = m.group(2).encode("latin-1")
    line = wire.STATUS_LINES[code] if wire.PHRASES.get(code) == reason \
        else b"HTTP/1.1 %d %s\r\n" % (code, reason)
    if len(_statuses) < _CACHE_MAX:
        _statuses[status] = (line, code)
    return line, code


def _header_entry(item: Any) -> tuple[bytes, int, bool]:
    """(header line, Content-Length or -1, is Date) for one (name, value) tuple."""
    if type(item) is not tuple or len(item) != 2:
        raise TypeError(f"a response header is a (name, value) tuple, not {item!r}")
    name, value = item
    if type(name) is not str or type(value) is not str:
        raise TypeError(f"header names and values are str: {item!r}")
    n = name.encode("latin-1")
    if not _TOKEN.match(n):
        raise ValueError(f"invalid response header name {name!r}")
    lower = n.lower()
    if lower in _HOP_BY_HOP:
        raise ValueError(f"hop-by-hop header {name!r}: the server sets these (PEP 3333)")
    v = value.encode("latin-1")
    if _BAD_VALUE.search(v):
        raise ValueError(f"control character in response header {name!r}: {value!r}")
    if lower == b"content-length":
        if not v.isdigit() or len(v) > 18:
            raise ValueError(f"bad Content-Length {value!r}")
        entry = (b"", int(v), False)
    else:
        entry = (b"%s: %s\r\n" % (n, v), -1, lower == b"date")
    if len(_headers) < _CACHE_MAX and len(v) <= _CACHED_VALUE_MAX:
        _headers[item] = entry
    return entry


def encode_headers(headers: Any) -> tuple[bytes, int, bool]:
    """(header lines, Content-Length or -1, has Date) for start_response's headers. A header
    list seen before (the same pairs) is one dict lookup."""
    if type(headers) is not list:
        raise TypeError(f"response headers are a list, not {type(headers).__name__}")
    try:
        key: Any = tuple(headers)
        found = _header_lists.get(key)
    except TypeError:  # an unhashable item: not a tuple of str (reported below)
        key = found = None
    if found is not None:
        return found
    lines = []
    length = -1
    has_date = False
    cache = _headers
    for item in headers:
        try:
            entry = cache.get(item)
        except TypeError:
            entry = None
        if entry is None:
            entry = _header_entry(item)
        line, n, date = entry
        if n >= 0:
            if length >= 0 and n != length:
                raise ValueError("two different Content-Length headers")
            length = n
            continue
        if date:
            has_date = True
        lines.append(line)
    result = (b"".join(lines), length, has_date)
    if key is not None and len(_header_lists) < _CACHE_MAX \
            and all(item in cache for item in headers):  # only lists of short, cached values
        _header_lists[key] = result
    return result


class FileWrapper:
    """``wsgi.file_wrapper``: a file-like object as a response body. Over a regular file it is
    sent by the kernel with sendfile, from the file's position; otherwise it is read in
    ``block_size`` blocks. ``close()`` closes the file."""

    __slots__ = ("filelike", "block_size")

    def __init__(self, filelike: Any, block_size: int = 65536) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        size = self.block_size
        while True:
            block = read(size)
            if not block:
                return
            yield block

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


def _file_span(wrapper: FileWrapper) -> tuple[int, int, int] | None:
    """(fd, offset, bytes left) of a FileWrapper over a regular file, else None."""
    filelike = wrapper.filelike
    try:
        fd = filelike.fileno()
        info = os.fstat(fd)
        offset = filelike.tell() if hasattr(filelike, "tell") else 0
    except (AttributeError, OSError, ValueError):
        return None
    if not stat.S_ISREG(info.st_mode) or not isinstance(offset, int) or offset < 0:
        return None
    return fd, offset, max(info.st_size - offset, 0)


class Call:
    """One request's call of the WSGI app, in the connection's greenlet.

    No ``__slots__``: the class attributes below are the defaults, so that a request sets only
    what it changes (a Call is made per request: measured ~1 µs less than 15 slot stores)."""

    environ: dict[str, Any]
    status: bytes | None = None  # the status line, once start_response was called
    code = 0
    fields = b""
    length = -1  # the app's Content-Length
    has_date = False
    framing = UNSENT
    written = 0  # body bytes queued
    pending: Any = ()  # chunks queued in the thread, not yet handed to the hub (ThreadCall)
    deferred_file: FileBody | None = None  # a file body sent by the greenlet (ThreadCall)
    failure = False  # the app failed (logged)
    io_failed = False  # a send to the client failed
    overflow = False

    def __init__(self, ex: Exchange, conn: Connection, head: RequestHead) -> None:
        self.ex = ex
        self.conn = conn
        self.head = head

    # -- the WSGI callables ---------------------------------------------------------------------

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.framing != UNSENT:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise RuntimeError("start_response() called a second time without exc_info")
        # The caches' common case inline (once per request): a known status, a known list.
        found = _statuses.get(status) if type(status) is str else None
        line, code = found if found is not None else status_line(status)
        encoded = None
        if type(headers) is list:
            try:  # noqa: SIM105 - a context manager per request costs more than the lookup
                encoded = _header_lists.get(tuple(headers))
            except TypeError:
                pass  # unhashable: encode_headers says what is wrong
        self.fields, self.length, self.has_date = encoded if encoded is not None \
            else encode_headers(headers)
        self.status, self.code = line, code
        return self.write

    def write(self, data: bytes) -> None:
        """PEP 3333's ``write()``: returns once ``data`` is sent (or queued, when it ends a
        Content-Length body). May switch to the hub."""
        if type(data) is not bytes:
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        if self.status is None:
            raise RuntimeError("write() before start_response()")
        if data:
            if self.framing == UNSENT:
                self._start_stream()
            self._send(data)

    # -- running the app -----------------------------------------------------------------------

    def run(self, app: Callable[..., Any]) -> None:
        """Call the app and queue its response. The app's errors are logged and recorded in
        ``failure``; the connection's own errors propagate. May switch to the hub."""
        result = None
        try:
            result = app(self.environ, self.start_response)
            if type(result) is list and self.framing == UNSENT:
                self._whole(result)  # the common case, without _respond's dispatch
            else:
                self._respond(result)
        except Exception as e:
            if self._ours(e):
                raise
            self._app_error("")
        except Timeout as e:
            # Something else the app waited on (an upstream socket) timed out: its error, as
            # for tpd2py's own handlers. The client's own deadlines are ClientTimeout.
            if self.conn.closed or isinstance(e, ClientTimeout):
                raise
            self._app_error("")
        finally:
            close = getattr(result, "close", None) \
                if result is not None and type(result) is not list else None
            if close is not None:
                try:
                    close()
                except Exception as e:
                    if self._ours(e):
                        raise
                    self._app_error(" in close()")

    def _ours(self, e: Exception) -> bool:
        """Whether ``e`` is the connection's (the client, its body) rather than the app's."""
        if isinstance(e, ConnectionError):
            return self.io_failed or self.conn.closed
        return isinstance(e, ProtocolError) and self.ex.body_left == BODY_FAILED

    def _app_error(self, what: str) -> None:
        if not self.failure:
            log.exception("WSGI app error%s for %r from %s", what, wire.request_line(self.head),
                          self.environ.get("REMOTE_ADDR") or "-")
        self.failure = True

    def _respond(self, result: Any) -> None:
        if self.framing == UNSENT:
            kind = type(result)
            if kind is list or kind is tuple:
                self._whole(result)
                return
            if kind is FileWrapper:
                span = _file_span(result)
                if span is not None:
                    self._file(*span)
                    return
            elif hasattr(result, "__len__") and len(result) == 1:
                self._whole(list(result))
                return
        for piece in result:
            if not isinstance(piece, bytes):
                raise TypeError(f"the app's iterable gave {type(piece).__name__}, not bytes")
            if not piece:
                continue
            if self.framing == UNSENT:
                self._start_stream()
            if self.framing == HEAD_ONLY:
                break
            self._send(piece)
        if self.framing == UNSENT:
            self._whole([])
        elif self.framing == CHUNKED_BODY:
            self._queue((LAST_CHUNK,))
        elif self.framing == LENGTH and self.written < self.length:
            log.error("WSGI app sent %d of its Content-Length %d for %r: closing", self.written,
                      self.length, wire.request_line(self.head))
            self.ex.keep_alive = False

    def _head(self, fields: bytes, length: int) -> bytes:
        """The response head: the app's status and ``fields``, ``length`` as Content-Length
        (none if < 0), our Date unless the app set one, the Connection line. The one place a
        head is made (whole, file and streamed bodies)."""
        # wire.connection_line inline: with it this call costs what the inline copies did.
        keep = self.ex.keep_alive
        return wire.head(self.status, fields, length,  # type: ignore[arg-type]
                         b"" if self.has_date else self.conn.ctx.date.line,
                         b"" if keep and self.head.version == 11 else KEEP_ALIVE if keep
                         else CLOSE)

    def _check_started(self) -> None:
        if self.status is None:
            raise RuntimeError("the app returned a body without calling start_response()")
        ex = self.ex
        if ex.body_left == BODY_FAILED:
            raise ex.failed  # type: ignore[misc]  # the app swallowed a bad-body error
        if ex.body_left != BODY_DONE:
            # A whole response: the unread body is drained first, so a malformed one is
            # still answered 400 and the Connection line says whether it is kept.
            self.in_hub(ex.finish_body, self.conn)

    def _whole(self, items: list[bytes] | tuple[bytes, ...]) -> None:
        """A body known whole before anything is sent: one head with its Content-Length."""
        size = 0
        for item in items:
            if type(item) is not bytes and not isinstance(item, bytes):
                raise TypeError(f"the app's iterable gave {type(item).__name__}, not bytes")
            size += len(item)
        if self.status is None or self.ex.body_left != BODY_DONE:
            self._check_started()
        length = self.length
        if self.code in NO_BODY_STATUSES:
            length = -1  # no Content-Length and no body (RFC 9110 §8.6)
            items = ()
        elif self.head.method == b"HEAD":
            if length < 0 and size:
                length = size
            items = ()
        else:
            if length >= 0 and length != size:
                raise ValueError(f"Content-Length {length} but a body of {size} bytes")
            length = size
        head = self._head(self.fields, length)
        self.framing = WHOLE
        self.written = size
        if len(items) == 1 and size <= JOIN_BODY_MAX:
            self._queue((head + items[0],))
        else:
            self._queue((head, *items))

    def _file(self, fd: int, offset: int, available: int) -> None:
        length = self.length
        if length > available:
            raise ValueError(f"Content-Length {length} but only {available} bytes in the file")
        if length < 0:
            length = available
        self._check_started()
        body = self.code not in NO_BODY_STATUSES and self.head.method != b"HEAD"
        self.framing = WHOLE
        self._queue((self._head(self.fields,
                                length if self.code not in NO_BODY_STATUSES else -1),))
        if body and length:
            self.ex.response_started = True
            self.written = length
            self._send_file(fd, offset, length)

    def _start_stream(self) -> None:
        """Queue the head of a streamed body, choosing its framing."""
        if self.status is None:
            raise RuntimeError("the app returned a body without calling start_response()")
        ex = self.ex
        if ex.body_left == BODY_FAILED:
            raise ex.failed  # type: ignore[misc]
        head = self.head
        if head.expect_continue and not ex.continue_sent and ex.body_left != BODY_DONE:
            # Not read before the head: no 100 can follow it, so the body may or may not
            # come, and the connection will close (Exchange.finish_body). Say so now.
            ex.keep_alive = False
        length = self.length
        fields = self.fields
        if self.code in NO_BODY_STATUSES:
            framing, length = HEAD_ONLY, -1
        elif head.method == b"HEAD":
            framing = HEAD_ONLY
        elif length >= 0:
            framing = LENGTH
        elif head.version == 11:
            framing = CHUNKED_BODY
            fields += CHUNKED
        else:
            framing = CLOSE_DELIMITED
            ex.keep_alive = False
        self.framing = framing
        ex.response_started = True
        self._queue((self._head(fields, length),))

    def _send(self, piece: bytes) -> None:
        framing = self.framing
        n = len(piece)
        if framing == LENGTH:
            left = self.length - self.written
            if n >= left:
                if n > left and not self.overflow:
                    self.overflow = True
                    log.error("WSGI app sent more than its Content-Length %d for %r: the rest "
                              "is dropped", self.length, wire.request_line(self.head))
                if left:
                    self.written += left
                    self._queue((piece[:left] if n > left else piece,))
                return  # the body is complete: the server's loop sends it
            self.written += n
            self._queue((piece,))
        elif framing == CHUNKED_BODY:
            self.written += n
            self._queue((chunk_frame(n), piece, CRLF))
        elif framing == CLOSE_DELIMITED:
            self.written += n
            self._queue((piece,))
        else:
            return  # HEAD_ONLY
        self._flush()

    # -- the connection's side (overridden in thread mode) ------------------------------------

    def in_hub(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call ``fn`` in the connection's greenlet: here, at once."""
        return fn(*args)

    def _queue(self, chunks: tuple[bytes, ...]) -> None:
        add = self.conn.out.add
        for chunk in chunks:
            add(chunk)

    def _flush(self) -> None:
        self._hub_flush(())

    def _hub_flush(self, chunks: Any) -> None:
        conn = self.conn
        try:
            conn.out.extend(chunks)
            conn.set_nodelay()  # a streamed body is more than one write
            conn.flush()
        except BaseException:
            self.io_failed = True
            raise

    def _send_file(self, fd: int, offset: int, length: int) -> None:
        """Send what is queued, then ``length`` bytes of ``fd`` from ``offset`` by the
        kernel (may switch to the hub)."""
        conn = self.conn
        body = FileBody(os.dup(fd), offset, length)  # the app's file stays the app's
        try:
            conn.send_file(body)
        except BaseException:
            self.io_failed = True
            raise
        finally:
            body.close()


class _Message:
    """A call from a pool thread into the connection's greenlet; the thread waits on ``done``."""

    __slots__ = ("fn", "args", "value", "error", "done")

    def __init__(self, fn: Callable[..., Any], args: tuple) -> None:
        self.fn = fn
        self.args = args
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()


class ThreadCall(Call):
    """A Call whose app runs in a pool thread: every touch of the connection goes through the
    hub to the connection's greenlet (``serve``), which the thread waits for."""

    def __init__(self, ex: Exchange, conn: Connection, head: RequestHead) -> None:
        super().__init__(ex, conn, head)
        self.pending: list[bytes] = []
        self.deferred_file: FileBody | None = None  # sent by the greenlet after the job
        self.hub: Hub = conn.ctx.hub
        self.greenlet: Any = None  # the connection's greenlet while it serves this call

    def in_hub(self, fn: Callable[..., Any], *args: Any) -> Any:
        """From the pool thread: run ``fn(*args)`` in the connection's greenlet and wait."""
        message = _Message(fn, args)
        self.hub.call_soon_threadsafe(self._deliver, message)
        message.done.acquire()
        error = message.error
        if error is not None:
            message.error = None
            try:
                raise error
            finally:
                error = None
        return message.value

    def _deliver(self, message: _Message) -> None:
        """Hub callback: hand a thread's call to the greenlet (or fail it: it has gone)."""
        g = self.greenlet
        if g is None:
            message.error = ConnectionClosed()
            message.done.release()
            return
        self.hub.schedule(g, message)

    def serve(self, job: Any) -> None:
        """In the connection's greenlet: run the thread's calls until its job is done (the
        pool resumes this greenlet with the job). May switch to the hub."""
        hub = self.hub
        self.greenlet = job.greenlet
        finished = False
        try:
            while True:
                message = hub.park()
                if message is job:
                    finished = True
                    return
                try:
                    message.value = message.fn(*message.args)
                except BaseException as e:  # noqa: BLE001 - raised again in the thread
                    message.error = e
                message.done.release()
        finally:
            self.greenlet = None
            if not finished:
                job.greenlet = None  # thrown out: the job's outcome is dropped

    def _queue(self, chunks: tuple[bytes, ...]) -> None:
        self.pending.extend(chunks)

    def _take_pending(self) -> list[bytes]:
        chunks, self.pending = self.pending, []
        return chunks

    def _send_file(self, fd: int, offset: int, length: int) -> None:
        # Not from here: the greenlet sends the file after the job (WSGIExchange._after), so
        # a slow reader holds no thread. Our own descriptor: the app closes its file now.
        self.deferred_file = FileBody(os.dup(fd), offset, length)

    def _flush(self) -> None:
        self.in_hub(self._hub_flush, self._take_pending())
