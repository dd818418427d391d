"""A folder served under a URL prefix: ``app.mount("/static", StaticFiles("public"))``.

What it is: the static file server. Python decides (which file, which representation, which
status); the kernel moves the bytes (``sendfile`` through ``files``' ``FileBody``), except for
small files, which are kept in memory as ready Responses and cost about what a hello-world
handler costs.
Rules:
- No path escapes the folder. The request's raw path is checked before it is decoded: encoded
  slashes, backslashes and NULs (``%2f``, ``%5c``, ``%00``) are refused; after decoding, a
  backslash, a NUL, an empty segment (``//``: an absolute path), ``.`` and ``..`` are refused;
  dotfiles are hidden unless ``dotfiles=True``; the resolved path (``realpath``) must lie in
  the folder unless ``allow_outside_symlinks=True``. Each refusal is a plain 404: the client
  learns nothing about the file system. Folders are never listed; ``index`` (default
  ``index.html``) is served for a folder, after a 301 to the slash-ended URL.
- Validators (conditional.py): a strong ETag from inode, size and mtime; Last-Modified;
  If-Match/If-Unmodified-Since -> 412, If-None-Match/If-Modified-Since -> 304, in RFC 9110
  §13.2.2's order. A 304 carries the validators, Cache-Control and Vary, no Content-Type.
- Ranges for GET: one range -> 206 with Content-Range; several -> the whole file (200);
  unsatisfiable -> 416 with ``Content-Range: bytes */len``; If-Range honoured.
- Representations: ``name.br`` and ``name.gz`` beside a file are served to clients that accept
  them (``precompressed=True``), each with its own ETag; with ``gzip=True`` a small compressible
  file without a ``.gz`` sibling gets its gzip form made once, in memory. Any file with variants
  says ``Vary: Accept-Encoding``. Large files without a sibling are sent as they are.
- The cache: what a path resolved to, its stat and, for files up to ``small_file_limit``, the
  bytes, bounded by ``cache_entries`` and ``cache_bytes``; revalidated with one ``stat`` at most
  every ``revalidate_after`` seconds. A large file is opened per request and its ``fstat`` is
  checked against the cached one, so a changed file is never sent with stale headers.
Never switches (opening and reading a local file block for as long as the disk takes).
"""

from __future__ import annotations

import os
import stat
import time
from typing import Any
from urllib.parse import unquote_to_bytes

from .app import FileBody, Request, Response, bare_response
from .compress import compressible, gzip_bytes, negotiate
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
from .files import (
    content_range,
    date_second,
    guess_content_type,
    range_not_satisfiable,
    strong_etag,
)

# Request headers the file server reads; everything else is skipped in one pass.
_WANTED = RANGE_HEADERS | {b"accept-encoding"}
_REFUSED_ESCAPES = (b"%2f", b"%5c", b"%00")
_SIBLINGS = ((b"br", b".br"), (b"gzip", b".gz"))
# O_NONBLOCK: a FIFO put where a file was must not block the hub in open() (for a regular
# file the flag changes nothing).
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
_VARY = b"Vary: Accept-Encoding\r\n"
_monotonic = time.monotonic
_new_response = object.__new__


class _Rep:
    """One representation of a file: identity, or a compressed sibling or in-memory form."""

    __slots__ = ("path", "key", "size", "etag", "fields", "body", "not_modified_fields")

    def __init__(self, path: bytes, key: tuple[int, int, int], etag: bytes, fields: bytes,
                 body: bytes | None) -> None:
        self.path = path
        self.key = key
        self.size = key[1] if body is None else len(body)
        self.etag = etag
        self.fields = fields
        self.body = body
        self.not_modified_fields = not_modified_fields(fields)


class _Entry:
    __slots__ = ("real", "keys", "mtime", "reps", "offered", "check_after", "cached_bytes",
                 "pinned")

    def __init__(self, real: bytes, keys: tuple[Any, ...], mtime: int, reps: dict[Any, _Rep],
                 check_after: float) -> None:
        self.real = real
        self.keys = keys
        self.mtime = mtime
        self.reps = reps
        self.offered = tuple(c for c in (b"br", b"gzip") if c in reps)
        self.check_after = check_after
        self.cached_bytes = sum(len(r.body) for r in reps.values() if r.body is not None)
        self.pinned: Any = None  # the handler pinned as this file's exact route (``_pin``)


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _etag(key: tuple[int, int, int], suffix: bytes = b"") -> bytes:
    return strong_etag(*key, suffix)


