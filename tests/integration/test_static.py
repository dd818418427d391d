"""A folder mount (static.StaticFiles) end to end over loopback: path escapes as a table, validators
and conditional requests, ranges, precompressed siblings and in-memory gzip, the cache's
revalidation, files that change or vanish, HEAD, and curl as the client where curl's own
handling (``--range``, ``-z``, ``--compressed``, ``-I``) is what a user would run."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tpd2py import App
from tpd2py.static import StaticFiles

CSS = b"body { color: #123; }\n" * 40  # 880 bytes: compressible, over the gzip minimum
BIG = bytes(range(256)) * 1024  # 256 KiB: over the small-file limit, sent by sendfile


@pytest.fixture
def site(tmp_path: Path) -> Path:
    pub = tmp_path / "pub"
    (pub / "sub").mkdir(parents=True)
    (pub / "app.css").write_bytes(CSS)
    (pub / "index.html").write_bytes(b"<!doctype html><title>home</title>\n")
    (pub / "sub" / "index.html").write_bytes(b"sub index\n")
    (pub / "sub" / "page.txt").write_bytes(b"in a sub folder\n")
    (pub / "big.bin").write_bytes(BIG)
    (pub / ".env").write_bytes(b"SECRET=1\n")
    (pub / ".hidden").mkdir()
    (pub / ".hidden" / "x.txt").write_bytes(b"hidden\n")
    (pub / "empty.txt").write_bytes(b"")
    (pub / "naïve file.txt").write_bytes(b"unicode name\n")
    (tmp_path / "outside.txt").write_bytes(b"outside the mount\n")
    (pub / "link-out.txt").symlink_to(tmp_path / "outside.txt")
    (pub / "link-in.txt").symlink_to(pub / "sub" / "page.txt")
    (pub / "dir-out").symlink_to(tmp_path)
    (pub / "nolist").mkdir()
    (pub / "nolist" / "a.txt").write_bytes(b"a\n")
    (pub / "pre.js").write_bytes(b"console.log('plain');\n" * 50)
    (pub / "pre.js.gz").write_bytes(gzip.compress(b"console.log('plain');\n" * 50))
    (pub / "pre.js.br").write_bytes(b"not really brotli, but a sibling all the same")
    return pub


def mount(site: Path, **options: Any) -> App:
    app = App()
    app.mount("/static", StaticFiles(site, **options))

    @app.route("/")
    def index(req: Any) -> bytes:
        return b"app"

    return app


ESCAPES = [
    ("/static/../outside.txt", "dot-dot"),
    ("/static/%2e%2e/outside.txt", "encoded dot-dot"),
    ("/static/%2E%2E/outside.txt", "upper-case encoded dot-dot"),
    ("/static/..%2foutside.txt", "encoded slash"),
    ("/static/..%2Foutside.txt", "upper-case encoded slash"),
    ("/static/sub%2f..%2f..%2foutside.txt", "encoded slashes in a chain"),
    ("/static/..\\outside.txt", "backslash"),
    ("/static/..%5coutside.txt", "encoded backslash"),
    ("/static/app.css%00.png", "encoded NUL"),
    ("/static//etc/passwd", "absolute path"),
    ("/static/%2fetc/passwd", "encoded absolute path"),
    ("/static/./app.css", "dot segment"),
    ("/static/sub/../../outside.txt", "dot-dot after a folder"),
    ("/static/link-out.txt", "symlink to a file outside"),
    ("/static/dir-out/outside.txt", "symlink to a folder outside"),
    ("/static/.env", "dotfile"),
    ("/static/.hidden/x.txt", "file in a dot folder"),
    ("/static/%2eenv", "encoded dotfile"),
    ("/static/nolist/", "folder without index: no listing"),
    ("/static/missing.css", "missing file"),
    ("/static/app.css/", "a file named as a folder"),
]


@pytest.mark.parametrize(("target", "why"), ESCAPES, ids=[w for _, w in ESCAPES])
def test_no_path_escapes_the_mount(server, site, target, why):
    srv = server(mount(site))
    data = b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % target.encode()
    ex = srv.exchange(data)
    (reply,) = ex.final
    # The router refuses some targets (e.g. with a backslash or a dot segment) itself with a
    # 400; the mount answers 404. Either way, nothing of the file system leaks.
    assert reply.status in (400, 404), (why, reply.status)
    assert b"outside" not in reply.body and b"SECRET" not in reply.body
    assert b"hidden" not in reply.body and b"a.txt" not in reply.body


def test_symlinks_inside_the_mount_are_followed(server, site):
    srv = server(mount(site))
    assert srv.get("/static/link-in.txt").body == b"in a sub folder\n"


def test_symlinks_outside_are_served_when_the_mount_allows_them(server, site):
    srv = server(mount(site, allow_outside_symlinks=True))
    assert srv.get("/static/link-out.txt").body == b"outside the mount\n"


def test_dotfiles_served_when_asked(server, site):
    srv = server(mount(site, dotfiles=True))
    assert srv.get("/static/.env").body == b"SECRET=1\n"


def test_a_small_file_with_its_headers(server, site):
    srv = server(mount(site, cache_control="public, max-age=3600"))
    r = srv.get("/static/app.css")
    assert r.status == 200 and r.body == CSS
    assert r.header("Content-Type") == "text/css; charset=utf-8"
    assert r.header("Content-Length") == str(len(CSS))
    assert r.header("Accept-Ranges") == "bytes"
    assert r.header("Cache-Control") == "public, max-age=3600"
    assert r.header("X-Content-Type-Options") == "nosniff"
    etag = r.header("ETag")
    assert etag and etag.startswith('"') and etag.endswith('"')
    assert r.header("Last-Modified").endswith(" GMT")
    assert r.header("Content-Encoding") is None and r.header("Vary") is None


def test_index_and_folder_redirects(server, site):
    srv = server(mount(site))
    assert srv.get("/static/").body == b"<!doctype html><title>home</title>\n"
    r = srv.get("/static")
    assert r.status == 301 and r.header("Location") == "/static/"
    r = srv.get("/static/sub?x=1")
    assert r.status == 301 and r.header("Location") == "/static/sub/?x=1"
    assert srv.get("/static/sub/").body == b"sub index\n"
    assert srv.get("/static/naïve%20file.txt".replace("ï", "%C3%AF")).body == b"unicode name\n"


def test_no_index_option_means_404_for_folders(server, site):
    srv = server(mount(site, index=None))
    assert srv.get("/static/").status == 404
    assert srv.get("/static/sub/").status == 404


def test_head_and_methods(server, site):
    srv = server(mount(site))
    ex = srv.exchange(b"HEAD /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                      b"HEAD /static/app.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    ex.methods = ["HEAD", "HEAD"]
    big, css = ex.final
    assert big.header("Content-Length") == str(len(BIG)) and big.body == b""
    assert css.header("Content-Length") == str(len(CSS)) and css.body == b""
    r = srv.exchange(b"POST /static/app.css HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
                     b"Connection: close\r\n\r\n").final[0]
    assert r.status == 405 and r.header("Allow") == "GET, HEAD"


def test_a_large_file_is_sent_whole_and_pipelined_requests_follow(server, site):
    srv = server(mount(site))
    ex = srv.exchange(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                      b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    big, app = ex.final
    assert big.body == BIG and app.body == b"app"


# -- validators and conditional requests ---------------------------------------------------------

@pytest.mark.parametrize("path", ["/static/app.css", "/static/big.bin"])
def test_conditional_requests(server, site, path):
    srv = server(mount(site, cache_control="no-cache"))
    first = srv.get(path)
    etag, modified = first.header("ETag"), first.header("Last-Modified")
    r = srv.get(path, {"If-None-Match": etag})
    assert r.status == 304 and r.body == b""
    assert r.header("ETag") == etag and r.header("Cache-Control") == "no-cache"
    assert r.header("Content-Type") is None and r.header("Content-Length") is None
    assert srv.get(path, {"If-None-Match": f'"other", W/{etag}'}).status == 304  # weak compare
    assert srv.get(path, {"If-None-Match": '"other"'}).status == 200
    assert srv.get(path, {"If-None-Match": "*"}).status == 304
    assert srv.get(path, {"If-Modified-Since": modified}).status == 304
    assert srv.get(path, {"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}).status == 200
    assert srv.get(path, {"If-Modified-Since": "garbage"}).status == 200  # ignored
    # If-None-Match wins over If-Modified-Since (§13.2.2)
    assert srv.get(path, {"If-None-Match": '"other"', "If-Modified-Since": modified}).status \
        == 200
    assert srv.get(path, {"If-Match": etag}).status == 200
    assert srv.get(path, {"If-Match": f"W/{etag}"}).status == 412  # strong compare
    assert srv.get(path, {"If-Match": '"other"'}).status == 412
    assert srv.get(path, {"If-Unmodified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}).status == 412
    assert srv.get(path, {"If-Unmodified-Since": modified}).status == 200
    # If-Match is evaluated first: it fails even though If-None-Match would say 304.
    assert srv.get(path, {"If-Match": '"x"', "If-None-Match": etag}).status == 412


def test_a_changed_file_gets_a_new_etag(server, site):
    srv = server(mount(site, revalidate_after=0))
    before = srv.get("/static/app.css").header("ETag")
    (site / "app.css").write_bytes(b"changed\n")
    r = srv.get("/static/app.css")
    assert r.body == b"changed\n" and r.header("ETag") != before
    assert srv.get("/static/app.css", {"If-None-Match": before}).status == 200


def test_the_cache_revalidates_at_most_once_per_interval(server, site):
    srv = server(mount(site, revalidate_after=3600))
    assert srv.get("/static/app.css").body == CSS
    (site / "app.css").write_bytes(b"changed\n")
    assert srv.get("/static/app.css").body == CSS  # within the interval: no stat, old bytes


def test_a_large_file_changed_between_stat_and_open_is_never_sent_with_stale_headers(
        server, site):
    srv = server(mount(site, revalidate_after=3600))
    first = srv.get("/static/big.bin")
    (site / "big.bin").write_bytes(BIG[:1000])  # the cached entry still says 256 KiB
    r = srv.get("/static/big.bin")
    assert r.body == BIG[:1000] and r.header("Content-Length") == "1000"
    assert r.header("ETag") != first.header("ETag")


def test_a_deleted_file_is_404(server, site):
    srv = server(mount(site, revalidate_after=0))
    assert srv.get("/static/big.bin").status == 200
    (site / "big.bin").unlink()
    assert srv.get("/static/big.bin").status == 404


# -- ranges ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path,data", [("/static/app.css", CSS), ("/static/big.bin", BIG)])
def test_ranges(server, site, path, data):
    srv = server(mount(site))
    size = len(data)
    r = srv.get(path, {"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == data[10:20]
    assert r.header("Content-Range") == f"bytes 10-19/{size}"
    assert r.header("Content-Length") == "10"
    r = srv.get(path, {"Range": "bytes=-5"})
    assert r.status == 206 and r.body == data[-5:]
    r = srv.get(path, {"Range": f"bytes={size - 3}-"})
    assert r.status == 206 and r.body == data[-3:]
    r = srv.get(path, {"Range": f"bytes=0-{size * 2}"})
    assert r.status == 206 and r.body == data
    r = srv.get(path, {"Range": f"bytes={size}-"})
    assert r.status == 416 and r.header("Content-Range") == f"bytes */{size}"
    # Several ranges: the whole file, once (never amplification).
    r = srv.get(path, {"Range": "bytes=0-1,3-4," + ",".join(["0-"] * 200)})
    assert r.status == 200 and r.body == data
    # Ignored: another unit, bad syntax, last < first.
    for bad in ("items=0-1", "bytes=a-b", "bytes=5-1", "bytes 0-1"):
        r = srv.get(path, {"Range": bad})
        assert r.status == 200 and r.body == data, bad
    etag, modified = r.header("ETag"), r.header("Last-Modified")
    assert srv.get(path, {"Range": "bytes=0-0", "If-Range": etag}).status == 206
    assert srv.get(path, {"Range": "bytes=0-0", "If-Range": modified}).status == 206
    assert srv.get(path, {"Range": "bytes=0-0", "If-Range": '"old"'}).status == 200
    assert srv.get(path, {"Range": "bytes=0-0", "If-Range": f"W/{etag}"}).status == 200
    # HEAD ignores Range.
    ex = srv.exchange(b"HEAD %s HTTP/1.1\r\nHost: t\r\nRange: bytes=0-0\r\nConnection: close"
                      b"\r\n\r\n" % path.encode(), methods=["HEAD"])
    assert ex.final[0].status == 200


def test_an_empty_file_ignores_ranges(server, site):
    srv = server(mount(site))
    r = srv.get("/static/empty.txt", {"Range": "bytes=0-10"})
    assert r.status == 200 and r.body == b"" and r.header("Content-Length") == "0"


# -- representations ------------------------------------------------------------------------------

def test_precompressed_siblings(server, site):
    srv = server(mount(site))
    plain = srv.get("/static/pre.js")
    assert plain.header("Content-Encoding") is None
    assert plain.header("Vary") == "Accept-Encoding"
    assert plain.header("Content-Type") == "text/javascript; charset=utf-8"
    gz = srv.get("/static/pre.js", {"Accept-Encoding": "gzip, deflate"})
    assert gz.header("Content-Encoding") == "gzip"
    assert gzip.decompress(gz.body) == (site / "pre.js").read_bytes()
    assert gz.header("Content-Type") == plain.header("Content-Type")
    assert gz.header("ETag") != plain.header("ETag")
    br = srv.get("/static/pre.js", {"Accept-Encoding": "gzip, br"})
    assert br.header("Content-Encoding") == "br" and br.body == (site / "pre.js.br").read_bytes()
    assert srv.get("/static/pre.js", {"Accept-Encoding": "br;q=0.5, gzip"}) \
        .header("Content-Encoding") == "gzip"
    assert srv.get("/static/pre.js", {"Accept-Encoding": "gzip;q=0"}) \
        .header("Content-Encoding") is None
    assert srv.get("/static/pre.js", {"Accept-Encoding": "*"}).header("Content-Encoding") == "br"
    # Each representation validates only itself.
    r = srv.get("/static/pre.js", {"Accept-Encoding": "gzip", "If-None-Match": gz.header("ETag")})
    assert r.status == 304 and r.header("Vary") == "Accept-Encoding"
    assert srv.get("/static/pre.js", {"If-None-Match": gz.header("ETag")}).status == 200
    # The sibling itself is a file like any other.
    assert srv.get("/static/pre.js.gz").header("Content-Type") == "application/octet-stream"


def test_in_memory_gzip_of_small_files(server, site):
    srv = server(mount(site, gzip=True))
    r = srv.get("/static/app.css", {"Accept-Encoding": "gzip"})
    assert r.header("Content-Encoding") == "gzip" and gzip.decompress(r.body) == CSS
    assert r.header("ETag").endswith('-gzip"') and r.header("Vary") == "Accept-Encoding"
    assert r.header("Content-Length") == str(len(r.body))
    r = srv.get("/static/app.css")
    assert r.body == CSS and r.header("Vary") == "Accept-Encoding"
    # Not for types that do not compress, nor for large files without a sibling.
    assert srv.get("/static/big.bin", {"Accept-Encoding": "gzip"}).header("Content-Encoding") \
        is None
    # A range of the gzip form is a range of its bytes.
    whole = srv.get("/static/app.css", {"Accept-Encoding": "gzip"}).body
    r = srv.get("/static/app.css", {"Accept-Encoding": "gzip", "Range": "bytes=0-9"})
    assert r.status == 206 and r.body == whole[:10]


# -- curl, as a user would run it ----------------------------------------------------------------

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="needs curl (apt-get install curl; "
                                                    ".ci/run does it)")


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert CURL is not None
    return subprocess.run([CURL, "-sS", "--max-time", "10", *args], capture_output=True,
                          check=True)


@needs_curl
def test_curl_range_compressed_head_and_time_condition(server, site, tmp_path):
    srv = server(mount(site, gzip=True))
    base = f"http://127.0.0.1:{srv.port}/static"
    assert curl("--range", "100-199", f"{base}/big.bin").stdout == BIG[100:200]
    assert curl("--compressed", f"{base}/app.css").stdout == CSS
    head = curl("-I", "--compressed", f"{base}/app.css").stdout.decode()
    assert "Content-Encoding: gzip" in head and head.startswith("HTTP/1.1 200")
    # -z: only if newer than the file's own date -> 304 and nothing written.
    stamp = tmp_path / "stamp"
    stamp.write_bytes(b"")
    os.utime(stamp, (os.path.getmtime(site / "app.css"),) * 2)
    out = curl("-z", str(stamp), "-o", "-", "-w", "%{http_code}", f"{base}/app.css").stdout
    assert out == b"304"
    # Resuming a download: -C - continues a partial file with a range request.
    partial = tmp_path / "big.part"
    partial.write_bytes(BIG[:5000])
    curl("-C", "-", "-o", str(partial), f"{base}/big.bin")
    assert partial.read_bytes() == BIG


# -- the command line ----------------------------------------------------------------------------

def test_cli_static_and_gzip(cli_server, site):
    srv = cli_server("bench.hello:app", "--static", f"/assets={site}", "--gzip")
    r = srv.get("/assets/app.css", {"Accept-Encoding": "gzip"})
    assert r.status == 200 and r.header("Content-Encoding") == "gzip"
    assert gzip.decompress(r.body) == CSS
    assert srv.get("/assets/big.bin").body == BIG
    assert srv.get("/assets/.env").status == 404
    assert srv.get("/").body == b"Hello, World!"  # the app's own routes are untouched


@pytest.mark.parametrize("spec", ["static=public", "/static", "/static="])
def test_cli_bad_static_option_is_one_line(spec):
    result = subprocess.run([sys.executable, "-m", "tpd2py", "bench.hello:app", "--port", "0",
                             "--static", spec], cwd=REPO, capture_output=True, timeout=30)
    assert result.returncode != 0
    err = result.stderr.decode().strip()
    assert err.startswith("tpd2py: --static") and "\n" not in err and "Traceback" not in err


def test_cli_static_folder_that_does_not_exist(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tpd2py", "bench.hello:app", "--port", "0",
                             "--static", f"/s={tmp_path / 'missing'}"], cwd=REPO,
                            capture_output=True, timeout=30)
    err = result.stderr.decode().strip()
    assert result.returncode != 0 and "not a folder" in err and "\n" not in err


def test_http_client_on_one_keep_alive_connection(server, site):
    srv = server(mount(site, gzip=True))
    conn = srv.http()
    conn.request("GET", "/static/app.css")
    r = conn.getresponse()
    assert r.status == 200 and r.read() == CSS
    etag = r.getheader("ETag")
    conn.request("GET", "/static/app.css", headers={"If-None-Match": etag})
    r = conn.getresponse()
    assert r.status == 304 and r.read() == b""
    conn.request("GET", "/static/big.bin", headers={"Range": "bytes=1000-"})
    r = conn.getresponse()
    assert r.status == 206 and r.read() == BIG[1000:]
    conn.request("HEAD", "/static/big.bin")
    r = conn.getresponse()
    assert r.getheader("Content-Length") == str(len(BIG)) and r.read() == b""
    conn.request("GET", "/static/app.css", headers={"Accept-Encoding": "gzip"})
    r = conn.getresponse()
    assert gzip.decompress(r.read()) == CSS
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"app"
    conn.close()
