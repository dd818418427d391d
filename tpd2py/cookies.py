"""Cookies: the request's ``Cookie`` header parsed, and ``Set-Cookie`` lines built (RFC 6265).

Rules:
- Parsing follows RFC 6265 §4.2.1's grammar (``name=value`` pairs separated by ``"; "``; a
  name is a token, a value is cookie-octets, optionally in double quotes, which are removed).
  A pair that breaks it is skipped, not answered 400: a browser sends every cookie of the
  domain, including ones other software set badly, and one of them must not make the site
  unusable (``http.cookies.SimpleCookie`` drops every pair after a bad one). The first of two
  pairs with one name wins: the user agent lists the more specific path first (§5.4).
- Building is strict instead: a name that is not a token, a value outside cookie-octets, an
  attribute value with ``;`` or a control byte, ``SameSite=None`` without ``Secure``, or a
  ``__Secure-``/``__Host-`` name without what its prefix promises raise ``ValueError`` when the
  handler sets the cookie, not a mystery in the browser later. Encode other values yourself
  (``base64.urlsafe_b64encode``, ``urllib.parse.quote``).
- Sans-I/O and never switches. Nothing here runs for a request that does not use cookies:
  ``Request.cookies`` parses on first use, ``Response.set_cookie`` formats when called.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from types import MappingProxyType

__all__ = ["parse_cookie_header", "cookie_mapping", "set_cookie_line", "delete_cookie_line"]

# RFC 6265 §4.1.1: token (RFC 9110 §5.6.2) and cookie-octet.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_COOKIE_VALUE = re.compile(r'([!#-+\--:<-\[\]-~]*)\Z|"([!#-+\--:<-\[\]-~]*)"\Z')
# An attribute value (path-value, domain): any CHAR except CTLs and ";" (§4.1.1).
_AV_VALUE = re.compile(r"[ -:<-~]*\Z")
_SAMESITE = {"strict": "Strict", "lax": "Lax", "none": "None"}
# 1970-01-01: an Expires in the past makes browsers that ignore Max-Age drop the cookie too.
# More cookies than this in one header is not a browser (RFC 6265 §6.1 asks browsers for at
# least 50 per domain); the rest are ignored rather than parsed.
MAX_COOKIES = 200


# A whole well-formed header (what browsers send): one match, then a plain split.
_PAIR = r'[!#$%&\'*+\-.^_`|~0-9A-Za-z]+=(?:[!#-+\--:<-\[\]-~]*|"[!#-+\--:<-\[\]-~]*")'
_WELL_FORMED = re.compile(f"{_PAIR}(?:; {_PAIR})*")


def parse_cookie_header(values: list[bytes]) -> dict[str, str]:
    """The ``Cookie`` header field values of one request as ``{name: value}``."""
    cookies: dict[str, str] = {}
    if len(values) == 1:
        text = values[0].decode("latin-1")
        if _WELL_FORMED.fullmatch(text) and text.count(";") < MAX_COOKIES:
            for pair in text.split("; "):
                name, _, value = pair.partition("=")
                if name not in cookies:
                    cookies[name] = value[1:-1] if value[:1] == '"' else value
            return cookies
    for raw in values:
        text = raw.decode("latin-1")
        # RFC 6265 says "; " exactly; HTTP/2 gateways and some clients send ";" alone.
        for pair in text.split(";"):
            if len(cookies) >= MAX_COOKIES:
                return cookies
            name, eq, value = pair.strip(" \t").partition("=")
            if not eq or not _TOKEN.match(name) or name in cookies:
                continue
            m = _COOKIE_VALUE.match(value)
            if m is None:
                continue
            cookies[name] = m.group(1) if m.group(1) is not None else m.group(2)
    return cookies


_NONE: Mapping[str, str] = MappingProxyType({})
CACHE_ENTRIES = 256
CACHE_MAX_HEADER = 4096
_CACHE: dict[bytes, Mapping[str, str]] = {}


def cookie_mapping(fields: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...]
                   ) -> Mapping[str, str]:
    """A request's header fields (lower-case names) to its read-only ``{name: value}``.

    A browser sends the same Cookie header with every request of a visit, so the parse of a
    header is kept (read-only, so it can be shared: like the head cache, bounded to
    ``CACHE_ENTRIES`` headers of at most ``CACHE_MAX_HEADER`` bytes, dropped whole when full).
    That also keeps the parse off the Request, which needs no slot for it: a slot costs every
    request, cookies or not, ~40 instructions (bench/instructions.py)."""
    values = [v for n, v in fields if n == b"cookie"]
    if not values:
        return _NONE
    key = values[0] if len(values) == 1 else b"; ".join(values)
    mapping = _CACHE.get(key)
    if mapping is None:
        mapping = MappingProxyType(parse_cookie_header(values))
        if len(key) <= CACHE_MAX_HEADER:
            if len(_CACHE) >= CACHE_ENTRIES:
                _CACHE.clear()
            _CACHE[key] = mapping
    return mapping


def _http_date(when: datetime | int | float) -> str:
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError("expires must be an aware datetime (or a Unix time)")
        return format_datetime(when.astimezone(UTC), usegmt=True)
    return format_datetime(datetime.fromtimestamp(when, UTC), usegmt=True)


def set_cookie_line(name: str, value: str = "", *, max_age: int | None = None,
                    expires: datetime | int | float | None = None, path: str | None = "/",
                    domain: str | None = None, secure: bool = False, httponly: bool = False,
                    samesite: str | None = "Lax") -> bytes:
    """The value of a ``Set-Cookie`` field; raises ValueError on anything a browser would
    misread or silently drop."""
    if not _TOKEN.match(name):
        raise ValueError(f"cookie name {name!r} is not an RFC 6265 token")
    if _COOKIE_VALUE.match(value) is None:
        raise ValueError(f"cookie {name!r}: the value may hold only RFC 6265 cookie-octets "
                         "(no space, '\"', ',', ';', '\\' or non-ASCII): encode it first")
    parts = [f"{name}={value}"]
    if max_age is not None:
        if isinstance(max_age, bool) or not isinstance(max_age, int):
            raise ValueError(f"cookie {name!r}: max_age is whole seconds")
        parts.append(f"Max-Age={max_age}")
    if expires is not None:
        parts.append(f"Expires={_http_date(expires)}")
    for attr, av in (("Domain", domain), ("Path", path)):
        if av is not None:
            if not av or _AV_VALUE.match(av) is None:
                raise ValueError(f"cookie {name!r}: bad {attr.lower()} {av!r}")
            parts.append(f"{attr}={av}")
    if secure:
        parts.append("Secure")
    if httponly:
        parts.append("HttpOnly")
    if samesite is not None:
        canonical = _SAMESITE.get(samesite.lower())
        if canonical is None:
            raise ValueError(f"cookie {name!r}: samesite is 'Strict', 'Lax' or 'None'")
        if canonical == "None" and not secure:
            raise ValueError(f"cookie {name!r}: browsers drop SameSite=None without secure=True")
        parts.append(f"SameSite={canonical}")
    # Cookie prefixes (RFC 6265bis §4.1.3): browsers refuse the cookie when these are broken.
    if name.startswith("__Secure-") and not secure:
        raise ValueError(f"cookie {name!r}: a __Secure- cookie needs secure=True")
    if name.startswith("__Host-") and (not secure or path != "/" or domain is not None):
        raise ValueError(f"cookie {name!r}: a __Host- cookie needs secure=True, path='/' "
                         "and no domain")
    return "; ".join(parts).encode("ascii")


def delete_cookie_line(name: str, *, path: str | None = "/", domain: str | None = None,
                       secure: bool = False, httponly: bool = False,
                       samesite: str | None = "Lax") -> bytes:
    """A ``Set-Cookie`` value that removes the cookie (same name, path and domain as set)."""
    return set_cookie_line(name, "", max_age=0, expires=0, path=path, domain=domain,
                           secure=secure, httponly=httponly, samesite=samesite)
