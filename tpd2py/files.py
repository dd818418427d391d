"""One file as a response: ``FileResponse(path)`` from any handler, sent by the kernel.

How it works: the file is opened and ``fstat``-ed once, here; the Response carries an
``app.FileBody`` (the fd, an offset and a length), and the connection sends the head and then the
file with ``sendfile`` (conn.py, ``Connection.send_file``), waiting on the hub whenever the
client's socket is full: the bytes never enter Python, and the fd is closed when the response is
sent or dropped. A file deleted after it was opened is still sent whole (the fd keeps it); one
that shrinks meanwhile ends the connection, never a wrong Content-Length followed by more bytes.
Rules: the Content-Type comes from the extension (stdlib ``mimetypes``; text types get
``charset=utf-8``) unless given; ``download_name`` adds ``Content-Disposition: attachment`` with
an ASCII ``filename`` and an RFC 8187 ``filename*`` for any other name (RFC 6266 §4.3).
``X-Content-Type-Options: nosniff`` is always sent. What is not here yet (issue: files and
compression): validators and conditional requests, ranges, a folder mount, gzip.
Never switches: opening a local file blocks for as long as the disk takes, as a read would.
"""

from __future__ import annotations

import mimetypes
import os
import stat
from pathlib import Path
from urllib.parse import quote

from .app import FileBody, Response

DEFAULT_TYPE = "application/octet-stream"
# Text types served with an explicit charset: browsers otherwise guess (RFC 9110 §8.3.2).
_TEXT_LIKE = ("text/", "application/javascript", "application/json", "image/svg+xml")


def guess_content_type(path: str | os.PathLike[str]) -> str:
    """The Content-Type for a file name: its extension's type, ``charset=utf-8`` for text."""
    kind, encoding = mimetypes.guess_type(os.fspath(path), strict=False)
    if kind is None or encoding is not None:  # unknown, or e.g. .tar.gz: bytes, not text
        return DEFAULT_TYPE
    return f"{kind}; charset=utf-8" if kind.startswith(_TEXT_LIKE) else kind


def content_disposition(name: str) -> str:
    """``attachment`` with the download name: ``filename`` for ASCII names without quotes or
    backslashes, else an ASCII fallback plus ``filename*=UTF-8''...`` (RFC 6266, RFC 8187)."""
    plain = name.isascii() and name.isprintable() and '"' not in name and "\\" not in name
    if plain:
        return f'attachment; filename="{name}"'
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_"
                       for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def FileResponse(path: str | os.PathLike[str], content_type: str | None = None,
                 download_name: str | None = None, status: int = 200,
                 headers: dict[str, str] | None = None) -> Response:
    """A Response that sends the regular file at ``path`` whole. Raises FileNotFoundError,
    PermissionError, IsADirectoryError (not a regular file) as ``open`` would: the handler
    decides what they mean (often ``HTTPError(404)``). Never switches."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise IsADirectoryError(f"not a regular file: {os.fspath(path)!r}")
        kind = content_type if content_type is not None else guess_content_type(path)
        response = Response(FileBody(fd, 0, info.st_size), status=status, headers=headers,
                            content_type=kind)
        response.set_header("X-Content-Type-Options", "nosniff")
        if download_name is not None:
            response.set_header("Content-Disposition",
                                content_disposition(download_name or Path(path).name))
    except BaseException:
        os.close(fd)
        raise
    return response
