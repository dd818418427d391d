"""``--reload`` for development: the server runs in a child process, restarted when a Python
source file under the current directory changes.

Rules:
- The parent only watches and restarts; it never imports the app (an app that fails to import
  is reported by the child, and the parent waits for the next change to try again).
- Watching uses the ``watchfiles`` package when it is installed (``tpd2py[reload]``: inotify,
  no polling); else it polls the ``.py`` files' modification times every ``POLL_INTERVAL``
  seconds, skipping hidden directories, ``__pycache__`` and virtual environments.
- A restart is a graceful stop of the child (SIGTERM, then SIGKILL after ``STOP_WAIT``) and a
  new child. Ctrl-C reaches the child from the terminal too; the parent waits for it and exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["run_with_reload"]

POLL_INTERVAL = 0.5
STOP_WAIT = 5.0
_SKIP = {"__pycache__", "node_modules", "venv", ".venv", "env", "build", "dist"}


def _sources(root: Path) -> dict[str, int]:
    found: dict[str, int] = {}
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP and not d.startswith(".")]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                with contextlib.suppress(OSError):  # removed meanwhile
                    found[path] = os.stat(path).st_mtime_ns
    return found


def _changes_polling(root: Path) -> Iterator[str]:
    before = _sources(root)
    while True:
        time.sleep(POLL_INTERVAL)
        now = _sources(root)
        if now != before:
            changed = sorted(set(now.items()) ^ set(before.items()))
            before = now
            yield changed[0][0]


def _changes(root: Path) -> Iterator[str]:
    try:
        import watchfiles
    except ImportError:
        yield from _changes_polling(root)
        return
    for batch in watchfiles.watch(root, watch_filter=watchfiles.PythonFilter()):
        yield sorted(path for _, path in batch)[0]


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run_with_reload(argv: list[str]) -> int:
    """Serve ``tpd2py ARGV`` in a child process, restarting it on every source change."""
    root = Path.cwd()
    how = "watchfiles" if _has_watchfiles() else f"polling every {POLL_INTERVAL}s"
    print(f"tpd2py: --reload: watching {root} ({how}); development only", file=sys.stderr,
          flush=True)
    command = [sys.executable, "-m", "tpd2py", *argv]
    child = subprocess.Popen(command)
    try:
        for path in _changes(root):
            print(f"tpd2py: {os.path.relpath(path, root)} changed: restarting", file=sys.stderr,
                  flush=True)
            _stop(child)
            child = subprocess.Popen(command)
    except KeyboardInterrupt:
        pass
    finally:
        _stop(child)
    return 0


def _has_watchfiles() -> bool:
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        return False
    return True
