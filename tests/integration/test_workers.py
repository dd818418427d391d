"""``--workers``: a real master and real worker processes, driven by signals, checked over real
sockets. Every wait is for a log line or a socket event, bounded by WAIT; nothing is timed.

The app (written into a temp dir per test, so a test can change it and reload) answers with its
pid, the version it read at import, its uid and what it believes of the client.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
WAIT = 10.0

APP = '''
import os, sys
from tpd2py import App, Request
here = os.path.dirname(os.path.abspath(__file__))
if os.path.exists(os.path.join(here, "broken")):
    raise RuntimeError("this version does not start")
VERSION = open(os.path.join(here, "version.txt")).read().strip()
app = App()

@app.route("/")
def index(req: Request):
    peer = req.peer
    return {"pid": os.getpid(), "version": VERSION, "uid": os.getuid(),
            "peer": list(peer) if isinstance(peer, tuple) else peer,
            "scheme": req.scheme, "host": req.host}

@app.route("/upload", methods=["POST"])
def upload(req: Request):
    print("upload started", os.getpid(), file=sys.stderr, flush=True)
    return {"pid": os.getpid(), "got": len(req.body())}
'''


class Master:
    """``python -m tpd2py wapp:app --workers N ...`` in ``folder``; stderr read by a thread."""

    def __init__(self, folder: Path, *args: str, env: dict[str, str] | None = None,
                 cmd: list[str] | None = None, pass_fds: tuple[int, ...] = (),
                 wait_serving: bool = True) -> None:
        self.folder = folder
        full_env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
        argv = [sys.executable, "-m", "tpd2py", "wapp:app", "--log-level", "info", *args]
        self.proc = subprocess.Popen((cmd or []) + argv, cwd=folder, env=full_env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     pass_fds=pass_fds)
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self._cursor = 0
        threading.Thread(target=self._read, daemon=True).start()
        self.address: Any = None
        if wait_serving:
            line = self.wait_for(r"serving on")
            m = re.search(r"serving on \('([\d.]+)', (\d+)\)", line)
            if m:
                self.address = (m.group(1), int(m.group(2)))
            self.wait_for(r"master \d+: serving")

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.lines.put(raw.decode("utf-8", "replace"))
        self.lines.put("<EOF: every process holding stderr has exited>")

    def mark(self) -> int:
        """A point in the log for ``wait_for(..., since=mark)``."""
        return len(self.log)

    def wait_for(self, pattern: str, since: int | None = None, timeout: float = WAIT) -> str:
        """The first line matching ``pattern`` after ``since`` (default: after the line the last
        wait returned), waiting for more output as needed."""
        regex = re.compile(pattern)
        pos = self._cursor if since is None else since
        while True:
            while pos < len(self.log):
                if regex.search(self.log[pos]):
                    self._cursor = pos + 1
                    return self.log[pos]
                pos += 1
            try:
                self.log.append(self.lines.get(timeout=timeout))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; log:\n"
                                     + "".join(self.log)) from None

    def children(self) -> set[int]:
        path = f"/proc/{self.proc.pid}/task/{self.proc.pid}/children"
        return {int(p) for p in Path(path).read_text().split()}

    def get(self, path: str = "/", headers: dict[str, str] | None = None,
            source: str | None = None) -> dict:
        conn = http.client.HTTPConnection(*self.address, timeout=WAIT,
                                          source_address=(source, 0) if source else None)
        try:
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            assert resp.status == 200
            return json.loads(resp.read())
        finally:
            conn.close()

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(WAIT * 2)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "wapp.py").write_text(APP)
    (tmp_path / "version.txt").write_text("v1")
    return tmp_path


@pytest.fixture
def master(folder: Path):
    started: list[Master] = []

    def start(*args: str, **kw: Any) -> Master:
        m = Master(folder, *args, **kw)
        started.append(m)
        return m

    yield start
    for m in started:
        m.stop()


def test_master_forks_n_workers_that_serve(master):
    m = master("--workers", "2", "--port", "0")
    assert len(m.children()) == 2
    body = m.get()
    assert body["pid"] in m.children()
    assert body["version"] == "v1"
    assert m.stop() == 0
    m.wait_for(r"master \d+: stopped")


def test_killed_worker_is_replaced_at_once(master):
    m = master("--workers", "2", "--port", "0")
    victim = sorted(m.children())[0]
    os.kill(victim, signal.SIGKILL)
    m.wait_for(rf"worker {victim} killed by SIGKILL: replacing it")
    line = m.wait_for(r"worker \d+ ready")
    new = int(re.search(r"worker (\d+) ready", line).group(1))
    assert new != victim
    children = m.children()
    assert victim not in children and new in children and len(children) == 2
    assert m.get()["version"] == "v1"


def test_reload_serves_new_code_and_closes_old_keep_alive(master, folder):
    m = master("--workers", "2", "--port", "0")
    old = http.client.HTTPConnection(*m.address, timeout=WAIT)
    old.request("GET", "/")
    first = old.getresponse()
    assert first.getheader("Connection") is None  # kept alive
    before = json.loads(first.read())
    assert before["version"] == "v1"
    others = m.children() - {before["pid"]}
    (folder / "version.txt").write_text("v2")
    mark = m.mark()
    m.signal(signal.SIGHUP)
    m.wait_for(r"reload: generation 2 serving", since=mark)
    m.wait_for(rf"worker {before['pid']}: retiring \(1 connections\)", since=mark)
    # The old worker answers the idle connection's next request, and closes it.
    old.request("GET", "/")
    again = old.getresponse()
    assert again.getheader("Connection") == "close"
    assert json.loads(again.read()) == before
    old.close()
    m.wait_for(rf"worker {before['pid']} stopped \(exit status 0\)", since=mark)
    for pid in others:
        m.wait_for(rf"worker {pid}: retiring", since=mark)
    assert m.get()["version"] == "v2"
    assert before["pid"] not in m.children()


def test_reload_of_a_bad_version_keeps_the_old_workers(master, folder):
    m = master("--workers", "2", "--port", "0")
    pids = m.children()
    (folder / "broken").write_text("")
    m.signal(signal.SIGHUP)
    m.wait_for(r"RuntimeError: this version does not start")
    m.wait_for(r"reload failed: new worker \d+ exit status 3 before it was ready.*"
               r"generation 1 keeps serving")
    assert m.get()["pid"] in pids
    # Fixed: the next reload goes through.
    (folder / "broken").unlink()
    (folder / "version.txt").write_text("v3")
    mark = m.mark()
    m.signal(signal.SIGHUP)
    m.wait_for(r"reload: generation 3 serving", since=mark)  # 2 was the aborted one
    for pid in pids:  # once both say so, they accept no more
        m.wait_for(rf"worker {pid}: retiring", since=mark)
    assert m.get()["version"] == "v3"


def _start_upload(m: Master) -> socket.socket:
    """A POST whose body is half sent: its handler is in flight until the rest comes."""
    sock = socket.create_connection(m.address, timeout=WAIT)
    sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n12345")
    m.wait_for(r"upload started")
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_sigterm_lets_in_flight_requests_finish(master):
    m = master("--workers", "1", "--port", "0")
    sock = _start_upload(m)
    m.signal(signal.SIGTERM)
    m.wait_for(r"worker \d+: stopping \(1 connections\)")
    sock.sendall(b"67890")
    reply = _read_all(sock)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert b"Connection: close\r\n" in reply
    assert reply.endswith(b'"got": 10}')
    assert m.proc.wait(WAIT) == 0
    with pytest.raises(OSError):
        socket.create_connection(m.address, timeout=WAIT).close()


def test_second_sigint_forces_the_stop(master):
    m = master("--workers", "1", "--port", "0", "--grace", "600")
    sock = _start_upload(m)
    m.signal(signal.SIGINT)
    m.wait_for(r"stopping: 1 workers finish")
    m.signal(signal.SIGINT)
    m.wait_for(r"second SIGINT: killing 1 workers")
    assert m.proc.wait(WAIT) == 0
    assert _read_all(sock) == b""  # the in-flight request was cut
    sock.close()


def test_max_requests_recycles_a_worker_without_failures(master):
    m = master("--workers", "1", "--port", "0", "--max-requests", "4")
    mark = m.mark()
    first = m.get()["pid"]
    for _ in range(3):
        assert m.get()["pid"] == first
    m.wait_for(rf"worker {first} served its max requests: replacing it", since=mark)
    line = m.wait_for(r"worker \d+ ready", since=mark)
    successor = int(re.search(r"worker (\d+) ready", line).group(1))
    m.wait_for(rf"worker {first}: retiring", since=mark)
    m.wait_for(rf"worker {first} stopped \(exit status 0\)", since=mark)
    assert m.get()["pid"] == successor


def test_workers_stop_when_the_master_is_killed(master):
    m = master("--workers", "2", "--port", "0")
    pids = m.children()
    m.proc.kill()
    m.proc.wait(WAIT)
    for pid in pids:
        m.wait_for(rf"worker {pid}: the master is gone; stopping", since=0)
    m.wait_for(r"<EOF: every process holding stderr has exited>", since=0)
    with pytest.raises(OSError):
        socket.create_connection(m.address, timeout=WAIT).close()


def test_an_app_that_does_not_start_stops_the_master_with_status_3(folder):
    (folder / "broken").write_text("")
    m = Master(folder, "--workers", "2", "--port", "0", wait_serving=False)
    assert m.proc.wait(WAIT) == 3
    m.wait_for(r"the app does not start; stopping")


def test_a_worker_that_keeps_dying_at_start_up_backs_off(master, folder):
    m = master("--workers", "1", "--port", "0")
    (victim,) = m.children()
    (folder / "broken").write_text("")
    os.kill(victim, signal.SIGKILL)
    m.wait_for(r"\(1 times in a row in slot 0\); next try in 0\.1 s")
    m.wait_for(r"\(2 times in a row in slot 0\); next try in 0\.2 s")
    (folder / "broken").unlink()
    m.wait_for(r"worker \d+ ready")
    assert m.get()["version"] == "v1"


def test_unix_socket_with_umask(master, folder):
    path = folder / "s.sock"
    m = master("--workers", "1", "--unix", str(path), "--umask", "077")
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(WAIT)
        sock.connect(str(path))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        reply = _read_all(sock)
    assert reply.startswith(b"HTTP/1.1 200 ") and b'"version": "v1"' in reply
    assert m.stop() == 0
    assert not path.exists()  # the master removes what it bound


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_workers_drop_to_the_given_user(folder):
    import pwd
    import tempfile
    nobody = pwd.getpwnam("nobody")
    # pytest's tmp_path is private to root: the app must be readable by the new user.
    with tempfile.TemporaryDirectory() as public:
        os.chmod(public, 0o755)
        for name in ("wapp.py", "version.txt"):
            shutil.copy(folder / name, public)
        m = Master(Path(public), "--workers", "1", "--port", "0", "--user", "nobody")
        try:
            assert m.get()["uid"] == nobody.pw_uid
            assert os.stat(f"/proc/{m.proc.pid}").st_uid == nobody.pw_uid  # the master too
        finally:
            assert m.stop() == 0


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate is not installed")
def test_systemd_socket_activation_and_notify(folder, free_port):
    notify_path = str(folder / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(notify_path)
        notify.settimeout(WAIT)
        cmd = ["systemd-socket-activate", "-l", f"127.0.0.1:{free_port}",
               "-E", "PYTHONPATH", "-E", "NOTIFY_SOCKET"]
        m = Master(folder, "--workers", "2", cmd=cmd, env={"NOTIFY_SOCKET": notify_path},
                   wait_serving=False)
        try:
            m.wait_for(r"Listening on 127\.0\.0\.1")
            # systemd-socket-activate starts the service on the first connection.
            with socket.create_connection(("127.0.0.1", free_port), timeout=WAIT) as first:
                first.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                m.wait_for(r"serving on")
                assert notify.recv(256) == b"READY=1"
                assert b'"version": "v1"' in _read_all(first)
            m.address = ("127.0.0.1", free_port)
            assert m.get()["version"] == "v1"
            m.signal(signal.SIGHUP)
            assert notify.recv(256).startswith(b"RELOADING=1\nMONOTONIC_USEC=")
            assert notify.recv(256) == b"READY=1"
            m.signal(signal.SIGTERM)
            assert notify.recv(256) == b"STOPPING=1"
            assert m.proc.wait(WAIT) == 0
        finally:
            m.stop()


def test_proxy_headers_believed_from_loopback_only(master):
    m = master("--workers", "1", "--port", "0", "--host", "0.0.0.0", "--proxy-headers")
    m.address = ("127.0.0.1", m.address[1])
    spoof = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
             "X-Forwarded-Host": "example.org"}
    trusted = m.get(headers=spoof)
    assert trusted["peer"] == ["203.0.113.9", 0]
    assert (trusted["scheme"], trusted["host"]) == ("https", "example.org")
    # 127.0.0.2 is loopback but not in the default list (127.0.0.1, ::1, unix): ignored.
    m.address = ("127.0.0.2", m.address[1])
    untrusted = m.get(headers=spoof, source="127.0.0.2")
    assert untrusted["peer"][0] == "127.0.0.2"
    assert (untrusted["scheme"], untrusted["host"]) == ("http", f"127.0.0.2:{m.address[1]}")


def test_bad_workers_value_is_a_one_line_error(folder):
    result = subprocess.run([sys.executable, "-m", "tpd2py", "wapp:app", "--workers", "many"],
                            cwd=folder, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            capture_output=True, timeout=WAIT, check=False)
    assert result.returncode != 0
    assert b"--workers takes a number or 'auto'" in result.stderr
    assert b"Traceback" not in result.stderr


def test_proxy_protocol_option_in_workers(master):
    m = master("--workers", "1", "--port", "0", "--proxy-protocol")
    with socket.create_connection(m.address, timeout=WAIT) as sock:
        sock.sendall(b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 80\r\n"
                     b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        reply = _read_all(sock)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["peer"] == ["192.0.2.7", 51000]


def test_three_reloads_under_keep_alive_load_fail_no_request(master, folder):
    m = master("--workers", "2", "--port", "0")
    stop = threading.Event()
    counts: list[int] = []
    failures: list[BaseException] = []

    def client() -> None:
        conn = http.client.HTTPConnection(*m.address, timeout=WAIT)
        done = 0
        try:
            while not stop.is_set():
                conn.request("GET", "/")
                resp = conn.getresponse()
                assert resp.status == 200
                resp.read()
                done += 1
        except BaseException as e:  # noqa: BLE001 - counted and reported below
            failures.append(e)
        finally:
            conn.close()
            counts.append(done)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for generation in (2, 3, 4):
        (folder / "version.txt").write_text(f"v{generation}")
        before = m.children()
        mark = m.mark()
        m.signal(signal.SIGHUP)
        m.wait_for(rf"reload: generation {generation} serving", since=mark)
        for pid in before:
            m.wait_for(rf"worker {pid} stopped \(exit status 0\)", since=mark)
    stop.set()
    for t in threads:
        t.join(WAIT)
    assert failures == []
    assert len(counts) == 4 and min(counts) > 0
    assert m.get()["version"] == "v4"


def _text(m: Master, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection(*m.address, timeout=WAIT)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_stats_and_health(master):
    m = master("--workers", "2", "--port", "0", "--stats-path", "/_stats",
               "--health-path", "/_health")
    assert _text(m, "/_health") == (200, "ok\n")
    status, text = _text(m, "/_stats")
    assert status == 200
    assert "tpd2py_workers 2\n" in text
    pids = {int(p) for p in re.findall(r'tpd2py_worker_requests_total\{worker="(\d+)"\}', text)}
    assert pids == m.children()
    # The worker that answers counts its own connection, serving this very request.
    assert re.search(r'tpd2py_worker_connections\{worker="\d+",state="serving"\} 1\n', text)


def test_stats_count_requests_exactly_in_one_worker(master):
    m = master("--workers", "1", "--port", "0", "--stats-path", "/_stats")
    for _ in range(5):
        m.get()
    status, text = _text(m, "/_stats")
    (pid,) = m.children()
    assert f'tpd2py_worker_requests_total{{worker="{pid}"}} 6\n' in text  # 5 and the scrape


def test_stats_rows_follow_a_reload(master, folder):
    m = master("--workers", "1", "--port", "0", "--stats-path", "/_stats")
    (old,) = m.children()
    mark = m.mark()
    m.signal(signal.SIGHUP)
    m.wait_for(rf"worker {old} stopped", since=mark)
    (new,) = m.children()
    status, text = _text(m, "/_stats")
    assert "tpd2py_workers 1\n" in text
    assert f'worker="{new}"' in text and f'worker="{old}"' not in text


def test_sd_notify_watchdog_pings(folder):
    notify_path = str(folder / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(notify_path)
        notify.settimeout(WAIT)
        m = Master(folder, "--workers", "1", "--port", "0",
                   env={"NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "100000"})
        try:
            seen = [notify.recv(256) for _ in range(4)]
            assert b"READY=1" in seen
            assert seen.count(b"WATCHDOG=1") >= 2
        finally:
            assert m.stop() == 0


def test_reuse_port_slots_serve_and_reload(master, folder):
    m = master("--workers", "2", "--port", "0", "--reuse-port")
    master_sockets = [fd for fd in os.listdir(f"/proc/{m.proc.pid}/fd")
                      if os.readlink(f"/proc/{m.proc.pid}/fd/{fd}").startswith("socket:")]
    assert len(master_sockets) == 2  # one per slot, both kept by the master
    seen = {m.get()["pid"] for _ in range(40)}
    assert seen <= m.children()
    old = m.children()
    (folder / "version.txt").write_text("v2")
    mark = m.mark()
    m.signal(signal.SIGHUP)
    for pid in old:
        m.wait_for(rf"worker {pid} stopped \(exit status 0\)", since=mark)
    assert {m.get()["version"] for _ in range(20)} == {"v2"}


def test_kill_9_under_load_fails_at_most_the_requests_in_flight(master):
    m = master("--workers", "2", "--port", "0")
    stop = threading.Event()
    lock = threading.Lock()
    failures: list[str] = []
    after_kill: dict[int, int] = {}
    killed = threading.Event()

    def client(n: int) -> None:
        conn = http.client.HTTPConnection(*m.address, timeout=WAIT)
        while not stop.is_set():
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                assert resp.status == 200
                resp.read()
                if killed.is_set():
                    with lock:
                        after_kill[n] = after_kill.get(n, 0) + 1
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    failures.append(f"{n}: {e!r}")
                conn.close()
                conn = http.client.HTTPConnection(*m.address, timeout=WAIT)
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    # Let every client get through a request before the kill (bounded by WAIT).
    m.get()
    victim = sorted(m.children())[0]
    mark = m.mark()
    os.kill(victim, signal.SIGKILL)
    killed.set()
    m.wait_for(rf"worker {victim} killed by SIGKILL: replacing it", since=mark)
    m.wait_for(r"worker \d+ ready", since=mark)
    # Each client goes on after the kill (its failed connection replaced by a new one).
    for _ in range(int(WAIT * 100)):
        with lock:
            if len(after_kill) == 4:
                break
        m.get()
    stop.set()
    for t in threads:
        t.join(WAIT)
    assert len(after_kill) == 4
    assert len(failures) <= 4, failures  # at most the one request each connection had in flight


def test_https_workers_make_their_tls_settings_and_reload_certificates(master, folder):
    trustme = pytest.importorskip("trustme", reason="needs trustme (the test extra)")
    import ssl
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(folder / "server.pem"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    m = master("--workers", "2", "--port", "0", "--certfile", str(folder / "server.pem"))
    ctx = ssl.create_default_context(cafile=str(folder / "ca.pem"))

    def https_get() -> dict:
        conn = http.client.HTTPSConnection(*m.address, timeout=WAIT, context=ctx)
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            assert resp.status == 200
            return json.loads(resp.read())
        finally:
            conn.close()

    assert https_get()["scheme"] == "https"
    # A renewed certificate from another CA: a reload (SIGHUP) makes new workers load it.
    ca2 = trustme.CA()
    ca2.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(folder / "server.pem"))
    ca2.cert_pem.write_to_path(str(folder / "ca.pem"))
    old = m.children()
    mark = m.mark()
    m.signal(signal.SIGHUP)
    for pid in old:
        m.wait_for(rf"worker {pid} stopped \(exit status 0\)", since=mark)
    ctx = ssl.create_default_context(cafile=str(folder / "ca.pem"))
    assert https_get()["scheme"] == "https"
