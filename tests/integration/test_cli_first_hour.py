"""The command line a new user meets: the start-up line is a URL, mistakes are one line (not a
traceback), --version, --debug's traceback page (and its warning)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WAIT = 10.0


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tpd2py", *args], cwd=REPO,
                          capture_output=True, timeout=WAIT, check=False)


@pytest.mark.parametrize(("args", "message"), [
    (("no_such_module:app",), b"tpd2py: no module named 'no_such_module'"),
    (("bench.hello:nothing",), b"tpd2py: bench.hello has no attribute 'nothing'"),
    (("tpd2py:__version__",), b"tpd2py: tpd2py:__version__ is neither a tpd2py App nor a "
                              b"WSGI callable (it is a str)"),
    (("bench.hello:app", "--log-level", "loud"), b"invalid choice: 'loud'"),
])
def test_mistakes_are_one_line(args: tuple[str, ...], message: bytes) -> None:
    result = run_cli(*args, "--port", "0")
    assert result.returncode != 0
    assert message in result.stderr
    assert b"Traceback" not in result.stderr


def test_port_in_use_is_one_line(cli_server) -> None:  # type: ignore[no-untyped-def]
    srv = cli_server("bench.hello:app")
    result = run_cli("bench.hello:app", "--port", str(srv.port))
    assert result.returncode != 0
    assert result.stderr.strip() == (f"tpd2py: cannot listen on 127.0.0.1:{srv.port}: "
                                     "Address already in use").encode()


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith(b"tpd2py 0.")


def test_startup_line_is_a_url_and_debug_warns(cli_server) -> None:  # type: ignore[no-untyped-def]
    srv = cli_server("conftest:app", "--debug")
    assert srv.stderr[0] == f"tpd2py serving on http://127.0.0.1:{srv.port}\n".encode()
    reply = srv.get("/error")
    assert reply.status == 500
    assert b"RuntimeError: handler failed (expected by the test)" in reply.body
    assert srv.terminate() == 0
    assert b"never use it in production" in b"".join(srv.stderr)


def test_ctrl_c_says_what_it_waits_for_and_a_second_one_stops_at_once(
        cli_server) -> None:  # type: ignore[no-untyped-def]
    import signal

    srv = cli_server("conftest:app", "--grace", "60")
    sock = srv.connect()
    sock.sendall(b"GET /slow-stream?t=60 HTTP/1.1\r\nHost: a\r\n\r\n")
    got = b""
    while b"start\n" not in got:
        got += sock.recv(4096)
    srv.proc.send_signal(signal.SIGINT)
    assert srv.wait_stderr(b"stopping: waiting up to 60s for 1 connection(s) to finish "
                           b"(Ctrl-C again to stop now)")
    srv.proc.send_signal(signal.SIGINT)
    assert srv.proc.wait(WAIT) == 0  # long before the 60 s of grace
    assert srv.wait_stderr(b"stopping now: closing 1 connection(s)")
    assert b"end\n" not in srv.read_until_close(sock).raw
    sock.close()


def test_reload_restarts_the_server_when_a_source_file_changes(
        tmp_path: Path, free_port: int) -> None:  # noqa: F811
    import os
    import selectors
    import signal
    import time
    import urllib.request

    app_file = tmp_path / "reloadme.py"
    source = ("from tpd2py import App\napp = App()\n\n@app.route('/')\n"
              "def index(req):\n    return 'version %d'\n")
    app_file.write_text(source % 1)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # Ctrl-C as a terminal delivers it: a suite started in the background (``cmd &`` in a
    # non-interactive shell, a lock wrapper) runs with SIGINT ignored, which
    # a child inherits, and the reload parent would never see the test's SIGINT.
    proc = subprocess.Popen([sys.executable, "-m", "tpd2py", "reloadme:app", "--port",
                             str(free_port), "--reload"], cwd=tmp_path, env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stderr is not None
    lines: list[bytes] = []

    def wait_line(text: bytes) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stderr, selectors.EVENT_READ)  # type: ignore[arg-type]
            deadline = time.monotonic() + WAIT
            while not any(text in line for line in lines):
                assert sel.select(max(0.0, deadline - time.monotonic())), (text, lines)
                lines.append(proc.stderr.readline())  # type: ignore[union-attr]

    def get() -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{free_port}/", timeout=WAIT) as r:
            return r.read()  # type: ignore[no-any-return]

    try:
        wait_line(b"serving on")
        assert get() == b"version 1"
        lines.clear()
        app_file.write_text(source % 2)
        stat = app_file.stat()  # a coarse mtime clock must still see a change
        os.utime(app_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
        wait_line(b"reloadme.py changed: restarting")
        wait_line(b"serving on")
        assert get() == b"version 2"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(WAIT) == 0
