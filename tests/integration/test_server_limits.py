"""Size limits end to end: big heads that fit, 414, 431, header count, per-server Limits."""

from __future__ import annotations

import json

from tpd2py.http11 import Limits


def test_head_larger_than_the_input_buffer_is_served(srv):
    # Regression: grow_buffer reset start/end after copying, so heads over 16 KiB got 400.
    pad = "a" * (srv.config.buffer_size + 4000)
    r = srv.get("/headers", {"X-Pad": pad})
    assert r.status == 200
    assert dict(json.loads(r.body)["headers"])["x-pad"] == pad


def test_big_head_after_a_pipelined_request(srv):
    pad = b"b" * (3 * srv.config.buffer_size)
    ex = srv.exchange(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
                      b"GET /headers HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Pad: " + pad
                      + b"\r\n\r\n")
    assert ex.statuses == [200, 200]
    assert dict(json.loads(ex.replies[1].body)["headers"])["x-pad"] == pad.decode()


def test_big_head_trickled_in_small_segments(srv):
    head = (b"GET /headers HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
            + b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 300) for i in range(60)) + b"\r\n")
    assert len(head) > srv.config.buffer_size
    with srv.connect() as sock:
        for i in range(0, len(head), 1000):
            sock.sendall(head[i:i + 1000])
            srv.sync()
        ex = srv.read_until_close(sock)
    assert ex.statuses == [200]
    assert len(json.loads(ex.replies[0].body)["headers"]) == 62


def test_head_over_max_header_bytes_gets_431(srv):
    pad = b"c" * (srv.config.limits.max_header_bytes + 100)
    ex = srv.exchange(b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + pad + b"\r\n\r\n")
    assert ex.statuses == [431]
    assert ex.replies[0].header("Connection") == "close"


def test_head_over_max_header_bytes_never_finished_gets_431(srv):
    # The blank line never comes: the limit must trigger on what is buffered.
    pad = b"d" * (srv.config.limits.max_header_bytes + 100)
    ex = srv.exchange(b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + pad)
    assert ex.statuses == [431]


def test_too_many_header_fields_gets_431(srv):
    n = srv.config.limits.max_headers + 1
    fields = b"".join(b"X-H%d: v\r\n" % i for i in range(n))
    ex = srv.exchange(b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n")
    assert ex.statuses == [431]


def test_max_headers_fields_are_accepted(srv):
    n = srv.config.limits.max_headers - 1  # plus Host
    fields = b"".join(b"X-H%d: v\r\n" % i for i in range(n - 1))
    ex = srv.exchange(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" + fields + b"\r\n")
    assert ex.statuses == [200]


def test_request_line_over_limit_gets_414(srv):
    target = b"/" + b"t" * srv.config.limits.max_request_line
    ex = srv.exchange(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert ex.statuses == [414]
    assert ex.replies[0].header("Connection") == "close"


def test_configured_limits_apply(server):
    srv = server(limits=Limits(max_request_line=100, max_header_bytes=400, max_headers=3))
    assert srv.exchange(b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: a\r\n\r\n").statuses == [414]
    many = b"".join(b"X-%d: v\r\n" % i for i in range(5))
    assert srv.exchange(b"GET / HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n").statuses == [431]
    big = b"X: " + b"v" * 500 + b"\r\n"
    assert srv.exchange(b"GET / HTTP/1.1\r\nHost: a\r\n" + big + b"\r\n").statuses == [431]
    assert srv.get("/").status == 200
