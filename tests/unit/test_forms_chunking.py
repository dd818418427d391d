"""tpd2py.forms at every chunk boundary: the same multipart body, split anywhere (a boundary, a
CRLF or a part header cut in two, as TCP may deliver it), parses to the same form. A stand-in
request gives the chunks (the one place a fake beats a socket: the split is chosen)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("multipart", reason="needs the multipart package (the forms/test extra)")

from tpd2py.forms import read_form  # noqa: E402

BODY = (b"--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\ncaf\xc3\xa9\r\n"
        b"--XyZ\r\nContent-Disposition: form-data; name=\"doc\"; filename=\"a.bin\"\r\n"
        b"Content-Type: application/octet-stream\r\n\r\n\r\n--Xy\r\n-XyZ\r\r\n--Xy\r\n"
        b"--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nsecond\r\n"
        b"--XyZ--\r\n")
FILE = b"\r\n--Xy\r\n-XyZ\r\r\n--Xy"  # prefixes of the delimiter, never all of it


class ChunkedRequest:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def header(self, name: str, default: str | None = None) -> str | None:
        return "multipart/form-data; boundary=XyZ" if name == "content-type" else default

    def stream(self) -> Iterator[bytes]:
        return iter(self.chunks)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(BODY)), max_size=12))
def test_any_split_gives_the_same_form(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [BODY[a:b] for a, b in zip([0, *points], [*points, len(BODY)], strict=True)]
    with read_form(ChunkedRequest([c for c in chunks if c])) as form:  # type: ignore[arg-type]
        assert form.get_all("title") == ["caf\u00e9", "second"]
        upload = form.file("doc")
        assert upload is not None and upload.filename == "a.bin"
        assert upload.read() == FILE and upload.size == len(FILE)


def test_one_byte_at_a_time() -> None:
    with read_form(ChunkedRequest([BODY[i:i + 1] for i in range(len(BODY))])) as form:  # type: ignore[arg-type]
        assert form["title"] == "caf\u00e9"
