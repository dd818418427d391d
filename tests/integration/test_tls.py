"""HTTPS over real loopback sockets: certificates made at test time (trustme), real clients
(Python's ssl + http.client, curl --cacert, openssl s_client), mutual TLS, large and slow
transfers through the TLS send path, pipelining in one write, certificate reload, and every
abuse case of the issue (half a ClientHello, plain HTTP, garbage, resets, old versions,
renegotiation, a crowd of stalled handshakes) ending cleanly with nothing in the log."""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, WAIT, read_replies, read_until_close
from tpd2py import App, Later, Request, Response
from tpd2py.files import FileResponse
from tpd2py.tls import TLSSettings

trustme = pytest.importorskip("trustme", reason="needs trustme (the test extra)")

OPENSSL = shutil.which("openssl")
CURL = shutil.which("curl")
BIG = bytes(range(256)) * 4096 * 8  # 8 MiB: many TLS records, many partial sends


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server_cert = ca.issue_cert("localhost", "127.0.0.1")
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(work / "server.pem"))
    ca.cert_pem.write_to_path(str(work / "ca.pem"))
    client_cert = ca.issue_cert("alice@example.org")
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(work / "client.pem"))
    other = trustme.CA()
    stranger = other.issue_cert("mallory@example.org")
    stranger.private_key_and_cert_chain_pem.write_to_path(str(work / "stranger.pem"))
    return {"dir": work, "ca": ca, "server": str(work / "server.pem"),
            "ca_pem": str(work / "ca.pem"), "client": str(work / "client.pem"),
            "stranger": str(work / "stranger.pem")}


def tls_app(tmp_path: Path | None = None) -> App:
    app = App()

    @app.route("/")
    def index(req: Request) -> Response:
        return Response(b"hello over " + req.scheme.encode(), content_type="text/plain")

    @app.route("/echo", methods=["POST"])
    def echo(req: Request) -> bytes:
        return req.body()

    @app.route("/big")
    def big(req: Request) -> Response:
        return Response(BIG, content_type="application/octet-stream")

    @app.route("/whoami")
    def whoami(req: Request) -> dict:
        cert = req.peer_certificate
        return {"emails": [v for k, v in cert.get("subjectAltName", ()) if k == "email"]
                if cert else None}

    if tmp_path is not None:
        (tmp_path / "f.bin").write_bytes(BIG)

        @app.route("/file")
        def file(req: Request) -> Response:
            return FileResponse(tmp_path / "f.bin")

    return app


def client_context(pki: dict[str, Any], cert: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki["ca_pem"])
    if cert:
        ctx.load_cert_chain(cert)
    return ctx


@pytest.fixture
def https(server, pki, tmp_path):
    def start(app: App | None = None, **options: Any) -> Any:
        config = {k: options.pop(k) for k in list(options) if k in ("header_timeout",
                                                                     "keepalive_timeout")}
        settings = TLSSettings(pki["server"], **options)
        srv = server(app or tls_app(tmp_path), transport=settings.wrap, **config)
        srv.settings = settings
        return srv
    return start


def https_conn(srv: Any, pki: dict[str, Any], cert: str | None = None
               ) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", srv.port, timeout=WAIT,
                                       context=client_context(pki, cert))


def test_requests_over_one_tls_connection(https, pki):
    srv = https()
    conn = https_conn(srv, pki)
    for _ in range(3):
        conn.request("GET", "/")
        r = conn.getresponse()
        assert r.status == 200 and r.read() == b"hello over https"
    conn.request("POST", "/echo", body=b"x" * 100_000)
    assert conn.getresponse().read() == b"x" * 100_000
    conn.request("POST", "/echo", body=iter([b"chunked ", b"body"]),
                 headers={"Transfer-Encoding": "chunked"}, encode_chunked=True)
    assert conn.getresponse().read() == b"chunked body"
    assert conn.sock.version() == "TLSv1.3"
    assert conn.sock.selected_alpn_protocol() is None  # http.client offers no ALPN
    conn.close()


