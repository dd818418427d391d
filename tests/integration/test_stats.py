"""Stats (responses by status class, body bytes, sums across workers) and the access log's
duration and client address, over real sockets: an in-process server for exact counts, the
CLI for the log (read after the server exits, which flushes it), ``--workers 2`` for the sums."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
from pathlib import Path

import pytest
from conftest import WAIT, make_app
from test_workers import APP, Master

from tpd2py import Response
from tpd2py.stats import Stats

_SERIES = re.compile(r"^([a-z0-9_]+(?:\{[^}]*\})?) (\S+)$")


def metrics(text: str) -> dict[str, float]:
    """Prometheus text as {series: value}; every line is a comment or a series."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = _SERIES.match(line)
        assert m, f"not a series line: {line!r}"
        out[m.group(1)] = float(m.group(2))
    return out


def scrape(address: tuple[str, int]) -> dict[str, float]:
    conn = http.client.HTTPConnection(*address, timeout=WAIT)
    try:
        conn.request("GET", "/_stats")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type").startswith("text/plain; version=0.0.4")
        return metrics(resp.read().decode("ascii"))
    finally:
        conn.close()


def fetch(address: tuple[str, int], path: str, method: str = "GET",
          headers: dict[str, str] | None = None, source: str | None = None
          ) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*address, timeout=WAIT,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def classes(m: dict[str, float], prefix: str = "tpd2py_responses_total") -> dict[str, float]:
    return {c: m[f'{prefix}{{class="{c}"}}'] for c in ("1xx", "2xx", "3xx", "4xx", "5xx")}


# -- one process: exact counts ---------------------------------------------------------------------


