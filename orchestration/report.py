"""`thread report`: a static HTML report of the thread, opened without a server.

Charts are drawn with matplotlib and embedded as PNG, so the page is one self-contained file.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import duckdb

COLORS = {"ok": "#4c9a2a", "warning": "#e0a100", "critical": "#c0392b", "unknown": "#9e9e9e"}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figures(con) -> dict:
    one = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
    return {
        "units": one("SELECT count(*) FROM thread.units"),
        "twins": one("SELECT count(*) FROM twin.unit_twin"),
        "critical twins": one("SELECT count(*) FROM twin.unit_twin WHERE health_state = 'critical'"),
        "stale twins": one("SELECT count(*) FROM twin.unit_twin WHERE is_stale"),
        "released ECOs": one("SELECT count(*) FROM thread.eco_propagation"),
        "ECOs with gaps": one("SELECT count(*) FROM thread.eco_propagation WHERE status = 'gap'"),
        "pending retrofits": one("SELECT count(*) FROM thread.eco_impact WHERE impact = 'retrofit_pending'"),
        "deviations": one("SELECT count(*) FROM thread.unit_deviations"),
        "contract violations": one("SELECT count(*) FROM thread.contract_violations"),
        "tracked lots and serials": one("SELECT count(DISTINCT component_serial) FROM thread.unit_component_serials"),
    }


def chart_health_over_time(con) -> str:
    plt = _plt()
    rows = con.execute("SELECT day, health_state, units FROM thread.fleet_health_daily ORDER BY day").fetchall()
    days = sorted({r[0] for r in rows})
    fig, ax = plt.subplots(figsize=(9, 3.4))
    bottom = [0] * len(days)
    index = {d: i for i, d in enumerate(days)}
    for state in ("ok", "warning", "critical"):
        values = [0] * len(days)
        for d, s, n in rows:
            if s == state:
                values[index[d]] = n
        ax.fill_between(days, bottom, [b + v for b, v in zip(bottom, values)], color=COLORS[state], label=state,
                        step="mid", alpha=0.85)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_title("Fleet health over time (units by worst sensor state that day)")
    ax.set_ylabel("units")
    ax.legend(loc="upper left")
    return _png(fig)


def chart_propagation_lags(con) -> str:
    plt = _plt()
    data = {}
    for system in ("mes", "erp", "service"):
        data[system] = [r[0] / 24 for r in con.execute(
            f"SELECT {system}_lag_hours FROM thread.eco_propagation WHERE {system}_lag_hours IS NOT NULL").fetchall()]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    labels = [f"{k.upper()} (n={len(v)})" for k, v in data.items()]
    ax.boxplot([v or [0] for v in data.values()], tick_labels=labels, vert=False)
    ax.set_xlabel("days from ECO release to adoption")
    ax.set_title("ECO propagation lag per system")
    return _png(fig)


def chart_open_gaps(con) -> str:
    plt = _plt()
    rows = con.execute("""
        SELECT s.system, count(*) FROM thread.eco_propagation p,
               unnest(string_split(p.missing_systems, ',')) AS s(system)
        WHERE p.status = 'gap' GROUP BY 1 ORDER BY 1""").fetchall()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.bar([r[0].upper() for r in rows], [r[1] for r in rows], color="#c0392b")
    ax.set_ylabel("released ECOs not reached")
    ax.set_title("Open propagation gaps")
    return _png(fig)


def chart_deviations(con) -> str:
    plt = _plt()
    rows = con.execute("""
        SELECT d.part_number, coalesce(u.line_id, '?') AS line, count(*) AS n
        FROM thread.unit_deviations d JOIN thread.units u USING (serial_number)
        WHERE d.part_number IN (SELECT part_number FROM thread.unit_deviations GROUP BY 1 ORDER BY count(*) DESC LIMIT 12)
        GROUP BY 1, 2 ORDER BY 1, 2""").fetchall()
    parts = sorted({r[0] for r in rows})
    lines = sorted({r[1] for r in rows})
    fig, ax = plt.subplots(figsize=(9, 3.6))
    left = [0] * len(parts)
    for line in lines:
        values = [next((n for p, ln, n in rows if p == part and ln == line), 0) for part in parts]
        ax.barh(parts, values, left=left, label=f"line {line}")
        left = [a + b for a, b in zip(left, values)]
    ax.invert_yaxis()
    ax.set_xlabel("units deviating")
    ax.set_title("Deviations by part and production line (top 12 parts)")
    ax.legend(loc="lower right")
    return _png(fig)


def chart_failure_rate(con) -> str:
    plt = _plt()
    rows = con.execute("""
        SELECT part_number || ' rev ' || coalesce(revision, '?'), failures_per_100_units, failures
        FROM thread.part_field_reliability WHERE failures_per_100_units IS NOT NULL AND failures > 0
        ORDER BY failures_per_100_units DESC LIMIT 15""").fetchall()
    fig, ax = plt.subplots(figsize=(9, 3.8))
    ax.barh([r[0] for r in rows], [r[1] for r in rows], color="#8e44ad")
    for i, r in enumerate(rows):
        ax.text(r[1], i, f"  {r[2]} failures", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("failures per 100 units in service")
    ax.set_title("Failure rate by part revision (top 15)")
    return _png(fig)


def chart_due_soon(con) -> str:
    plt = _plt()
    rows = con.execute("""
        SELECT serial_number, rul_hours FROM twin.unit_twin
        WHERE rul_hours IS NOT NULL AND status <> 'scrapped' ORDER BY rul_hours, serial_number LIMIT 15""").fetchall()
    fig, ax = plt.subplots(figsize=(9, 3.8))
    ax.barh([r[0] for r in rows], [r[1] for r in rows], color="#c0392b")
    ax.invert_yaxis()
    ax.set_xlabel("remaining useful life (hours), from the model learned on the thread's failures")
    ax.set_title("Units due for maintenance soonest" + ("" if rows else " (no model yet: no recorded failures)"))
    return _png(fig)


def chart_tracked_components(con) -> str:
    """Genealogy at a glance, the start of a quality investigation: for the tracked parts with the
    most field failures, the lots and serials still in units, those removed, and the failures."""
    plt = _plt()
    rows = con.execute("""
        WITH tracked AS (
            SELECT part_number, count(DISTINCT component_serial) AS lots,
                   count(*) FILTER (WHERE quantity_held > 0) AS carried,
                   count(*) FILTER (WHERE quantity_held = 0) AS removed
            FROM thread.unit_component_serials GROUP BY 1),
        failed AS (
            SELECT failed_part_number AS part_number, count(*) AS failures FROM thread.service_events
            WHERE event_type = 'failure' GROUP BY 1)
        SELECT t.part_number, t.carried, t.removed, coalesce(f.failures, 0), t.lots
        FROM tracked t LEFT JOIN failed f USING (part_number)
        ORDER BY 4 DESC, t.carried + t.removed DESC, 1 LIMIT 12""").fetchall()
    fig, ax = plt.subplots(figsize=(9, 3.8))
    names = [r[0] for r in rows]
    ax.barh(names, [r[1] for r in rows], color="#2e86c1", label="installations still in a unit")
    ax.barh(names, [r[2] for r in rows], left=[r[1] for r in rows], color="#aab7b8", label="removed by service")
    for i, r in enumerate(rows):
        ax.text(r[1] + r[2], i, f"  {r[3]} failures, {r[4]} lots/serials", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("installations of tracked lots and serials (thread.unit_component_serials)")
    ax.set_title("Tracked parts with the most field failures: `thread ask investigate PART` for the suspects"
                 + ("" if rows else " (no tracked lots or serials)"), fontsize=10)
    if rows:
        ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


CHARTS = [
    ("Fleet health over time", chart_health_over_time),
    ("ECO propagation lags", chart_propagation_lags),
    ("Open propagation gaps", chart_open_gaps),
    ("Deviations by part and line", chart_deviations),
    ("Failure rate by part revision", chart_failure_rate),
    ("Units due for maintenance soonest", chart_due_soon),
    ("Genealogy: tracked lots and serials", chart_tracked_components),
]


def generate(warehouse: Path, out_dir: Path, progress: Callable[[int, int], None] | None = None) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        figs = figures(con)
        charts = []
        for i, (title, draw) in enumerate(CHARTS):
            charts.append((title, draw(con)))
            if progress:
                progress(i + 1, len(CHARTS))
    finally:
        con.close()
    cards = "".join(f"<div class='card'><div class='n'>{v:,}</div><div>{html.escape(k)}</div></div>"
                    for k, v in figs.items())
    sections = "".join(
        f"<section><h2>{html.escape(t)}</h2><img class='chart' alt='{html.escape(t)}' src='data:image/png;base64,{b}'>"
        "</section>" for t, b in charts)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Digital thread report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}.cards{{display:flex;flex-wrap:wrap;gap:.8rem}}
.card{{border:1px solid #ddd;border-radius:8px;padding:.8rem 1rem;min-width:9rem}}.n{{font-size:1.6rem;font-weight:600}}
section{{margin-top:2rem}}img.chart{{max-width:100%;border:1px solid #eee}}</style></head>
<body><h1>Digital thread report</h1><p>From {html.escape(str(warehouse))}, generated {stamp}.</p>
<div class="cards">{cards}</div>{sections}</body></html>"""
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
