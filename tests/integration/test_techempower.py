"""The TechEmpower test types on tpd2py (bench/techempower/tpd2py_app.py), checked the way the
benchmark's verifier checks them (bench/techempower/verify.py: headers, JSON shapes, the
``queries`` clamping, the fortunes markup, its sort order and escaping, updates that reach the
database), on a real PostgreSQL with the benchmark's schema."""

from __future__ import annotations

import http.client
from collections.abc import Callable

import pytest
from conftest import WAIT, RunningServer
from pg_helpers import blocking, techempower_dsn

pg = pytest.importorskip("tpd2py.pg", reason="psycopg is not installed (the postgres extra)")

from bench.techempower.tpd2py_app import make_app  # noqa: E402
from bench.techempower.verify import check_fortunes, verify  # noqa: E402


def fetch(srv: RunningServer) -> Callable[[str], tuple[int, dict[str, str], bytes]]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=WAIT)

    def get(path: str) -> tuple[int, dict[str, str], bytes]:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()

    return get


def test_every_test_type_passes_the_verifier(server: Callable[..., RunningServer]) -> None:
    dsn = techempower_dsn()
    db = pg.Pool(dsn, size=4)
    srv = server(make_app(db))
    with blocking(dsn) as check:
        def world(ids: list[int]) -> dict[int, int]:
            rows = check.execute("SELECT id, randomnumber FROM world WHERE id = ANY(%s)",
                                 (ids,)).fetchall()
            return dict(rows)

        try:
            assert verify(fetch(srv), world) == []
        finally:
            srv.call(db.close)


def test_plaintext_16_deep_pipelining(server: Callable[..., RunningServer]) -> None:
    db = pg.Pool(techempower_dsn(), size=1)
    srv = server(make_app(db))
    try:
        with srv.connect() as sock:
            sock.sendall(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n" * 16)
            replies = srv.read_replies(sock, 16)
        assert [(r.status, r.body) for r in replies] == [(200, b"Hello, World!")] * 16
        assert all(r.header("Server") == "tpd2py" and r.header("Date") for r in replies)
    finally:
        srv.call(db.close)


def test_the_fortunes_check_catches_unescaped_or_unsorted_pages() -> None:
    """The verifier itself must be able to fail (a check that cannot fail is no check)."""
    head = "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
    raw = head + "<tr><th>id</th><th>message</th></tr><tr><td>11</td><td><script>x</script>" \
        "</td></tr></table></body></html>"
    assert any("<script>" in p for p in check_fortunes("/f", raw.encode()))
    unsorted = head + "<tr><th>id</th><th>message</th></tr>" \
        "<tr><td>1</td><td>fortune: No such file or directory</td></tr>" \
        "<tr><td>0</td><td>Additional fortune added at request time.</td></tr>" \
        "</table></body></html>"
    assert check_fortunes("/f", unsorted.encode())
