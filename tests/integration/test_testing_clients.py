"""tpd2py.testing's two clients on the same apps: ``TestClient`` (in-process, a socketpair in
the test's own hub) must answer exactly as ``TestServer``'s client (a real server on a loopback
port, in a thread) does: status, reason, headers (but the Date's value) and body, errors,
404/405/501, large bodies both ways, streamed responses and HEAD included. Then what only the
in-process client can show (no thread, the hub left clean), the router's errors through the
app's hooks, and sessions read or misused from a streamed body."""

from __future__ import annotations

import hashlib
import http.client
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import tpd2py  # noqa: E402
from tpd2py import App, HTTPError, Later, Request, Response, get_hub  # noqa: E402
from tpd2py.errors import Timeout  # noqa: E402
from tpd2py.forms import read_form  # noqa: E402
from tpd2py.hooks import SESSIONS, _SessionKept  # noqa: E402
from tpd2py.server import Config  # noqa: E402
from tpd2py.sessions import Sessions  # noqa: E402
from tpd2py.testing import TestClient, TestResponse, TestServer  # noqa: E402
from tpd2py.urls import redirect  # noqa: E402
from tpd2py.wsgi import WSGI  # noqa: E402

KEY = "test-key-" + "y" * 32
BIG = bytes(range(256)) * 12_000  # ~3 MiB: more than a socket buffer holds, both ways


def make_app(hooked: bool = False) -> App:
    app = App()

    @app.route("/")
    def hello(req: Request) -> str:
        return "Hello, World!"

    @app.route("/json")
    def as_json(req: Request) -> dict:
        return {"query": req.query, "method": req.method}

    @app.route("/echo", methods=["POST", "PUT"])
    def echo(req: Request) -> Response:
        return Response(req.body(), content_type="application/octet-stream")

    @app.route("/digest", methods=["POST"])
    def digest(req: Request) -> dict:
        h, n = hashlib.sha256(), 0
        for piece in req.stream():
            h.update(piece)
            n += len(piece)
        return {"length": n, "sha256": h.hexdigest()}

    @app.route("/form", methods=["POST"])
    def form(req: Request) -> dict:
        return req.form()

    @app.route("/upload", methods=["POST"])
    def upload(req: Request) -> dict:
        with read_form(req) as f:
            photo = f.file("photo")
            assert photo is not None
            return {"title": f["title"], "filename": photo.filename, "size": photo.size,
                    "sha256": hashlib.sha256(photo.read()).hexdigest()}

    @app.route("/big")
    def big(req: Request) -> Response:
        return Response(BIG, content_type="application/octet-stream")

    @app.route("/stream")
    def stream(req: Request) -> Iterator[bytes]:
        return (b"line %d\n" % i for i in range(int(req.query.get("n", "200"))))

    @app.route("/slow")
    def slow(req: Request) -> bytes:
        tpd2py.sleep(0.001)  # the handler waits on the hub, as it would behind a socket
        return b"slept"

    @app.route("/error")
    def error(req: Request) -> str:
        raise RuntimeError("handler failed (expected by the test)")

    @app.route("/teapot")
    def teapot(req: Request) -> str:
        raise HTTPError(418, "short and stout\n", headers={"X-Pot": "tea"})

    @app.route("/none")
    def none(req: Request) -> Response:
        return Response(status=204)

    @app.route("/reason")
    def reason(req: Request) -> Response:
        return Response(b"made", status=201, reason="Made It", headers={"X-A": "1"})

    @app.route("/to-home")
    def to_home(req: Request) -> Response:
        return redirect("/json?from=redirect")

    @app.route("/post-only", methods=["POST"])
    def post_only(req: Request) -> bytes:
        return b"posted"

    @app.route("/set")
    def set_cookie(req: Request) -> Response:
        r = Response(b"set", content_type="text/plain")
        r.set_cookie("theme", req.query.get("v", "dark"), max_age=3600, httponly=True)
        return r

    @app.route("/unset")
    def unset_cookie(req: Request) -> Response:
        r = Response(b"unset")
        r.delete_cookie("theme")
        return r

    @app.route("/cookies")
    def cookies(req: Request) -> dict:
        return dict(req.cookies)

    if hooked:
        @app.before_request
        def before(req: Request) -> None:
            if req.path == "/blocked":
                raise HTTPError(403)

        @app.after_request
        def after(req: Request, response: Response) -> None:
            response.set_header("X-Hooked", req.path)

    return app