def test_large_bodies_and_files_through_the_tls_send_path(https, pki):
    srv = https()
    conn = https_conn(srv, pki)
    conn.request("GET", "/big")
    assert conn.getresponse().read() == BIG
    conn.request("GET", "/file")  # sendfile cannot encrypt: the read-and-send loop
    assert conn.getresponse().read() == BIG
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"hello over https"
    conn.close()


class WatchedBIO:
    """A MemoryBIO that remembers the most ciphertext it held at once: OpenSSL never gives
    back a memory BIO's capacity, so that is what the connection keeps while it lives."""

    def __init__(self, bio: ssl.MemoryBIO) -> None:
        self.bio, self.most = bio, 0

    @property
    def pending(self) -> int:
        return self.bio.pending

    def write(self, data: Any) -> int:
        n = self.bio.write(data)
        self.most = max(self.most, self.bio.pending)
        return n

    def write_eof(self) -> None:
        self.bio.write_eof()

    def read(self, size: int = -1) -> bytes:
        self.most = max(self.most, self.bio.pending)  # OpenSSL filled it; only reads drain it
        return self.bio.read(size)


def test_the_memory_bios_never_hold_more_than_a_record(server, pki, tmp_path):
    """Regression: a 1 MiB upload and an 8 MiB download went through the BIOs 64 KiB and
    256 KiB at a time, and every connection that had done it kept ~430 KiB while idle."""
    from tpd2py import tls

    settings = TLSSettings(pki["server"])
    watched: list[Any] = []

    def wrap(raw: Any) -> Any:
        transport = settings.wrap(raw)
        transport.incoming, transport.outgoing = (WatchedBIO(transport.incoming),
                                                  WatchedBIO(transport.outgoing))
        watched.append(transport)
        return transport

    srv = server(tls_app(tmp_path), transport=wrap)
    conn = https_conn(srv, pki)
    conn.request("POST", "/echo", body=b"u" * 1_000_000)
    assert conn.getresponse().read() == b"u" * 1_000_000
    for path in ("/big", "/file"):
        conn.request("GET", path)
        assert conn.getresponse().read() == BIG
    conn.close()
    [transport] = watched
    assert 0 < transport.incoming.most <= tls.READ_SIZE
    assert 0 < transport.outgoing.most <= tls.RECORD + 256


def test_a_slow_reader_gets_every_byte(https, pki):
    srv = https()
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock = client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1")
    sock.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    data = bytearray()
    reads = 0
    while True:
        piece = sock.recv(16384)
        if not piece:
            break
        data += piece
        reads += 1
        if reads % 16 == 0:
            time.sleep(0.001)  # let the server's socket fill and wait: a slow reader
    sock.close()
    assert data.endswith(BIG) and b"Content-Length: %d" % len(BIG) in data[:300]


def test_pipelined_requests_get_one_write(https, pki):
    srv = https()
    sock = client_context(pki).wrap_socket(
        socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT),
        server_hostname="127.0.0.1")
    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # the handshake is done after this
    read_replies(sock, 1)
    before = srv.server.statistics()["sendmsg_calls"]
    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * 10)
    replies = read_replies(sock, 10)
    assert [r.body for r in replies] == [b"hello over https"] * 10
    assert srv.server.statistics()["sendmsg_calls"] - before == 1
    sock.close()


@pytest.mark.skipif(CURL is None, reason="needs curl (apt-get install curl; .ci/run does it)")
def test_curl_with_the_test_ca(https, pki):
    srv = https()
    out = subprocess.run([CURL, "-sS", "--max-time", "10", "--cacert", pki["ca_pem"],
                          f"https://127.0.0.1:{srv.port}/", f"https://127.0.0.1:{srv.port}/",
                          "-w", " %{http_version} %{num_connects}\n"],
                         capture_output=True, check=True).stdout
    assert out == b"hello over https 1.1 1\nhello over https 1.1 0\n"  # one connection reused


needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command "
                                   "(apt-get install openssl; .ci/run does it)")


def s_client(port: int, *args: str, stdin: bytes = b"") -> str:
    assert OPENSSL is not None
    done = subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", *args],
                          input=stdin, capture_output=True, timeout=WAIT + 5)
    return done.stdout.decode("latin-1") + done.stderr.decode("latin-1")


