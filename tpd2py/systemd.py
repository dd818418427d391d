"""systemd integration: socket activation (``LISTEN_FDS``) and ``sd_notify``, without libsystemd.

Rules: both are a few lines of protocol (sd_listen_fds(3), sd_notify(3)), so they are written
here rather than pulled in as a dependency; outside systemd (no variables set) every function is
a cheap no-op. Nothing here touches the hub or switches.

How it works:
- ``listen_fds()`` takes the sockets systemd passed when ``LISTEN_PID`` is this process: fds 3,
  4, ... ``LISTEN_FDS`` of them, wrapped as ``socket.socket`` objects (the kernel tells their
  family and type). The variables are removed, so children (workers) do not take them again.
- ``watchdog_interval()``: with ``WATCHDOG_USEC`` set (``WatchdogSec=`` in the unit) for this
  process, how often to send ``WATCHDOG=1``: half the timeout, as sd_watchdog_enabled(3) advises.
- ``notify("READY=1")`` sends one datagram to ``NOTIFY_SOCKET`` (a path, or ``@name`` in the
  abstract namespace). The variable is kept: the master notifies again on reload and stop.
"""

from __future__ import annotations

import os
import socket
import time

__all__ = ["listen_fds", "notify", "notify_reloading", "watchdog_interval"]

LISTEN_FDS_START = 3


def listen_fds(unset: bool = True) -> list[socket.socket]:
    """The listening sockets systemd passed to this process ([] when none)."""
    pid = os.environ.get("LISTEN_PID")
    count = os.environ.get("LISTEN_FDS")
    if unset:
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
    if not pid or not count or not pid.isdigit() or int(pid) != os.getpid():
        return []
    if not count.isdigit():
        raise ValueError(f"LISTEN_FDS is not a number: {count!r}")
    socks = []
    for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + int(count)):
        os.set_inheritable(fd, True)  # the workers are forked: they must see it
        socks.append(socket.socket(fileno=fd))
    return socks


def notify(state: str) -> bool:
    """Tell systemd ``state`` (``READY=1``, ``STOPPING=1``, ...); False when not under systemd
    (no ``NOTIFY_SOCKET``) or when the message could not be sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("ascii"))
    except OSError:
        return False
    return True


def notify_reloading() -> bool:
    """``RELOADING=1`` with the ``MONOTONIC_USEC`` that ``Type=notify-reload`` wants."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings systemd asked for, or None."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6