# (method, path, keyword arguments of Client.request)
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/", {}),
    ("GET", "/json?a=1&b=%C3%A9", {}),
    ("POST", "/echo", {"body": b"small"}),
    ("PUT", "/echo", {"body": BIG}),
    ("POST", "/digest", {"body": BIG}),
    ("POST", "/form", {"form": {"name": "ada", "city": "Zürich"}}),
    ("POST", "/upload", {"form": {"title": "cat"},
                         "files": {"photo": ("cat.jpg", BIG, "image/jpeg")}}),
    ("POST", "/echo", {"json": {"a": [1, 2]}}),
    ("GET", "/big", {}),
    ("GET", "/stream", {}),
    ("GET", "/stream?n=0", {}),
    ("GET", "/slow", {}),
    ("GET", "/error", {}),
    ("GET", "/teapot", {}),
    ("GET", "/none", {}),
    ("GET", "/reason", {}),
    ("GET", "/to-home", {"follow_redirects": False}),
    ("GET", "/to-home", {}),
    ("GET", "/nowhere", {}),
    ("POST", "/nowhere", {"body": b"x" * 100}),
    ("GET", "/post-only", {}),
    ("DELETE", "/", {}),
    ("BREW", "/pot", {}),
    ("HEAD", "/", {}),
    ("HEAD", "/big", {}),
    ("HEAD", "/stream", {}),
    ("HEAD", "/nowhere", {}),
    ("HEAD", "/error", {}),
    ("GET", "/blocked", {}),
    ("GET", "/set?v=light", {}),
    ("GET", "/cookies", {"headers": {"Cookie": "a=1; bad pair; b=2"}}),
]


def comparable(r: TestResponse) -> tuple[int, str, list[tuple[str, str]], bytes]:
    """Everything but the Date's value (the clock may tick between the two requests)."""
    assert len(r.header_all("Date")) == 1
    headers = [(n, "<date>" if n.lower() == "date" else v) for n, v in r.headers]
    return r.status, r.reason, headers, r.body


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "hooked"])
def both(request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, Any]]:
    """The same app (its own instance for each client) in-process and served over TCP."""
    hooked = request.param
    with TestServer(make_app(hooked)) as server, TestClient(make_app(hooked)) as client:
        yield client, server.client()


@pytest.mark.parametrize(("method", "path", "kwargs"), CASES,
                         ids=[f"{m} {p}" for m, p, _ in CASES])
def test_in_process_answers_exactly_as_the_server(
        both: tuple[TestClient, Any], method: str, path: str, kwargs: dict[str, Any],
        caplog: pytest.LogCaptureFixture) -> None:
    in_process, over_tcp = both
    with caplog.at_level(logging.CRITICAL, logger="tpd2py"):  # /error logs, as it should
        expected = over_tcp.request(method, path, **kwargs)
        got = in_process.request(method, path, **kwargs)
    assert comparable(got) == comparable(expected)


@pytest.mark.parametrize("kind", ["in-process", "server"])
def test_cookie_jar_and_redirects_work_alike(kind: str) -> None:
    with TestServer(make_app()) as server, TestClient(make_app()) as in_process:
        client = in_process if kind == "in-process" else server.client()
        assert client.get("/cookies").json() == {}
        assert client.get("/set?v=light").body == b"set"
        assert client.cookies == {"theme": "light"}
        assert client.get("/cookies").json() == {"theme": "light"}  # kept across requests
        client.get("/unset")
        assert client.cookies == {}
        assert client.get("/cookies").json() == {}
        r = client.post("/to-home", body=b"ignored")  # 405: no redirect to follow
        assert r.status == 405
        r = client.get("/to-home")
        assert (r.status, r.json()) == (200, {"query": {"from": "redirect"}, "method": "GET"})