@needs_openssl
def test_openssl_alpn_versions_and_resumption(https, pki, tmp_path):
    srv = https()
    ca = ["-CAfile", pki["ca_pem"]]
    out = s_client(srv.port, "-alpn", "http/1.1", *ca, stdin=b"")
    assert "ALPN protocol: http/1.1" in out and "Verify return code: 0 (ok)" in out
    assert "TLSv1.3" in out
    assert "TLSv1.2" in s_client(srv.port, "-tls1_2", *ca)
    session = tmp_path / "session"
    # TLS 1.3 tickets arrive after the handshake: send a request so that they are read.
    request = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    first = s_client(srv.port, "-ign_eof", "-sess_out", str(session), *ca, stdin=request)
    assert "hello over https" in first
    again = s_client(srv.port, "-ign_eof", "-sess_in", str(session), *ca, stdin=request)
    assert "Reused, TLSv1.3" in again and "hello over https" in again
    refused = s_client(srv.port, "-tls1_1", *ca)
    assert "Cipher is (NONE)" in refused or "alert" in refused.lower()


@needs_openssl
def test_renegotiation_is_refused_cleanly(https, pki):
    srv = https()
    out = s_client(srv.port, "-tls1_2", "-CAfile", pki["ca_pem"],
                   stdin=b"R\n")  # s_client's command to renegotiate
    assert "RENEGOTIATING" in out
    # Whatever the client saw, the server is still well and logged nothing (the fixture checks).
    assert https_get(srv, pki) == b"hello over https"


def https_get(srv: Any, pki: dict[str, Any], path: str = "/") -> bytes:
    conn = https_conn(srv, pki)
    conn.request("GET", path)
    body = conn.getresponse().read()
    conn.close()
    return body


# -- mutual TLS --------------------------------------------------------------------------------

def test_client_certificate_required(https, pki):
    srv = https(ca_certs=pki["ca_pem"], client_cert="required")
    assert b"alice@example.org" in https_get_with(srv, pki, pki["client"], "/whoami")
    for cert in (None, pki["stranger"]):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            https_get_with(srv, pki, cert, "/whoami")


def test_client_certificate_optional(https, pki):
    srv = https(ca_certs=pki["ca_pem"], client_cert="optional")
    assert b"alice@example.org" in https_get_with(srv, pki, pki["client"], "/whoami")
    assert https_get_with(srv, pki, None, "/whoami") == b'{"emails": null}'


def https_get_with(srv: Any, pki: dict[str, Any], cert: str | None, path: str) -> bytes:
    conn = https_conn(srv, pki, cert)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


def test_settings_refuse_client_certs_without_a_ca(pki):
    with pytest.raises(ValueError):
        TLSSettings(pki["server"], client_cert="required")


# -- certificate reload ------------------------------------------------------------------------

def test_reload_serves_the_new_certificate_to_new_connections(https, pki, tmp_path):
    path = tmp_path / "live.pem"
    shutil.copy(pki["server"], path)
    settings = TLSSettings(str(path))
    app = tls_app()
    from tests.conftest import RunningServer  # a server whose transport reads `settings` live
    from tpd2py.server import Config
    running = RunningServer(app, Config(grace=0.5), transport=lambda raw: settings.wrap(raw))
    try:
        old = https_conn(running, pki)
        old.request("GET", "/")
        assert old.getresponse().read() == b"hello over https"
        first_serial = old.sock.getpeercert()["serialNumber"]
        pki["ca"].issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem \
            .write_to_path(str(path))
        running.call(settings.reload)
        new = https_conn(running, pki)
        new.request("GET", "/")
        assert new.getresponse().read() == b"hello over https"
        assert new.sock.getpeercert()["serialNumber"] != first_serial
        old.request("GET", "/")  # the live connection goes on with its own session
        assert old.getresponse().read() == b"hello over https"
        old.close()
        new.close()
        path.write_text("not a certificate")
        with pytest.raises(ssl.SSLError):
            running.call(settings.reload)
        assert https_get(running, pki) == b"hello over https"  # the old one stays
    finally:
        running.stop()


