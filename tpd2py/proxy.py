"""Behind a reverse proxy: the client's address, scheme and host from X-Forwarded-* or RFC 7239
``Forwarded``, believed only from trusted peers.

Rules:
- Off unless asked for (``--proxy-headers`` / ``--forwarded-allow-ips``): it is an ``App.wrap``
  wrapper, so a server without it pays nothing per request. With it, a request from a peer that
  is not trusted is passed on untouched: its headers are ignored, whatever they say.
- X-Forwarded-For/-Proto/-Host come first; ``Forwarded`` is read only when none of them is
  present. (nginx appends to X-Forwarded-For but passes a client's ``Forwarded`` through as it
  came: reading that first would let any client choose its address.) A proxy must set or clear
  every header of the family it is trusted for.
- The client is found right to left: the address list is walked from the hop nearest to us,
  skipping trusted proxies; the first untrusted address is the client (a client can prepend
  anything, but not what a trusted proxy appended after it). Proto and host come from the
  nearest hop. Values that do not parse (an address that is not an IP, a scheme other than
  http/https, a host with bytes a Host header may not have) are ignored, never passed on.
- The access log shows the same client: ``client_of`` is the log's ``client`` seam (set by the
  CLI with the flag), so every line (a 404, a 400 too) has the client a trusted proxy reported.

How it works: a trusted request is re-made as a ``ProxiedRequest`` (a ``Request`` with the three
answers) before the handler sees it; ``request.peer`` is then ``(client_ip, port)`` (port 0 when
the proxy did not say), ``request.scheme`` and ``request.host`` what the client used.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ._grammar import HOST_TABLE
from .app import Handler, Request

__all__ = ["DEFAULT_TRUSTED", "ProxiedRequest", "ProxyHeaders", "parse_forwarded"]

DEFAULT_TRUSTED = "127.0.0.1,::1,unix"
_SCHEMES = {b"http": "http", b"https": "https"}
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxiedRequest(Request):
    """A request that came through a trusted proxy: peer, scheme and host are the client's."""

    __slots__ = ("_client", "_scheme", "_host")

    def __init__(self, request: Request, client: Any, scheme: str | None, host: str | None
                 ) -> None:
        Request.__init__(self, request._head, request._conn)
        self.params = request.params
        self._client = client
        self._scheme = scheme
        self._host = host

    @property
    def peer(self) -> Any:
        return self._client if self._client is not None else self._conn.address()

    @property
    def scheme(self) -> str:
        return self._scheme or Request.scheme.fget(self)  # type: ignore[attr-defined]

    @property
    def host(self) -> str | None:
        return self._host if self._host is not None else Request.host.fget(self)  # type: ignore


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def parse_forwarded(value: bytes) -> list[dict[bytes, bytes]] | None:
    """RFC 7239 §4: ``Forwarded`` as a list of elements (lower-case names to values, quotes
    removed), or None when it does not parse."""
    elements: list[dict[bytes, bytes]] = []
    pos, n = 0, len(value)
    element: dict[bytes, bytes] = {}
    while True:
        while pos < n and value[pos] in b" \t":
            pos += 1
        eq = value.find(b"=", pos)
        if eq <= pos:
            return None
        name = value[pos:eq].strip().lower()
        pos = eq + 1
        if pos < n and value[pos] == 0x22:  # quoted-string
            out = bytearray()
            pos += 1
            while pos < n and value[pos] != 0x22:
                if value[pos] == 0x5C and pos + 1 < n:
                    pos += 1
                out.append(value[pos])
                pos += 1
            if pos >= n:
                return None
            pos += 1
            v = bytes(out)
        else:
            end = pos
            while end < n and value[end] not in b";, \t":
                end += 1
            v = value[pos:end]
            pos = end
        if not name or name in element or not name.isalnum():
            return None
        element[name] = v
        while pos < n and value[pos] in b" \t":
            pos += 1
        if pos >= n:
            elements.append(element)
            return elements
        sep = value[pos]
        pos += 1
        if sep == 0x2C:  # ","
            elements.append(element)
            element = {}
        elif sep != 0x3B:  # ";"
            return None


