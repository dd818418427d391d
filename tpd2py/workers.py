"""Pre-fork workers: a small master binds the listeners, forks N full tpd2py servers and keeps
them alive; SIGHUP reloads them without dropping a request, SIGTERM/SIGINT stop them gracefully.

Rules:
- The master never imports the application and never makes a hub: every worker forks from a
  master that holds only the listening sockets, then imports the app itself. So a reload serves
  the new code, and a bad new version fails in a worker, never in the master.
- One shared listening socket per address, inherited by every worker (the default), or with
  ``reuse_port`` one SO_REUSEPORT socket per worker slot, for TCP. Either way the master keeps
  every socket open: a worker that exits (reload, crash) never takes a queued connection with it.
  docs/deploy.md gives the measurement behind the default.
- A worker whose master is gone (even by SIGKILL) stops gracefully: it watches a pipe whose
  only write end the master holds.
- Crash-only: a worker that dies after it was ready is replaced at once; one that dies before it
  was ready is retried with exponential back-off (a log line each time says how often and when
  next). If no worker has ever been ready (the app does not import), the master stops with
  status 3 instead of looping.
- Zero-downtime reload: the new generation is forked and must report ready (app imported,
  listeners in its hub) before the old one is told to retire. A retiring worker stops accepting,
  finishes in-flight requests, answers each keep-alive connection's next request with
  ``Connection: close`` (the server's draining flag) and exits within ``grace``; the master kills
  it after ``grace`` + KILL_MARGIN. A new worker that dies before every new worker is ready
  aborts the reload: the old generation keeps serving and the log says why.

How it works: workers tell the master "ready" and "recycle me" (max-requests) as 8-byte messages on
one pipe (writes under PIPE_BUF are atomic). The master sleeps in ``select`` on that pipe and on
its signal wake-up pipe, with a timeout only when a back-off or a kill deadline is pending, and
reaps children with ``waitpid(WNOHANG)`` after every wake-up. Signals to a worker: SIGTERM =
graceful stop, SIGUSR1 = retire (keep idle keep-alive connections until their next request),
SIGKILL = force. Workers ignore SIGINT and SIGHUP: a terminal's Ctrl-C or hang-up reaches the
whole process group, and the master decides (a second SIGINT kills the workers).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from . import systemd
from .app import App
from .context import Config
from .hub import get_hub
from .server import Server

__all__ = ["Master", "WorkerOptions", "bind_tcp", "bind_unix", "cpu_count", "drop_privileges"]

log = logging.getLogger("tpd2py.workers")

# Exit status of a worker whose app failed to load (and of a master that gave up at start-up).
BOOT_ERROR = 3
# Back-off for a worker slot whose workers keep dying before they are ready: 0.1 s, doubled
# each time, at most 10 s (a broken deploy must not fork a thousand processes a second, a fixed
# one must come back soon).
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 10.0
# What a worker gets beyond ``grace`` to exit before the master sends SIGKILL.
KILL_MARGIN = 5.0

_MSG = struct.Struct("=ii")  # (pid, what)
READY, RECYCLE = 1, 2


def cpu_count() -> int:
    """The CPUs this process may run on (``--workers auto``)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def bind_tcp(host: str, port: int, backlog: int = 1024, reuse_port: bool = False
             ) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    with contextlib.suppress(AttributeError, OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 10)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock


def bind_unix(path: str, backlog: int = 1024) -> socket.socket:
    """Bind a unix socket (its mode follows the umask: ``--umask``)."""
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(backlog)
    return sock


def drop_privileges(user: str | None, group: str | None, chown: list[str] | None = None) -> None:
    """Become ``user``/``group`` (names or numbers) after binding; ``chown`` (unix socket paths)
    are handed to them first so the new identity can remove them. Raises SystemExit with a
    one-line reason when it cannot."""
    if user is None and group is None:
        return
    import grp
    import pwd
    try:
        pw = None
        if user is not None:
            pw = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        if group is not None:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        else:
            gid = pw.pw_gid if pw is not None else os.getgid()
        uid = pw.pw_uid if pw is not None else os.getuid()
    except KeyError as e:
        raise SystemExit(f"tpd2py: no such user or group: {e.args[0]}") from None
    try:
        for path in chown or ():
            os.chown(path, uid, gid)
        if pw is not None:
            os.initgroups(pw.pw_name, gid)
        else:
            os.setgroups([gid])
        os.setgid(gid)
        os.setuid(uid)
    except PermissionError as e:
        raise SystemExit(f"tpd2py: cannot become user {user} group {group}: {e}") from None
    log.info("running as uid %d gid %d", uid, gid)


