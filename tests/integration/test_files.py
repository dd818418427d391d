"""FileResponse end to end: a file sent by the kernel (sendfile) from a handler, over real
loopback sockets and http.client; content types and Content-Disposition as pure functions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tpd2py import App, HTTPError
from tpd2py.app import FileBody
from tpd2py.files import FileResponse, content_disposition, guess_content_type

BIG = 48 * 1024 * 1024  # more than loopback's socket buffers hold: the send waits for the reader


def _data(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(range(size % 256))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "small.css").write_bytes(b"body { color: #123; }\n")
    (tmp_path / "big.bin").write_bytes(_data(BIG))
    (tmp_path / "empty.txt").write_bytes(b"")
    app = App()
    sent: list[FileBody] = []

    @app.route("/f/<name>", methods=["GET", "HEAD"])
    def one(req: Any, name: str) -> Any:
        try:
            response = FileResponse(tmp_path / name)
        except (FileNotFoundError, IsADirectoryError):
            raise HTTPError(404) from None
        sent.append(response.body)
        return response

    @app.route("/download")
    def download(req: Any) -> Any:
        return FileResponse(tmp_path / "small.css", download_name="résumé \"final\".css")

    @app.route("/deleted")
    def deleted(req: Any) -> Any:
        path = tmp_path / "gone.txt"
        path.write_bytes(b"still here\n")
        response = FileResponse(path)
        path.unlink()  # the open fd keeps the file
        return response

    @app.route("/shrinks")
    def shrinks(req: Any) -> Any:
        path = tmp_path / "shrinking.bin"
        path.write_bytes(_data(BIG))
        response = FileResponse(path)
        os.truncate(path, 1024 * 1024)  # after the head promised BIG bytes
        return response

    @app.route("/")
    def index(req: Any) -> bytes:
        return b"hello"

    return {"app": app, "sent": sent, "dir": tmp_path}


def test_a_small_file_with_its_type_length_and_nosniff(server, files):
    srv = server(files["app"])
    conn = srv.http()
    conn.request("GET", "/f/small.css")
    r = conn.getresponse()
    assert r.status == 200
    assert r.read() == b"body { color: #123; }\n"
    assert r.getheader("Content-Type") == "text/css; charset=utf-8"
    assert r.getheader("Content-Length") == "22"
    assert r.getheader("X-Content-Type-Options") == "nosniff"
    conn.request("GET", "/")  # the connection goes on
    assert conn.getresponse().read() == b"hello"
    conn.close()
    assert files["sent"][0].fd == -1, "the file is closed once it was sent"


def test_a_large_file_arrives_whole_and_a_pipelined_request_after_it(server, files):
    srv = server(files["app"])
    with srv.connect() as sock:
        sock.sendall(b"GET /f/big.bin HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        big, small = srv.read_replies(sock, 2)
    assert big.status == 200 and big.header("Content-Length") == str(BIG)
    assert big.body == _data(BIG)
    assert small.body == b"hello", "a pipelined request after a file is answered in order"


def test_head_sends_the_length_and_no_body(server, files):
    srv = server(files["app"])
    ex = srv.exchange(b"HEAD /f/big.bin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                      methods=["HEAD"])
    (reply,) = ex.final
    assert reply.header("Content-Length") == str(BIG) and reply.body == b""
    assert files["sent"][0].fd == -1


def test_an_empty_file(server, files):
    reply = server(files["app"]).get("/f/empty.txt")
    assert reply.status == 200 and reply.body == b"" and reply.header("Content-Length") == "0"


def test_missing_file_and_folder_are_the_handlers_404(server, files):
    srv = server(files["app"])
    (files["dir"] / "sub").mkdir()
    assert srv.get("/f/nothing.txt").status == 404
    assert srv.get("/f/sub").status == 404


def test_a_file_deleted_after_open_is_still_sent(server, files):
    assert server(files["app"]).get("/deleted").body == b"still here\n"


def test_a_file_that_shrinks_ends_the_connection_not_the_length(server, files):
    srv = server(files["app"])
    with srv.connect() as sock:
        sock.sendall(b"GET /shrinks HTTP/1.1\r\nHost: a\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Length: %d" % BIG in head
    assert body == _data(BIG)[:1024 * 1024], "what the file still had, then the close"
    srv.wait_closed(1)  # the server closed it (the client only read the EOF)


def test_download_name_gives_an_attachment_with_an_rfc8187_name(server, files):
    reply = server(files["app"]).get("/download")
    assert reply.header("Content-Disposition") == (
        "attachment; filename=\"r_sum_ _final_.css\"; "
        "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.css")


@pytest.mark.parametrize(("name", "expected"), [
    ("a.css", "text/css; charset=utf-8"),
    ("a.html", "text/html; charset=utf-8"),
    ("a.js", "text/javascript; charset=utf-8"),
    ("a.json", "application/json; charset=utf-8"),
    ("a.svg", "image/svg+xml; charset=utf-8"),
    ("a.png", "image/png"),
    ("a.tar.gz", "application/octet-stream"),
    ("noextension", "application/octet-stream"),
])
def test_content_types_from_the_extension(name, expected):
    assert guess_content_type(name) == expected


@pytest.mark.parametrize(("name", "expected"), [
    ("report.pdf", 'attachment; filename="report.pdf"'),
    ('a"b.txt', "attachment; filename=\"a_b.txt\"; filename*=UTF-8''a%22b.txt"),
    ("ü.txt", "attachment; filename=\"_.txt\"; filename*=UTF-8''%C3%BC.txt"),
    ("a\r\nb", "attachment; filename=\"a__b\"; filename*=UTF-8''a%0D%0Ab"),
])
def test_content_disposition(name, expected):
    assert content_disposition(name) == expected


def test_file_response_with_the_request_answers_conditions_and_ranges(server, tmp_path):
    data = bytes(range(256)) * 64
    (tmp_path / "f.bin").write_bytes(data)
    app = App()
    app.route("/f")(lambda req: FileResponse(tmp_path / "f.bin", request=req))
    app.route("/plain")(lambda req: FileResponse(tmp_path / "f.bin"))
    srv = server(app)
    whole = srv.get("/f")
    etag, modified = whole.header("ETag"), whole.header("Last-Modified")
    assert whole.body == data and etag and modified and whole.header("Accept-Ranges") == "bytes"
    r = srv.get("/f", {"If-None-Match": etag})
    assert r.status == 304 and r.header("ETag") == etag and r.header("Content-Type") is None
    assert srv.get("/f", {"If-Modified-Since": modified}).status == 304
    assert srv.get("/f", {"If-Match": '"nope"'}).status == 412
    r = srv.get("/f", {"Range": "bytes=100-199"})
    assert r.status == 206 and r.body == data[100:200]
    assert r.header("Content-Range") == f"bytes 100-199/{len(data)}"
    r = srv.get("/f", {"Range": f"bytes={len(data)}-"})
    assert r.status == 416 and r.header("Content-Range") == f"bytes */{len(data)}"
    assert srv.get("/f", {"Range": "bytes=0-0", "If-Range": '"old"'}).status == 200
    # Without the request: no validators, no ranges (the handler did not ask for them).
    plain = srv.get("/plain", {"Range": "bytes=0-0"})
    assert plain.status == 200 and plain.header("ETag") is None


def test_file_response_reads_if_match_sent_on_two_lines_as_one_list(server, tmp_path):
    # Regression: FileResponse took the first If-Match line only (a wrong 412), where the
    # folder mount joined the lines (RFC 9110 §5.3); both now share conditional.fields_named.
    (tmp_path / "f.txt").write_bytes(b"data\n")
    app = App()
    app.route("/f")(lambda req: FileResponse(tmp_path / "f.txt", request=req))
    srv = server(app)
    etag = srv.get("/f").header("ETag")
    ex = srv.exchange(b'GET /f HTTP/1.1\r\nHost: t\r\nIf-Match: "other"\r\nIf-Match: %s\r\n'
                      b"Connection: close\r\n\r\n" % etag.encode())
    assert ex.final[0].status == 200 and ex.final[0].body == b"data\n"
