"""A small cached file gets an exact route in the app (``App.pin``): the router's fast path
must answer exactly as the mount does, and the pin must never outlive what it stands for
(a changed, deleted or evicted file, a route of the app's own, a wrapper added later, a
second mount over the same prefix, a folder mounted in two apps)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tpd2py import App, Request, Response
from tpd2py.static import StaticFiles


@pytest.fixture
def site(tmp_path: Path) -> Path:
    pub = tmp_path / "pub"
    pub.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (pub / name).write_bytes(name.encode() * 100)
    (pub / "big.bin").write_bytes(b"x" * (100 * 1024))
    return pub


def mounted(site: Path, **options: Any) -> tuple[App, StaticFiles]:
    app = App()
    files = StaticFiles(site, **options)
    app.mount("/static", files)
    return app, files


def test_a_served_small_file_is_pinned_and_answers_as_the_mount_does(server, site):
    app, _ = mounted(site, revalidate_after=3600)
    srv = server(app)
    first = srv.get("/static/a.txt")
    assert b"/static/a.txt" in app.exact  # pinned after its first request
    second = srv.get("/static/a.txt")
    assert second.status == first.status == 200 and second.body == first.body
    assert second.headers == first.headers
    ex = srv.exchange(b"HEAD /static/a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                      methods=["HEAD"])
    (head,) = ex.final
    assert head.status == 200 and head.body == b"" and head.header("ETag") == \
        first.header("ETag")
    assert srv.get("/static/a.txt", {"If-None-Match": first.header("ETag")}).status == 304
    r = srv.get("/static/a.txt", {"Range": "bytes=0-4"})
    assert r.status == 206 and r.body == b"a.txt"
    srv.get("/static/big.bin")
    assert b"/static/big.bin" not in app.exact  # sent by sendfile: never pinned


def test_a_changed_file_replaces_its_pin_and_a_deleted_one_drops_it(server, site):
    app, _ = mounted(site, revalidate_after=0)
    srv = server(app)
    assert srv.get("/static/a.txt").body == b"a.txt" * 100
    (site / "a.txt").write_bytes(b"changed\n")
    assert srv.get("/static/a.txt").body == b"changed\n"
    assert srv.get("/static/a.txt").body == b"changed\n"  # through the new pin
    (site / "a.txt").unlink()
    assert srv.get("/static/a.txt").status == 404
    assert b"/static/a.txt" not in app.exact
    assert srv.get("/static/a.txt").status == 404


def test_pins_are_bounded_by_the_cache(server, site):
    app, files = mounted(site, cache_entries=2)
    srv = server(app)
    for name in ("a.txt", "b.txt", "c.txt", "a.txt"):
        assert srv.get(f"/static/{name}").status == 200
    pinned = [p for p in app.exact if p.startswith(b"/static/") and p != b"/static/"]
    assert len(pinned) == len(files.entries) == 2
    for name in ("a.txt", "b.txt", "c.txt"):
        assert srv.get(f"/static/{name}").body == name.encode() * 100


def test_a_route_of_the_app_comes_before_a_pin(server, site):
    app, _ = mounted(site, revalidate_after=0)
    srv = server(app)
    assert srv.get("/static/b.txt").body == b"b.txt" * 100

    @app.route("/static/b.txt")
    def own(req: Request) -> bytes:
        return b"the app's own"

    assert srv.get("/static/b.txt").body == b"the app's own"
    (site / "b.txt").write_bytes(b"changed\n")  # revalidation unpins: the route must stay
    assert srv.get("/static/c.txt").status == 200
    assert srv.get("/static/b.txt").body == b"the app's own"


def test_a_wrapper_added_after_the_pin_wraps_it(server, site):
    app, _ = mounted(site, revalidate_after=3600)
    srv = server(app)
    assert srv.get("/static/a.txt").header("X-Wrapped") is None

    def wrapper(fn: Any) -> Any:
        def wrapped(req: Request) -> Response:
            response = fn(req)
            response.fields += b"X-Wrapped: yes\r\n"
            return response
        return wrapped

    app.wrap(wrapper)
    assert srv.get("/static/a.txt").header("X-Wrapped") == "yes"
    assert srv.get("/static/a.txt").header("X-Wrapped") == "yes"  # not added twice
    assert srv.get("/static/a.txt").header_names().count("x-wrapped") == 1


def test_a_longer_mount_added_later_takes_its_paths_back(server, site, tmp_path):
    app, _ = mounted(site, revalidate_after=3600)
    srv = server(app)
    (site / "inner").mkdir()
    (site / "inner" / "x.txt").write_bytes(b"outer mount\n")
    assert srv.get("/static/inner/x.txt").body == b"outer mount\n"
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_bytes(b"inner mount\n")
    app.mount("/static/inner", StaticFiles(other))
    assert srv.get("/static/inner/x.txt").body == b"inner mount\n"


def test_one_folder_in_two_apps_pins_each_under_its_own_prefix(server, site):
    files = StaticFiles(site)
    one, two = App(), App()
    one.mount("/one", files)
    two.mount("/two", files)
    s1, s2 = server(one), server(two)
    assert s1.get("/one/a.txt").status == 200
    assert b"/one/a.txt" in one.exact and b"/two/a.txt" in two.exact
    assert b"/two/a.txt" not in one.exact and b"/one/a.txt" not in two.exact
    assert s2.get("/one/a.txt").status == 404
    assert s2.get("/two/a.txt").body == b"a.txt" * 100