@dataclass
class WorkerOptions:
    """What every worker needs. ``make_app`` runs in the worker, after the fork."""

    make_app: Callable[[], App]
    workers: int = 1
    config: Config = field(default_factory=Config)
    access_log: IO[str] | None = None
    # Retire a worker after this many requests (0: never), plus up to ``jitter`` more, chosen
    # per worker, so that workers started together do not all retire together.
    max_requests: int = 0
    max_requests_jitter: int = 0
    # Called with each worker's Server before it adopts the listeners (deploy._setup: the PROXY
    # protocol preface, the trusted proxy's client in the access log).
    setup: Callable[[Server], None] | None = None
    # stats.Stats: each worker publishes its counters in a row of its board.
    stats: Any = None
    # Made in each worker after the fork (TLS settings need the worker's hub): the listeners'
    # transport (tls.TLSSettings.wrap), or None for plain sockets.
    make_transport: Callable[[], Any] | None = None


class _Worker:
    __slots__ = ("pid", "slot", "generation", "ready", "retiring", "recycling", "predecessor",
                 "kill_at", "row")

    def __init__(self, pid: int, slot: int, generation: int, row: int) -> None:
        self.row = row  # its row on the stats board (-1: none)
        self.pid = pid
        self.slot = slot
        self.generation = generation
        self.ready = False
        self.retiring = False
        # Served its max requests: it serves on until its successor (same slot) is ready.
        self.recycling = False
        self.predecessor = 0  # the recycling worker this one replaces (0: none)
        self.kill_at = 0.0  # monotonic time of the SIGKILL once told to stop (0.0: not told)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class Master:
    """Forks and supervises the workers; ``run()`` returns the exit status.

    ``listeners`` are shared by every worker; ``slot_listeners`` (SO_REUSEPORT), if given, has
    one list per worker slot and is served in addition.
    """

    def __init__(self, options: WorkerOptions, listeners: list[socket.socket],
                 slot_listeners: list[list[socket.socket]] | None = None,
                 unlink: list[str] | None = None) -> None:
        self.options = options
        self.count = max(1, options.workers)
        self.listeners = listeners
        self.slot_listeners = slot_listeners or []
        self.unlink = unlink or []
        self.workers: dict[int, _Worker] = {}
        self.generation = 1  # the generation serving
        self.target = 0  # the generation a reload is starting (0: none)
        self._generations = 1  # the last generation number given out (aborted ones included)
        self.stopping = False
        self.ever_ready = False  # a worker has been ready: the app can start
        self.started = False  # the first N workers have all been ready
        self.status = 0
        self.failures = [0] * self.count  # consecutive boot failures per slot
        self.respawn_at: dict[int, float] = {}  # slot -> monotonic time of the next try
        self._signals: list[int] = []
        self._buffer = b""
        self._watchdog = systemd.watchdog_interval()
        self._watchdog_at = 0.0
        board = options.stats.board if options.stats is not None else None
        self._free_rows = list(range(board.rows)) if board is not None else []

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> int:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._status_r, self._status_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self._status_r, False)
        # Only the master keeps the write end: a worker sees EOF on the read end when the
        # master is gone (even by SIGKILL) and stops, instead of serving on as an orphan.
        self._life_r, self._life_w = os.pipe2(os.O_CLOEXEC)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, self._on_signal)
        log.info("master %d: starting %d workers", os.getpid(), self.count)
        for slot in range(self.count):
            self._spawn(slot, self.generation)
        try:
            while self.workers or not self.stopping:
                timeout = self._next_timeout()
                with contextlib.suppress(InterruptedError):
                    select.select([self._wake_r, self._status_r], [], [], timeout)
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 4096):
                        pass
                self._handle_signals()
                self._read_status()
                self._reap()
                self._tick()
        finally:
            for sock in self.listeners + [s for ls in self.slot_listeners for s in ls]:
                sock.close()
            for path in self.unlink:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            signal.set_wakeup_fd(-1)
            for fd in (self._wake_r, self._wake_w, self._status_r, self._status_w,
                       self._life_r, self._life_w):
                os.close(fd)
        log.info("master %d: stopped", os.getpid())
        return self.status

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals.append(signum)

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if signum == signal.SIGHUP:
                self.reload()
            elif signum == signal.SIGTERM:
                self.stop()
            elif signum == signal.SIGINT:
                self.stop(force=self.stopping)

    def _next_timeout(self) -> float | None:
        times = list(self.respawn_at.values())
        if self._watchdog:
            times.append(self._watchdog_at)
        times += [w.kill_at for w in self.workers.values() if w.kill_at]
        if not times:
            return None
        return max(0.0, min(times) - time.monotonic())

    def _tick(self) -> None:
        now = time.monotonic()
        if self._watchdog and now >= self._watchdog_at:
            # The master's loop is alive and supervising; a dead worker it replaces itself.
            systemd.notify("WATCHDOG=1")
            self._watchdog_at = now + self._watchdog
        for slot, at in list(self.respawn_at.items()):
            if at <= now:
                del self.respawn_at[slot]
                if not self.stopping:
                    self._spawn(slot, self.generation)
        for w in self.workers.values():
            if w.kill_at and w.kill_at <= now:
                log.warning("worker %d did not finish within the grace period: killing it", w.pid)
                self._kill(w.pid, signal.SIGKILL)
                w.kill_at = 0.0

    # -- workers ---------------------------------------------------------------------------------

    def _spawn(self, slot: int, generation: int) -> None:
        row = self._free_rows.pop(0) if self._free_rows else -1
        try:
            pid = os.fork()
        except OSError:
            if row >= 0:
                self._free_rows.insert(0, row)  # the row stays free for the next try
            raise
        if pid == 0:  # the worker
            status = 1
            try:
                status = self._worker(slot, row)
            except BaseException:
                log.exception("worker %d failed", os.getpid())
            finally:
                with contextlib.suppress(BaseException):
                    logging.shutdown()
                os._exit(status)
        w = self.workers[pid] = _Worker(pid, slot, generation, row)
        if row < 0 and self.options.stats is not None:
            # Every row is held (three generations alive: reloads faster than old workers
            # drain): said, not silent; the next worker after one exits gets a row again.
            log.warning("stats: no free row on the board for worker %d (%d rows in use): its "
                        "counts are missing from the sums until it exits", pid,
                        self.options.stats.board.rows)
        for x in self.workers.values():
            if x.slot == slot and x.recycling and not x.retiring:
                w.predecessor = x.pid
        log.debug("worker %d forked (slot %d, generation %d)", pid, slot, generation)

    def _kill(self, pid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    def _retire(self, w: _Worker) -> None:
        if not w.retiring:
            w.retiring = True
            w.kill_at = time.monotonic() + self.options.config.grace + KILL_MARGIN
            self._kill(w.pid, signal.SIGUSR1)

    def _read_status(self) -> None:
        try:
            data = os.read(self._status_r, 65536)
        except BlockingIOError:
            return
        data = self._buffer + data
        cut = len(data) - len(data) % _MSG.size
        self._buffer = data[cut:]
        for pid, what in _MSG.iter_unpack(data[:cut]):
            w = self.workers.get(pid)
            if w is None:
                continue
            if what == READY:
                self._on_ready(w)
            elif what == RECYCLE and not w.retiring and not w.recycling:
                log.info("worker %d served its max requests: replacing it", pid)
                w.recycling = True
                if not self.stopping:
                    self._spawn(w.slot, self.generation)

    def _on_ready(self, w: _Worker) -> None:
        w.ready = True
        log.info("worker %d ready (slot %d, generation %d)", w.pid, w.slot, w.generation)
        prev = self.workers.get(w.predecessor)
        if prev is not None:
            self._retire(prev)
        self.failures[w.slot] = 0
        self.ever_ready = True
        if self.stopping:
            self._kill(w.pid, signal.SIGTERM)
            return
        if self.target and w.generation == self.target:
            new = [x for x in self.workers.values()
                   if x.generation == self.target and not x.retiring]
            if len(new) == self.count and all(x.ready for x in new):
                old = [x for x in self.workers.values()
                       if x.generation != self.target and not x.retiring]
                for x in old:
                    self._retire(x)
                self.respawn_at.clear()
                self.generation = self.target
                self.target = 0
                log.warning("reload: generation %d serving (%d workers); %d old workers "
                            "finishing", self.generation, len(new), len(old))
                systemd.notify("READY=1")
        elif not self.started and sum(x.ready for x in self.workers.values()) == self.count:
            self.started = True
            systemd.notify("READY=1")
            log.info("master %d: serving", os.getpid())

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = self.workers.pop(pid, None)
            if w is not None:
                if w.row >= 0:
                    self.options.stats.board.retire(w.row)  # its counts stay in the sums
                    self._free_rows.append(w.row)
                self._on_exit(w, os.waitstatus_to_exitcode(status))

    def _on_exit(self, w: _Worker, code: int) -> None:
        how = _describe(code)
        if self.stopping or w.retiring:
            log.info("worker %d stopped (%s)", w.pid, how)
            return
        if w.recycling:
            log.warning("worker %d %s while its successor started", w.pid, how)
            return
        if self.target and w.generation == self.target:
            # A reload's new worker died before the reload completed: keep the old generation.
            log.error("reload failed: new worker %d %s before it was ready (see its error "
                      "above); generation %d keeps serving", w.pid, how, self.generation)
            for x in self.workers.values():
                if x.generation == self.target:
                    self._kill(x.pid, signal.SIGTERM)
                    x.retiring = True
                    x.kill_at = time.monotonic() + self.options.config.grace + KILL_MARGIN
            self.target = 0
            systemd.notify("READY=1")
            return
        if not w.ready:
            if not self.ever_ready:
                log.error("worker %d %s before it was ready: the app does not start; "
                          "stopping", w.pid, how)
                self.status = BOOT_ERROR
                self.stop()
                return
            self.failures[w.slot] += 1
            n = self.failures[w.slot]
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (n - 1))
            log.error("worker %d %s before it was ready (%d times in a row in slot %d); "
                      "next try in %.1f s", w.pid, how, n, w.slot, delay)
            self.respawn_at[w.slot] = time.monotonic() + delay
            return
        log.error("worker %d %s: replacing it", w.pid, how)
        self._spawn(w.slot, self.generation)

    # -- control ---------------------------------------------------------------------------------

    def reload(self) -> None:
        """Fork a new generation; the old one retires once all of it is ready."""
        if self.stopping:
            return
        if self.target:
            log.warning("reload: one is already in progress; SIGHUP ignored")
            return
        systemd.notify_reloading()
        self._generations += 1
        self.target = self._generations
        log.warning("reload: starting %d workers of generation %d", self.count, self.target)
        for slot in range(self.count):
            self._spawn(slot, self.target)

    def stop(self, force: bool = False) -> None:
        """Graceful stop of every worker (SIGTERM); ``force``: SIGKILL them now."""
        if force:
            log.warning("second SIGINT: killing %d workers", len(self.workers))
            for w in self.workers.values():
                self._kill(w.pid, signal.SIGKILL)
            return
        if self.stopping:
            return
        self.stopping = True
        self.respawn_at.clear()
        systemd.notify("STOPPING=1")
        log.info("stopping: %d workers finish their requests (grace %.1f s)",
                 len(self.workers), self.options.config.grace)
        deadline = time.monotonic() + self.options.config.grace + KILL_MARGIN
        for w in self.workers.values():
            self._kill(w.pid, signal.SIGTERM)
            w.kill_at = deadline

    # -- inside a worker -------------------------------------------------------------------------

    def _worker(self, slot: int, row: int) -> int:
        """The worker's life after the fork: import the app, serve, return the exit status."""
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        os.close(self._wake_r)
        os.close(self._wake_w)
        os.close(self._status_r)
        os.close(self._life_w)
        pid = os.getpid()
        opts = self.options
        try:
            app = opts.make_app()
            transport = opts.make_transport() if opts.make_transport is not None else None
        except SystemExit as e:
            print(e.code if isinstance(e.code, str) else f"tpd2py: exit {e.code}",
                  file=sys.stderr, flush=True)
            return BOOT_ERROR
        except BaseException:
            log.exception("worker %d: the app failed to load", pid)
            return BOOT_ERROR
        server = Server(app, opts.config, get_hub(), access_log=opts.access_log)
        if opts.setup is not None:
            opts.setup(server)
        if opts.stats is not None and row >= 0:
            opts.stats.attach(server, row)
        for sock in self.listeners:
            server.adopt(sock, transport)
        if self.slot_listeners:
            for sock in self.slot_listeners[slot]:
                server.adopt(sock, transport)
        status_w = self._status_w
        hub = server.hub
        limit = 0
        if opts.max_requests > 0:
            limit = opts.max_requests + random.randint(0, max(0, opts.max_requests_jitter))

        def retire() -> None:
            if not server.draining:
                log.info("worker %d: retiring (%d connections)", pid, len(server.conns))
                server.shutdown(keep_idle=True)

        def stop() -> None:
            if not server.draining:
                log.info("worker %d: stopping (%d connections)", pid, len(server.conns))
                server.shutdown()

        def check_requests() -> None:
            if server.draining:
                return
            if server.requests >= limit:
                # The master forks a successor and retires this worker once it is ready.
                with contextlib.suppress(BrokenPipeError):  # no master: master_gone stops us
                    os.write(status_w, _MSG.pack(pid, RECYCLE))
                return
            hub.call_later(1.0, check_requests)

        def master_gone(rec: Any) -> None:
            hub.unregister(rec)
            log.warning("worker %d: the master is gone; stopping", pid)
            stop()

        hub.register(self._life_r, master_gone)
        signal.set_wakeup_fd(hub.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, lambda signum, frame: hub.call_soon(stop))
        signal.signal(signal.SIGUSR1, lambda signum, frame: hub.call_soon(retire))
        if limit:
            hub.call_later(1.0, check_requests)
        try:
            os.write(status_w, _MSG.pack(pid, READY))
        except BrokenPipeError:
            log.warning("worker %d: the master is gone; stopping", pid)
            return 0
        server.serve_forever(install_signals=False)
        if opts.stats is not None and row >= 0:
            opts.stats.publish()  # the last counts, for the master to keep in the sums
        if opts.access_log is not None:
            opts.access_log.flush()
        return 0