def _read_all(fd: int, size: int) -> bytes:
    parts, offset = [], 0
    while offset < size:
        piece = os.pread(fd, size - offset, offset)
        if not piece:
            break  # shrank meanwhile: the next revalidation sees its new size
        parts.append(piece)
        offset += len(piece)
    return b"".join(parts)


class StaticFiles:
    """Serve the files under ``directory`` (see the module rules for every option)."""

    def __init__(self, directory: str | os.PathLike[str], *, index: str | None = "index.html",
                 dotfiles: bool = False, allow_outside_symlinks: bool = False,
                 cache_control: str | None = None, precompressed: bool = True,
                 gzip: bool = False, gzip_level: int = 6, gzip_min_size: int = 256,
                 small_file_limit: int = 64 * 1024, cache_entries: int = 4096,
                 cache_bytes: int = 64 << 20, revalidate_after: float = 1.0) -> None:
        # Kept as given (absolute) and resolved again at each revalidation: a folder that is a
        # symlink a deploy switches (current -> releases/v2) is followed.
        self.directory = os.fsencode(os.path.abspath(directory))
        root = os.path.realpath(self.directory)
        if not os.path.isdir(root):
            raise NotADirectoryError(f"not a folder: {os.fspath(directory)!r}")
        if not 1 <= gzip_level <= 9:
            raise ValueError("gzip_level is 1..9")
        self.root = root
        self.index = os.fsencode(index) if index else None
        self.dotfiles = dotfiles
        self.allow_outside_symlinks = allow_outside_symlinks
        extra = b""
        if cache_control is not None:
            Response(b"", headers={"Cache-Control": cache_control})  # raises if it is bad
            extra = b"Cache-Control: %s\r\n" % cache_control.encode("latin-1")
        self.extra_fields = extra
        self.precompressed = precompressed
        self.gzip = gzip
        self.gzip_level = gzip_level
        self.gzip_min_size = gzip_min_size
        self.small_file_limit = small_file_limit
        self.cache_entries = cache_entries
        self.cache_bytes = cache_bytes
        self.revalidate_after = revalidate_after
        self.prefixes: list[bytes] = []
        self.entries: dict[bytes, _Entry] = {}
        self.cached_bytes = 0
        # (app, raw prefix) of each mount (``routed_by``): where cached files are pinned.
        self.routers: list[tuple[Any, bytes]] = []
        self.app_prefixes: dict[int, list[bytes]] = {}  # id(app): its prefixes, longest first

    def mounted_at(self, prefix: str) -> None:
        """Called by ``App.mount``: a URL prefix this folder is served under (one folder may
        be mounted under several: they share its cache)."""
        self.prefixes = sorted({*self.prefixes, prefix.rstrip("/").encode()}, key=len,
                               reverse=True)

    def routed_by(self, app: Any, prefix: str) -> None:
        """Called by ``App.mount`` after ``mounted_at``: the app whose router gets an exact
        route (``App.pin``) for each small file cached from now on."""
        self.routers.append((app, prefix.encode()))
        self.app_prefixes[id(app)] = sorted({p for a, p in self.routers if a is app}, key=len,
                                            reverse=True)

    # -- one request ---------------------------------------------------------------------------

    def __call__(self, request: Request) -> Response:
        # The common request for a cached small file never gets here: it is answered by the
        # file's pinned route (``_pin``; HEAD too, through the router's GET fallback). Here:
        # its first request, conditional, range and encoding requests, large files, the rest.
        return self._serve(request, True)

    def _serve(self, request: Request, retry: bool) -> Response:
        head = request._head
        tail = self._tail(request)
        # The cache is keyed by the decoded path: every spelling of a name is one entry.
        key = self._decode(tail) if b"%" in tail else tail
        now = time.monotonic()
        entry = self.entries.get(key)
        if entry is None or now >= entry.check_after:
            entry = self._refresh(key, request, entry, now)
        wanted = fields_named(head.headers, _WANTED)
        if wanted is None:
            rep = entry.reps[None]
            if rep.body is not None:
                # A new Response each time: a wrapper may add headers to what it gets.
                return bare_response(200, rep.fields, rep.body)
            return self._open(rep, entry, None, request, retry)
        rep = entry.reps[None]
        if entry.offered:
            coding = negotiate(wanted.get(b"accept-encoding"), entry.offered)[0]
            rep = entry.reps[coding]
        if len(wanted) > 1 or b"accept-encoding" not in wanted:
            status, span = decide(head.method, wanted, rep.etag, entry.mtime, rep.size)
            if status != PROCEED:
                if status == NOT_MODIFIED:
                    return bare_response(304, rep.not_modified_fields, b"")
                if status == PARTIAL:
                    assert span is not None
                    return self._partial(rep, entry, span, request, retry)
                if status == RANGE_NOT_SATISFIABLE:
                    return range_not_satisfiable(rep.size)
                raise HTTPError(status)
        if rep.body is not None:
            return bare_response(200, rep.fields, rep.body)
        return self._open(rep, entry, None, request, retry)

    def _partial(self, rep: _Rep, entry: _Entry, span: tuple[int, int],
                 request: Request, retry: bool) -> Response:
        offset, count = span
        if rep.body is not None:
            return bare_response(206, rep.fields + content_range(offset, count, rep.size),
                             rep.body[offset:offset + count])
        return self._open(rep, entry, span, request, retry)

    def _open(self, rep: _Rep, entry: _Entry, span: tuple[int, int] | None,
              request: Request, retry: bool) -> Response:
        """A large file: opened now, checked against what its headers were made from."""
        try:
            fd = os.open(rep.path, _OPEN_FLAGS)
        except OSError:
            self._forget_request(request)
            raise HTTPError(404) from None
        try:
            st = os.fstat(fd)
            if _stat_key(st) != rep.key or not stat.S_ISREG(st.st_mode) \
                    or not self._fd_inside(fd):
                # Changed since the last stat: the headers would lie. Look again, once; a
                # file that keeps changing is busy (a log being written): 503, try later.
                os.close(fd)
                fd = -1
                self._forget_request(request)
                if not retry:
                    raise HTTPError(503, headers={"Retry-After": "1"})
                return self._serve(request, False)
            if span is None:
                return bare_response(200, rep.fields, FileBody(fd, 0, rep.size))
            offset, count = span
            return bare_response(206, rep.fields + content_range(offset, count, rep.size),
                             FileBody(fd, offset, count))
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise

    # -- the cache -----------------------------------------------------------------------------

    def _tail(self, request: Request) -> bytes:
        """The raw path after the mount's prefix (b"" or starting with "/"). A folder in several
        apps cuts only the request's app's prefixes: another app's longer one (``/a/b`` there,
        ``/a`` here) must not decide which file ``/a/b/x`` is (review13)."""
        raw = request._head.path
        prefixes = self.prefixes
        if len(self.app_prefixes) > 1:
            app = getattr(getattr(request._conn, "ctx", None), "app", None)
            prefixes = self.app_prefixes.get(id(app), prefixes)
        for prefix in prefixes:
            if raw.startswith(prefix) and (len(raw) == len(prefix) or raw[len(prefix)] == 47):
                return raw[len(prefix):]
        raise HTTPError(404)  # the prefix itself was percent-encoded: not this mount's URL

    def _forget_request(self, request: Request) -> None:
        tail = self._tail(request)
        self._forget(self._decode(tail) if b"%" in tail else tail)

    def _forget(self, tail: bytes) -> None:
        old = self.entries.pop(tail, None)
        if old is not None:
            self.cached_bytes -= old.cached_bytes
            if old.pinned is not None:
                for app, prefix in self.routers:
                    app.unpin(prefix + tail, old.pinned)

    def _pin(self, tail: bytes, entry: _Entry) -> None:
        """A small cached file gets an exact route in each app it is mounted in: its common
        request (fresh entry, no conditional, range or encoding header) skips the router's
        prefix search and this class's path checks (bench/instructions.py --app static)."""
        rep = entry.reps[None]
        body = rep.body
        if body is None or b"%" in tail or not self.routers \
                or type(self).__call__ is not StaticFiles.__call__:
            return  # (a subclass's own __call__ must see every request: review13)
        fields = rep.fields
        full = self._serve

        def pinned(request: Request) -> Response:
            if _monotonic() < entry.check_after:
                for name, _ in request._head.headers:
                    if name in _WANTED:
                        break
                else:
                    response = _new_response(Response)  # as in __call__
                    response.status = 200
                    response.reason = None
                    response.fields = fields
                    response.body = body
                    return response
            return full(request, True)

        entry.pinned = pinned
        for app, prefix in self.routers:
            app.pin(prefix + tail, pinned, prefix)

    def _refresh(self, key: bytes, request: Request, old: _Entry | None,
                 now: float) -> _Entry:
        """The entry for the decoded path ``key``: resolved and stat-ed again; rebuilt only
        if it changed. Raises HTTPError(404) (or 301 to a folder's slash-ended URL)."""
        root = os.path.realpath(self.directory)
        if root != self.root:  # the folder is a symlink a deploy switched: start over
            self.root = root
            for tail in list(self.entries):
                self._forget(tail)
            old = None
        try:
            real, st = self._resolve(key, request._head.path, request._head.query)
        except HTTPError:
            self._forget(key)  # gone (or now a folder): neither its entry nor its pin stays
            raise
        try:
            keys, siblings = self._keys(real, st)
        except OSError:
            self._forget(key)
            raise HTTPError(404) from None
        if old is not None and old.real == real and old.keys == keys:
            old.check_after = now + self.revalidate_after
            return old
        self._forget(key)
        entry = self._build(real, siblings, now, date_second(request))
        if entry.cached_bytes > self.cache_bytes:
            return entry  # too big to keep: served, not cached
        entries = self.entries
        while entries and (len(entries) >= self.cache_entries
                           or self.cached_bytes + entry.cached_bytes > self.cache_bytes):
            self._forget(next(iter(entries)))
        entries[key] = entry
        self.cached_bytes += entry.cached_bytes
        self._pin(key, entry)
        return entry

    @staticmethod
    def _decode(tail: bytes) -> bytes:
        """A raw URL tail with percent escapes, decoded; encoded slashes, backslashes and
        NULs are refused before decoding (404)."""
        lowered = tail.lower()
        if any(bad in lowered for bad in _REFUSED_ESCAPES):
            raise HTTPError(404)
        return unquote_to_bytes(tail)

    def _resolve(self, tail: bytes, raw_path: bytes,
                 query: bytes) -> tuple[bytes, os.stat_result]:
        """The real path and stat of a regular file in the folder for a decoded URL tail, or
        HTTPError."""
        if b"\\" in tail or b"\0" in tail:
            raise HTTPError(404)
        segments = tail.split(b"/")[1:] if tail else []
        wants_folder = not segments or segments[-1] == b""
        if wants_folder and segments:
            segments.pop()
        for segment in segments:
            if not segment or segment == b"." or segment == b"..":
                raise HTTPError(404)
            if segment.startswith(b".") and not self.dotfiles:
                raise HTTPError(404)
        real, st = self._stat_inside(os.path.join(self.root, *segments))
        if stat.S_ISDIR(st.st_mode):
            if self.index is None:
                raise HTTPError(404)  # never a listing
            if not wants_folder or not tail:
                location = raw_path + b"/"
                if query:
                    location += b"?" + query
                raise HTTPError(301, "", headers={"Location": location.decode("latin-1")})
            real, st = self._stat_inside(os.path.join(real, self.index))
        elif wants_folder:
            raise HTTPError(404)  # "file.css/" names no folder
        if not stat.S_ISREG(st.st_mode):
            raise HTTPError(404)
        return real, st

    def _stat_inside(self, path: bytes) -> tuple[bytes, os.stat_result]:
        """The real path and stat of ``path``, which must resolve inside the folder (404)."""
        real = os.path.realpath(path)
        if not self._inside(real):
            raise HTTPError(404)
        try:
            return real, os.stat(real)
        except OSError:
            raise HTTPError(404) from None

    def _fd_inside(self, fd: int) -> bool:
        """Whether an opened fd is a file in the folder: a folder swapped for a symlink
        between the realpath check and the open must not be followed (Linux's /proc names
        what the fd really is)."""
        if self.allow_outside_symlinks:
            return True
        try:
            return self._inside(os.readlink(b"/proc/self/fd/%d" % fd))
        except OSError:
            return True  # no /proc: the realpath check stands alone

    def _inside(self, real: bytes) -> bool:
        root = self.root
        return self.allow_outside_symlinks or real == root or real.startswith(root + b"/")

    def _keys(self, real: bytes, st: os.stat_result) -> tuple[tuple[Any, ...],
                                                              list[tuple[bytes, bytes]]]:
        """What revalidation compares: the stat of the file (``st``, from ``_resolve``) and
        of each precompressed sibling found; and those siblings as (coding, real path), for
        ``_build``. One realpath and one stat per sibling name, per revalidation."""
        keys: list[Any] = [_stat_key(st)]
        siblings: list[tuple[bytes, bytes]] = []
        if self.precompressed:
            for coding, ext in _SIBLINGS:
                path = os.path.realpath(real + ext)
                if not self._inside(path):
                    continue
                try:
                    sibling = os.stat(path)
                except OSError:
                    continue  # none (or gone meanwhile)
                if stat.S_ISREG(sibling.st_mode):
                    keys.append((coding, _stat_key(sibling)))
                    siblings.append((coding, path))
        return tuple(keys), siblings

    def _build(self, real: bytes, siblings: list[tuple[bytes, bytes]], now: float,
               date: int) -> _Entry:
        """The entry of a file: its representations, each with its headers and (if small)
        bytes. ``date``: the second of the Date line it is first sent with (``date_second``),
        which no Last-Modified may pass (RFC 9110 §8.8.2.1)."""
        kind = guess_content_type(real.decode("utf-8", "surrogateescape"))
        ct_line = b"Content-Type: %s\r\n" % kind.encode("latin-1")
        reps: dict[Any, _Rep] = {}
        key, mtime, body = self._load(real)
        mtime = min(mtime, date)
        last_modified = b"Last-Modified: %s\r\n" % format_http_date(mtime)
        common = b"Accept-Ranges: bytes\r\n%sX-Content-Type-Options: nosniff\r\n" % \
            self.extra_fields
        identity_fields = ct_line + last_modified

        def fields(etag: bytes, coding: bytes | None) -> bytes:
            encoding = b"Content-Encoding: %s\r\n" % coding if coding else b""
            return identity_fields + b"ETag: %s\r\n" % etag + encoding + common

        identity_etag = _etag(key)
        keys: list[Any] = [key]
        for coding, path in siblings:
            sib_key, _, sib_body = self._load(path)
            keys.append((coding, sib_key))
            etag = _etag(sib_key, b"-" + coding)  # its own bytes' tag, never the identity's
            reps[coding] = _Rep(path, sib_key, etag, fields(etag, coding), sib_body)
        if self.gzip and b"gzip" not in reps and body is not None \
                and len(body) >= self.gzip_min_size and compressible(kind.encode()):
            packed = gzip_bytes(body, self.gzip_level)
            if len(packed) < len(body):
                etag = _etag(key, b"-gzip")
                reps[b"gzip"] = _Rep(real, key, etag, fields(etag, b"gzip"), packed)
        reps[None] = _Rep(real, key, identity_etag, fields(identity_etag, None), body)
        if len(reps) > 1:
            for coding, rep in list(reps.items()):
                reps[coding] = _Rep(rep.path, rep.key, rep.etag, rep.fields + _VARY, rep.body)
        return _Entry(real, tuple(keys), mtime, reps, now + self.revalidate_after)

    def _load(self, path: bytes) -> tuple[tuple[int, int, int], int, bytes | None]:
        """(stat key, mtime in seconds, the bytes if the file is small) of a regular file."""
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError:
            raise HTTPError(404) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or not self._fd_inside(fd):
                raise HTTPError(404)
            body = _read_all(fd, st.st_size) if st.st_size <= self.small_file_limit else None
            if body is not None and len(body) != st.st_size:
                st = os.fstat(fd)  # it changed while read: describe what was read
            key = _stat_key(st)
            if body is not None:
                key = (key[0], len(body), key[2])
            return key, int(st.st_mtime), body
        finally:
            os.close(fd)
