"""A module whose WSGI callable is named ``application`` (as Django's wsgi.py names it): the CLI
finds it from ``python -m tpd2py wsgi_application`` without ``:application``."""

from __future__ import annotations

from typing import Any


def application(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"found as application"]