def test_in_process_runs_in_the_callers_thread_and_leaves_its_hub_clean() -> None:
    app = App()
    seen: list[int] = []

    @app.route("/where")
    def where(req: Request) -> str:
        seen.append(threading.get_ident())
        tpd2py.sleep(0)  # a switch through the caller's hub
        return "here"

    hub = get_hub()
    fds = set(hub.records)
    threads = threading.active_count()
    with TestClient(app) as client:
        for _ in range(3):
            assert client.get("/where").text == "here"
        assert threading.active_count() == threads  # no server thread
        assert client.server.requests == 3
        assert client.server.statistics()["connections"] == 1  # one keep-alive connection
    assert seen == [threading.get_ident()] * 3
    assert set(hub.records) == fds  # both socket ends closed and unregistered
    assert not hub.running
    with pytest.raises(RuntimeError, match="closed"):
        client.get("/where")


def test_in_process_client_refuses_to_run_inside_the_hub() -> None:
    app = App()
    inner = TestClient(App())

    @app.route("/nested")
    def nested(req: Request) -> str:
        try:
            inner.get("/")
        except RuntimeError as e:
            return str(e)
        return "ran"

    with TestClient(app) as client:
        assert "use TestServer" in client.get("/nested").text
    inner.close()


def test_in_process_request_that_never_ends_times_out() -> None:
    app = App()

    @app.route("/forever")
    def forever(req: Request) -> bytes:
        tpd2py.sleep(3600)
        return b"never"

    with TestClient(app, timeout=0.2) as client:  # the client's wait bound, not an assertion
        with pytest.raises(Timeout):
            client.get("/forever")
        assert client.get("/").status == 404  # a new connection serves on


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read()
    if environ["PATH_INFO"] == "/fail":
        raise RuntimeError("WSGI app failed (expected by the test)")
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Path", environ["PATH_INFO"])])
    return [b"got %d bytes by %s" % (len(body), environ["REQUEST_METHOD"].encode())]


@pytest.mark.parametrize("threads", [0, 2])
def test_a_wsgi_app_in_process_answers_as_over_tcp(
        threads: int, caplog: pytest.LogCaptureFixture) -> None:
    with TestServer(WSGI(wsgi_app, threads=threads)) as server, \
            TestClient(WSGI(wsgi_app, threads=threads)) as in_process, \
            caplog.at_level(logging.CRITICAL, logger="tpd2py"):
        for method, path, body in [("GET", "/", None), ("POST", "/up", BIG),
                                   ("HEAD", "/", None), ("GET", "/fail", None)]:
            expected = server.client().request(method, path, body=body)
            got = in_process.request(method, path, body=body)
            assert comparable(got) == comparable(expected)


# -- the router's errors go through the app's hooks ---------------------------------------------


@pytest.mark.parametrize(("method", "path", "status"),
                         [("GET", "/nowhere", 404), ("GET", "/post-only", 405),
                          ("BREW", "/pot", 501), ("HEAD", "/nowhere", 404)])
def test_router_errors_run_the_hooks_and_keep_the_canned_answer(
        method: str, path: str, status: int) -> None:
    with TestClient(make_app()) as plain, TestClient(make_app(hooked=True)) as hooked:
        canned = plain.request(method, path)
        through = hooked.request(method, path)
    assert canned.status == through.status == status
    assert canned.header("X-Hooked") is None
    assert through.header("X-Hooked") == path  # the after-hook ran
    assert through.body == canned.body
    assert through.header("Allow") == canned.header("Allow")
    assert [(n, v) for n, v in through.headers if n not in ("X-Hooked", "Date")] \
        == [(n, v) for n, v in canned.headers if n != "Date"]


def test_router_errors_give_sessions_to_the_hooks() -> None:
    app = App()
    Sessions(app, secret_keys=[KEY])
    seen: list[Any] = []

    @app.route("/login")
    def login(req: Request) -> str:
        req.session["user"] = "ada"
        return "in"

    @app.after_request
    def remember(req: Request, response: Response) -> None:
        seen.append((response.status, req.session.get("user")))

    with TestClient(app) as client:
        client.get("/login")
        assert client.get("/missing").status == 404
    assert seen == [(200, "ada"), (404, "ada")]
    assert not SESSIONS


# -- sessions and streamed bodies ---------------------------------------------------------------


