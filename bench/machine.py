"""The machine under the bench: what it is, which tools it has, and the kernel knobs a run needs.

Rules: never fail silently. A missing tool is reported with the command that installs it, and the
caller skips what needs it. Kernel settings are changed only when we are root, only to widen them,
and are put back by the function `tune_network` returns.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Debian/Ubuntu package for each external tool the bench drives.
PACKAGES = {
    "wrk": "wrk",
    "ab": "apache2-utils",
    "nginx": "nginx",
    "taskset": "util-linux",
}

# Non-keep-alive runs open tens of thousands of connections in seconds; the default ephemeral range
# (32768-60999) and TIME_WAIT would run out without these.
WIDE_PORT_RANGE = (1024, 65000)
PYTHON_PACKAGES = ("greenlet", "gevent", "uvicorn", "httptools", "uvloop", "granian", "matplotlib")


def which(tool: str) -> str | None:
    """The tool's path, also looking in sbin (nginx lives there and is not on every user's PATH)."""
    found = shutil.which(tool)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        candidate = Path(folder) / tool
        if candidate.exists() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def tool(name: str) -> str:
    """The path to run `name` by: found on PATH or in sbin, else the bare name (fails loudly)."""
    return which(name) or name


def install_hint(tool: str) -> str:
    package = PACKAGES.get(tool, tool)
    return f"`{tool}` not found: install it with `sudo apt-get install -y {package}` (Debian)"


def raise_nofile() -> tuple[int, int]:
    """Raise this process's open-file soft limit to the hard limit; return (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def commit() -> str:
    """Short commit of HEAD, marked when the server's own files differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "tpd2py", "bench/hello.py"], cwd=ROOT,
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" (tpd2py/ has uncommitted changes)" if dirty else "")


def _tool_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


def describe(tools: dict[str, str | None]) -> dict:
    """Everything a reader needs to judge the numbers: hardware, kernel, versions, commit."""
    versions = {}
    for name in PYTHON_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    if tools.get("nginx"):
        versions["nginx"] = _tool_version([str(tools["nginx"]), "-v"]).split("/")[-1]
    if tools.get("wrk"):
        versions["wrk"] = _tool_version([str(tools["wrk"]), "-v"]).split(" [")[0]
    if tools.get("ab"):
        banner = _tool_version([str(tools["ab"]), "-V"])  # This is ApacheBench, Version 2.3 <$R..>
        versions["ab"] = banner.partition("Version ")[2].split(" ")[0] or banner
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "mem_gib": mem_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit(),
        "versions": versions,
        "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
    }


def core_ticks() -> dict[int, tuple[int, int, int]]:
    """Per core, clock ticks since boot from /proc/stat: (tasks, stolen, total).

    tasks is user + nice + system time of whatever ran there; stolen is time the hypervisor gave
    to other guests. Interrupt time is left out: loopback packet processing lands there.
    """
    ticks = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in values[:8])
            total = user + nice + system + idle + iowait + irq + softirq + steal
            ticks[int(name[3:])] = (user + nice + system, steal, total)
    return ticks


def set_niceness(niceness: int, say: Callable[[str], None]) -> Callable[[], None]:
    """Run this process and everything it starts at `niceness`; return what undoes the group part.

    With autogroup scheduling (the default on desktop kernels) niceness only ranks processes
    within one session's group, so the group's own niceness is set too (servers stay in our
    session for that reason). The group outlives us (it is the user's shell session), so the
    returned function puts its niceness back.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    except OSError as exc:
        say(f"warning: cannot set niceness {niceness} ({exc.strerror}); running at "
            f"{os.getpriority(os.PRIO_PROCESS, 0)}")
        return lambda: None
    say(f"running at niceness {niceness}: other processes on the two cores get less of them")
    autogroup = Path("/proc/self/autogroup")
    if _read_sysctl("kernel.sched_autogroup_enabled") != "1":
        return lambda: None
    try:
        before = autogroup.read_text().split()[-1]  # "/autogroup-4 nice 0"
        autogroup.write_text(str(niceness))
    except OSError as exc:
        say(f"warning: cannot set this session's autogroup niceness ({exc.strerror})")
        return lambda: None

    def restore() -> None:
        try:
            autogroup.write_text(before)
        except OSError as exc:
            say(f"warning: could not restore the session's autogroup niceness {before} "
                f"({exc.strerror})")

    return restore


def _read_sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return None


def _write_sysctl(name: str, value: str) -> bool:
    try:
        Path("/proc/sys", *name.split(".")).write_text(value)
    except OSError:
        return False
    return True


def tune_network(say: Callable[[str], None]) -> Callable[[], None]:
    """Make non-keep-alive runs possible; return the function that restores what was changed.

    tcp_tw_reuse=2 (the kernel default) already allows reuse on loopback, which is all we use, so
    only 0 is changed to 1.
    """
    changed: list[tuple[str, str]] = []
    reuse = _read_sysctl("net.ipv4.tcp_tw_reuse")
    if reuse == "0":
        if _write_sysctl("net.ipv4.tcp_tw_reuse", "1"):
            changed.append(("net.ipv4.tcp_tw_reuse", reuse))
            say("set net.ipv4.tcp_tw_reuse=1 for this run (was 0)")
        else:
            say("warning: net.ipv4.tcp_tw_reuse=0 and not root: non-keep-alive runs may fail "
                "with 'Cannot assign requested address'")
    ports = _read_sysctl("net.ipv4.ip_local_port_range")
    if ports:
        low, high = (int(part) for part in ports.split())
        if low > WIDE_PORT_RANGE[0] or high < WIDE_PORT_RANGE[1]:
            wide = f"{min(low, WIDE_PORT_RANGE[0])} {max(high, WIDE_PORT_RANGE[1])}"
            if _write_sysctl("net.ipv4.ip_local_port_range", wide):
                changed.append(("net.ipv4.ip_local_port_range", ports))
                say(f"set net.ipv4.ip_local_port_range={wide} for this run (was {ports})")
            else:
                say(f"warning: ephemeral port range is {ports} and not root to widen it: "
                    "long non-keep-alive runs may run out of ports")

    def restore() -> None:
        for name, value in reversed(changed):
            if _write_sysctl(name, value):
                say(f"restored {name}={value}")

    return restore
