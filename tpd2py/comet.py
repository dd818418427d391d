"""Comet endpoints on channels (channel.py): long polling and Server-Sent Events.

How it works: ``long_poll`` answers at once when the channel has news for the client's version,
else returns ``Channel.later`` so the connection waits with no greenlet; ``event_stream`` (and
``sse`` for any iterable) streams ``text/event-stream`` frames from ``Channel.updates``, with a
heartbeat comment for proxies. Frames are encoded once per message (``Message.sse``).
Rules: endpoints are plain handlers' helpers; a bad ``after``/``Last-Event-ID`` is a 400.
Switch points: the event-stream bodies while they iterate; ``long_poll`` returns at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .app import Later, Response
from .channel import (
    DEFAULT_HEARTBEAT,
    DEFAULT_HISTORY,
    DEFAULT_POLL_TIMEOUT,
    EVENT_STREAM,
    HEARTBEAT,
    TIMEOUT_GRANULARITY,
    Channel,
    Message,
    Update,
    sse_event,
)
from .errors import HTTPError

if TYPE_CHECKING:
    from .app import Request

__all__ = [
    "DEFAULT_HEARTBEAT", "DEFAULT_HISTORY", "DEFAULT_POLL_TIMEOUT", "EVENT_STREAM", "HEARTBEAT",
    "TIMEOUT_GRANULARITY", "Channel", "Message", "Update", "sse_event", "long_poll",
    "last_event_id", "sse", "event_stream",
]

_STREAM_OPEN = b": stream open\n\n"
_STREAM_HEADERS = [("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no")]


def _version_param(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        version = int(value)
    except ValueError:
        raise HTTPError(400, "the version must be an integer\n") from None
    if version < 0:
        raise HTTPError(400, "the version must not be negative\n")
    return version


def long_poll(request: Request, channel: Channel,
              timeout: float = DEFAULT_POLL_TIMEOUT) -> Response | Later:
    """A long-poll endpoint: ``GET ...?after=N`` answers with what is newer than N.

    At once if there is news (or if ``after`` is missing: the recent history), else when the
    next message is published: ``200`` with ``{"version": V, "complete": bool, "messages":
    [{"id": v, "data": ...}, ...]}`` (the client asks again with ``after=V``). When ``timeout``
    passes first: ``204 No Content`` (the client asks again with the same version). While it
    waits, the connection holds no greenlet and no input buffer (``Channel.later``), and a
    client that hangs up is closed at once. The Response is shared among the waiters of one
    publish: do not modify it. Never switches: the handler returns at once.
    """
    after = _version_param(request.query.get("after"))
    update = channel.since(after)
    if update or after is None:
        return update.response()
    return channel.later(after, timeout)


def last_event_id(request: Request) -> int | None:
    """The version an event-stream client has: ``Last-Event-ID`` (sent by browsers when they
    reconnect), else the ``after`` query parameter, else None. Never switches."""
    value = request.header("last-event-id")
    if value is not None:
        try:
            return max(int(value.strip()), 0)
        except ValueError:
            return None
    return _version_param(request.query.get("after"))


def _frame(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, Update):
        return item.sse_body()
    if isinstance(item, Message):
        return item.sse
    if item is None:
        return HEARTBEAT
    return sse_event(item)


def sse(events: Iterable[Any], retry: int | None = None) -> Response:
    """A ``text/event-stream`` Response from an iterable a handler yields events into.

    Items may be: bytes (an already-framed event, e.g. from ``sse_event``), a Message or an
    Update (their cached frames; an empty Update is a heartbeat), None (a heartbeat comment),
    or any other data (one ``message`` event). The stream starts with a comment, so that the
    client sees the headers at once; ``retry`` (ms) tells it how soon to reconnect.
    May switch to the hub while iterating.
    """
    def body() -> Iterator[bytes]:
        yield _STREAM_OPEN if retry is None else b"retry: %d\n\n" % retry
        for item in events:
            yield _frame(item)

    return Response(body(), content_type=EVENT_STREAM, headers=_STREAM_HEADERS)


def event_stream(request: Request, channel: Channel, heartbeat: float = DEFAULT_HEARTBEAT,
                 retry: int | None = None) -> Response:
    """A ready Server-Sent Events endpoint for ``channel``.

    Sends the messages after ``Last-Event-ID`` (or ``?after=``; without either, the recent
    history), then each new message as it is published (``id:`` is its version, so a browser
    that reconnects resumes where it stopped), and a heartbeat comment every ``heartbeat``
    seconds without news. Ends when the client hangs up. May switch to the hub.
    """
    return sse(channel.updates(last_event_id(request), heartbeat, request), retry)