def streaming_session_app() -> App:
    app = App()
    Sessions(app, secret_keys=[KEY])

    @app.route("/count")
    def count(req: Request) -> Iterator[bytes]:
        req.session["n"] = req.session.get("n", 0) + 1  # in the handler: saved

        def body() -> Iterator[bytes]:
            yield b"n=%d\n" % req.session["n"]  # read from the body: the saved session
            yield b"keys=%d\n" % len(req.session)

        return body()

    @app.route("/late-write")
    def late_write(req: Request) -> Iterator[bytes]:
        def body() -> Iterator[bytes]:
            yield b"first\n"
            req.session["n"] = 99  # too late: the head with the cookie has left

        return body()

    return app


@pytest.mark.parametrize("kind", ["in-process", "server"])
def test_a_streamed_body_reads_the_session_it_was_saved_with(kind: str) -> None:
    with TestServer(streaming_session_app()) as server, \
            TestClient(streaming_session_app()) as in_process:
        client = in_process if kind == "in-process" else server.client()
        assert client.get("/count").body == b"n=1\nkeys=1\n"
        assert client.get("/count").body == b"n=2\nkeys=1\n"  # the cookie came with the head
        assert client.head("/count").body == b""  # never iterated: the entry still goes
        assert client.get("/count").body == b"n=4\nkeys=1\n"
    assert not SESSIONS


def test_a_session_changed_by_a_streamed_body_is_an_error_naming_the_handler(
        caplog: pytest.LogCaptureFixture) -> None:
    with TestClient(streaming_session_app()) as client, caplog.at_level(logging.ERROR):
        with pytest.raises(http.client.IncompleteRead):  # the stream is cut: no silent loss
            client.get("/late-write")
        assert client.get("/count").body == b"n=1\nkeys=1\n"  # n=99 was never saved
    errors = [r for r in caplog.records if r.name == "tpd2py.conn"]
    assert len(errors) == 1 and errors[0].getMessage().startswith("error while streaming")
    assert errors[0].exc_info is not None
    message = str(errors[0].exc_info[1])
    assert "streaming_session_app.<locals>.late_write" in message
    assert "change it in the handler" in message
    assert not SESSIONS


def test_a_handler_answering_later_leaves_no_session_behind() -> None:
    app = App()
    Sessions(app, secret_keys=[KEY])

    @app.route("/later")
    def later(req: Request) -> Later:
        req.session["seen"] = True  # not saved: the hooks ran before the answer exists
        return Later(lambda resume: Response(b"answered later"), lambda: None)

    with TestClient(app) as client:
        r = client.get("/later")
        assert r.body == b"answered later" and r.header("Set-Cookie") is None
    assert not SESSIONS  # regression: the entry stayed when the wrapper returned Later


def test_a_streamed_body_dropped_unsent_lets_its_session_go() -> None:
    """The exchange closes every streamed body it sends; one dropped unsent (a later wrapper
    made a generator of it and never ran it) lets the entry go when it is freed. A stand-in
    request and session: only the side table is under test."""

    class Standin:
        spent: str | None = None

    request, session = object(), Standin()
    body = _SessionKept(iter([b"x"]), request, session, "app.handler")
    assert SESSIONS[request] is session and session.spent == "app.handler"
    wrapper = (piece for piece in body)  # never started: closing it would not reach body
    del body
    assert request in SESSIONS
    del wrapper
    assert request not in SESSIONS


# -- conftest's server on TestServer keeps its rule ----------------------------------------------


def test_conftest_server_fails_the_test_when_the_connection_logs_an_unexpected_error() -> None:
    from conftest import RunningServer, make_app

    running = RunningServer(make_app(), Config(grace=0.5))
    assert running.get("/").status == 200
    running.call(lambda: logging.getLogger("tpd2py.conn").error("a server bug (the test's)"))
    running.call(lambda: logging.getLogger("tpd2py.conn").error("handler error in x (app's)"))
    with pytest.raises(AssertionError, match="the server logged errors") as failed:
        running.stop()
    assert "a server bug" in str(failed.value) and "app's" not in str(failed.value)
    assert running.wait_closed(1) is None  # the client's connection was counted closed
