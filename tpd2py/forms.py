"""Form bodies, uploads included: ``multipart/form-data`` parsed while it streams in.

    from tpd2py.forms import read_form

    @app.route("/upload", methods=["POST"], max_body_size=200 * 2**20)
    def upload(req):
        with read_form(req, max_file_size=100 * 2**20) as form:
            title = form["title"]
            photo = form.file("photo")          # an UploadedFile, or None
            photo.save(f"/srv/photos/{uuid4()}.jpg")

Rules:
- The multipart grammar is the ``multipart`` package's (``tpd2py[forms]``): its
  ``PushMultipartParser`` is sans-I/O (bytes in, events out), so it reads ``Request.stream()``
  chunk by chunk with no thread and no copy of the whole body; it bounds part headers itself
  (size and count) and refuses broken framing. It is imported only here, on first use.
- Small fields are kept in memory as str (UTF-8, or the part's charset); file parts (those
  with a ``filename``) go to a ``SpooledTemporaryFile``: memory up to ``spool_size``, then an
  unlinked temporary file (the write is a local disk write in the server's thread).
- Limits, each a 413 when passed: ``max_parts`` (fields and files), ``max_field_size`` (one
  field in memory), ``max_file_size`` (one file); the route's ``max_body_size`` bounds the
  whole body before any of these. Broken multipart framing, a part without a name, a field
  that is not valid in its charset, a body that ends early: 400. Another content type: 415.
- ``application/x-www-form-urlencoded`` bodies are read the same way, with the same limits.
- The files are closed (and so deleted) by ``Form.close()`` or leaving the ``with`` block, and
  in any case when the Form is garbage collected. May switch to the hub (it reads the body).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from .app import parse_query
from .errors import HTTPError

if TYPE_CHECKING:
    from .app import Request

__all__ = ["read_form", "Form", "UploadedFile"]

# Defaults (each a keyword of read_form): enough for any form a person fills in, small enough
# that a hostile one costs little. Starlette and Go choose the same orders of magnitude.
MAX_PARTS = 1000
MAX_FIELD_SIZE = 1 << 20  # a field is held in memory
SPOOL_SIZE = 1 << 20  # a file part up to this stays in memory
MAX_FILE_SIZE: int | None = None  # bounded by the route's max_body_size


class UploadedFile:
    """One uploaded file: ``name`` (the form field), ``filename`` (as the client sent it,
    without any directory part: never use it as a path unchecked), ``content_type``, ``size``
    and ``file`` (a binary file object at position 0)."""

    __slots__ = ("name", "filename", "content_type", "size", "file")

    def __init__(self, name: str, filename: str, content_type: str | None,
                 file: IO[bytes]) -> None:
        self.name, self.filename, self.content_type = name, filename, content_type
        self.file = file
        self.size = 0

    def read(self) -> bytes:
        self.file.seek(0)
        return self.file.read()

    def save(self, path: str) -> None:
        """Copy the file to ``path`` (a local disk write in the server's thread)."""
        self.file.seek(0)
        with open(path, "wb") as out:
            shutil.copyfileobj(self.file, out)
        self.file.seek(0)

    def close(self) -> None:
        self.file.close()

    def __repr__(self) -> str:
        return f"<UploadedFile {self.name}={self.filename!r} {self.size} bytes>"


class Form:
    """The fields (``form["name"]``, ``form.get``, ``form.get_all``) and the files
    (``form.file``, ``form.files``) of one request body."""

    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = {}
        self.files: dict[str, list[UploadedFile]] = {}

    def __getitem__(self, name: str) -> str:
        """The first value of a field; a missing field is the client's error: 400."""
        values = self.fields.get(name)
        if not values:
            raise HTTPError(400, f"400 Bad Request: the form has no field {name!r}\n")
        return values[0]

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        return list(self.fields.get(name, ()))

    def __contains__(self, name: object) -> bool:
        return name in self.fields or name in self.files

    def __iter__(self) -> Iterator[str]:
        return iter(self.fields)

    def file(self, name: str) -> UploadedFile | None:
        files = self.files.get(name)
        return files[0] if files else None

    def close(self) -> None:
        for files in self.files.values():
            for f in files:
                f.close()

    def __enter__(self) -> Form:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def _too_large(what: str) -> HTTPError:
    return HTTPError(413, f"413 Content Too Large: {what}\n")


def _bad(what: str) -> HTTPError:
    return HTTPError(400, f"400 Bad Request: {what}\n")


def read_form(request: Request, *, max_parts: int = MAX_PARTS,
              max_field_size: int = MAX_FIELD_SIZE, max_file_size: int | None = MAX_FILE_SIZE,
              spool_size: int = SPOOL_SIZE) -> Form:
    """Read and parse the request's form body (multipart or urlencoded). May switch to the
    hub. Raises HTTPError 400/413/415 for the client (see the module's rules)."""
    content_type = request.header("content-type") or ""
    kind = content_type.partition(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        return _urlencoded(request, max_parts, max_field_size)
    if kind != "multipart/form-data":
        raise HTTPError(415, "415 Unsupported Media Type: expected a form "
                             "(multipart/form-data or application/x-www-form-urlencoded)\n")
    try:
        import multipart
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise RuntimeError("multipart forms need the 'multipart' package: "
                           "pip install 'tpd2py[forms]'") from None
    _, options = multipart.parse_options_header(content_type)
    boundary = options.get("boundary")
    if not boundary:
        raise _bad("multipart/form-data without a boundary")
    form = Form()
    try:
        _multipart(multipart, request, boundary, form, max_parts, max_field_size,
                   max_file_size, spool_size)
    except BaseException:
        form.close()
        raise
    return form


def _multipart(multipart: Any, request: Request, boundary: str, form: Form, max_parts: int,
               max_field_size: int, max_file_size: int | None, spool_size: int) -> None:
    try:
        parser = multipart.PushMultipartParser(boundary, max_segment_count=max_parts)
    except multipart.MultipartError as e:
        raise _bad(f"multipart/form-data: {e}") from None
    field: bytearray | None = None
    upload: UploadedFile | None = None
    segment: Any = None
    try:
        for chunk in request.stream():
            for event in parser.parse(chunk):
                if isinstance(event, multipart.MultipartSegment):
                    segment = event
                    if not segment.name:
                        raise _bad("a multipart part without a name")
                    if segment.filename is not None:
                        upload = UploadedFile(segment.name, segment.filename,
                                              segment.content_type,
                                              tempfile.SpooledTemporaryFile(spool_size))  # noqa: SIM115 - Form.close
                        form.files.setdefault(segment.name, []).append(upload)
                    else:
                        field = bytearray()
                elif event is None:  # the end of a part
                    if upload is not None:
                        upload.file.seek(0)
                        upload = None
                    elif field is not None:
                        form.fields.setdefault(segment.name, []).append(
                            _decode(field, segment))
                        field = None
                elif upload is not None:
                    upload.size += len(event)
                    if max_file_size is not None and upload.size > max_file_size:
                        raise _too_large(f"the file {upload.name!r} is over "
                                         f"{max_file_size} bytes")
                    upload.file.write(event)
                elif field is not None:
                    field += event
                    if len(field) > max_field_size:
                        raise _too_large(f"the field {segment.name!r} is over "
                                         f"{max_field_size} bytes")
        parser.close()
    except multipart.ParserLimitReached as e:
        raise _too_large(f"multipart/form-data: {e}") from None
    except multipart.MultipartError as e:
        raise _bad(f"multipart/form-data: {e}") from None


def _decode(data: bytearray, segment: Any) -> str:
    charset = segment.charset or "utf-8"
    try:
        return data.decode(charset)
    except (UnicodeDecodeError, LookupError):
        raise _bad(f"the field {segment.name!r} is not valid {charset}") from None


def _urlencoded(request: Request, max_parts: int, max_field_size: int) -> Form:
    body = bytearray()
    limit = max_parts * (max_field_size + 1)
    for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large("the form body")
    if body.count(b"&") >= max_parts:
        raise _too_large(f"more than {max_parts} form fields")
    form = Form()
    for name, value in parse_query(bytes(body)):
        if len(value) > max_field_size:
            raise _too_large(f"the field {name!r} is over {max_field_size} bytes")
        form.fields.setdefault(name, []).append(value)
    return form
