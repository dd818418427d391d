"""The web-app basics over real sockets: cookies, signed sessions, redirects and url_for, hooks
and error pages, debug pages, handler footguns, per-route body limits. Served with
``tpd2py.testing.TestServer`` (a real server in a thread) and driven by its ``Client``
(http.client) or by raw sockets for malformed input; the tests of cookies, sessions, hooks and
handler mistakes run a second time with the in-process ``TestClient``."""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tpd2py import App, HTTPError, Request, Response, get_hub, serve  # noqa: E402
from tpd2py.server import Config  # noqa: E402
from tpd2py.sessions import Sessions  # noqa: E402
from tpd2py.testing import TestClient, TestServer  # noqa: E402
from tpd2py.urls import redirect  # noqa: E402

KEY = "test-key-" + "x" * 32
WAIT = 10.0


KINDS = ["tcp", "in-process"]


class InProcess:
    """TestServer's shape for the in-process client: ``client()`` gives a ``TestClient``."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.clients: list[TestClient] = []

    def client(self) -> TestClient:
        client = TestClient(self.app)
        self.clients.append(client)
        return client


Served = TestServer | InProcess


@contextlib.contextmanager
def served(app: App, kind: str) -> Iterator[TestServer | InProcess]:
    """The fixtures below run each test twice: against a TestServer over TCP and with the
    in-process TestClient (which must not differ)."""
    if kind == "tcp":
        with TestServer(app) as server:
            yield server
        return
    in_process = InProcess(app)
    try:
        yield in_process
    finally:
        for client in in_process.clients:
            client.close()


def raw(server: TestServer, data: bytes) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it."""
    with socket.create_connection((server.host, server.port), timeout=WAIT) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


# -- cookies -------------------------------------------------------------------------------------


def cookie_app() -> App:
    app = App()

    @app.route("/show")
    def show(req: Request) -> dict:
        return dict(req.cookies)

    @app.route("/set")
    def set_(req: Request) -> Response:
        r = Response(b"set", content_type="text/plain")
        r.set_cookie("theme", req.query.get("v", "dark"), max_age=3600, httponly=True)
        return r

    @app.route("/unset")
    def unset(req: Request) -> Response:
        r = Response(b"unset")
        r.delete_cookie("theme")
        return r

    @app.route("/bad")
    def bad(req: Request) -> Response:
        r = Response(b"x")
        r.set_cookie("theme", req.query.get("v", ""))
        return r

    return app


@pytest.fixture(params=KINDS)
def cookie_server(request: pytest.FixtureRequest) -> Iterator[TestServer | InProcess]:
    with served(cookie_app(), request.param) as server:
        yield server


def test_request_cookies_are_parsed_and_bad_pairs_skipped(cookie_server: Served) -> None:
    client = cookie_server.client()
    r = client.get("/show", headers={"Cookie": 'a=1; bad pair=2; b="two"; a=3; c=x y'})
    assert r.json() == {"a": "1", "b": "two"}
    assert client.get("/show").json() == {}


def test_set_cookie_round_trip_and_delete(cookie_server: Served) -> None:
    client = cookie_server.client()
    r = client.get("/set?v=light")
    assert r.header("Set-Cookie") == "theme=light; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax"
    assert client.get("/show").json() == {"theme": "light"}
    r = client.get("/unset")
    assert "Max-Age=0" in (r.header("Set-Cookie") or "")
    assert client.get("/show").json() == {}


def test_a_cookie_value_that_would_split_the_header_is_a_500_not_sent(
        cookie_server: Served, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="tpd2py.conn"):
        r = cookie_server.client().get("/bad?v=a%0d%0aX-Evil:%201")
    assert r.status == 500 and r.header("X-Evil") is None
    assert any("cookie-octets" in str(rec.exc_info[1]) for rec in caplog.records
               if rec.exc_info)


# -- sessions, redirects, url_for ----------------------------------------------------------------


