"""A throwaway redis-server for tests and benchmarks: a unix socket in a temporary directory.

``RedisServer(persist=True)`` starts ``redis-server`` (no TCP port, no config file) and waits
for its "Ready to accept connections" line, never by polling; ``kill()`` sends SIGKILL (an
outage), ``start()`` starts it again in the same directory (with ``persist`` it reloads its
append-only file, every write fsynced, so nothing it acknowledged is lost), ``stop()`` ends
it and removes the directory. ``command(...)`` runs ``redis-cli`` for a test's own writes.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

WAIT = 10.0


def find_redis() -> str | None:
    """The redis-server binary, or None (``.ci/run`` installs Debian's redis-server)."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)


class RedisServer:
    def __init__(self, persist: bool = True, directory: str | None = None,
                 port: int = 0) -> None:
        binary = find_redis()
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.owned = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="tpd2py-redis-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = str(self.dir / "redis.sock")
        self.persist = persist
        self.port = port  # 0: no TCP listener (the unix socket only)
        self.proc: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--unixsocket", self.socket, "--unixsocketperm", "700", "--dir", str(self.dir),
                "--save", "", "--daemonize", "no",
                "--loglevel", "notice", "--logfile", ""]
        if self.persist:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        ready = threading.Event()
        seen: list[str] = []
        started: list[bool] = []

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                seen.append(line)
                if "ready to accept connections" in line.lower():
                    started.append(True)
                    ready.set()
            ready.set()  # EOF: it exited

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(WAIT) or not started:
            proc.kill()
            raise RuntimeError("redis-server did not start:\n" + "".join(seen[-20:]))
        self.proc = proc

    def command(self, *args: str) -> str:
        """``redis-cli -s SOCKET args...``: its output (raises on failure)."""
        return subprocess.run(["redis-cli", "-s", self.socket, *args], check=True,
                              capture_output=True, text=True, timeout=WAIT).stdout.strip()

    def kill(self) -> None:
        """SIGKILL, as a crash or an outage would; waits until it is gone."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(WAIT)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(WAIT)
            self.proc = None
        if self.owned:
            shutil.rmtree(self.dir, ignore_errors=True)
