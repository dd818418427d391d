"""The servers under test: how each is started, and the process tree we measure once it runs.

Every server runs one worker process, access log off, pinned with `taskset` to the server core, with
its open-file soft limit raised to the hard limit (and, where the server has its own connection
ceiling or idle timeout, that set above what a run needs: see `command`). Each is started in its own
process group so that stopping it stops its children (granian's worker, nginx's worker) and nothing
else; it stays in our session so that `--nice` reaches it under autogroup scheduling.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from bench.machine import ROOT, tool

# Idle connections must survive a whole scenario; every server gets this idle timeout if it has one.
IDLE_TIMEOUT_S = 600
# granian caps its header-read timeout (which also ends idle keep-alive connections) at 60 s.
GRANIAN_MAX_HEADER_READ_TIMEOUT_MS = 60000
LISTEN_BACKLOG = 1024
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Spec:
    """A server the bench knows how to run."""

    name: str
    summary: str
    python_modules: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    # Contract checks this server is known to fail for a reason unrelated to the measured paths.
    deviations: dict[str, str] = field(default_factory=dict)
    default: bool = True


SPECS = {
    spec.name: spec
    for spec in (
        Spec("tpd2py", "tpd2py: greenlets on one epoll hub", ("greenlet",)),
        Spec("gevent", "gevent.pywsgi, TCP_NODELAY", ("gevent",)),
        Spec("uvicorn", "uvicorn + httptools + uvloop (ASGI)", ("uvicorn", "httptools", "uvloop")),
        Spec("granian", "granian, RSGI, 1 worker, 1 runtime thread", ("granian",)),
        Spec(
            "nginx", "nginx, 1 worker, `return 200`", tools=("nginx",),
            deviations={"escape": "core nginx returns $arg_name still percent-encoded "
                                  "(no decoding, no HTML escaping)"},
        ),
        Spec("threaded", "http.server ThreadingHTTPServer: a thread per connection"),
        Spec("granian-asgi", "granian, ASGI app, 1 worker (compare with RSGI)",
             ("granian", "uvloop"), default=False),
        Spec("granian-wsgi", "granian, WSGI app, 1 worker, 1 blocking thread",
             ("granian", "gevent"), default=False),
        Spec("python-floor", "not a server: accept, one recv, one canned sendmsg, close "
             "(the pure-Python ceiling for fremlin)", default=False,
             deviations={check: "not an HTTP server: every request gets the /test page"
                         for check in ("get", "head", "echo", "escape", "404")}),
    )
}


@dataclass
class Options:
    """What `command` needs to know about the run."""

    python: str
    nofile: int  # hard open-file limit; servers run with it as their soft limit
    max_connections: int  # the most connections one scenario holds open at once
    tpd2py_flags: set[str] = field(default_factory=set)
    tpd2py_extra: list[str] = field(default_factory=list)  # more tpd2py flags (bench/ab.py)


def missing_requirements(spec: Spec, tools: dict[str, str | None]) -> list[str]:
    """Why this server cannot run here, each with how to fix it; empty when it can."""
    from bench.machine import install_hint

    problems = []
    for module in spec.python_modules:
        if importlib.util.find_spec(module) is None:
            problems.append(f"Python package `{module}` is missing: install the bench extra with "
                            "`.venv/bin/pip install -e '.[bench]'` (or `make bench`)")
    for name in spec.tools:
        if not tools.get(name):
            problems.append(install_hint(name))
    return problems


def tpd2py_flags(python: str) -> set[str]:
    """The optional tpd2py CLI flags this checkout accepts, read from its --help."""
    try:
        done = subprocess.run([python, "-m", "tpd2py", "--help"], cwd=ROOT, capture_output=True,
                              text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return set()
    return set(re.findall(r"--[a-z][a-z0-9-]+", done.stdout))


def command(name: str, port: int, options: Options, workdir: Path) -> list[str]:
    """The command line that serves the bench contract on 127.0.0.1:port."""
    py = options.python
    if name == "tpd2py":
        argv = [py, "-m", "tpd2py", "bench.hello:app", "--host", "127.0.0.1", "--port", str(port)]
        if "--keepalive-timeout" in options.tpd2py_flags:
            argv += ["--keepalive-timeout", str(IDLE_TIMEOUT_S)]
        if "--max-connections" in options.tpd2py_flags:
            argv += ["--max-connections", str(options.max_connections)]
        return argv + options.tpd2py_extra
    if name == "gevent":
        return [py, "bench/peers/gevent_app.py", "--port", str(port),
                "--backlog", str(LISTEN_BACKLOG)]
    if name == "threaded":
        return [py, "bench/peers/threaded_app.py", "--port", str(port)]
    if name == "python-floor":
        return [py, "bench/peers/floor.py", "--port", str(port), "--backlog", str(LISTEN_BACKLOG)]
    if name == "uvicorn":
        return [py, "-m", "uvicorn", "bench.peers.uvicorn_app:app", "--host", "127.0.0.1",
                "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                "--log-level", "warning", "--timeout-keep-alive", str(IDLE_TIMEOUT_S),
                "--backlog", str(LISTEN_BACKLOG)]
    if name.startswith("granian"):
        interface = {
            "granian": ["--interface", "rsgi", "bench.peers.granian_app:app"],
            "granian-asgi": ["--interface", "asgi", "--loop", "uvloop",
                             "bench.peers.uvicorn_app:app"],
            # The WSGI app in gevent_app.py imports gevent.pywsgi but patches nothing.
            "granian-wsgi": ["--interface", "wsgi", "--blocking-threads", "1",
                             "bench.peers.gevent_app:app"],
        }[name]
        return [py, "-m", "granian", *interface, "--host", "127.0.0.1", "--port", str(port),
                "--workers", "1", "--runtime-threads", "1", "--http", "1", "--no-access-log",
                "--log-level", "warning", "--backlog", str(LISTEN_BACKLOG),
                "--http1-header-read-timeout", str(GRANIAN_MAX_HEADER_READ_TIMEOUT_MS),
                # granian stops accepting beyond `backpressure` connections (default: backlog).
                "--backpressure", str(options.max_connections)]
    if name == "nginx":
        template = (ROOT / "bench" / "peers" / "nginx.conf").read_text()
        for key, value in (("@DIR@", str(workdir)), ("@PORT@", str(port)),
                           ("@NOFILE@", str(options.nofile)),
                           ("@CONNECTIONS@", str(max(1024, options.nofile - 100)))):
            template = template.replace(key, value)
        (workdir / "nginx.conf").write_text(template)
        conf = workdir / "nginx.conf"
        return [tool("nginx"), "-p", str(workdir), "-c", str(conf), "-e", "stderr"]
    raise KeyError(name)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _raise_nofile_in_child() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def tree_pids(root: int) -> list[int]:
    """root and all its descendants, from /proc (granian and nginx run worker children)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children[ppid].append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def rss_kib(root: int) -> int:
    """Resident memory of the whole process tree, in KiB (VmRSS from /proc/PID/status)."""
    total = 0
    for pid in tree_pids(root):
        try:
            for line in Path("/proc", str(pid), "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total


def cpu_seconds(root: int) -> float:
    """User + system CPU time used so far by the live process tree."""
    ticks = 0
    for pid in tree_pids(root):
        try:
            fields = Path("/proc", str(pid), "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


class StartError(Exception):
    pass


class Running:
    """A started server: its port, its process tree, its log."""

    def __init__(self, name: str, argv: list[str], port: int, log_path: Path, workdir: Path,
                 cpu: int | None, cwd: Path | None = None) -> None:
        self.name = name
        self.port = port
        self.log_path = log_path
        self.workdir = workdir
        self.cpu = cpu
        if cpu is not None:
            argv = [tool("taskset"), "-c", str(cpu), *argv]
        self.argv = argv
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                argv, cwd=cwd or ROOT, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=env, process_group=0,
                preexec_fn=_raise_nofile_in_child,
            )
        self.pid = self.process.pid

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StartError(f"exited with status {self.process.returncode}\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise StartError(f"not listening after {timeout:.0f} s\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + line for line in text[-lines:])

    def stop(self) -> None:
        """SIGTERM to the server's own process group, SIGKILL if it lingers."""
        if self.process.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT_S)
            except ProcessLookupError:
                pass
        # Children that outlived the leader (a granian worker) still carry its process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start(name: str, options: Options, logs: Path, tag: str, cpu: int | None,
          cwd: Path | None = None) -> Running:
    """Start `name` on a free port and wait until it accepts connections.

    ``cwd``: run it from another checkout (its own tpd2py and bench/ come first on sys.path)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    os.chmod(workdir, 0o755)
    port = free_port()
    argv = command(name, port, options, workdir)
    running = Running(name, argv, port, logs / f"{tag}-{name}.log", workdir, cpu, cwd)
    try:
        running.wait_ready()
    except StartError:
        running.stop()
        raise
    return running