class ProxyHeaders:
    """``app.wrap(ProxyHeaders("10.0.0.0/8,unix"))``: believe proxy headers from those peers.

    ``trusted``: comma-separated IPs or networks, ``unix`` (unix-socket peers), ``*`` (anyone:
    only when the server cannot be reached but through the proxy). Default: loopback and unix.
    """

    def __init__(self, trusted: str | None = None) -> None:
        self.anyone = False
        self.unix = False
        self.networks: list[_Network] = []
        for item in (trusted or DEFAULT_TRUSTED).split(","):
            item = item.strip()
            if item == "*":
                self.anyone = True
            elif item == "unix":
                self.unix = True
            elif item:
                try:
                    self.networks.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    raise ValueError(f"--forwarded-allow-ips: not an address or network: "
                                     f"{item!r}") from None

    def trusts_ip(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return ip is not None and (self.anyone or any(ip in net for net in self.networks))

    def trusts_peer(self, peer: Any) -> bool:
        if isinstance(peer, tuple):
            return self.trusts_ip(_ip(peer[0]))
        # A unix socket's peer is a path or "" (unnamed).
        return self.anyone or (self.unix and isinstance(peer, str | bytes))

    def __call__(self, handler: Handler) -> Handler:
        def proxied(request: Request, **params: Any) -> Any:
            if not self.trusts_peer(request.peer):
                return handler(request, **params)
            return handler(self.resolve(request), **params)
        return proxied

    def resolve(self, request: Request) -> Request:
        """``request`` as its client made it, per the headers of a trusted proxy."""
        found = self._hops(request._head)
        if found is None:
            return request
        hops, proto, host = found
        client = self._client(hops)
        scheme = _SCHEMES.get(proto.strip().lower()) if proto is not None else None
        host_text = None
        if host is not None:
            host = host.strip()
            if host and not host.translate(HOST_TABLE).count(0):
                host_text = host.decode("latin-1")
        if client is None and scheme is None and host_text is None:
            return request
        return ProxiedRequest(request, client, scheme, host_text)

    def client_of(self, peer: Any, head: Any) -> Any:
        """The access log's address for a request from ``peer``: the client a trusted proxy
        reported, else ``peer`` itself (accesslog.AccessLog.client). Never switches."""
        if head is None or not self.trusts_peer(peer):
            return peer
        found = self._hops(head)
        client = self._client(found[0]) if found is not None else None
        return peer if client is None else client

    def _hops(self, head: Any) -> tuple[list[tuple[str, int, bytes | None, bytes | None]],
                                        bytes | None, bytes | None] | None:
        """The hops the headers list (address, port, proto, host), and the nearest hop's proto
        and host; None when there are no proxy headers or ``Forwarded`` does not parse."""
        xff = _field(head, b"x-forwarded-for")
        xproto = _field(head, b"x-forwarded-proto")
        xhost = _field(head, b"x-forwarded-host")
        hops: list[tuple[str, int, bytes | None, bytes | None]] = []
        if xff is not None or xproto is not None or xhost is not None:
            for item in (xff or b"").split(b","):
                hops.append((item.strip().decode("latin-1"), 0, None, None))
            return hops, _last(xproto), _last(xhost)
        value = _field(head, b"forwarded")
        elements = parse_forwarded(value) if value is not None else None
        if not elements:
            return None
        for el in elements:
            address, port = _node(el.get(b"for", b""))
            hops.append((address, port, el.get(b"proto"), el.get(b"host")))
        return hops, hops[-1][2], hops[-1][3]

    def _client(self, hops: list[tuple[str, int, bytes | None, bytes | None]]
                ) -> tuple[str, int] | None:
        """The first untrusted address from the right (the nearest hop), or None."""
        client = None
        for address, port, _, _ in reversed(hops):
            ip = _ip(address)
            if ip is None:
                break  # "unknown", an obfuscated name or garbage: the trail ends here
            client = (str(ip), port)
            if not self.trusts_ip(ip):
                break
        return client


def _field(head: Any, name: bytes) -> bytes | None:
    """Every line of header ``name`` as one list (RFC 9110 §5.3): a proxy may add its own line
    after the client's (HAProxy's option forwardfor), so the first line alone is the client's
    word, not the proxy's."""
    values = [value for key, value in head.headers if key == name]
    if not values:
        return None
    return values[0] if len(values) == 1 else b", ".join(values)


def _last(value: bytes | None) -> bytes | None:
    """The nearest hop's entry of a comma-separated list header."""
    return None if value is None else value.rpartition(b",")[2]


def _node(value: bytes) -> tuple[str, int]:
    """RFC 7239 §6 node: ``ip``, ``ip:port``, ``"[v6]:port"``; ("", 0) when not an address."""
    text = value.decode("latin-1")
    port = 0
    if text.startswith("["):
        addr, _, rest = text[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        return addr, port
    addr, colon, p = text.rpartition(":")
    if colon and "." in addr and p.isdigit() and len(p) <= 5:
        return addr, int(p)
    return text, 0
