"""Redirects (``App.url_for`` builds the URLs: webapp.py).

Rules:
- ``redirect(location, status=303)``: 303 See Other is the answer to a form POST (the browser
  follows with a GET, so a reload does not post twice); 301/302/307/308 on request. The
  location is sent as given when it is ASCII; other characters are percent-encoded as UTF-8
  (an IRI becomes a URI); CR, LF and NUL raise ValueError (response splitting).
- A pure function: no I/O, never switches.
"""

from __future__ import annotations

from urllib.parse import quote

from .app import TEXT, Response

__all__ = ["redirect", "REDIRECT_STATUSES"]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Kept as they are in a Location: RFC 3986's reserved and unreserved characters, and "%"
# (the caller's own escapes stay).
_LOCATION_SAFE = ":/?#[]@!$&'()*+,;=-._~%"


def redirect(location: str, status: int = 303) -> Response:
    """A redirect response: ``return redirect(app.url_for("index"))``."""
    if status not in REDIRECT_STATUSES:
        raise ValueError(f"redirect status {status} is not one of 301, 302, 303, 307, 308")
    if not location:
        raise ValueError("redirect to an empty location")
    if not location.isascii():
        location = quote(location, safe=_LOCATION_SAFE)
    return Response(b"", status=status, headers=[("Location", location)], content_type=TEXT)
