"""Helpers for the PostgreSQL tests: one throwaway cluster per test session, code run in a hub.

- ``shared_cluster()`` starts ``bench.pgcluster.Cluster`` once (initdb, pg_ctl, a unix socket
  in a temporary directory, as an unprivileged user) and stops it at exit; it skips the test,
  saying why, when PostgreSQL or psycopg is not installed.
- ``in_hub(fn)`` runs ``fn()`` in a greenlet of a fresh hub in a fresh thread and returns its
  result (or raises its error): for the pool's API without an HTTP server in between.
- ``blocking(conninfo)`` a plain blocking psycopg connection for the test thread itself (to hold
  an advisory lock a handler then waits on: a query that runs until the test lets it finish,
  with no sleep anywhere).
Rules: every wait has a timeout; nothing sleeps to wait for an event.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from typing import Any

import pytest
from conftest import REPO, WAIT

from tpd2py import get_hub

try:
    import psycopg
except ImportError:  # pragma: no cover - the test extra installs it
    psycopg = None  # type: ignore[assignment]

_cluster: Any = None
_failure: str | None = None


def shared_cluster() -> Any:
    """The session's PostgreSQL cluster (started on first use)."""
    global _cluster, _failure
    if psycopg is None:
        pytest.skip("psycopg is not installed (pip install -e '.[test]')")
    if _failure is not None:
        pytest.skip(_failure)
    if _cluster is None:
        import sys

        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        from bench.pgcluster import Cluster, find_bindir

        if find_bindir() is None:
            _failure = "PostgreSQL is not installed (.ci/run installs the postgresql package)"
            pytest.skip(_failure)
        _cluster = Cluster()
        atexit.register(_cluster.stop)
    return _cluster


def new_cluster() -> Any:
    """A cluster of the test's own (one it may restart or stop); stop() it afterwards."""
    shared_cluster()  # the same skips
    from bench.pgcluster import Cluster

    return Cluster()


def in_hub(fn: Callable[[], Any], timeout: float = WAIT * 3) -> Any:
    """Run ``fn()`` in a greenlet of a fresh hub in a fresh thread; its result or its error."""
    outcome: list[tuple[bool, Any]] = []

    def thread() -> None:
        hub = get_hub()

        def main() -> None:
            try:
                outcome.append((True, fn()))
            except BaseException as e:  # noqa: BLE001 - handed back to the test thread
                outcome.append((False, e))
            finally:
                hub.stop()

        hub.spawn(main)
        timer = hub.call_later(timeout, hub.stop)
        try:
            hub.run()
        finally:
            timer.cancel()
            hub.close()

    t = threading.Thread(target=thread, daemon=True)
    t.start()
    t.join(timeout + WAIT)
    assert not t.is_alive(), "the hub thread did not stop"
    assert outcome, f"fn did not finish within {timeout}s"
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def blocking(conninfo: str) -> Any:
    """A blocking psycopg connection (autocommit) for the test thread."""
    return psycopg.connect(conninfo, autocommit=True)


_techempower: str | None = None


def techempower_dsn() -> str:
    """The TechEmpower database (bench/techempower/schema.py) in the shared cluster."""
    global _techempower
    if _techempower is None:
        from bench.techempower.schema import load

        _techempower = load(shared_cluster())
    return _techempower
