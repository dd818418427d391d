"""HTTPS: a TLS transport behind the connection's ``sock`` seam, and the server's TLS settings.

What it is: ``TLSTransport`` has the few socket methods a Connection calls (``recv_into``,
``send``, ``sendmsg``, ``recv`` for the hang-up peek, ``setsockopt``, ``shutdown``, ``close``,
``fileno``, ``getpeername``) and raises ``BlockingIOError`` exactly where a non-blocking socket
would, so the parser, the exchange and the handlers never know the bytes were encrypted.
``TLSSettings`` builds the ``ssl.SSLContext`` (standard library: OpenSSL) and wraps accepted
sockets; ``reload()`` loads new certificates for new handshakes without touching live ones.

How it works: an ``ssl.SSLObject`` over two memory BIOs (measured against a non-blocking
``SSLSocket``: see docs/tls.md). Ciphertext moves between the BIOs and the kernel socket with
MSG_DONTWAIT calls; the handshake runs inside the first ``recv_into`` calls, a step per
readable edge, in whatever greenlet reads (no thread, no wait of its own).
Rules:
- Readiness: ``recv_into`` returns short only when the kernel's queue was emptied by a read of
  this very call (or said EAGAIN) and OpenSSL holds no decrypted byte (``pending()``), so an
  edge will come for what is missing; when it fills the buffer, the caller reads again
  (gsocket.recv_nowait's ``read_pending``). What a read learnt of the kernel is never kept
  for a later call: an edge may have come and gone meanwhile.
- Sends: a send reports plaintext as sent only once all of its ciphertext is in the kernel.
  Ciphertext that did not fit is kept and the send raises ``BlockingIOError`` (the socket is
  full: an edge will come); the next send delivers it first and then reports that plaintext.
  The caller (gsocket.send_queued) passes the unsent plaintext again, unchanged, so nothing is
  encrypted twice or lost. Pipelined responses: one ``sendmsg`` is one write, a run of TLS
  records, one kernel send.
- The hang-up peek: decrypted bytes pending count as input; else what the kernel holds is
  taken in and decrypted, so a close_notify is an end; plaintext found waits for the next
  read (``peeked``), which returns it first.
- Idle: the transport holds no buffer of its own (OpenSSL releases its record buffers when
  idle: SSL_MODE_RELEASE_BUFFERS, set by CPython). The memory BIOs keep the largest capacity
  they ever needed, so ciphertext goes through them a record at a time (RECORD).
- Errors: a bad record, a refused version or cipher, a reset mid-handshake raise
  ``ssl.SSLError``/``OSError``: the connection closes (logged at debug, never a traceback).
- Closing sends close_notify when the peer is still there, without waiting for its answer.
Never switches: every call either completes or raises BlockingIOError.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
from typing import Any, cast

log = logging.getLogger("tpd2py.tls")

# Plain ints: an IntFlag's | and & are Python-level calls, paid per send (profiled).
DONTWAIT = int(socket.MSG_DONTWAIT)
NOT_MORE = ~int(socket.MSG_MORE)
# OpenSSL's memory BIOs never give back capacity (a BUF_MEM only grows, by a third more than
# asked): whatever one ever held at once stays allocated while the connection lives, idle or
# not. So ciphertext moves through them a record at a time at most (docs/tls.md, "Memory"):
# a read takes one full record (16 KiB of plaintext + 256 bytes of overhead) or less, and a
# send encrypts at most RECORD bytes of plaintext before draining the outgoing BIO.
RECORD = 16384
READ_SIZE = RECORD + 1024
# Seconds a handshake may take, however its bytes trickle in (TLSSettings can change it).
HANDSHAKE_TIMEOUT = 10.0
# Plaintext encrypted per send: bounded, so that a large response is not copied whole.
WRITE_SIZE = 256 * 1024

PLAIN_HTTP_ANSWER = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     b"Content-Length: 45\r\nConnection: close\r\n\r\n"
                     b"400 Bad Request: this port speaks HTTPS only\n")

CLIENT_CERT_MODES = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
                     "required": ssl.CERT_REQUIRED}


class TLSTransport:
    """One TLS connection over an accepted (blocking-fd, MSG_DONTWAIT) kernel socket."""

    __slots__ = ("raw", "obj", "incoming", "outgoing", "unsent", "committed", "eof",
                 "peer_closed", "peeked", "handshake_deadline", "partial_deadline",
                 "record_timeout")

    scheme = "https"

    def __init__(self, raw: Any, context: ssl.SSLContext,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT) -> None:
        self.raw = raw
        # A handshake fed a byte at a time must still end: checked whenever bytes come (the
        # connection's header timeout cuts one that sends nothing more).
        self.handshake_deadline = time.monotonic() + handshake_timeout
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        # Ciphertext that did not fit in the kernel yet, and the plaintext it carries.
        self.unsent = b""
        self.committed = 0
        self.eof = False  # the kernel socket's end, or a fatal TLS error
        self.peer_closed = False  # the peer's close_notify came (we still send ours)
        self.peeked = b""
        self.partial_deadline = 0.0
        self.record_timeout = handshake_timeout

    # -- the socket's face ----------------------------------------------------------------------

    def fileno(self) -> int:
        return int(self.raw.fileno())

    def getpeername(self) -> Any:
        return self.raw.getpeername()

    def setsockopt(self, *args: Any) -> None:
        self.raw.setsockopt(*args)

    def getpeercert(self, binary_form: bool = False) -> Any:
        """The client's verified certificate (mutual TLS), or None."""
        return self.obj.getpeercert(binary_form)

    def version(self) -> str | None:
        return self.obj.version()

    def selected_alpn_protocol(self) -> str | None:
        return self.obj.selected_alpn_protocol()

    def session_reused(self) -> bool:
        return bool(self.obj.session_reused)

    # -- input ------------------------------------------------------------------------------------

    def _pull(self) -> bool:
        """Move ciphertext from the kernel into OpenSSL (an EOF is written as such). Raises
        BlockingIOError when the kernel has none. Returns whether this read emptied the
        kernel's queue (a short read of a stream socket): then new bytes bring a new edge.
        That is true only now: the caller keeps it for this one read, never longer."""
        data = self.raw.recv(READ_SIZE, DONTWAIT)
        if not data:
            self.incoming.write_eof()
            self.eof = True
            return True
        self.incoming.write(data)
        return len(data) < READ_SIZE

    def _refuse(self, error: ssl.SSLError) -> None:
        """After a TLS error: the alert OpenSSL wrote goes out (best effort); a plain HTTP
        request on this port gets a plain 400 saying so, not a silent close."""
        log.debug("TLS error from %s: %s", _peer(self.raw), error)
        try:
            if error.reason == "HTTP_REQUEST":
                self.raw.send(PLAIN_HTTP_ANSWER, DONTWAIT)
            else:
                data = self.outgoing.read()
                if data:
                    self.raw.send(data, DONTWAIT)
        except OSError:
            pass
        self.eof = True  # no close_notify after a fatal error

    def recv_into(self, view: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Decrypted bytes into ``view``; 0 at the end of the stream (close_notify or EOF);
        BlockingIOError when nothing can be read yet. Runs handshake steps as needed."""
        # Exceptions are the costly part of this loop (SSLWantReadError, BlockingIOError):
        # OpenSSL is asked only when it holds ciphertext, and the kernel is not asked again
        # once this call's read emptied it (``drained``: an edge will announce more).
        if self.peer_closed:
            return 0
        obj = self.obj
        incoming = self.incoming
        size = len(view)
        total = 0
        drained = False
        if self.peeked:  # plaintext the hang-up peek decrypted comes first
            data = self.peeked
            total = min(len(data), size)
            view[:total] = data[:total]
            self.peeked = data[total:]
        while total < size:
            if not incoming.pending and not obj.pending():
                if drained and not self.eof:
                    if total:
                        return total
                    self._check_deadlines()
                    raise BlockingIOError()
                if not self.eof:
                    try:
                        drained = self._pull()
                    except BlockingIOError:
                        if total:
                            return total
                        self._check_deadlines()
                        raise
            want = size - total
            try:
                # With a buffer, read() returns a count (typeshed says bytes).
                n = cast(int, obj.read(want, view[total:] if total else view))
            except ssl.SSLWantReadError:
                # A partial record, or the handshake goes on: its output leaves now.
                if self.outgoing.pending:
                    self._push_handshake_output()
                if self.eof:
                    if total:
                        return total
                    raise ConnectionResetError("TLS: EOF in the middle of a record") from None
                if not self.partial_deadline:  # bytes that decrypt to nothing yet
                    self.partial_deadline = time.monotonic() + self.record_timeout
                continue
            except ssl.SSLZeroReturnError:  # close_notify: a clean end, now or next read
                return self._peer_closed(total)
            except ssl.SSLEOFError:
                return total  # EOF without close_notify (0: the peer is gone all the same)
            except ssl.SSLError as e:
                self._refuse(e)
                raise
            if n == 0:  # close_notify (Python's ssl returns 0 for it)
                return self._peer_closed(total)
            total += n
            self.partial_deadline = 0.0
            if n < want and drained and not incoming.pending and not self.eof:
                # The common end of a request: a read returns one record's plaintext, so a
                # short one left OpenSSL nothing decrypted (no pending() call needed), and
                # the kernel was emptied by this call.
                return total
        if self.outgoing.pending:
            self._push_handshake_output()  # e.g. TLS 1.3 session tickets after the handshake
        return total

    def _peer_closed(self, total: int) -> int:
        """The peer's close_notify came after ``total`` bytes of this read. The next read
        returns 0; but when this one returns data, no edge would call it: shutting down our
        read side makes the kernel report the end (EPOLLIN|EPOLLRDHUP) as it would a FIN, so
        the connection reads again and finds it. Our own close_notify still goes out."""
        self.peer_closed = True
        if total:
            with contextlib.suppress(OSError):
                self.raw.shutdown(socket.SHUT_RD)
        return total

    def _check_deadlines(self) -> None:
        """Bytes that trickle in without becoming plaintext (a handshake, or a record fed a
        byte at a time) must still end: each wake-up that brings nothing usable checks the
        time since the first such byte (the connection's header timeout cuts a client that
        sends nothing more)."""
        now = 0.0
        if self.handshake_deadline:
            now = time.monotonic()
            if now > self.handshake_deadline:
                if self.obj.version() is None:
                    raise ConnectionResetError("TLS handshake took too long")
                self.handshake_deadline = 0.0  # done: never checked again
        if self.partial_deadline and (now or time.monotonic()) > self.partial_deadline:
            raise ConnectionResetError("TLS record trickled in too slowly")

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """The hang-up peek (MSG_PEEK): b"" if the peer has closed (a close_notify or an EOF),
        else some bytes if anything is there; BlockingIOError if nothing is. Ciphertext the
        kernel holds is taken in and decrypted here, so that a close_notify is seen as the end
        it is; plaintext found is kept (``peeked``) for the next read."""
        if self.peeked or self.obj.pending():
            return b"\0"
        if self.eof or self.peer_closed:
            return b""
        if not self.incoming.pending:
            self._pull()  # BlockingIOError: nothing there
            if self.eof:
                return b""
        try:
            data = self.obj.read(READ_SIZE)
        except ssl.SSLWantReadError:
            if self.outgoing.pending:
                self._push_handshake_output()
            return b"\0"  # part of a record (or of the handshake): input, not an end
        except ssl.SSLZeroReturnError:
            self.peer_closed = True  # we still answer with our own close_notify
            return b""
        except ssl.SSLEOFError:
            self.eof = True
            return b""
        except ssl.SSLError as e:
            self._refuse(e)
            return b""
        if not data:
            self.peer_closed = True
            return b""
        self.peeked = data
        return data[:1]

    def _push_handshake_output(self) -> None:
        """Handshake and alert bytes go out at once: a read has no way to wait for write
        space. During a handshake nothing else is in the socket's send buffer, so a flight
        that does not fit is larger than the buffer itself (a long certificate chain; an
        accepted socket starts with 16 KiB, tcp_wmem): the buffer is grown to hold it, once
        (SO_SNDBUF, up to the kernel's wmem_max). Only a flight larger than that closes the
        connection (logged at debug)."""
        data = self.unsent + self.outgoing.read()
        if not data:
            return
        sent = self._send_now(data)
        if sent < len(data) and not self.committed:
            with contextlib.suppress(OSError):
                size = self.raw.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
                self.raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                                    max(size, 2 * len(data)))
            sent += self._send_now(memoryview(data)[sent:])
        if sent < len(data):
            if self.committed:  # application data is waiting too: the next send sends it
                self.unsent = data[sent:]
                return
            raise ConnectionResetError("TLS: handshake output did not fit the socket")
        self.unsent = b""

    def _send_now(self, data: Any) -> int:
        try:
            return int(self.raw.send(data, DONTWAIT))
        except BlockingIOError:
            return 0

    # -- output -----------------------------------------------------------------------------------

    def sendmsg(self, chunks: list[Any], ancdata: Any = (), flags: int = 0) -> int:
        if len(chunks) == 1:
            return self.send(chunks[0], flags)
        if sum(map(len, chunks)) <= WRITE_SIZE:  # a response or a few: joined whole
            return self.send(b"".join(chunks), flags)
        plain, size = [], 0
        for chunk in chunks:  # at most WRITE_SIZE bytes joined: never a whole large body
            room = WRITE_SIZE - size
            if len(chunk) > room:
                plain.append(memoryview(chunk)[:room])
                break
            plain.append(chunk)
            size += len(chunk)
        return self.send(b"".join(plain), flags)

    def send(self, data: Any, flags: int = 0) -> int:
        """Plaintext reported sent only once its ciphertext is all in the kernel (module
        rules). The caller passes the unreported plaintext again, unchanged."""
        if self.committed:
            if self.unsent:
                sent = self.raw.send(self.unsent, (int(flags) & NOT_MORE) | DONTWAIT)
                self.unsent = self.unsent[sent:]
                if self.unsent:
                    raise BlockingIOError()
            done, self.committed = self.committed, 0
            return done
        if len(data) <= RECORD:
            self.obj.write(data)
            cipher = self.outgoing.read()
        else:  # a record at a time, the BIO drained after each (see RECORD)
            data = memoryview(data)[:WRITE_SIZE]
            obj, outgoing, pieces = self.obj, self.outgoing, []
            for start in range(0, len(data), RECORD):
                obj.write(data[start:start + RECORD])
                pieces.append(outgoing.read())
            cipher = b"".join(pieces)
        try:
            sent = self.raw.send(cipher, int(flags) | DONTWAIT)
        except BlockingIOError:
            sent = 0
        if sent < len(cipher):
            self.unsent = cipher[sent:]
            self.committed = len(data)
            raise BlockingIOError()
        return len(data)

    # -- the end ----------------------------------------------------------------------------------

    def shutdown(self, how: int) -> None:
        """Send close_notify (best effort: never waits), then shut the kernel socket down."""
        self._close_notify()
        self.raw.shutdown(how)

    def close(self) -> None:
        self._close_notify()
        self.raw.close()

    def _close_notify(self) -> None:
        if self.eof or self.unsent:
            return
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass  # sent ours; the peer's answer is not waited for
        except (ssl.SSLError, OSError, ValueError):
            return
        data = self.outgoing.read()
        if data:
            with contextlib.suppress(OSError):
                self.raw.send(data, DONTWAIT)


class TLSSettings:
    """The server's TLS: an SSLContext from a certificate chain and key, TLS 1.2 at least,
    ALPN ``http/1.1``, no renegotiation, session tickets on; optional client certificates;
    more certificates chosen by SNI host name (``sni={"name": (certfile, keyfile)}``)."""

    def __init__(self, certfile: str, keyfile: str | None = None, password: str | None = None,
                 ca_certs: str | None = None, client_cert: str = "none",
                 ciphers: str | None = None,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT,
                 sni: dict[str, tuple[str, str | None]] | None = None) -> None:
        self.handshake_timeout = handshake_timeout
        # Host name (lower case) -> (certfile, keyfile): chosen by the client's SNI; the main
        # certificate answers any other name and clients that send none.
        self.sni = {name.lower().rstrip("."): files for name, files in (sni or {}).items()}
        if client_cert not in CLIENT_CERT_MODES:
            raise ValueError(f"client_cert is one of {', '.join(CLIENT_CERT_MODES)}")
        if client_cert != "none" and not ca_certs:
            raise ValueError("client certificates need ca_certs to verify them against")
        self.certfile, self.keyfile, self.password = certfile, keyfile, password
        self.ca_certs, self.client_cert, self.ciphers = ca_certs, client_cert, ciphers
        self.context = self._make_context()

    def _make_context(self) -> ssl.SSLContext:
        ctx = self._context_for(self.certfile, self.keyfile)
        if self.sni:
            by_name = {name: self._context_for(*files) for name, files in self.sni.items()}

            def choose(obj: Any, name: str | None, _ctx: ssl.SSLContext) -> None:
                # Runs inside the handshake (OpenSSL's callback): a dict lookup, nothing more.
                chosen = by_name.get(name.lower().rstrip(".")) if name else None
                if chosen is not None:
                    obj.context = chosen

            ctx.sni_callback = choose
        return ctx

    def _context_for(self, certfile: str, keyfile: str | None) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        ctx.set_alpn_protocols(["http/1.1"])
        if self.ciphers:
            ctx.set_ciphers(self.ciphers)
        ctx.load_cert_chain(certfile, keyfile, self.password)
        if self.ca_certs:
            ctx.load_verify_locations(self.ca_certs)
        ctx.verify_mode = CLIENT_CERT_MODES[self.client_cert]
        return ctx

    def wrap(self, raw: Any) -> TLSTransport:
        """The Server's transport hook: an accepted socket becomes a TLS connection."""
        return TLSTransport(raw, self.context, self.handshake_timeout)

    def reload(self) -> None:
        """Load the certificate files again (a renewer replaced them): new handshakes use
        them, live connections keep theirs. A bad new file raises and changes nothing."""
        self.context = self._make_context()


def _peer(raw: Any) -> Any:
    try:
        return raw.getpeername()
    except OSError:
        return "?"
