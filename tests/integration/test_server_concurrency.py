"""Many clients at once: 200 keep-alive connections from one selector loop, and threads with
http.client, each doing several requests whose answers must be their own."""

from __future__ import annotations

import http.client
import json
import selectors
import socket
import threading
import time

CLIENTS = 200
ROUNDS = 5


def test_200_concurrent_keep_alive_clients(srv):
    # One thread, raw non-blocking sockets: every client has a request in flight at once.
    sel = selectors.DefaultSelector()
    state = {}
    for c in range(CLIENTS):
        sock = socket.create_connection(srv.address, timeout=10)
        sock.setblocking(False)
        state[sock] = {"id": c, "round": 0, "buf": b""}
        sel.register(sock, selectors.EVENT_READ)
    try:
        for sock, st in state.items():
            sock.sendall(_request(st["id"], 0))
        done = 0
        deadline = time.monotonic() + 30
        while done < CLIENTS:
            left = deadline - time.monotonic()
            assert left > 0, f"only {done} of {CLIENTS} clients finished"
            for key, _ in sel.select(left):
                sock = key.fileobj
                st = state[sock]
                data = sock.recv(65536)
                assert data, f"client {st['id']} closed in round {st['round']}"
                st["buf"] += data
                reply = _take_reply(st)
                if reply is None:
                    continue
                assert reply == {"c": str(st["id"]), "r": str(st["round"])}, reply
                st["round"] += 1
                if st["round"] == ROUNDS:
                    sel.unregister(sock)
                    done += 1
                else:
                    sock.sendall(_request(st["id"], st["round"]))
    finally:
        for sock in state:
            sock.close()
        sel.close()
    assert srv.get("/").status == 200


def _request(client: int, round_: int) -> bytes:
    return b"GET /query?c=%d&r=%d HTTP/1.1\r\nHost: a\r\n\r\n" % (client, round_)


def _take_reply(st: dict) -> dict | None:
    buf = st["buf"]
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].lower()
    assert head.startswith(b"http/1.1 200 ")
    length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
    if len(buf) < end + 4 + length:
        return None
    body = buf[end + 4:end + 4 + length]
    st["buf"] = buf[end + 4 + length:]
    assert not st["buf"], "one request in flight gives exactly one response"
    return json.loads(body)["query"]


def test_concurrent_http_client_threads_with_bodies(srv):
    errors: list[BaseException] = []
    start = threading.Barrier(50, timeout=10)

    def client(n: int) -> None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            start.wait()
            for i in range(ROUNDS):
                body = b"%d-%d-" % (n, i) * (n + 1)
                conn.request("POST", "/echo", body=body)
                resp = conn.getresponse()
                assert resp.status == 200
                assert resp.read() == body
                conn.request("GET", f"/path/{n}-{i}")
                assert conn.getresponse().read() == f"{n}-{i}".encode()
            conn.close()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:3]


def test_concurrent_slow_handlers_do_not_block_each_other(srv):
    # 50 handlers each sleep 0.3 s cooperatively. If sleep blocked the hub they would run one
    # after another (15 s, beyond every wait here) and the fast request would queue behind.
    socks = []
    for _ in range(50):
        sock = srv.connect()
        sock.sendall(b"GET /slow-stream?t=0.3 HTTP/1.1\r\nHost: a\r\n\r\n")
        socks.append(sock)
    received = []
    for sock in socks:
        got = b""
        while b"start\n" not in got:
            got += sock.recv(4096)
        received.append(got)
    assert srv.get("/").body == b"Hello, World!"
    for sock, rest in zip(socks, received, strict=True):
        while not rest.endswith(b"0\r\n\r\n"):
            more = sock.recv(4096)
            assert more
            rest += more
        assert b"end\n" in rest
        sock.close()


def test_many_slowloris_and_idle_connections_do_not_starve_others(server):
    # 300 connections hold half a head each and 700 sit idle after one request; a normal
    # client is still served, and closing them all leaves nothing behind.
    srv = server(header_timeout=60, keepalive_timeout=60)
    partial = [srv.connect() for _ in range(300)]
    for sock in partial:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
    idle = [srv.connect() for _ in range(700)]
    for sock in idle:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    for sock in idle:
        srv.read_replies(sock, 1)
    assert srv.open_connections() == 1000
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    for _ in range(10):
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"Hello, World!"
    conn.close()
    for sock in partial + idle:
        sock.close()
    srv.wait_closed(1001)
    assert srv.open_connections() == 0