def guestbook_app() -> App:
    app = App()
    Sessions(app, [KEY], max_age=600)

    @app.route("/", name="home")
    def home(req: Request) -> str:
        user = req.session.get("user")
        return f"visits={req.session.get('visits', 0)} user={user}"

    @app.route("/visit")
    def visit(req: Request) -> str:
        req.session["visits"] = req.session.get("visits", 0) + 1
        return "counted"

    @app.route("/login", methods=["POST"])
    def login(req: Request) -> Response:
        req.session["user"] = req.form()["user"]
        return redirect(app.url_for("home"))

    @app.route("/logout", methods=["POST"])
    def logout(req: Request) -> Response:
        req.session.clear()
        return redirect(app.url_for("home"))

    @app.route("/plain")
    def plain(req: Request) -> bytes:
        return b"plain"

    @app.route("/boom")
    def boom(req: Request) -> bytes:
        req.session["x"] = 1
        raise RuntimeError("handler failed (expected by the test)")

    return app


@pytest.fixture(params=KINDS)
def guestbook(request: pytest.FixtureRequest) -> Iterator[TestServer | InProcess]:
    with served(guestbook_app(), request.param) as server:
        yield server


def test_session_survives_requests(guestbook: Served) -> None:
    client = guestbook.client()
    assert client.get("/").text == "visits=0 user=None"
    for _ in range(3):
        client.get("/visit")
    assert client.get("/").text == "visits=3 user=None"
    # A second client has its own session.
    assert guestbook.client().get("/").text == "visits=0 user=None"
    assert client.get("/boom").status == 500
    from tpd2py.hooks import SESSIONS

    assert not SESSIONS  # each request's entry went with its handler, errors included


def test_post_redirect_get_with_a_session(guestbook: Served) -> None:
    client = guestbook.client()
    r = client.post("/login", form={"user": "ada"}, follow_redirects=False)
    assert r.status == 303 and r.header("Location") == "/"
    assert r.header("Set-Cookie", "").startswith("session=")
    assert client.get("/").text == "visits=0 user=ada"
    r = client.post("/logout")  # followed: 303 then GET /
    assert r.status == 200 and r.text == "visits=0 user=None"
    assert "session" not in client.cookies


def test_sessions_work_on_error_pages_and_after_a_before_hook_answered() -> None:
    app = guestbook_app()

    @app.error(404)
    def not_found(req: Request, error: HTTPError) -> str:
        req.session["missed"] = req.session.get("missed", 0) + 1
        return f"missed {req.session['missed']}"

    @app.before_request
    def gate(req: Request) -> Response | None:
        return Response(b"gated", status=403) if req.path == "/gated" else None

    early = App()  # a before-hook registered before Sessions answers first

    @early.before_request
    def gate_first(req: Request) -> Response:
        return Response(b"gated first", status=403)

    Sessions(early, [KEY])

    @early.route("/anything")
    def anything(req: Request) -> str:
        req.session["never"] = True
        return "never runs"

    with TestServer(app) as server, TestServer(early) as early_server:
        client = server.client()
        assert client.get("/nowhere").text == "missed 1"
        r = client.get("/nowhere")
        assert (r.status, r.text) == (404, "missed 2")
        r = client.get("/gated")
        assert (r.status, r.text) == (403, "gated")
        assert client.get("/").status == 200
        r = early_server.client().get("/anything")
        assert (r.status, r.text) == (403, "gated first")


def test_untouched_sessions_send_no_cookie(guestbook: Served) -> None:
    client = guestbook.client()
    client.get("/visit")
    assert client.get("/").header("Set-Cookie") is None  # read, not changed
    assert client.get("/plain").header("Set-Cookie") is None


def test_a_tampered_session_is_empty_not_an_error(guestbook: Served) -> None:
    client = guestbook.client()
    client.post("/login", form={"user": "ada"})
    value = client.cookies["session"]
    payload, issued, mac = value.split(".")
    import base64

    forged = base64.urlsafe_b64encode(b'{"user":"admin"}').rstrip(b"=").decode()
    for bad in (f"{forged}.{issued}.{mac}", value[:-3], "garbage", "a.b.c", "...."):
        r = guestbook.client().get("/", headers={"Cookie": f"session={bad}"})
        assert (r.status, r.text) == (200, "visits=0 user=None"), bad


# -- hooks, error pages, debug -------------------------------------------------------------------


