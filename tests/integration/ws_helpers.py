"""A raw-socket WebSocket client for the tests: the handshake bytes, masked client frames,
and a reader of server frames. Nothing here is clever: the point is to send exactly the bytes
a test means, malformed ones included."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from dataclasses import dataclass

from tpd2py.wsframe import CLOSE, unmask

WAIT = 10.0
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
MASK = b"\x11\x22\x33\x44"


def upgrade_request(path: str = "/", headers: dict[str, str] | None = None,
                    drop: tuple[str, ...] = (), method: str = "GET",
                    version: str = "HTTP/1.1") -> bytes:
    fields = {"Host": "t", "Upgrade": "websocket", "Connection": "Upgrade",
              "Sec-WebSocket-Key": KEY, "Sec-WebSocket-Version": "13"}
    fields.update(headers or {})
    lines = [f"{method} {path} {version}"]
    lines += [f"{k}: {v}" for k, v in fields.items() if k not in drop]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def client_frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0,
                 masked: bool = True) -> bytes:
    n = len(payload)
    b0 = (0x80 if fin else 0) | rsv | opcode
    m = 0x80 if masked else 0
    if n < 126:
        head = bytes((b0, m | n))
    elif n < 65536:
        head = bytes((b0, m | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, m | 127)) + n.to_bytes(8, "big")
    return head + (MASK + unmask(payload, MASK) if masked else payload)


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return client_frame(CLOSE, code.to_bytes(2, "big") + reason)


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes
    rsv1: bool = False

    @property
    def close_code(self) -> int | None:
        assert self.opcode == CLOSE
        return int.from_bytes(self.payload[:2], "big") if self.payload else None


class RawWebSocket:
    """One connection: ``open`` does the handshake and checks the accept key."""

    def __init__(self, address: tuple[str, int], timeout: float = WAIT,
                 rcvbuf: int = 0) -> None:
        if rcvbuf:  # set before connecting: the window the server sees is small from the start
            self.sock = socket.socket()
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect(address)
        else:
            self.sock = socket.create_connection(address, timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def read_head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise AssertionError(f"closed before the response head: {self.buf!r}")
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        return status, fields

    def open(self, path: str = "/", headers: dict[str, str] | None = None,
             then: bytes = b"") -> dict[str, str]:
        self.send(upgrade_request(path, headers) + then)
        status, fields = self.read_head()
        assert status == 101, (status, fields, self.buf)
        assert fields["sec-websocket-accept"] == ACCEPT
        assert fields["upgrade"].lower() == "websocket"
        return fields

    def read_frame(self) -> Frame:
        while True:
            if len(self.buf) >= 2:
                b0, b1 = self.buf[0], self.buf[1]
                assert not b1 & 0x80, "a server frame must not be masked"
                n, pos = b1 & 0x7F, 2
                if n == 126:
                    pos = 4
                elif n == 127:
                    pos = 10
                if len(self.buf) >= pos:
                    if pos == 4:
                        n = int.from_bytes(self.buf[2:4], "big")
                    elif pos == 10:
                        n = int.from_bytes(self.buf[2:10], "big")
                    if len(self.buf) >= pos + n:
                        payload = self.buf[pos:pos + n]
                        self.buf = self.buf[pos + n:]
                        return Frame(bool(b0 & 0x80), b0 & 0x0F, payload, bool(b0 & 0x40))
            if not self._fill():
                raise AssertionError(f"connection closed mid-frame: {self.buf!r}")

    def expect_close(self) -> Frame:
        """Read frames until the server's Close, then check that EOF (not a reset) follows."""
        while True:
            frame = self.read_frame()
            if frame.opcode == CLOSE:
                break
        self.expect_eof()
        return frame

    def expect_eof(self) -> None:
        rest = b""
        while True:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                raise AssertionError("the server reset the connection") from None
            if not data:
                break
            rest += data
        assert not rest, rest[:200]

    def close(self) -> None:
        self.sock.close()


def random_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key: str) -> str:
    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    return base64.b64encode(hashlib.sha1(key.encode() + guid).digest()).decode()
