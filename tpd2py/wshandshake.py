"""The WebSocket opening handshake (RFC 6455 §4.2, RFC 7692 §5-§7): a request's headers in,
the ``101 Switching Protocols`` head out, or an ``HTTPError`` with a clear 4xx; and what a
WebSocket route is configured with (``Options``) and raises once closed (``WebSocketClosed``).

Rules:
- Sans-I/O: it reads header values through a ``get_all(name)`` function and builds bytes;
  it never touches a socket or the hub.
- Strict (§4.2.1): GET over HTTP/1.1, ``Upgrade: websocket`` and ``Connection: upgrade``
  (tokens, case-insensitive), one ``Sec-WebSocket-Key`` that is base64 of 16 bytes, no request
  body. A request that is not an upgrade at all, or asks for another version than 13, gets
  ``426 Upgrade Required`` with ``Sec-WebSocket-Version: 13`` (§4.4); a malformed upgrade
  gets 400; an Origin outside the allowed list 403 (§10.2).
- Subprotocols: the first of the server's list (its order of preference) that the client
  offered; none chosen sends no header (the client decides whether that will do).
- permessage-deflate (RFC 7692): the first offer this server can accept is taken; the server
  always keeps ``server_no_context_takeover`` (its messages compress the same way for every
  socket, so a broadcast is compressed once: §7.1.1.1 lets a server add it), honours
  ``client_no_context_takeover`` and both window sizes; an offer with an unknown, repeated or
  malformed parameter is declined (§7.1: not accepted, not an error).
Switch points: none.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import HTTPError
from .wsframe import MAX_FRAME, MAX_MESSAGE

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
VERSION = "13"
_UPGRADE_REQUIRED = {"Sec-WebSocket-Version": VERSION}


class WebSocketClosed(ConnectionError):
    """The WebSocket is closed: raised by ``receive``/``send`` once it is. ``code`` is the
    client's Close code (1005: none given; 1006: it went away without a Close frame), or ours
    when we closed it first."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Options:
    """A WebSocket route's settings; every default says why."""

    # Subprotocols this route speaks, in its order of preference (Sec-WebSocket-Protocol).
    subprotocols: tuple[str, ...] = ()
    # Origins allowed to connect (cross-site WebSocket hijacking, RFC 6455 §10.2); None: any.
    origins: tuple[str, ...] | None = None
    max_frame: int = MAX_FRAME
    max_message: int = MAX_MESSAGE  # after decompression: the decompression-bomb limit
    # Received messages held for a handler that has not read them; then reading stops.
    max_queue: int = 16
    # Bytes queued for a client that reads slowly before the slow-reader policy applies to a
    # subscription's frame: 1 MiB is seconds of chat for anyone, and bounds memory per socket.
    max_pending: int = 1 << 20
    slow_reader: str = "close"  # or "drop": skip the frames a slow reader has no room for
    # Below the 60 s idle timeout of common proxies and load balancers.
    ping_interval: float | None = 20.0
    ping_timeout: float = 20.0  # no input at all for this long after a ping: a dead peer
    read_timeout: float = 60.0  # a message's frames must all arrive within this
    close_timeout: float = 5.0  # for the client's answer to our Close
    compression: bool = True  # accept permessage-deflate when the client offers it


@dataclass(frozen=True)
class Deflate:
    """Negotiated permessage-deflate parameters (RFC 7692 §7.1)."""

    client_takeover: bool = True  # the client keeps its window between messages
    client_window_bits: int = 15  # the window the client compresses with (we inflate with)
    server_window_bits: int = 15  # the window we compress with

    def response(self) -> bytes:
        params = [b"permessage-deflate", b"server_no_context_takeover"]
        if not self.client_takeover:
            params.append(b"client_no_context_takeover")
        if self.server_window_bits != 15:
            params.append(b"server_max_window_bits=%d" % self.server_window_bits)
        if self.client_window_bits != 15:
            params.append(b"client_max_window_bits=%d" % self.client_window_bits)
        return b"; ".join(params)


def accept_key(key: str) -> bytes:
    """``Sec-WebSocket-Accept`` for ``key`` (RFC 6455 §4.2.2 item 5.4)."""
    return base64.b64encode(hashlib.sha1(key.encode("latin-1") + GUID).digest())


def _tokens(values: Sequence[str]) -> list[str]:
    """The comma-separated list elements of header values, trimmed (RFC 9110 §5.6.1)."""
    return [t.strip() for value in values for t in value.split(",") if t.strip()]