def hooked_app() -> App:
    app = App()
    seen: list[str] = []
    app.seen = seen  # type: ignore[attr-defined]

    @app.route("/")
    def index(req: Request) -> str:
        seen.append("handler")
        return "index"

    @app.route("/fail")
    def fail(req: Request) -> str:
        raise RuntimeError("<boom> (expected by the test)")

    @app.route("/forbidden")
    def forbidden(req: Request) -> str:
        raise HTTPError(403)

    @app.route("/teapot")
    def teapot(req: Request) -> str:
        raise HTTPError(418, "short and stout\n")

    @app.route("/post", methods=["POST"])
    def post(req: Request) -> str:
        return "posted"

    @app.before_request
    def before(req: Request) -> Response | None:
        seen.append("before")
        if req.query.get("block"):
            return Response(b"blocked", status=429)
        return None

    @app.after_request
    def after(req: Request, response: Response) -> None:
        seen.append("after")
        response.set_header("X-Frame-Options", "DENY")

    @app.error(404)
    def not_found(req: Request, error: HTTPError) -> str:
        return f"<h1>no page at {req.path}</h1>"

    @app.error(403, 405)
    def refused(req: Request, error: HTTPError) -> tuple:
        return f"refused {error.status}", error.status

    @app.error(500)
    def server_error(req: Request, error: Exception) -> str:
        return f"sorry: {type(error).__name__}"

    return app


@pytest.fixture(params=KINDS)
def hooked(request: pytest.FixtureRequest) -> Iterator[TestServer | InProcess]:
    with served(hooked_app(), request.param) as server:
        yield server


def test_before_and_after_hooks(hooked: Served) -> None:
    client = hooked.client()
    r = client.get("/")
    assert r.text == "index" and r.header("X-Frame-Options") == "DENY"
    assert hooked.app.seen == ["before", "handler", "after"]  # type: ignore[attr-defined]
    r = client.get("/?block=1")
    assert (r.status, r.text, r.header("X-Frame-Options")) == (429, "blocked", "DENY")
    assert hooked.app.seen[3:] == ["before", "after"]  # type: ignore[attr-defined]


def test_error_pages(hooked: Served, caplog: pytest.LogCaptureFixture) -> None:
    client = hooked.client()
    r = client.get("/nowhere/%3Cx%3E")
    assert (r.status, r.text) == (404, "<h1>no page at /nowhere/<x></h1>")
    assert r.header("X-Frame-Options") == "DENY"  # after-hooks run for router errors too
    r = client.get("/post")
    assert (r.status, r.text, r.header("Allow")) == (405, "refused 405", "POST")
    assert (client.get("/forbidden").status, client.get("/forbidden").text) == \
        (403, "refused 403")
    r = client.get("/teapot")  # no page for 418: the HTTPError's own answer
    assert (r.status, r.text) == (418, "short and stout\n")
    with caplog.at_level(logging.ERROR, logger="tpd2py.app"):
        r = client.get("/fail")
    assert (r.status, r.text) == (500, "sorry: RuntimeError")
    assert [rec.getMessage() for rec in caplog.records if rec.name == "tpd2py.app"] == \
        [f"handler error in {__name__}.hooked_app.<locals>.fail for GET /fail HTTP/1.1 from "
         f"{caplog.records[-1].getMessage().rsplit('from ', 1)[1]}"]
    # HEAD gets the page's head only.
    assert client.head("/nowhere").status == 404


def test_a_failing_error_page_falls_back_to_the_canned_answer(
        caplog: pytest.LogCaptureFixture) -> None:
    app = App()

    @app.route("/fail")
    def fail(req: Request) -> str:
        raise RuntimeError("handler (expected by the test)")

    @app.error(404, 500)
    def broken(req: Request, error: Exception) -> str:
        raise RuntimeError("error page (expected by the test)")

    with caplog.at_level(logging.ERROR), TestServer(app) as server:
        client = server.client()
        assert client.get("/missing").status == 404
        r = client.get("/fail")
        assert (r.status, r.text) == (500, "500 Internal Server Error\n")


