"""A throwaway PostgreSQL cluster in a temporary directory, for the tests and the benchmarks.

What it is: ``Cluster()`` runs Debian's PostgreSQL (``initdb``, ``pg_ctl``) on a unix socket in
its own temporary directory, no TCP port, trust authentication, durability off (nothing here
needs to survive a crash). PostgreSQL refuses to run as root: as root the cluster belongs to
the ``postgres`` system user (or ``nobody``) and every command runs through ``runuser``.
Rules: nothing outside the temporary directory is touched; ``stop()`` removes it.
``find_bindir()`` says where PostgreSQL is (``PG_BINDIR``, ``pg_config``, Debian's
``/usr/lib/postgresql/N/bin``); None when it is not installed.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

# Settings for a cluster whose data is disposable: no fsync, no WAL waits.
FAST_SETTINGS = (
    "fsync=off", "synchronous_commit=off", "full_page_writes=off",
    "listen_addresses=", "max_connections=200", "shared_buffers=64MB",
)


def find_bindir() -> str | None:
    """Where initdb and pg_ctl are, or None."""
    env = os.environ.get("PG_BINDIR")
    if env and os.path.exists(os.path.join(env, "pg_ctl")):
        return env
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0)
    for path in reversed(candidates):
        if os.path.exists(os.path.join(path, "pg_ctl")):
            return path
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        path = out.stdout.strip()
        if os.path.exists(os.path.join(path, "pg_ctl")):
            return path
    return None


def _run_as() -> str | None:
    """The user to run PostgreSQL as when we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged user to run PostgreSQL as")


class Cluster:
    """``Cluster(settings=FAST_SETTINGS, cpu=None)``: initdb + start; ``conninfo``, ``restart()``,
    ``stop()``, ``psql(sql)``."""

    def __init__(self, settings: tuple[str, ...] = FAST_SETTINGS, cpu: int | None = None) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bindir = bindir
        self.user = _run_as()
        self.dir = Path(tempfile.mkdtemp(prefix="tpd2py-pg-"))
        self.data = self.dir / "data"
        self.socket_dir = str(self.dir)
        self.log = self.dir / "postgres.log"
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.settings = settings
        self.cpu = cpu  # pin the server's processes to this core (the benchmarks)
        try:
            self._cmd("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                      "-E", "UTF8", "--locale=C", "--no-sync")
            self.start()
        except BaseException:
            self.stop()
            raise
        self.conninfo = f"host={self.socket_dir} user=postgres dbname=postgres"

    def _cmd(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = [os.path.join(self.bindir, tool), *args]
        if self.cpu is not None and tool == "pg_ctl":
            argv = ["taskset", "-c", str(self.cpu), *argv]
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--", *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{tool} failed: {proc.stdout}{proc.stderr}")
        return proc

    def _options(self) -> str:
        opts = [f"-k {self.socket_dir}"] + [f"-c {s}" if not s.endswith("=") else
                                           f"-c {s}''" for s in self.settings]
        return " ".join(opts)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self._options(),
                  "-w", "-t", "60", "start")

    def restart(self) -> None:
        """A fast restart: every connection is terminated (FATAL 57P01, then EOF)."""
        self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self._options(),
                  "-m", "fast", "-w", "-t", "60", "restart")

    def stop_server(self) -> None:
        """Stop the server now (connections see EOF); the data stays for ``start()``."""
        self._cmd("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

    def psql(self, sql: str, db: str = "postgres") -> str:
        """Run SQL through psql (as the cluster's user); its output."""
        proc = self._cmd("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.socket_dir,
                         "-U", "postgres", "-d", db, "-At", "-c", sql)
        return str(proc.stdout)

    def stop(self) -> None:
        """Stop the server and remove the directory."""
        if (self.data / "postmaster.pid").exists():
            self.stop_server()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
