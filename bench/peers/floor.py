"""Not a server: the least that pure Python can do per connection, as a floor for Fremlin's test.

Run from the repo root: ``python bench/peers/floor.py --port PORT``.

One epoll on the listener (with TCP_DEFER_ACCEPT, as tpd2py), and per connection: accept, one
``recv_into``, one canned ``sendmsg`` of the /test page (MSG_MORE, so the FIN rides on it),
close. No parsing, no routing, no timeouts, no error handling beyond EAGAIN: every request
gets the same answer. What this reaches under ``ab -c 1`` is the ceiling for any pure-Python
server on the machine; the distance from it to tpd2py is what tpd2py's HTTP work costs.
Only the fremlin scenario means anything for it (bench/servers.py waives the contract checks
it cannot pass).
"""

from __future__ import annotations

import argparse
import select
import socket

PAGE = [b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 19\r\n"
        b"Date: Sat, 28 Nov 2026 12:00:00 GMT\r\nConnection: close\r\n\r\n",
        b"<h1>Hello John</h1>"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backlog", type=int, default=1024)
    args = parser.parse_args()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(args.backlog)
    listener.setblocking(False)
    epoll = select.epoll()
    epoll.register(listener.fileno(), select.EPOLLIN)
    accept = listener._accept  # type: ignore[attr-defined]
    buf = bytearray(16384)
    flags = socket.MSG_DONTWAIT | socket.MSG_MORE
    while True:
        for _ in epoll.poll():
            try:
                fd, _addr = accept()
            except BlockingIOError:
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, fd)
            try:
                sock.recv_into(buf, 0, socket.MSG_DONTWAIT)
                sock.sendmsg(PAGE, (), flags)
            except OSError:
                pass
            sock.close()


if __name__ == "__main__":
    main()
