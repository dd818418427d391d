"""The request's header fields as a read-only, case-insensitive view (``Request.headers``).

Split from app.py when that module passed the size rule; app.py re-exports ``Headers``. Pure:
no I/O, never switches.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["Headers"]


class Headers:
    """Read-only, case-insensitive view of the request's header fields (bytes in, str out)."""

    __slots__ = ("_fields",)

    def __init__(self, fields: list[tuple[bytes, bytes]]) -> None:
        self._fields = fields

    def get(self, name: str, default: str | None = None) -> str | None:
        key = name.lower().encode("latin-1")
        for n, v in self._fields:
            if n == key:
                return v.decode("latin-1")
        return default

    def get_all(self, name: str) -> list[str]:
        key = name.lower().encode("latin-1")
        return [v.decode("latin-1") for n, v in self._fields if n == key]

    def raw(self) -> tuple[tuple[bytes, bytes], ...]:
        """The fields as parsed: (lower-case name, value) bytes pairs. Read-only: a parsed
        head may be shared by byte-identical requests (the head cache)."""
        return tuple(self._fields)

    def __getitem__(self, name: str) -> str:
        v = self.get(name)
        if v is None:
            raise KeyError(name)
        return v

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return (n.decode("latin-1") for n, _ in self._fields)

    def __len__(self) -> int:
        return len(self._fields)
