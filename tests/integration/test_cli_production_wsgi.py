"""The production options (issue 13) with a WSGI app (issue 11): regressions of the merge, where
a WSGI app with --proxy-headers crashed its workers (the proxy wrapper needs App.wrap) and
--stats-path gave a traceback instead of a one-line refusal."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def test_a_wsgi_app_behind_a_trusted_proxy(cli_server):
    srv = cli_server("tests.wsgi_apps:hello", "--proxy-headers")
    r = srv.get("/environ", {"X-Forwarded-Proto": "https"})
    assert r.status == 200
    assert json.loads(r.body)["wsgi.url_scheme"] == "https"  # loopback is trusted by default


def test_stats_for_a_wsgi_app_is_refused_in_one_line():
    done = subprocess.run([sys.executable, "-m", "tpd2py", "tests.wsgi_apps:hello", "--port",
                           "0", "--stats-path", "/stats"], cwd=REPO, capture_output=True,
                          timeout=30)
    err = done.stderr.decode().strip().splitlines()
    assert done.returncode != 0
    assert err and err[-1] == "tpd2py: --stats-path and --health-path are for tpd2py Apps"
    assert "Traceback" not in done.stderr.decode()
