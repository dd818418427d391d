"""Reporting: the one summary table, the raw results (JSON and CSV), a bar chart per scenario.

The table is Markdown so a run's output can be pasted into bench/RESULTS.md as it is. Ratios are
each server's requests/s divided by tpd2py's in the same scenario, because absolute figures depend
on the machine and the ratios are what carries from one machine to another.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

COLUMNS = ("scenario", "server", "req/s", "vs tpd2py", "server CPU", "CPU µs/req", "p50 ms",
           "p99 ms", "errors", "RSS MiB", "notes")


def _number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def millis(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def notes(row: dict) -> str:
    parts = []
    if row.get("scenario") == "c10k" and "idle_held" in row:
        parts.append(f"held {row['idle_held']:,}/{row['idle_requested']:,} idle")
        if row.get("idle_open_end") is not None:
            parts.append(f"open at end {row['idle_open_end']:,}, of which "
                         f"{row['idle_answered_end']:,} answered a new request in "
                         f"{row['idle_probe_s']:.1f} s")
        if row.get("bytes_per_idle") is not None:
            parts.append(f"{row['bytes_per_idle'] / 1024:.1f} KiB per idle conn")
        if row.get("idle_ratio") is not None:
            parts.append(f"{row['idle_ratio']:.2f}× its rate without idle conns")
        cost, cost_before = row.get("cpu_us_per_request"), row.get("cpu_us_per_request_no_idle")
        if cost and cost_before:
            parts.append(f"{cost / cost_before:.2f}× its CPU per request without")
    if row.get("rps_runs"):
        runs = row["rps_runs"]
        rounds = f" in {row['rounds']} rounds" if row.get("rounds") else ""
        parts.append(f"median of {len(runs)}{rounds}, {runs[0]:,}–{runs[-1]:,} req/s")
    if row.get("error_detail"):
        parts.append("errors: " + ", ".join(f"{k} {v}" for k, v in row["error_detail"].items()))
    if row.get("note"):
        parts.append(row["note"].splitlines()[0])
    return "; ".join(parts)


def table(rows: list[dict]) -> str:
    reference = {row["scenario"]: row.get("rps") for row in rows
                 if row["server"] == "tpd2py" and row["status"] == "ok"}
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        ok = row["status"] == "ok"
        base = reference.get(row["scenario"])
        ratio = f"{row['rps'] / base:.2f}×" if ok and base else "—"
        cpu = f"{row['server_cpu'] * 100:.0f} %" if ok and "server_cpu" in row else "—"
        rss = _number(row["rss_kib"] / 1024, 1) if row.get("rss_kib") else "—"
        status = "" if ok else f"**{row['status'].upper()}** "
        cells = (row["scenario"], row["server"], _number(row.get("rps")) if ok else "—", ratio,
                 cpu, _number(row.get("cpu_us_per_request"), 1), millis(row.get("p50_ms")),
                 millis(row.get("p99_ms")), _number(row.get("errors")), rss,
                 status + notes(row))
        lines.append("| " + " | ".join(str(cell).replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines)


def write_raw(out: Path, meta: dict, rows: list[dict]) -> list[Path]:
    json_path = out / "results.json"
    json_path.write_text(json.dumps({**meta, "results": rows}, indent=2, default=str) + "\n")
    fields: list[str] = []
    for row in rows:
        fields.extend(key for key in row if key not in fields)
    csv_path = out / "results.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: (json.dumps(value) if isinstance(value, dict) else value)
                             for key, value in row.items()})
    return [json_path, csv_path]


def charts(out: Path, rows: list[dict], titles: dict[str, str]) -> list[Path] | str:
    """One PNG per scenario point; a string saying why when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (`.venv/bin/pip install -e '.[bench]'`): no charts"
    written = []
    points = list(dict.fromkeys(row["scenario"] for row in rows))
    for point in points:
        ok = [row for row in rows if row["scenario"] == point and row["status"] == "ok"]
        if not ok:
            continue
        panels = [("requests/s", [row["rps"] for row in ok])]
        if point == "c10k" and all(row.get("bytes_per_idle") is not None for row in ok):
            panels.append(("KiB of RSS per idle connection",
                           [row["bytes_per_idle"] / 1024 for row in ok]))
        figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4), squeeze=False)
        names = [row["server"] for row in ok]
        colors = ["#c0392b" if name == "tpd2py" else "#7f8c8d" for name in names]
        for axis, (label, values) in zip(axes[0], panels, strict=True):
            bars = axis.bar(names, values, color=colors)
            axis.bar_label(bars, labels=[f"{value:,.0f}" if value >= 100 else f"{value:.1f}"
                                         for value in values], fontsize=8)
            axis.set_ylabel(label)
            axis.tick_params(axis="x", labelrotation=20)
        figure.suptitle(titles.get(point, point), fontsize=10)
        figure.tight_layout()
        path = out / f"{point}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written