# -- abuse -------------------------------------------------------------------------------------

def client_hello() -> bytes:
    """A real ClientHello's bytes, from an SSLObject that is never answered."""
    obj = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(),
                                               server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def test_half_a_client_hello_is_cut_at_the_header_timeout(https, pki):
    srv = https(header_timeout=0.5)
    hello = client_hello()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as sock:
        sock.sendall(hello[:len(hello) // 2])
        assert read_until_close(sock).raw == b""  # closed by the server, nothing sent


def test_many_stalled_handshakes_do_not_delay_anyone(https, pki):
    srv = https(header_timeout=30)
    hello = client_hello()
    stalled = []
    try:
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT)
            s.sendall(hello[:40])
            stalled.append(s)
        assert https_get(srv, pki) == b"hello over https"
    finally:
        for s in stalled:
            s.close()


def test_plain_http_on_the_tls_port_gets_a_clear_400(https):
    srv = https()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        data = read_until_close(sock).raw
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"HTTPS" in data


@pytest.mark.parametrize("garbage", [
    b"\x16\x03\x01\x00\x05hello",  # a handshake record that is not a ClientHello
    b"\x17\x03\x03\x00\x10" + b"\0" * 16,  # application data before any handshake
    b"\xff" * 100,
    b"\x16\x03\x01\xff\xff" + b"\0" * 200,  # a record longer than allowed, cut short
])
def test_garbage_records_end_the_connection_cleanly(https, pki, garbage):
    srv = https(header_timeout=2)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as sock:
        sock.sendall(garbage)
        sock.shutdown(socket.SHUT_WR)
        data = read_until_close(sock).raw
    assert not data.startswith(b"HTTP/")  # an alert at most
    assert https_get(srv, pki) == b"hello over https"


def test_a_reset_mid_handshake_is_quiet(https, pki):
    srv = https()
    hello = client_hello()
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT)
    sock.sendall(hello)
    sock.recv(1)  # the server's first flight has started
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    sock.close()  # RST
    assert https_get(srv, pki) == b"hello over https"


def test_a_handshake_flight_larger_than_the_send_buffer_goes_out(server, pki, tmp_path):
    """Regression: a certificate chain of ~28 KiB to a client with a small window, through a
    4 KiB send buffer, reset the connection (a read cannot wait for write space); the
    transport now grows the buffer to hold the flight."""
    leaf = pki["ca"].issue_cert("localhost", "127.0.0.1")
    filler = b"".join(trustme.CA().cert_pem.bytes() for _ in range(40))
    chain = tmp_path / "long-chain.pem"
    chain.write_bytes(leaf.private_key_and_cert_chain_pem.bytes() + filler)
    settings = TLSSettings(str(chain))

    def wrap(raw: Any) -> Any:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # as if congested
        return settings.wrap(raw)

    srv = server(tls_app(), transport=wrap)
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the flight stays unacked
    raw.settimeout(WAIT)
    raw.connect(("127.0.0.1", srv.port))
    sock = client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1")
    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert [r.body for r in read_replies(sock, 1)] == [b"hello over https"]
    sock.close()


def test_old_protocol_versions_are_refused(https, pki):
    srv = https()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki["ca_pem"])
    try:
        with warnings.catch_warnings():  # deprecated versions are the point of the test
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.0/1.1")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as raw, \
            pytest.raises((ssl.SSLError, ConnectionError)):
        ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    assert https_get(srv, pki) == b"hello over https"


def test_graceful_shutdown_sends_close_notify(https, pki):
    srv = https(keepalive_timeout=30)
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT)
    sock = client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1",
                                           suppress_ragged_eofs=False)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    read_replies(sock, 1)
    srv.stop()
    # A close_notify reads as a clean end (b""); a bare FIN would raise SSLEOFError here.
    assert sock.recv(100) == b""
    sock.close()


# -- several certificates ----------------------------------------------------------------------