def test_debug_shows_the_traceback_escaped(caplog: pytest.LogCaptureFixture) -> None:
    app = hooked_app()
    app.debug = True
    with caplog.at_level(logging.ERROR), TestServer(app) as server:
        r = server.client().get("/fail")
    assert r.status == 500 and r.header("Cache-Control") == "no-store"
    assert "RuntimeError: &lt;boom&gt; (expected by the test)" in r.text
    assert "<boom>" not in r.text
    assert "test_webapp.py" in r.text  # the traceback's frames


def test_without_hooks_the_router_holds_the_handlers_themselves() -> None:
    app = App()

    def index(req: Request) -> bytes:
        return b""

    app.add_route("/", index)
    assert app.exact[b"/"].handlers[b"GET"] is index
    app.after_request(lambda req, resp: None)
    assert app.exact[b"/"].handlers[b"GET"] is not index  # wrapped once hooks exist
    assert app.exact[b"/"].handlers[b"GET"].__name__ == "index"


# -- handler footguns ----------------------------------------------------------------------------


def footgun_app() -> App:
    app = App()

    @app.route("/none")
    def returns_none(req: Request) -> None:
        pass

    @app.route("/float")
    def returns_float(req: Request) -> float:
        return 1.5

    @app.route("/json", methods=["POST"])
    def echo_json(req: Request) -> dict:
        return {"got": req.json()}

    @app.route("/created", methods=["POST"])
    def created(req: Request) -> tuple:
        return {"id": 7}, 201, {"Location": "/items/7"}

    @app.route("/gen-length")
    def gen_length(req: Request) -> Response:
        return Response((b"x" for _ in range(3)), headers={"Content-Length": "3"})

    return app


@pytest.fixture(params=KINDS)
def footguns(request: pytest.FixtureRequest) -> Iterator[TestServer | InProcess]:
    with served(footgun_app(), request.param) as server:
        yield server


