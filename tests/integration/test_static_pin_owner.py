"""Regression (review13): a pin must only be made where the pinning mount owns the path.

A folder mounted under two prefixes pins each small file it caches under both; when another
mount (or the same folder under a longer prefix) owns one of those paths, the pin shadowed
it: the router's exact-route fast path answered with the wrong file."""

from __future__ import annotations

from pathlib import Path

from tpd2py import App, Response
from tpd2py.static import StaticFiles


def test_a_pin_never_serves_a_nested_mount_of_the_same_folder_from_the_wrong_file(
        server, tmp_path: Path):
    pub = tmp_path / "pub"
    (pub / "b").mkdir(parents=True)
    (pub / "x.txt").write_bytes(b"top\n")
    (pub / "b" / "x.txt").write_bytes(b"nested\n")
    app = App()
    files = StaticFiles(pub, revalidate_after=3600)
    app.mount("/a", files)
    app.mount("/a/b", files)
    srv = server(app)
    # /a/b/b/x.txt is the folder's b/x.txt (tail "/b/x.txt" under the longer prefix)...
    assert srv.get("/a/b/b/x.txt").body == b"nested\n"
    # ...and /a/b/x.txt is the folder's x.txt (the mount /a/b owns it), pinned or not.
    assert srv.get("/a/b/x.txt").body == b"top\n"
    assert srv.get("/a/b/x.txt").body == b"top\n"


def test_a_pin_never_shadows_a_longer_mount_of_another_handler(server, tmp_path: Path):
    pub = tmp_path / "pub"
    (pub / "gen").mkdir(parents=True)
    (pub / "gen" / "a.js").write_bytes(b"from the folder\n")
    app = App()
    files = StaticFiles(pub, revalidate_after=3600)
    app.mount("/s", files)
    app.mount("/static", files)
    app.mount("/static/gen", lambda request: Response(b"generated\n"))
    srv = server(app)
    assert srv.get("/s/gen/a.js").body == b"from the folder\n"
    assert srv.get("/static/gen/a.js").body == b"generated\n"


def test_a_shorter_mount_added_later_keeps_the_longer_mounts_pins(server, tmp_path: Path):
    pub = tmp_path / "pub"
    pub.mkdir()
    (pub / "a.txt").write_bytes(b"a\n")
    app = App()
    app.mount("/static", StaticFiles(pub, revalidate_after=3600))
    srv = server(app)
    assert srv.get("/static/a.txt").body == b"a\n"
    assert b"/static/a.txt" in app.exact
    app.mount("/", lambda request: Response(b"root\n"))
    assert b"/static/a.txt" in app.exact  # /static still owns it: the pin stays
    assert srv.get("/static/a.txt").body == b"a\n"


def test_one_folder_in_two_apps_under_nested_prefixes_serves_each_apps_own_path(
        server, tmp_path: Path):
    # Before review13 the folder cut the longest prefix it had in any app: in the app that
    # mounts it at /a, /a/b/x.txt was read as x.txt (the other app's /a/b), not b/x.txt.
    pub = tmp_path / "pub"
    (pub / "b").mkdir(parents=True)
    (pub / "x.txt").write_bytes(b"top\n")
    (pub / "b" / "x.txt").write_bytes(b"nested\n")
    files = StaticFiles(pub, revalidate_after=3600)
    one, two = App(), App()
    one.mount("/a", files)
    two.mount("/a/b", files)
    s1, s2 = server(one), server(two)
    for _ in range(2):  # through the mount, then through the pin
        assert s1.get("/a/b/x.txt").body == b"nested\n"
        assert s1.get("/a/x.txt").body == b"top\n"
        assert s2.get("/a/b/x.txt").body == b"top\n"
        assert s2.get("/a/b/b/x.txt").body == b"nested\n"


def test_a_mounted_object_that_delegates_to_a_folder_is_not_bypassed_by_pins(
        server, tmp_path: Path):
    # An access check written as an object around the folder, delegating the rest
    # (``__getattr__``): its routed_by was the folder's, so the folder pinned its files and
    # the router's fast path answered them without the check.
    pub = tmp_path / "pub"
    pub.mkdir()
    (pub / "secret.txt").write_bytes(b"secret\n")

    class Private:
        def __init__(self, inner: StaticFiles) -> None:
            self.inner = inner

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(self.inner, name)

        def __call__(self, request):  # type: ignore[no-untyped-def]
            if request.header("Authorization") != "Bearer ok":
                return Response(b"no\n", status=403)
            return self.inner(request)

    app = App()
    app.mount("/private", Private(StaticFiles(pub, revalidate_after=3600)))
    srv = server(app)
    ok = {"Authorization": "Bearer ok"}
    assert srv.get("/private/secret.txt", ok).body == b"secret\n"
    assert srv.get("/private/secret.txt").status == 403
    assert srv.get("/private/secret.txt", ok).body == b"secret\n"


def test_a_subclass_with_its_own_call_sees_every_request(server, tmp_path: Path):
    pub = tmp_path / "pub"
    pub.mkdir()
    (pub / "a.txt").write_bytes(b"a\n")
    seen = []

    class Counted(StaticFiles):
        def __call__(self, request):  # type: ignore[no-untyped-def]
            seen.append(request.path)
            return super().__call__(request)

    app = App()
    app.mount("/static", Counted(pub, revalidate_after=3600))
    srv = server(app)
    for _ in range(3):
        assert srv.get("/static/a.txt").body == b"a\n"
    assert seen == ["/static/a.txt"] * 3


def test_a_folder_mounted_after_a_wrapper_is_still_pinned(server, tmp_path: Path):
    pub = tmp_path / "pub"
    pub.mkdir()
    (pub / "a.txt").write_bytes(b"a\n")
    app = App()
    app.wrap(lambda fn: fn)  # a wrapper before the mount (``--gzip``, hooks)
    app.mount("/static", StaticFiles(pub, revalidate_after=3600))
    srv = server(app)
    assert srv.get("/static/a.txt").body == b"a\n"
    assert b"/static/a.txt" in app.exact
    assert srv.get("/static/a.txt").body == b"a\n"