def test_responses_by_class_and_body_bytes(server):
    app = make_app()
    stats = Stats("/_stats", None)
    stats.install(app)
    srv = server(app, allow_errors=True)  # /error logs its exception
    srv.call(lambda: stats.attach(srv.server))
    sizes = 0
    for path, status in [("/", 200), ("/nocontent", 204), ("/stream?n=4", 200),
                         ("/http-error", 418), ("/nope", 404), ("/error", 500)]:
        got, body = fetch(srv.address, path)
        assert got == status
        sizes += len(body)
    # A malformed request: answered by the connection itself (conn.py's _fail), no body.
    assert srv.exchange(b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n").statuses == [400]
    m = scrape(srv.address)
    assert classes(m) == {"1xx": 0, "2xx": 3, "3xx": 0, "4xx": 3, "5xx": 1}
    assert m["tpd2py_response_body_bytes_total"] == sizes
    assert m["tpd2py_requests_total"] == 7  # the 400 never became a request; the scrape did
    assert m["tpd2py_workers"] == 1
    # One process: its worker series are the sums.
    per_worker = {re.sub(r'\{worker="\d+"\}|worker="\d+",', "", k)
                  .replace("tpd2py_worker_", "tpd2py_"): v
                  for k, v in m.items() if k.startswith("tpd2py_worker_")
                  and not k.startswith("tpd2py_worker_start_time")}
    assert per_worker == {k: v for k, v in m.items()
                          if k != "tpd2py_workers" and not k.startswith("tpd2py_worker_")}


def test_no_stats_leaves_the_log_seam_empty(srv):
    # Without stats or a log nothing is counted per response: the exchange's one check finds
    # no log, and the connection keeps no peer address.
    assert srv.server.ctx.access_log is None
    assert srv.get("/").status == 200
    assert srv.call(lambda: srv.server.ctx.new_exchange.__name__) == "Exchange"


# -- the access log: duration, and the client behind a trusted proxy -------------------------------


_LINE = re.compile(r'^(\S+) - - \[[^]]+\] "([^"]*)" (\d{3}) (\d+|-) (\d+\.\d{6}|-)$')


def log_lines(path: Path) -> list[tuple[str, str, int, str, float | None]]:
    rows = []
    for line in path.read_text("ascii").splitlines():
        m = _LINE.match(line)
        assert m, f"not an access log line: {line!r}"
        took = None if m.group(5) == "-" else float(m.group(5))
        rows.append((m.group(1), m.group(2), int(m.group(3)), m.group(4), took))
    return rows


def test_access_log_has_the_request_duration(cli_server, tmp_path):
    log = tmp_path / "access.log"
    srv = cli_server("conftest:app", "--access-log", str(log))
    assert srv.get("/").status == 200
    assert srv.get("/slow?t=0.05").body == b"slept"
    assert srv.get("/stream?n=2").status == 200
    # A good request, then a malformed one on the same connection: the 400 has no duration.
    ex = srv.exchange(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nBad Header: x\r\n\r\n")
    assert ex.statuses == [200, 400]
    assert srv.terminate() == 0
    rows = log_lines(log)
    assert [r[2] for r in rows] == [200, 200, 200, 200, 400]
    durations = [r[4] for r in rows]
    assert all(d is not None and d >= 0 for d in durations[:4])
    assert durations[1] >= 0.05  # the handler slept 0.05 s on the hub before it answered
    assert durations[4] is None
    assert rows[4][1] == "-"  # not the request before it, whose line is written


def _proxied_requests(address: tuple[str, int]) -> None:
    spoof = {"X-Forwarded-For": "203.0.113.9"}
    assert fetch(address, "/", headers=spoof)[0] == 200  # from 127.0.0.1: trusted
    assert fetch(address, "/nope", headers=spoof)[0] == 404  # unrouted, still the client
    assert fetch(address, "/", headers=spoof, source="127.0.0.2")[0] == 200  # untrusted
    with socket.create_connection(address, timeout=WAIT) as sock:  # no head: the peer
        sock.sendall(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")


_PROXIED = [("203.0.113.9", "GET / HTTP/1.1", 200), ("203.0.113.9", "GET /nope HTTP/1.1", 404),
            ("127.0.0.2", "GET / HTTP/1.1", 200), ("127.0.0.1", "-", 400)]


@pytest.mark.parametrize("spec", ["conftest:app", "wsgi_apps:app"])
def test_access_log_shows_the_client_a_trusted_proxy_reported(cli_server, tmp_path, spec):
    log = tmp_path / "access.log"
    srv = cli_server(spec, "--proxy-headers", "--access-log", str(log))
    _proxied_requests(srv.address)
    assert srv.terminate() == 0
    assert [r[:3] for r in log_lines(log)] == _PROXIED


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "wapp.py").write_text(APP)
    (tmp_path / "version.txt").write_text("v1")
    return tmp_path


def test_access_log_client_in_workers_and_spoof_from_untrusted_peer(folder):
    log = folder / "access.log"
    m = Master(folder, "--workers", "1", "--port", "0", "--proxy-headers",
               "--access-log", str(log))
    try:
        _proxied_requests(m.address)
    finally:
        assert m.stop() == 0
    assert [r[:3] for r in log_lines(log)] == _PROXIED


# -- --workers 2: the sums -----------------------------------------------------------------------


def test_sums_across_workers_keep_exited_workers_counts(folder):
    m = Master(folder, "--workers", "2", "--port", "0", "--stats-path", "/_stats")
    try:
        sizes = 0
        for _ in range(20):  # a connection each: the two workers share them
            status, body = fetch(m.address, "/")
            assert status == 200
            sizes += len(body)
        # A reload: both workers retire, publishing their last counts as they stop; the master
        # keeps them in the sums.
        old = m.children()
        mark = m.mark()
        m.signal(signal.SIGHUP)
        for pid in old:
            m.wait_for(rf"worker {pid} stopped \(exit status 0\)", since=mark)
        new = m.children()
        assert len(new) == 2 and not new & old
        s = scrape(m.address)
        assert s["tpd2py_workers"] == 2
        assert s["tpd2py_requests_total"] == 21  # the 20 and this scrape
        assert classes(s) == {"1xx": 0, "2xx": 20, "3xx": 0, "4xx": 0, "5xx": 0}
        assert s["tpd2py_response_body_bytes_total"] == sizes
        per_worker = {k: v for k, v in s.items() if k.startswith("tpd2py_worker_requests")}
        assert {int(re.search(r'worker="(\d+)"', k).group(1)) for k in per_worker} == new
        assert sum(per_worker.values()) == 1  # only the scrape: the 20 are the old workers'
        # A kill -9: the sums never go back.
        assert fetch(m.address, "/nope")[0] == 404
        before = scrape(m.address)
        victim = min(m.children())
        mark = m.mark()
        os.kill(victim, signal.SIGKILL)
        m.wait_for(rf"worker {victim} killed by SIGKILL: replacing it", since=mark)
        m.wait_for(r"worker \d+ ready", since=mark)
        after = scrape(m.address)
        # A killed worker keeps what it last published (at most its last second is lost):
        # the sums never go back.
        for key, value in before.items():
            if key.startswith(("tpd2py_requests", "tpd2py_responses", "tpd2py_response_body")):
                assert after[key] >= value, key
        assert after["tpd2py_requests_total"] >= before["tpd2py_requests_total"] + 1
    finally:
        m.stop()


def test_a_streamed_304_is_logged_and_counted(server):
    # A generator body with a status that has no body (1xx/204/304): it had no log line.
    app = make_app()

    @app.route("/gen304")
    def gen304(req):
        return Response(iter([b"never sent"]), status=304)

    stats = Stats("/_stats", None)
    stats.install(app)
    srv = server(app)
    srv.call(lambda: stats.attach(srv.server))
    assert fetch(srv.address, "/gen304")[0] == 304
    assert classes(scrape(srv.address))["3xx"] == 1


def test_access_log_a_second_forwarded_line_from_the_proxy_is_not_spoofed(cli_server, tmp_path):
    # A proxy that adds its own X-Forwarded-For line (HAProxy's option forwardfor) after the
    # client's: RFC 9110 §5.3 makes them one list, "client's, proxy's". Taking the first
    # line alone would log (and give the handler) the address the client made up.
    log = tmp_path / "access.log"
    srv = cli_server("conftest:app", "--proxy-headers", "--access-log", str(log))
    ex = srv.exchange(b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\n"
                      b"X-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n")
    assert ex.statuses == [200]
    assert srv.terminate() == 0
    assert [r[0] for r in log_lines(log)] == ["203.0.113.9"]