@pytest.mark.parametrize(("path", "message"), [
    ("/none", "handler returned None (did it forget a return?)"),
    ("/float", "handler returned float"),
    ("/gen-length", "Content-Length is set by the server"),
])
def test_bad_returns_are_500_with_a_message_naming_the_handler(
        footguns: Served, caplog: pytest.LogCaptureFixture, path: str, message: str) -> None:
    with caplog.at_level(logging.ERROR, logger="tpd2py.conn"):
        r = footguns.client().get(path)
    assert r.status == 500
    records = [rec for rec in caplog.records if rec.name == "tpd2py.conn"]
    assert len(records) == 1
    assert message in str(records[0].exc_info[1])  # type: ignore[index]
    assert "footgun_app.<locals>." in records[0].getMessage()


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[" * 100_000, b""])
def test_bad_json_is_a_400(footguns: Served, body: bytes) -> None:
    r = footguns.client().post("/json", body=body, headers={"Content-Type": "application/json"})
    assert r.status == 400 and "not valid JSON" in r.text


def test_json_and_tuple_returns(footguns: Served) -> None:
    client = footguns.client()
    assert client.post("/json", json={"a": [1, 2]}).json() == {"got": {"a": [1, 2]}}
    r = client.post("/created", body=b"")
    assert (r.status, r.json(), r.header("Location")) == (201, {"id": 7}, "/items/7")
    assert r.header("Content-Type") == "application/json"


# -- per-route body limits -----------------------------------------------------------------------


def limits_app() -> App:
    app = App()

    @app.route("/small", methods=["POST"], max_body_size=10)
    def small(req: Request) -> bytes:
        return b"%d" % len(req.body())

    @app.route("/big", methods=["POST"], max_body_size=4096)
    def big(req: Request) -> bytes:
        return b"%d" % sum(len(c) for c in req.stream())

    @app.route("/default", methods=["POST"])
    def default(req: Request) -> bytes:
        return b"%d" % len(req.body())

    @app.before_request  # limits survive the wrapping hooks bring
    def nothing(req: Request) -> None:
        return None

    return app


@pytest.fixture
def limited() -> Iterator[TestServer]:
    with TestServer(limits_app(), Config(max_body_size=100)) as server:
        yield server


def post(path: bytes, size: int, chunked: bool = False) -> bytes:
    head = b"POST %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" % path
    if chunked:
        return head + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (
            size, b"x" * size)
    return head + b"Content-Length: %d\r\n\r\n%s" % (size, b"x" * size)


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(("path", "size", "status"), [
    (b"/small", 10, 200), (b"/small", 11, 413),
    (b"/big", 4096, 200), (b"/big", 4097, 413),  # over the server's 100, within the route's
    (b"/default", 100, 200), (b"/default", 101, 413),
])
def test_per_route_body_limits(limited: TestServer, path: bytes, size: int, status: int,
                               chunked: bool) -> None:
    reply = raw(limited, post(path, size, chunked))
    assert reply.startswith(b"HTTP/1.1 %d " % status), reply[:200]
    if status == 200:
        assert reply.endswith(b"\r\n\r\n%d" % size)


def test_bad_body_limits_fail_at_definition() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_body_size"):
            App().route("/", methods=["POST"], max_body_size=bad)(  # type: ignore[arg-type]
                lambda req: b"")


# -- the test server itself ----------------------------------------------------------------------


def test_serve_in_a_thread_starts_and_stops() -> None:
    """Regression: serve() in a thread installed signal handlers (main thread only) and died,
    leaving the test waiting."""
    app = App()

    @app.route("/stop")
    def stop(req: Request) -> bytes:
        get_hub().call_later(0.0, get_hub().stop)
        return b"stopping"

    started: list[tuple[str, int]] = []
    ready = threading.Event()

    def on_ready(address: tuple[str, int]) -> None:
        started.append(address)
        ready.set()

    thread = threading.Thread(target=serve, args=(app,), daemon=True,
                              kwargs={"port": 0, "ready": on_ready})
    thread.start()
    assert ready.wait(WAIT)
    server = TestServer(app, host=started[0][0], port=started[0][1])
    from tpd2py.testing import Client

    assert Client(server.host, server.port).get("/stop").text == "stopping"
    thread.join(WAIT)
    assert not thread.is_alive()


def test_test_server_reports_a_port_in_use() -> None:
    with TestServer(App()) as first, pytest.raises(OSError):
        TestServer(App(), port=first.port).start()


def test_hooks_pages_and_body_limits_compose_with_gzip() -> None:
    """Hooks are one more App.wrap wrapper: a wrapper added before or after them (Gzip) keeps
    working, and the body limits follow the handlers the router holds after each wrap."""
    import gzip

    from tpd2py.compress import Gzip

    app = limits_app()  # has a before-hook: wrapped

    @app.route("/page")
    def page(req: Request) -> str:
        return "x" * 4000

    @app.after_request
    def mark(req: Request, response: Response) -> None:
        response.set_header("X-Hooked", "1")

    app.wrap(Gzip(min_size=100))

    @app.route("/late", methods=["POST"], max_body_size=20)
    def late(req: Request) -> bytes:
        return req.body()

    with TestServer(app, Config(max_body_size=100)) as server:
        client = server.client()
        r = client.get("/page", headers={"Accept-Encoding": "gzip"})
        assert r.header("Content-Encoding") == "gzip" and r.header("X-Hooked") == "1"
        assert gzip.decompress(r.body) == b"x" * 4000
        for path, size, status in ((b"/small", 11, 413), (b"/big", 4096, 200),
                                   (b"/late", 20, 200), (b"/late", 21, 413)):
            reply = raw(server, post(path, size))
            assert reply.startswith(b"HTTP/1.1 %d " % status), (path, size, reply[:100])


def test_the_routers_error_handler_is_made_once_per_status():
    # Regression: every unrouted request of an app with an error page built a new wrapped
    # handler (functools.wraps, closures): scanners' 404s paid it each time.
    from tpd2py import App

    app = App()
    app.route("/x", methods=["GET"])(lambda req: b"x")
    app.error(404)(lambda req, error: b"not here")
    app.error(405)(lambda req, error: b"not so")
    first = app.match(b"GET", b"/nope")[0]
    assert first is not None and app.match(b"GET", b"/other")[0] is first
    assert app.match(b"POST", b"/x")[0] is app.match(b"POST", b"/x")[0]
    assert app.match(b"POST", b"/x")[0] is not first