def _window_bits(value: str) -> int | None:
    value = value.strip('"')
    if not value.isdigit() or len(value) > 2 or not 8 <= int(value) <= 15:
        return None
    return int(value)


def negotiate_deflate(offers: Sequence[str]) -> Deflate | None:
    """The first permessage-deflate offer in ``Sec-WebSocket-Extensions`` that we accept."""
    for offer in _tokens(offers):
        name, *raw = [p.strip() for p in offer.split(";")]
        if name.lower() != "permessage-deflate":
            continue
        params: dict[str, str | None] = {}
        ok = True
        for p in raw:
            name, eq, value = p.partition("=")
            name = name.strip().lower()
            if name in params or name not in ("server_no_context_takeover",
                                              "client_no_context_takeover",
                                              "server_max_window_bits", "client_max_window_bits"):
                ok = False
                break
            params[name] = value.strip() if eq else None
        if not ok:
            continue
        if any(params[k] is not None for k in ("server_no_context_takeover",
                                                "client_no_context_takeover") if k in params):
            continue  # these take no value
        bits = params.get("server_max_window_bits", "15")
        server_bits = None if bits is None else _window_bits(bits)  # a value is required
        bits = params.get("client_max_window_bits", "15")
        client_bits = 15 if bits is None else _window_bits(bits)
        # zlib makes no raw deflate stream with an 8-bit window: decline (§7.1 allows it).
        if server_bits is None or client_bits is None or server_bits == 8:
            continue
        return Deflate("client_no_context_takeover" not in params, client_bits, server_bits)
    return None


def handshake(method: str, version: str, get_all: Callable[[str], list[str]],
              subprotocols: Sequence[str] = (), origins: Sequence[str] | None = None,
              compression: bool = True) -> tuple[bytes, str | None, Deflate | None]:
    """Check an upgrade request; return the 101 head, the subprotocol and the deflate
    parameters chosen. Raises HTTPError (400, 403, 426) for a request to refuse."""
    upgrade = [t.lower() for t in _tokens(get_all("upgrade"))]
    if "websocket" not in upgrade:
        raise HTTPError(426, "426 Upgrade Required: this resource speaks WebSocket only\n",
                        _UPGRADE_REQUIRED)
    if method != "GET":
        raise HTTPError(400, "400 Bad Request: a WebSocket handshake is a GET\n")
    if version != "HTTP/1.1":
        raise HTTPError(400, "400 Bad Request: a WebSocket handshake needs HTTP/1.1\n")
    if "upgrade" not in [t.lower() for t in _tokens(get_all("connection"))]:
        raise HTTPError(400, "400 Bad Request: Connection must list 'upgrade'\n")
    versions = get_all("sec-websocket-version")
    if versions != [VERSION]:
        raise HTTPError(426, "426 Upgrade Required: WebSocket version 13 only\n",
                        _UPGRADE_REQUIRED)
    keys = get_all("sec-websocket-key")
    if len(keys) != 1:
        raise HTTPError(400, "400 Bad Request: one Sec-WebSocket-Key is needed\n")
    try:
        raw_key = base64.b64decode(keys[0].encode("latin-1"), validate=True)
    except (binascii.Error, ValueError):
        raw_key = b""
    if len(raw_key) != 16:
        raise HTTPError(400, "400 Bad Request: Sec-WebSocket-Key is not 16 bytes in base64\n")
    if get_all("transfer-encoding") or any(v.strip() != "0" for v in get_all("content-length")):
        raise HTTPError(400, "400 Bad Request: a WebSocket handshake has no body\n")
    if origins is not None:
        origin = get_all("origin")
        if len(origin) != 1 or origin[0] not in origins:
            raise HTTPError(403, "403 Forbidden: origin not allowed\n")
    chosen = None
    if subprotocols:
        offered = _tokens(get_all("sec-websocket-protocol"))
        chosen = next((p for p in subprotocols if p in offered), None)
    deflate = negotiate_deflate(get_all("sec-websocket-extensions")) if compression else None
    lines = [b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket", b"Connection: Upgrade",
             b"Sec-WebSocket-Accept: " + accept_key(keys[0])]
    if chosen is not None:
        lines.append(b"Sec-WebSocket-Protocol: " + chosen.encode())
    if deflate is not None:
        lines.append(b"Sec-WebSocket-Extensions: " + deflate.response())
    return b"\r\n".join(lines) + b"\r\n\r\n", chosen, deflate
