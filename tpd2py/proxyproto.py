"""The PROXY protocol, v1 and v2 (HAProxy's; AWS NLB, HAProxy, nginx's ``proxy_protocol on``):
the client's address sent by a load balancer before the first HTTP byte.

Rules:
- Opt-in (``--proxy-protocol``): with it, every connection on every listener must start with
  a PROXY header; without it, none may (the server never looks). It sets the ``Server.preface``
  seam, so a server without it takes the plain accept path: nothing per connection or request.
- Strict: a header that does not parse exactly (spec: haproxy doc/proxy-protocol.txt) gets a
  400 and a close, as does one that is not complete within ``timeout`` seconds. v1 is at most
  107 bytes; v2's address block at most MAX_V2_LENGTH. ``UNKNOWN`` (v1) and ``LOCAL`` or a
  non-TCP family (v2) keep the socket's own peer (the balancer's health checks).
- The header is read with MSG_PEEK and then consumed to its exact length, so not one byte of
  the HTTP request that follows is taken.

How it works: the server accepts, then runs ``PROXYProtocol.preface`` in a greenlet of its own:
peek, parse (``parse``, sans-I/O: bytes in, (length, address) or None for "need more" out),
wait on the hub for more, consume, then ``server.adopt_connection(sock, client_address,
transport)`` (the PROXY header comes before TLS on the wire).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import struct
from typing import Any

import greenlet

from .errors import Timeout
from .hub import Hub

__all__ = ["PROXYProtocol", "ProxyProtocolError", "parse"]

log = logging.getLogger("tpd2py.proxyproto")

V1_PREFIX = b"PROXY "
V1_MAX = 107  # the spec's bound, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
# v2's length field allows 65,535 bytes of addresses and TLVs; TLVs (SSL, unique ids, AWS VPC
# endpoint) are small: this bounds what a balancer can make us buffer.
MAX_V2_LENGTH = 4096
PEEK = 16 + MAX_V2_LENGTH
_DONTWAIT_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT
_BAD = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 18\r\n"
        b"Connection: close\r\n\r\nbad PROXY header\r\n")


class ProxyProtocolError(ValueError):
    pass


Address = tuple[str, int] | None


def _port(text: bytes) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[0] == 0x30):
        raise ProxyProtocolError("bad port")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError("bad port")
    return port


def _parse_v1(data: bytes) -> tuple[int, Address] | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX or b"\n" in data[:V1_MAX]:
            raise ProxyProtocolError("v1 header without CRLF within 107 bytes")
        return None
    parts = data[:end].split(b" ")
    if parts[1:2] == [b"UNKNOWN"]:
        return end + 2, None
    if len(parts) != 6 or parts[1] not in (b"TCP4", b"TCP6"):
        raise ProxyProtocolError("bad v1 header")
    try:
        src = ipaddress.ip_address(parts[2].decode("ascii"))
        dst = ipaddress.ip_address(parts[3].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise ProxyProtocolError("bad v1 address") from None
    want = 4 if parts[1] == b"TCP4" else 6
    if src.version != want or dst.version != want:
        raise ProxyProtocolError("v1 address of the wrong family")
    port = _port(parts[4])
    _port(parts[5])
    return end + 2, (str(src), port)


def _parse_v2(data: bytes) -> tuple[int, Address] | None:
    if len(data) < 16:
        return None
    ver_cmd, family, length = struct.unpack_from("!BBH", data, 12)
    if ver_cmd >> 4 != 2 or ver_cmd & 0xF > 1:
        raise ProxyProtocolError("bad v2 version or command")
    if length > MAX_V2_LENGTH:
        raise ProxyProtocolError("v2 header too long")
    total = 16 + length
    if len(data) < total:
        return None
    if ver_cmd & 0xF == 0:  # LOCAL: the balancer itself (a health check)
        return total, None
    if family == 0x11:  # TCP over IPv4
        if length < 12:
            raise ProxyProtocolError("v2 IPv4 block too short")
        src4 = ipaddress.IPv4Address(data[16:20])
        (port,) = struct.unpack_from("!H", data, 24)
        return total, (str(src4), port)
    if family == 0x21:  # TCP over IPv6
        if length < 36:
            raise ProxyProtocolError("v2 IPv6 block too short")
        src6 = ipaddress.IPv6Address(data[16:32])
        (port,) = struct.unpack_from("!H", data, 48)
        return total, (str(src6), port)
    if family >> 4 > 3 or family & 0xF > 2:
        raise ProxyProtocolError("bad v2 family")
    return total, None  # UNSPEC, UDP or unix: no TCP client address to report


def parse(data: bytes) -> tuple[int, Address] | None:
    """A PROXY header at the start of ``data``: (its length, the client's (ip, port) or None to
    keep the socket's peer), or None when more bytes are needed. Raises ProxyProtocolError."""
    if data[:1] == b"\r":
        if V2_SIGNATURE.startswith(data[:12]) and len(data) < 12:
            return None
        if data[:12] != V2_SIGNATURE:
            raise ProxyProtocolError("not a PROXY header")
        return _parse_v2(data)
    if len(data) < len(V1_PREFIX):
        if V1_PREFIX.startswith(data):
            return None
        raise ProxyProtocolError("not a PROXY header")
    if not data.startswith(V1_PREFIX):
        raise ProxyProtocolError("not a PROXY header")
    return _parse_v1(data)


class PROXYProtocol:
    """``PROXYProtocol(timeout).install(server)`` before the server listens."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout

    def install(self, server: Any) -> None:
        server.preface = self.preface

    def preface(self, server: Any, sock: Any, addr: Any, transport: Any = None) -> None:
        """Read and consume the header, then hand the connection to the server. Runs in its
        own greenlet; may switch to the hub."""
        hub: Hub = server.hub
        rec = hub.register(sock.fileno(), None, armed=False)
        timer = hub.call_later(self.timeout, hub.throw, greenlet.getcurrent(), Timeout())
        client: Address = None
        try:
            while True:
                try:
                    data = sock.recv(PEEK, _DONTWAIT_PEEK)
                except BlockingIOError:
                    hub.wait_readable(rec)
                    continue
                if not data:
                    raise ConnectionResetError
                result = parse(data)
                if result is not None:
                    break
                if len(data) >= PEEK:
                    raise ProxyProtocolError("header too long")
                hub.wait_readable(rec)
            length, client = result
            got = sock.recv(length, socket.MSG_DONTWAIT)
            if len(got) != length:  # the peeked bytes are in the socket: cannot happen
                raise ProxyProtocolError("short read")
        except (ProxyProtocolError, Timeout) as e:
            log.debug("PROXY header from %s: %s", addr, e or "timeout")
            timer.cancel()
            hub.unregister(rec)
            with contextlib.suppress(OSError):
                sock.send(_BAD, socket.MSG_DONTWAIT)
            sock.close()
            return
        except OSError:
            timer.cancel()
            hub.unregister(rec)
            sock.close()
            return
        timer.cancel()
        hub.unregister(rec)
        hub.call_soon(server.adopt_connection, sock, client or addr, transport)