def test_sni_chooses_the_certificate(server, pki, tmp_path):
    other = pki["ca"].issue_cert("api.example.test")
    other.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "api.pem"))
    settings = TLSSettings(pki["server"], sni={"API.example.test": (str(tmp_path / "api.pem"),
                                                                     None)})
    srv = server(tls_app(), transport=settings.wrap)

    def served_names(hostname: str) -> list[str]:
        ctx = client_context(pki)
        ctx.check_hostname = False
        with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as raw, \
                ctx.wrap_socket(raw, server_hostname=hostname) as sock:
            cert = sock.getpeercert()
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert read_until_close(sock).raw.endswith(b"hello over https")
        return [v for k, v in cert["subjectAltName"] if k == "DNS"]

    assert served_names("api.example.test") == ["api.example.test"]
    assert "localhost" in served_names("localhost")
    assert "localhost" in served_names("unknown.example.test")  # the main certificate


# -- the command line --------------------------------------------------------------------------

def test_cli_serves_https(cli_server, pki):
    srv = cli_server("bench.hello:app", "--certfile", pki["server"])
    conn = https_conn(srv, pki)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"Hello, World!"
    conn.close()


@pytest.mark.parametrize("args", [
    ["--certfile", "/nonexistent/cert.pem"],
    ["--keyfile", "key.pem"],
    ["--certfile", __file__],  # not a certificate
    ["--certfile", "CERT", "--client-cert", "required"],  # no --ca-certs
    ["--certfile", "CERT", "--sni", "nohost"],
])
def test_cli_tls_mistakes_are_one_line(pki, args):
    args = [pki["server"] if a == "CERT" else a for a in args]
    done = subprocess.run([sys.executable, "-m", "tpd2py", "bench.hello:app", "--port", "0",
                           *args], cwd=REPO, capture_output=True, timeout=30)
    err = done.stderr.decode().strip()
    assert done.returncode != 0 and err.startswith("tpd2py:") and "\n" not in err, err


# -- waiting connections: the hang-up peek over TLS ------------------------------------------

def later_app(resumes: list[Any], gone: threading.Event) -> App:
    app = tls_app()

    @app.route("/wait")
    def wait(req: Request) -> Later:
        return Later(lambda resume: resumes.append(resume), gone.set)

    return app


def wait_until_waiting(srv: Any, resumes: list[Any]) -> None:
    """Until the handler has answered Later (each call is one hub turn), bounded."""
    for _ in range(10_000):
        if srv.call(lambda: bool(resumes)):
            return
    raise AssertionError("the request never reached its handler")


def open_waiting(https: Any, pki: dict[str, Any]
                 ) -> tuple[Any, ssl.SSLSocket, list[Any], threading.Event]:
    """A server and a TLS client whose request waits (Later): (server, socket, resumes, gone)."""
    resumes: list[Any] = []
    gone = threading.Event()
    srv = https(later_app(resumes, gone))
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a second request goes at once
    sock = client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1")
    sock.sendall(b"GET /wait HTTP/1.1\r\nHost: t\r\n\r\n")
    wait_until_waiting(srv, resumes)
    return srv, sock, resumes, gone


def test_a_waiting_client_that_closes_is_noticed(https, pki):
    _, sock, _, gone = open_waiting(https, pki)
    sock.unwrap().close()  # close_notify, then FIN: ciphertext on the wire, then the end
    assert gone.wait(WAIT), "the hang-up of a waiting TLS client went unnoticed"


def test_a_request_pipelined_behind_a_waiting_one_is_kept(https, pki):
    srv, sock, resumes, gone = open_waiting(https, pki)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # read by the hang-up peek, kept
    srv.call(lambda: None)
    srv.call(lambda: resumes[0](Response(b"resumed", content_type="text/plain")))
    first, second = read_replies(sock, 2)
    assert (first.body, second.body) == (b"resumed", b"hello over https")
    assert not gone.is_set()
    sock.close()


def test_a_wsgi_app_over_tls_sees_https(server, pki):
    from tpd2py.wsgi import WSGI

    def app(environ: dict, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["wsgi.url_scheme"].encode()]

    srv = server(WSGI(app), transport=TLSSettings(pki["server"]).wrap)
    assert https_get(srv, pki) == b"https"
