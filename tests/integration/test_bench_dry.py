"""The benchmark harness runs end to end without wrk, ab or nginx, so its code cannot rot.

`bench/run.py --dry` swaps wrk and ab for bench/pyload.py and skips pinning and kernel tuning; these
tests run it against tpd2py only, for about a second a point, and check that it produced real rows.
The figures themselves are not checked: a dry run measures the Python load generator.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
RUN = REPO / "bench" / "run.py"


def run_dry(out: Path, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(RUN), "--dry", "--servers", "tpd2py", "--out", str(out), *args],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


def test_dry_keepalive_point_produces_a_row_with_requests(tmp_path: Path) -> None:
    results = run_dry(tmp_path, "--scenarios", "keepalive", "--duration", "1")
    [row] = results["results"]
    assert (row["scenario"], row["server"], row["status"]) == ("keepalive", "tpd2py", "ok")
    assert row["requests"] > 0
    assert row["rps"] > 0
    assert row["rss_kib"] > 0
    assert (tmp_path / "results.csv").read_text().startswith("scenario,server,")


def test_dry_run_of_every_scenario_fills_every_row(tmp_path: Path) -> None:
    results = run_dry(tmp_path, "--duration", "0.5", "--idle", "50")
    rows = {row["scenario"]: row for row in results["results"]}
    assert set(rows) == {"keepalive", "pipeline", "c10k", "fremlin-c1", "fremlin-c10", "latency"}
    for row in rows.values():
        assert row["status"] == "ok", row
        assert row["requests"] > 0, row
    c10k = rows["c10k"]
    assert c10k["idle_held"] == 50
    assert c10k["idle_open_end"] == 50
    assert c10k["idle_answered_end"] == 50
    assert c10k["rss_idle_kib"] > 0
    assert results["machine"]["cores"] >= 1


def test_rounds_restart_the_server_and_keep_the_median_round(tmp_path: Path) -> None:
    results = run_dry(tmp_path, "--scenarios", "keepalive", "--duration", "0.5", "--rounds", "3")
    [row] = results["results"]
    assert row["status"] == "ok" and row["rounds"] == 3
    runs = row["rps_runs"]
    assert len(runs) == 3 and runs == sorted(runs)
    assert round(row["rps"]) == runs[1]  # the median round's own rate
    assert results["settings"]["rounds"] == 3
