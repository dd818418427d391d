"""Form bodies and uploads (tpd2py.forms) over real sockets: curl -F and the test client send
multipart bodies; raw sockets send broken ones. Files over the spool size go to disk; every
limit is a 413, every framing error a 400, and the connection stays usable or closes cleanly."""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

pytest.importorskip("multipart", reason="needs the multipart package (the forms/test extra)")

from tpd2py import App, Request  # noqa: E402
from tpd2py.forms import read_form  # noqa: E402
from tpd2py.testing import Client, TestClient, TestServer  # noqa: E402

WAIT = 10.0
CURL = shutil.which("curl")


def forms_app() -> App:
    app = App()

    @app.route("/form", methods=["POST"], max_body_size=8 << 20)
    def form(req: Request) -> dict:
        limits = {k: int(v) for k, v in req.query.items()}
        with read_form(req, **limits) as f:
            files = {}
            for name, uploads in f.files.items():
                files[name] = [{"filename": u.filename, "type": u.content_type,
                                "size": u.size, "sha256": hashlib.sha256(u.read()).hexdigest(),
                                "on_disk": bool(u.file._rolled)}  # type: ignore[attr-defined]
                               for u in uploads]
            return {"fields": f.fields, "files": files}

    @app.route("/save", methods=["POST"])
    def save(req: Request) -> str:
        with read_form(req) as f:
            upload = f.file("doc")
            assert upload is not None
            upload.save(req.query["to"])
            return f["title"]

    return app


@pytest.fixture
def server() -> Iterator[TestServer]:
    with TestServer(forms_app()) as srv:
        yield srv


@pytest.fixture(params=["tcp", "in-process"])
def client(request: pytest.FixtureRequest) -> Iterator[Client | TestClient]:
    """The form tests that need only a client run over TCP and with the in-process client."""
    if request.param == "tcp":
        with TestServer(forms_app()) as srv:
            yield srv.client()
    else:
        with TestClient(forms_app()) as in_process:
            yield in_process


def test_fields_and_files(client: Client | TestClient) -> None:
    big = bytes(range(256)) * 8192  # 2 MiB: over the 1 MiB spool size
    r = client.post("/form", form={"title": "caf\u00e9", "tags": "a"}, files={
        "small": ("notes.txt", b"hello", "text/plain"),
        "big": ("photo.bin", big, "application/octet-stream"),
    })
    assert r.status == 200, r.text
    body = r.json()
    assert body["fields"] == {"title": ["caf\u00e9"], "tags": ["a"]}
    assert body["files"]["small"] == [{"filename": "notes.txt", "type": "text/plain",
                                       "size": 5, "on_disk": False,
                                       "sha256": hashlib.sha256(b"hello").hexdigest()}]
    assert body["files"]["big"][0]["size"] == len(big)
    assert body["files"]["big"][0]["sha256"] == hashlib.sha256(big).hexdigest()
    assert body["files"]["big"][0]["on_disk"] is True


def test_urlencoded_forms_read_the_same_way(client: Client | TestClient) -> None:
    r = client.post("/form", form={"a": "1 2", "b": "\u00e9"})
    assert r.json() == {"fields": {"a": ["1 2"], "b": ["\u00e9"]}, "files": {}}


@pytest.mark.skipif(CURL is None, reason="needs curl (.ci/run installs it)")
def test_curl_upload_saved_to_disk(server: TestServer, tmp_path: Path) -> None:
    doc = tmp_path / "in.bin"
    doc.write_bytes(b"\0\r\n--not-a-boundary\r\n" * 5000)
    out = tmp_path / "out.bin"
    result = subprocess.run(
        [CURL, "-sS", "--max-time", str(WAIT), "-F", "title=report", "-F", f"doc=@{doc}",
         f"{server.url}/save?to={out}"], capture_output=True, check=True)
    assert result.stdout == b"report"
    assert out.read_bytes() == doc.read_bytes()


@pytest.mark.parametrize(("query", "form", "files", "message"), [
    ("?max_parts=2", {"a": "1", "b": "2"}, {"f": ("x", b"x", "text/plain")}, "count"),
    ("?max_field_size=10", {"a": "x" * 11}, {}, "the field 'a' is over 10 bytes"),
    ("?max_file_size=100", {}, {"f": ("x", b"x" * 101, "text/plain")},
     "the file 'f' is over 100 bytes"),
    ("?max_parts=2", {"a": "1", "b": "2", "c": "3"}, None, "more than 2 form fields"),
    ("?max_field_size=3", {"a": "1234"}, None, "the field 'a' is over 3 bytes"),
])
def test_limits_are_413(client: Client | TestClient, query: str, form: dict,
                        files: dict | None, message: str) -> None:
    r = client.post("/form" + query, form=form, files=files)
    assert r.status == 413 and message in r.text, r.text


def multipart_request(body: bytes, content_type: bytes = b"multipart/form-data; boundary=B",
                      keep_alive: bool = False) -> bytes:
    return (b"POST /form HTTP/1.1\r\nHost: t\r\n%sContent-Type: %s\r\nContent-Length: %d\r\n"
            b"\r\n%s" % (b"" if keep_alive else b"Connection: close\r\n", content_type,
                         len(body), body))


def exchange(server: TestServer, data: bytes) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=WAIT) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


GOOD_PART = b'--B\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'
BAD = [
    (GOOD_PART, b"multipart/form-data; boundary=B", 400, b"end of multipart stream"),
    (GOOD_PART + b"--B--", b"multipart/form-data", 400, b"without a boundary"),
    (GOOD_PART + b"--B--", b"text/plain", 415, b"expected a form"),
    (b"--B\r\nContent-Disposition: form-data\r\n\r\n1\r\n--B--", None, 400, b"without a name"),
    (b"--B\r\nContent-Type: text/plain\r\n\r\n1\r\n--B--", None, 400, b"Content-Disposition"),
    (b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\nX" + b"x" * 5000 + b": y\r\n\r\n1"
     b"\r\n--B--", None, 413, b"header"),
    (b'--B\r\nContent-Disposition: form-data; name="a"\r\n\r\n\xff\xfe\r\n--B--', None, 400,
     b"not valid utf-8"),
    (b"--B\nContent-Disposition: form-data; name=\"a\"\n\n1\n--B--", None, 400, b"multipart"),
]


@pytest.mark.parametrize(("body", "content_type", "status", "message"), BAD)
def test_broken_multipart_is_a_clear_4xx(server: TestServer, body: bytes,
                                         content_type: bytes | None, status: int,
                                         message: bytes) -> None:
    data = exchange(server, multipart_request(
        body, content_type or b"multipart/form-data; boundary=B"))
    assert data.startswith(b"HTTP/1.1 %d " % status), data[:300]
    assert message in data, data


def test_the_connection_is_reused_after_a_refused_form(server: TestServer) -> None:
    first = multipart_request(GOOD_PART, b"text/plain", keep_alive=True)  # 415, body drained
    second = multipart_request(GOOD_PART + b"--B--\r\n")
    data = exchange(server, first + second)
    assert data.startswith(b"HTTP/1.1 415 ")
    assert data.count(b"HTTP/1.1 200 OK") == 1 and data.endswith(b'"files": {}}')
