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
``X-Content-Type-Options: nosniff`` is always sent. Given the request, ``FileResponse`` adds
validators and answers conditional and range requests (conditional.py decides). A folder
mount with a cache and compressed forms is static.py.
Never switches: opening a local file blocks for as long as the disk takes, as a read would.
"""

from __future__ import annotations

import mimetypes
import os
import stat
import time
from pathlib import Path
from urllib.parse import quote

from .app import TEXT, FileBody, Request, Response
from .conditional import (
    NOT_MODIFIED,
    PARTIAL,
    PROCEED,
    RANGE_HEADERS,
    RANGE_NOT_SATISFIABLE,
    decide,
    fields_named,
    format_http_date,
    not_modified_fields,
)
from .errors import HTTPError

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


def strong_etag(inode: int, size: int, mtime_ns: int, suffix: bytes = b"") -> bytes:
    """The strong entity tag of a file's bytes: inode, size and mtime (the representation
    changes only with one of them; a suffix names a compressed form of it)."""
    return b'"%x-%x-%x%s"' % (inode, size, mtime_ns, suffix)


def content_range(offset: int, count: int, size: int) -> bytes:
    """The Content-Range field of a 206 (RFC 9110 §14.4)."""
    return b"Content-Range: bytes %d-%d/%d\r\n" % (offset, offset + count - 1, size)


def range_not_satisfiable(size: int) -> Response:
    """416 with ``Content-Range: bytes */size`` (RFC 9110 §15.5.17)."""
    return Response(b"Range Not Satisfiable\n", status=416, content_type=TEXT,
                    headers={"Content-Range": f"bytes */{size}"})


def FileResponse(path: str | os.PathLike[str], content_type: str | None = None,
                 download_name: str | None = None, status: int = 200,
                 headers: dict[str, str] | None = None,
                 request: Request | None = None) -> Response:
    """A Response that sends the regular file at ``path``. Raises FileNotFoundError,
    PermissionError, IsADirectoryError (not a regular file) as ``open`` would: the handler
    decides what they mean (often ``HTTPError(404)``). With ``request`` (and status 200) it
    also sends ETag, Last-Modified and Accept-Ranges and answers the request's conditional
    and range headers: 304, 412 (raised as HTTPError), 206 or 416. Never switches."""
    # O_NONBLOCK: opening a FIFO must not block the hub (a regular file ignores the flag).
    body = FileBody(os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK), 0, 0)
    try:
        info = os.fstat(body.fd)
        if not stat.S_ISREG(info.st_mode):
            raise IsADirectoryError(f"not a regular file: {os.fspath(path)!r}")
        body.length = info.st_size
        kind = content_type if content_type is not None else guess_content_type(path)
        response = Response(body, status=status, headers=headers, content_type=kind)
        response.set_header("X-Content-Type-Options", "nosniff")
        if download_name is not None:
            response.set_header("Content-Disposition",
                                content_disposition(download_name or Path(path).name))
        if request is not None and status == 200:
            return _conditional(response, request, info)
    except BaseException:
        body.close()  # idempotent: _conditional may have closed it already
        raise
    return response


def date_second(request: Request | None) -> int:
    """The second of the Date line the response to ``request`` goes out with, brought up to
    date first: a Last-Modified is clamped to it (never after Date, RFC 9110 §8.8.2.1). The
    line is refreshed by the server's once-a-second sweep, at whatever phase the server
    started with, so for up to a second it still shows the previous second: clamped to
    ``time.time()`` a file modified (or dated) in the current second got a Last-Modified one
    second after its Date. Without a server behind the request: the clock."""
    date = getattr(getattr(getattr(request, "_conn", None), "ctx", None), "date", None)
    if date is None:
        return int(time.time())
    date.update()
    return date.second


def _conditional(response: Response, request: Request, info: os.stat_result) -> Response:
    """Validators on ``response`` (a whole file), then the request's conditions applied."""
    etag = strong_etag(info.st_ino, info.st_size, info.st_mtime_ns)
    mtime = min(int(info.st_mtime), date_second(request))  # never after Date (§8.8.2.1)
    validators = b"ETag: %s\r\nLast-Modified: %s\r\n" % (etag, format_http_date(mtime))
    response.fields += validators + b"Accept-Ranges: bytes\r\n"
    head = request._head
    wanted = fields_named(head.headers, RANGE_HEADERS)
    if wanted is None:
        return response
    body: FileBody = response.body
    status, span = decide(head.method, wanted, etag, mtime, body.length)
    if status == PARTIAL:
        assert span is not None
        response.status = PARTIAL
        body.offset, body.length = span
        response.fields += content_range(span[0], span[1], info.st_size)
        return response
    if status == PROCEED:
        return response
    body.close()
    if status == NOT_MODIFIED:
        response.status = NOT_MODIFIED  # with the 200's validators, Cache-Control and Vary
        response.fields = not_modified_fields(response.fields)
        response.body = b""
        return response
    if status == RANGE_NOT_SATISFIABLE:
        return range_not_satisfiable(info.st_size)
    raise HTTPError(status)
