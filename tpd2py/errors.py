"""The tpd2py exception hierarchy.

Rules: client protocol errors carry the HTTP status to answer with (a canned 4xx/5xx, then close);
cancellation and timeouts thrown into greenlets derive from BaseException so that an application's
`except Exception` cannot swallow them. Other modules append their exceptions here.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer broke HTTP/1.1 framing or grammar: answer `status` (with `reason` for logs), close.

    Raised by the sans-I/O parser (`http11.py`); the connection loop turns it into a pre-encoded
    error response and closes the connection without reading further requests.
    """

    __slots__ = ("status", "reason")

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.status} {self.reason}"
