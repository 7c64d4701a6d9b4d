"""`thread report`: a static HTML report of the thread, opened without a server.

Charts are drawn with matplotlib and embedded as PNG, so the page is one self-contained file.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from . import freshness

COLORS = {"ok": "#4c9a2a", "warning": "#e0a100", "critical": "#c0392b", "unknown": "#9e9e9e"}
# Fewer units than this in service: a failure rate too uncertain to rank on its own, flagged.
SMALL_SAMPLE_UNITS = 30


@dataclass
class Chart:
    """A drawn chart and the numbers it shows, printed as a table under it."""

    png: str
    columns: list[str]
    rows: list[tuple]


def _integer_axis(axis) -> None:
    """Counts are whole: no 2.5 units on an axis."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def rate_interval(failures: int, units: int, confidence: float = 0.95) -> tuple[float, float]:
    """Failures per 100 units, exact (Garwood) Poisson interval. Failures are counted events (a
    unit can fail more than once), not a share of units, so a binomial interval would not hold."""
    from scipy.stats import chi2

    alpha = 1 - confidence
    low = chi2.ppf(alpha / 2, 2 * failures) / 2 if failures else 0.0
    high = chi2.ppf(1 - alpha / 2, 2 * (failures + 1)) / 2
    return 100 * low / units, 100 * high / units


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def plotting():
    """matplotlib's pyplot, drawing to images only (no display)."""
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


# The one table the fleet-health chart is drawn from: a publish that left it as it was keeps the chart.
HEALTH_OVER_TIME_TABLE = "thread.fleet_health_daily"


def chart_health_over_time(con) -> Chart:
    plt = plotting()
    rows = con.execute(f"SELECT day, health_state, units FROM {HEALTH_OVER_TIME_TABLE} ORDER BY day").fetchall()
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
    _integer_axis(ax.yaxis)
    ax.legend(loc="upper left")
    # The table: the last 14 days (the chart holds the whole history).
    by_day = {d: {s: n for dd, s, n in rows if dd == d} for d in days[-14:]}
    table = [(d, *(by_day[d].get(s, 0) for s in ("ok", "warning", "critical"))) for d in reversed(days[-14:])]
    return Chart(_png(fig), ["day", "ok", "warning", "critical"], table)


def chart_propagation_lags(con) -> Chart:
    plt = plotting()
    data = {}
    for system in ("mes", "erp", "service"):
        data[system] = [r[0] / 24 for r in con.execute(
            f"SELECT {system}_lag_hours FROM thread.eco_propagation WHERE {system}_lag_hours IS NOT NULL").fetchall()]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    labels = [f"{k.upper()} (n={len(v)})" for k, v in data.items()]
    ax.boxplot([v or [0] for v in data.values()], tick_labels=labels, vert=False)
    ax.set_xlabel("days from ECO release to adoption")
    ax.set_title("ECO propagation lag per system")
    import statistics

    table = [(k.upper(), len(v), round(statistics.median(v), 1) if v else None, round(max(v), 1) if v else None)
             for k, v in data.items()]
    return Chart(_png(fig), ["system", "ECOs adopted", "median lag (days)", "longest lag (days)"], table)


def chart_open_gaps(con) -> Chart:
    plt = plotting()
    rows = con.execute("""
        SELECT s.system, count(*) FROM thread.eco_propagation p,
               unnest(string_split(p.missing_systems, ',')) AS s(system)
        WHERE p.status = 'gap' GROUP BY 1 ORDER BY 1""").fetchall()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.bar([r[0].upper() for r in rows], [r[1] for r in rows], color="#c0392b")
    ax.set_ylabel("released ECOs not reached")
    _integer_axis(ax.yaxis)
    ax.set_title("Open propagation gaps")
    return Chart(_png(fig), ["system", "released ECOs not reached"], [(r[0].upper(), r[1]) for r in rows])


def chart_deviations(con) -> Chart:
    plt = plotting()
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
    _integer_axis(ax.xaxis)
    ax.set_title("Deviations by part and production line (top 12 parts)")
    ax.legend(loc="lower right")
    return Chart(_png(fig), ["part", "line", "units deviating"], rows)


