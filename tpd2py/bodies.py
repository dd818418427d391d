"""Request bodies, as methods of ``Connection`` (conn.py assigns them in its class body).

How it works: ``read_body`` yields the current request's body in copies, from Content-Length
bytes or through ``chunked.ChunkedDecoder``; it sends ``100 Continue`` first when the client
asked and nothing has arrived, and keeps a minimum-progress deadline (each byte buys
``1/min_body_rate`` s, never more than ``body_timeout`` ahead). ``_finish_body`` drains a small
unread body so that the connection can be reused, or gives the connection up.
Switch points: ``read_body`` (it reads), hence ``_finish_body``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from . import respond
from .chunked import ChunkedDecoder
from .errors import ConnectionClosed, ProtocolError

if TYPE_CHECKING:
    from .conn import Connection

# A handler that left at most this much of its request body unread gets it drained so the
# connection can be reused; a larger remainder is cheaper to close on.
MAX_DRAIN = 65536

_INF = float("inf")
# Connection.body_left: bytes still to read, or one of these.
_BODY_DONE = 0
_BODY_CHUNKED = -2



def read_body(self: Connection) -> Iterator[bytes]:
    """Yield the current request's body in chunks (copies, never views of the buffer).

    May switch to the hub. Sends ``100 Continue`` first when the client asked for it and
    no body byte has arrived yet.
    """
    head = self.head
    if head is None or self.body_left == _BODY_DONE:
        return
    server = self.server
    config = server.config
    if head.expect_continue and not self.continue_sent and self.start == self.end \
            and not self.response_started:
        self.continue_sent = True
        self.out.add(respond.CONTINUE)
        self.flush()
    self._body_deadline_start()
    if self.body_left == _BODY_CHUNKED:
        decoder = self.decoder
        if decoder is None:
            decoder = self.decoder = ChunkedDecoder(config.limits)
        while True:
            if self.start < self.end:
                before = self.start
                self.start = decoder.feed(self.buf, self.start, self.end)  # type: ignore[arg-type]
                if decoder.total > config.max_body_size:
                    raise ProtocolError(413, "content too large")
                if decoder.out:
                    pieces = decoder.out
                    decoder.out = []
                    for p in pieces:
                        yield bytes(p)
                if decoder.done:
                    self.body_left = _BODY_DONE
                    self.decoder = None
                    self.deadline = _INF
                    return
                if self.start < self.end and self.start != before:
                    continue  # more complete input to decode
            # Buffer empty, or it ends in an incomplete chunk line: read more.
            self._recv_body()
    while self.body_left > 0:
        if self.start == self.end:
            self._recv_body()
        take = min(self.body_left, self.end - self.start)
        assert self.buf is not None
        piece = bytes(self.buf[self.start:self.start + take])
        self.start += take
        self.body_left -= take
        yield piece
    self.body_left = _BODY_DONE
    self.deadline = _INF

def _body_deadline_start(self: Connection) -> None:
    if self.deadline == _INF:
        self.deadline = self.server.hub.now + self.server.config.body_timeout

def _recv_body(self: Connection) -> None:
    n = self._recv()
    if n == 0:
        raise ConnectionClosed()
    # Minimum progress: each byte buys 1/min_rate seconds, never more than body_timeout
    # ahead, so a trickle runs out of time while a steady upload never does.
    config = self.server.config
    now = self.server.hub.now
    self.deadline = min(now + config.body_timeout,
                        max(self.deadline, now) + n / config.min_body_rate)

def _finish_body(self: Connection) -> None:
    """Discard an unread body if small enough; otherwise stop keeping the connection."""
    if self.body_left == _BODY_DONE:
        return
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
    for piece in self.read_body():
        drained += len(piece)
        if drained > MAX_DRAIN:
            self.keep_alive = False
            return

def _finish_body_or_close(self: Connection) -> None:
    try:
        self._finish_body()
    except ProtocolError:
        self.keep_alive = False
