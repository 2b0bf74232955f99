"""The figures of ``python -m labscope.sizing`` as a person reads them: one line per run, markdown tables."""

from __future__ import annotations

from typing import Any

LIVE_COLUMNS = (
    ("sites x nodes", lambda r: f"{r['sites']} x {r['nodes_per_site']:,}"),
    ("offered /s", lambda r: f"{r['offered_reports_per_s']:,.0f}"),
    ("load avg", lambda r: "-".join(f"{x:.0f}" for x in r.get("load_average", ()))),
    ("site /s (each)", lambda r: f"{r['site']['reports_per_s']:,.0f}"),
    ("site CPU %", lambda r: f"{r['site']['cpu_percent']:.1f}"),
    ("site RSS MB", lambda r: f"{r['site']['rss_peak_mb']:.0f}"),
    ("site KB/node", lambda r: f"{r['site']['rss_per_node_kb']:.0f}"),
    ("stream /s", lambda r: f"{r['stream']['published_per_s']:,.0f}"),
    ("site publish lag", lambda r: f"{r['site'].get('publish_lag_reports', 0):,}"),
    ("top /s", lambda r: f"{r['top']['reports_per_s']:,.0f}"),
    ("top lag", lambda r: f"{r['top']['lag_reports']:,}"),
    ("top CPU %", lambda r: f"{r['top']['cpu_percent']:.1f}"),
    ("top RSS MB", lambda r: f"{r['top']['rss_peak_mb']:.0f}"),
    ("top KB/node", lambda r: f"{r['top']['rss_per_node_kb']:.0f}"),
    ("NATS CPU %", lambda r: f"{r['nats'].get('cpu_percent', 0):.1f}" if r["nats"] else "-"),
    ("NATS RSS MB", lambda r: f"{r['nats'].get('rss_peak_mb', 0):.0f}" if r["nats"] else "-"),
    ("sim CPU %", lambda r: f"{r['simulator']['cpu_percent']:.1f}"),
)

BYTES_COLUMNS = (
    ("sites x nodes", lambda r: f"{r['sites']} x {r['nodes_per_site']:,}"),
    ("stream B/report", lambda r: f"{r['stream']['bytes_per_message']:.0f}"),
    ("stream MB/node-day", lambda r: mb(r["stream"]["bytes_per_node_day"])),
    ("NATS store MB/node-day", lambda r: mb(r["nats"].get("store_bytes_per_node_day", 0)) if r["nats"] else "-"),
    ("site store MB/node-day", lambda r: mb(r["site"]["store_bytes_per_node_day"])),
    ("top store MB/node-day", lambda r: mb(r["top"]["store_bytes_per_node_day"])),
    ("catch-up /s", lambda r: catchup_rate(r["catchup"]) if "catchup" in r else "-"),
    ("catch-up backlog", lambda r: f"{r['catchup']['backlog_reports']:,}" if "catchup" in r else "-"),
    ("catch-up top RSS MB", lambda r: f"{r['catchup']['rss_peak_mb']:.0f}" if "catchup" in r else "-"),
)


def catchup_rate(catchup: dict[str, Any]) -> str:
    """The top's rate while it had a backlog, and whether it caught up."""
    rate = f"{catchup['reports_per_s']:,.0f}"
    return rate if catchup.get("drained", True) else f"{rate} (not caught up: {catchup['left_reports'] or 0:,} left)"


def mb(value: float) -> str:
    """Bytes as MB (10^6) with two decimals."""
    return f"{value / 1e6:.2f}"


def table(runs: list[dict[str, Any]], columns: tuple[tuple[str, Any], ...]) -> list[str]:
    """One markdown table, a row per run."""
    lines = ["| " + " | ".join(name for name, _ in columns) + " |", "|" + "---:|" * len(columns)]
    lines += ["| " + " | ".join(cell(run) for _, cell in columns) + " |" for run in runs]
    return lines


def markdown(results: dict[str, Any]) -> str:
    """Every run as two tables (rates, CPU and memory; bytes and catch-up), with date, machine, command."""
    runs = results["runs"]
    lines = [
        f"Measured {results['date']} with `{results['command']}`",
        f"Machine: {results['machine']}",
        "",
        "Rates (reports/s), CPU (% of one core, mean per process), resident memory (peak per process; "
        "per node = (peak - baseline) / nodes it carries):",
        "",
        *table(runs, LIVE_COLUMNS),
        "",
        "Bytes (stored per report; per node-day = per report x reports a node makes a day at --rate) "
        "and the top's catch-up (its rate with a backlog in front of it):",
        "",
        *table(runs, BYTES_COLUMNS),
    ]
    return "\n".join(lines) + "\n"


def report_sizes(figures: dict[str, Any]) -> str:
    """One line summing up a run, for the progress output."""
    site, top, stream = figures["site"], figures["top"], figures["stream"]
    line = (
        f"   sites {site['reports_per_s']:,.0f}/s each at {site['cpu_percent']:.0f}% CPU, "
        f"{site['rss_peak_mb']:.0f} MB; "
        f"top {top['reports_per_s']:,.0f}/s at {top['cpu_percent']:.0f}% CPU, {top['rss_peak_mb']:.0f} MB, "
        f"lag {top['lag_reports']:,}; stream {stream['bytes_per_message']:.0f} B/report"
    )
    if "catchup" in figures:
        line += f"; catch-up {figures['catchup']['reports_per_s']:,.0f}/s"
    return line