def chart_failure_rate(con) -> Chart:
    """Ranked by the lower end of the 95 % interval: a revision is listed high because its rate is
    surely high, not because a handful of units happened to fail."""
    plt = plotting()
    found = con.execute("""
        SELECT part_number || ' rev ' || coalesce(revision, '?'), units_in_service, failures
        FROM thread.part_field_reliability WHERE units_in_service > 0 AND failures > 0""").fetchall()
    rows = sorted(((name, units, failures, 100 * failures / units, *rate_interval(failures, units))
                   for name, units, failures in found), key=lambda r: (-r[4], -r[3], r[0]))[:15]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    labels = [f"{r[0]}{' (small sample)' if r[1] < SMALL_SAMPLE_UNITS else ''}" for r in rows]
    ax.barh(labels, [r[3] for r in rows], color="#8e44ad",
            xerr=[[r[3] - r[4] for r in rows], [r[5] - r[3] for r in rows]], ecolor="#444", capsize=3)
    for i, r in enumerate(rows):
        ax.text(r[5], i, f"  {r[2]} failures / {r[1]} units", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("failures per 100 units in service, with 95 % interval (exact Poisson)")
    ax.set_title("Failure rate by part revision (top 15 by the interval's lower end)")
    return Chart(_png(fig), ["part revision", "units in service", "failures", "per 100 units", "95 % low",
                             "95 % high", "sample"],
                 [(r[0], r[1], r[2], round(r[3], 1), round(r[4], 1), round(r[5], 1),
                   "small" if r[1] < SMALL_SAMPLE_UNITS else "") for r in rows])


def chart_due_soon(con) -> Chart:
    plt = plotting()
    rows = con.execute("""
        SELECT serial_number, rul_hours FROM twin.unit_twin
        WHERE rul_hours IS NOT NULL AND status <> 'scrapped' ORDER BY rul_hours, serial_number LIMIT 15""").fetchall()
    fig, ax = plt.subplots(figsize=(9, 3.8))
    ax.barh([r[0] for r in rows], [r[1] for r in rows], color="#c0392b")
    ax.invert_yaxis()
    ax.set_xlabel("remaining useful life (hours), from the model learned on the thread's failures")
    ax.set_title("Units due for maintenance soonest" + ("" if rows else " (no model yet: no recorded failures)"))
    return Chart(_png(fig), ["unit", "remaining useful life (hours)"], [(r[0], round(r[1], 1)) for r in rows])


def chart_tracked_components(con) -> Chart:
    """Genealogy at a glance, the start of a quality investigation: for the tracked parts with the
    most field failures, the lots and serials still in units, those removed, and the failures."""
    plt = plotting()
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
    _integer_axis(ax.xaxis)
    return Chart(_png(fig), ["part", "installations still in a unit", "removed by service", "failures",
                             "lots/serials"], rows)


CHARTS = [
    ("Fleet health over time", chart_health_over_time),
    ("ECO propagation lags", chart_propagation_lags),
    ("Open propagation gaps", chart_open_gaps),
    ("Deviations by part and line", chart_deviations),
    ("Failure rate by part revision", chart_failure_rate),
    ("Units due for maintenance soonest", chart_due_soon),
    ("Genealogy: tracked lots and serials", chart_tracked_components),
]


def _table(chart: Chart) -> str:
    def cell(v) -> str:
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        text = "" if v is None else f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)
        return f"<td class='n'>{html.escape(text)}</td>" if number else f"<td>{html.escape(text)}</td>"

    head = "".join(f"<th>{html.escape(c)}</th>" for c in chart.columns)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in chart.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def generate(warehouse: Path, out_dir: Path, progress: Callable[[int, int], None] | None = None) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        figs = figures(con)
        newest = [t for t in freshness.newest_events(con).values() if t is not None]
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
        f"<section><h2>{html.escape(t)}</h2><img class='chart' alt='{html.escape(t)}' src='data:image/png;base64,{c.png}'>"
        f"{_table(c)}</section>" for t, c in charts)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    published = datetime.fromtimestamp(Path(warehouse).stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    as_of = (f"Data as of {max(newest).astimezone(timezone.utc):%Y-%m-%d %H:%M UTC} (the newest event any source "
             f"system recorded), published {published}." if newest else f"Published {published}; no source event yet.")
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Digital thread report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}.cards{{display:flex;flex-wrap:wrap;gap:.8rem}}
.card{{border:1px solid #ddd;border-radius:8px;padding:.8rem 1rem;min-width:9rem}}.n{{font-size:1.6rem;font-weight:600}}
section{{margin-top:2rem}}img.chart{{max-width:100%;border:1px solid #eee}}.asof{{font-weight:600}}
table{{border-collapse:collapse;margin-top:.6rem;font-size:.85rem}}td,th{{border:1px solid #ddd;padding:.2rem .5rem}}
td.n{{text-align:right}}</style></head>
<body><h1>Digital thread report</h1><p class="asof">{html.escape(as_of)}</p>
<p>From {html.escape(str(warehouse))}, generated {stamp}.</p>
<div class="cards">{cards}</div>{sections}</body></html>"""
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
