"""The simulated enterprise: four source systems writing exactly what source-interfaces.md says.

`simulate` writes a fresh sources root; `advance` extends one by more days without touching what
was already exported (event files and tables only grow; snapshots are re-exported whole, as real
systems do). Both are deterministic for a seed.
"""

from __future__ import annotations

import csv
import json
import math
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ._catalogue import SENSORS, build_catalogue
from ._engineering import Engineering
from ._random import stream
from ._schedule import UnitSchedule
from ._units import UnitFactory

MANIFEST = "_simulator.json"
GENERATOR_VERSION = 1
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SimConfig:
    seed: int = 42
    units: int = 300  # units started over `days`; `advance` keeps the same rate
    parts: int = 300  # approximate size of the engineering catalogue
    start: date = date(2025, 11, 1)
    days: int = 365
    telemetry_every_h: int = 6

    @property
    def units_per_day(self) -> float:
        return self.units / self.days


@dataclass
class Summary:
    out: Path
    counts: dict[str, int]
    horizon: str


FIRST_NAMES = ["Anna", "Jonas", "Marie", "Lukas", "Sofia", "Mateo", "Emma", "Noah", "Lea", "Elias",
               "Clara", "Hugo", "Ines", "Oskar", "Nora", "Felix", "Mila", "Leon", "Alba", "Jan"]
LAST_NAMES = ["Schmidt", "Dubois", "Rossi", "Novak", "Garcia", "Jansen", "Nielsen", "Kowalski",
              "Silva", "Weber", "Moreau", "Bianchi", "Horvat", "Lopez", "Berg", "Fischer"]
COUNTRIES = ["DE", "FR", "IT", "CZ", "ES", "NL", "DK", "PL", "PT", "AT", "SE", "US"]

MES_DDL = {
    "units": """CREATE TABLE IF NOT EXISTS units (serial_number TEXT PRIMARY KEY, product_part_number TEXT,
        product_revision TEXT, work_order_number TEXT, line_id TEXT, build_started_at TEXT,
        build_completed_at TEXT, status TEXT, shipped_at TEXT)""",
    "as_built_components": """CREATE TABLE IF NOT EXISTS as_built_components (serial_number TEXT,
        part_number TEXT, revision TEXT, quantity REAL, component_serial TEXT, installed_at TEXT,
        is_substitute INTEGER, PRIMARY KEY (serial_number, part_number, component_serial))""",
    "production_events": """CREATE TABLE IF NOT EXISTS production_events (event_id TEXT PRIMARY KEY,
        serial_number TEXT, station TEXT, operation TEXT, event_type TEXT, occurred_at TEXT)""",
    "quality_records": """CREATE TABLE IF NOT EXISTS quality_records (record_id TEXT PRIMARY KEY,
        serial_number TEXT, characteristic TEXT, measured_value REAL, lower_limit REAL,
        upper_limit REAL, result TEXT, recorded_at TEXT)""",
    "work_instructions": """CREATE TABLE IF NOT EXISTS work_instructions (instruction_id TEXT PRIMARY KEY,
        product_part_number TEXT, operation TEXT, part_number TEXT, revision TEXT, eco_number TEXT,
        effective_at TEXT)""",
}
MES_COLUMNS = {
    "units": 9, "as_built_components": 7, "production_events": 6, "quality_records": 8,
    "work_instructions": 7,
}
TELEMETRY_SCHEMA = pa.schema([("serial_number", pa.string()), ("ts", pa.timestamp("us", tz="UTC")),
                              ("sensor", pa.string()), ("value", pa.float64())])


def simulate(out: Path, cfg: SimConfig, progress: Progress | None = None) -> Summary:
    out = Path(out)
    if (out / MANIFEST).exists() or (out / "mes" / "mes.sqlite").exists():
        raise FileExistsError(f"{out} already holds an enterprise; use `thread simulate advance`")
    return _run(out, cfg, None, progress)


def advance(out: Path, days: int, progress: Progress | None = None) -> Summary:
    out = Path(out)
    manifest = out / MANIFEST
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest} not found: `advance` extends a simulated sources root")
    if days < 1:
        raise ValueError("days must be >= 1")
    saved = json.loads(manifest.read_text())
    cfg = SimConfig(seed=saved["seed"], units=saved["units"], parts=saved["parts"],
                    start=date.fromisoformat(saved["start"]), days=saved["days"],
                    telemetry_every_h=saved["telemetry_every_h"])
    # Same rate of production: scale the unit count with the horizon.
    longer = replace(cfg, days=cfg.days + days, units=cfg.units * (cfg.days + days) / cfg.days)
    return _run(out, longer, float(cfg.days), progress, manifest_cfg=replace(cfg, days=cfg.days + days))


def _run(out: Path, cfg: SimConfig, previous: float | None, progress: Progress | None,
         manifest_cfg: SimConfig | None = None) -> Summary:
    H = float(cfg.days)
    origin = datetime(cfg.start.year, cfg.start.month, cfg.start.day, tzinfo=timezone.utc)

    def iso(t: float) -> str:
        return (origin + timedelta(seconds=round(t * 86400))).strftime("%Y-%m-%dT%H:%M:%SZ")

    prev_iso = iso(previous) if previous is not None else None
    cat = build_catalogue(cfg.seed, cfg.parts)
    weights = np.array([0.6, 0.4] + [0.3] * (len(cat.products) - 2))[: len(cat.products)]
    schedule = UnitSchedule(cfg.seed, cfg.start, cfg.units_per_day, cat.products, weights / weights.sum())
    eng = Engineering(cat, cfg.seed, cfg.units_per_day, schedule)
    eng.plan_until(int(math.ceil(H)))
    adoption = eng.adoption()
    n_customers = max(5, int(cfg.units * 365 / cfg.days) // 8)
    sensors = SENSORS
    factory = UnitFactory(cfg.seed, eng, adoption, H, n_customers, iso, sensors)
    for sub in ("plm", "mes", "erp", "service/telemetry"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}

    # -- MES and the unit-level service data, streamed unit by unit ------------------------------
    db = sqlite3.connect(out / "mes" / "mes.sqlite")
    for ddl in MES_DDL.values():
        db.execute(ddl)
    verb = "INSERT OR REPLACE"
    buffers: dict[str, list] = {t: [] for t in MES_DDL}

    def flush(table: str, force: bool = False) -> None:
        rows = buffers[table]
        if rows and (force or len(rows) >= 100_000):
            marks = ",".join("?" * MES_COLUMNS[table])
            db.executemany(f"{verb} INTO {table} VALUES ({marks})", rows)
            counts[f"mes.{table}"] = counts.get(f"mes.{table}", 0) + len(rows)
            rows.clear()

    events_path = out / "service" / "service_events.jsonl"
    events_file = events_path.open("a" if previous is not None else "w", encoding="utf-8")
    installations, claims, telemetry_units, wo_counts = [], [], [], {}
    units = list(schedule.units_until(H))
    schedule.ensure(int(H) + 8)
    for day in schedule.days:
        for u in day:
            wo = _work_order(u, cfg.start)
            wo_counts[wo] = wo_counts.get(wo, (u.product, 0, day[0].start if day else 0))
            wo_counts[wo] = (u.product, wo_counts[wo][1] + 1, min(wo_counts[wo][2], u.start))
    n_events = 0
    for i, u in enumerate(units):
        life = factory.life(u, _work_order(u, cfg.start))
        buffers["units"].append(tuple(life.unit.values()))
        buffers["as_built_components"].extend(life.as_built)
        buffers["production_events"].extend(life.production_events)
        buffers["quality_records"].extend(life.quality_records)
        for table in buffers:
            flush(table)
        if life.installation:
            installations.append(life.installation)
        for ev in life.service_events:
            if prev_iso is None or ev["occurred_at"] > prev_iso:
                events_file.write(json.dumps(ev) + "\n")
                n_events += 1
        claims.extend(life.warranty_claims)
        if life.telemetry and life.telemetry[2]:
            telemetry_units.append((u.serial_number,) + life.telemetry)
        if progress and (i % 500 == 0 or i == len(units) - 1):
            progress("units", i + 1, len(units))
    events_file.close()
    counts["service.service_events (new)"] = n_events
    wi_rows = [
        (iid, product, f"OP-{part.split('-')[0]}", part, rev, eco, iso(at))
        for (product, part), lst in adoption.instructions.items()
        for at, rev, eco, iid in lst
        if at <= H
    ]
    buffers["work_instructions"].extend(sorted(wi_rows))
    for table in buffers:
        flush(table, force=True)
    db.commit()
    db.close()

    # -- PLM ---------------------------------------------------------------------------------------
    visible_parts = [p for p in cat.parts.values() if p.created_at <= H]
    _csv(out / "plm" / "parts.csv", ["part_number", "name", "part_type", "make_buy", "unit_of_measure", "created_at"],
         [(p.part_number, p.name, p.part_type, p.make_buy, p.unit_of_measure, iso(p.created_at))
          for p in sorted(visible_parts, key=lambda p: p.part_number)], counts, "plm.parts")
    rev_rows, visible_revs = [], set()
    for part, revs in sorted(eng.revisions.items()):
        shown = [r for r in revs if r.created <= H]
        released = [r for r in shown if r.release is not None and r.release <= H]
        latest = max(released, key=lambda r: r.release) if released else None
        for r in shown:
            if r.release is not None and r.release <= H:
                state = ("obsolete" if r.obsoleted is not None and r.obsoleted <= H
                         else "released" if r is latest else "superseded")
            elif r.cancel is not None and r.cancel <= H:
                state = "cancelled"
            else:
                state = "in_work"
            rel = iso(r.release) if state in ("released", "superseded", "obsolete") else None
            desc = r.description or f"Revision {r.revision} per {r.eco_number}"
            rev_rows.append((part, r.revision, state, rel, r.eco_number, desc))
            visible_revs.add((part, r.revision))
    _csv(out / "plm" / "part_revisions.csv",
         ["part_number", "revision", "state", "released_at", "eco_number", "description"], rev_rows, counts,
         "plm.part_revisions")
    _csv(out / "plm" / "bom_lines.csv",
         ["parent_part_number", "parent_revision", "find_number", "child_part_number", "quantity"],
         [(p, r, fn, c, q) for (p, r), lines in sorted(eng.bom.items()) if (p, r) in visible_revs
          for fn, c, q in lines], counts, "plm.bom_lines")
    ecos = [e for e in eng.ecos if e.created <= H]
    eco_rows = []
    for e in ecos:
        state = e.outcome if e.decided <= H else ("draft" if H - e.created < 4 else "in_review")
        eco_rows.append((e.eco_number, e.title, e.reason, state, iso(e.created),
                         iso(e.decided) if state == "released" else None, e.effectivity_type,
                         e.effective_from, e.field_action))
    _csv(out / "plm" / "ecos.csv", ["eco_number", "title", "reason", "state", "created_at", "released_at",
                                     "effectivity_type", "effective_from", "field_action"], eco_rows, counts,
         "plm.ecos")
    _csv(out / "plm" / "eco_affected_items.csv", ["eco_number", "part_number", "from_revision", "to_revision"],
         [(e.eco_number, p, f, t) for e in ecos for p, f, t in e.affected], counts, "plm.eco_affected_items")
    limit_rows = []
    for k, (product, _, _) in enumerate(cat.products):
        for sensor, unit, typical, warning, critical in sensors:
            scale = 1 + 0.25 * k if sensor == "discharge_pressure_bar" else 1.0
            limit_rows.append((product, sensor, unit, round(warning * scale, 2), round(critical * scale, 2)))
    _csv(out / "plm" / "sensor_limits.csv", ["product_part_number", "sensor", "unit", "warning_high",
                                             "critical_high"], limit_rows, counts, "plm.sensor_limits")

    # -- ERP ---------------------------------------------------------------------------------------
    wo_rows = []
    for wo, (product, qty, first) in sorted(wo_counts.items()):
        week_start = math.floor(first) - (cfg.start + timedelta(days=math.floor(first))).weekday()
        created = week_start - 5
        if created > H:
            continue
        status = "closed" if week_start + 14 < H else ("released" if week_start <= H else "planned")
        rev = eng.released_revision(product, min(first, H))
        due = (cfg.start + timedelta(days=week_start + 13)).isoformat()
        wo_rows.append((wo, product, rev, qty, "Plant Lyon" if product == "P-100" else "Plant Brno", status,
                        iso(created), due))
    _csv(out / "erp" / "work_orders.csv", ["work_order_number", "product_part_number", "product_revision",
                                           "quantity", "plant", "status", "created_at", "due_date"], wo_rows,
         counts, "erp.work_orders")
    erp_log = sorted((x for x in adoption.erp_log if x[3] <= H), key=lambda x: x[3])
    _csv(out / "erp" / "engineering_change_log.csv", ["eco_number", "part_number", "new_revision", "applied_at"],
         [(e, p, r, iso(at)) for e, p, r, at in erp_log], counts, "erp.engineering_change_log")
    erp_rev = {}
    for e, p, r, at in erp_log:
        erp_rev[p] = (r, at)
    item_rows, costs = [], {}
    for p in sorted(visible_parts, key=lambda p: p.part_number):
        initial = eng.revisions[p.part_number][0]
        if p.part_number not in erp_rev and initial.eco_number is not None:
            continue  # ERP has not heard of a part introduced by a change it has not processed
        crng = stream(cfg.seed, "cost", p.part_number)
        cost = round(float(crng.lognormal(3, 1.2)), 2)
        lead = int(crng.integers(5, 60))
        costs[p.part_number] = (cost, lead)
        rev, at = erp_rev.get(p.part_number, ("A", p.released_at))
        item_rows.append((p.part_number, rev, cost, lead, iso(at)))
    _csv(out / "erp" / "item_master.csv", ["part_number", "current_revision", "standard_cost", "lead_time_days",
                                           "updated_at"], item_rows, counts, "erp.item_master")
    buy = sorted(p for p in costs if cat.parts[p].make_buy == "buy")
    po_rows = []
    for w in range(int(H // 7) + 1):
        prng = stream(cfg.seed, "po", w)
        n = int(min(25, max(3, cfg.units_per_day * 7 * 2)))
        for line in range(1, n + 1):
            part = buy[int(prng.integers(len(buy)))]
            ordered = w * 7 + float(prng.uniform(0, 5))
            cost, lead = costs[part]
            received = ordered + lead + float(prng.uniform(-2, 5))
            cancelled = prng.random() < 0.03
            qty = float(prng.integers(10, 500))
            price = round(cost * float(prng.uniform(0.9, 1.1)), 2)
            if ordered > H:
                continue
            rev = erp_rev[part][0] if part in erp_rev and erp_rev[part][1] <= ordered else "A"
            status = "cancelled" if cancelled else ("received" if received <= H else "open")
            po_rows.append((f"PO-{w + 1:05d}", line, part, rev, f"SUP-{1 + int(prng.integers(40)):03d}", qty,
                            price, "EUR", iso(ordered), iso(received) if status == "received" else None, status))
    _csv(out / "erp" / "purchase_orders.csv", ["po_number", "line", "part_number", "revision", "supplier_id",
                                               "quantity", "unit_price", "currency", "ordered_at", "received_at",
                                               "status"], po_rows, counts, "erp.purchase_orders")

    # -- Service (snapshots) ----------------------------------------------------------------------
    customers = []
    for c in range(n_customers):
        crng = stream(cfg.seed, "customer", c)
        first, last = str(crng.choice(FIRST_NAMES)), str(crng.choice(LAST_NAMES))
        customers.append({"customer_id": f"CU-{c + 1:05d}", "name": f"{first} {last}",
                          "email": f"{first}.{last}{c + 1}@customer{c + 1}.example".lower(),
                          "country": str(crng.choice(COUNTRIES))})
    _jsonl(out / "service" / "customers.jsonl", customers, counts, "service.customers")
    _jsonl(out / "service" / "installations.jsonl", installations, counts, "service.installations")
    _jsonl(out / "service" / "warranty_claims.jsonl", claims, counts, "service.warranty_claims")
    bulletins = [{"bulletin_number": no, "eco_number": eco, "title": title, "issued_at": iso(at),
                  "action": action} for no, eco, title, at, action in sorted(adoption.bulletins) if at <= H]
    _jsonl(out / "service" / "service_bulletins.jsonl", bulletins, counts, "service.service_bulletins")

    # -- Telemetry, one Parquet file per day -------------------------------------------------------
    first_day = int(math.ceil(previous)) if previous is not None else 0
    counts["service.telemetry (new rows)"] = _telemetry(
        out, cfg, origin, telemetry_units, sensors, cat, first_day, int(H), progress)
    (out / MANIFEST).write_text(json.dumps(
        {**asdict(manifest_cfg or cfg), "start": cfg.start.isoformat(), "generator_version": GENERATOR_VERSION,
         "horizon": iso(H)}, indent=2, default=str) + "\n")
    return Summary(out, counts, iso(H))


def _work_order(u, start: date) -> str:
    day = start + timedelta(days=int(u.start))
    year, week, _ = day.isocalendar()
    return f"WO-{u.product[2:]}-{year}{week:02d}"


def _csv(path: Path, header, rows, counts, name) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for row in rows:
            w.writerow(["" if v is None else v for v in row])
    counts[name] = len(rows)


def _jsonl(path: Path, rows, counts, name) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    counts[name] = len(rows)


def _telemetry(out, cfg, origin, units, sensors, cat, first_day, last_day, progress) -> int:
    if not units:
        return 0
    serials = np.array([u[0] for u in units], dtype=object)
    installed = np.array([u[1] for u in units])
    product_idx = {p[0]: k for k, p in enumerate(cat.products)}
    pk = np.array([product_idx[u[2]] for u in units])
    factors = np.array([u[4] for u in units])
    rates = np.array([u[5] for u in units])
    offset = np.array([u[6] for u in units])
    typical = np.array([[s[2] * ((1 + 0.25 * k) if s[0] == "discharge_pressure_bar" else 1.0)
                         for s in sensors] for k in range(len(cat.products))])
    per_day = max(1, 24 // cfg.telemetry_every_h)
    total = 0
    for d in range(first_day, last_day):
        live = installed < d + 1
        if not live.any():
            continue
        idx = np.nonzero(live)[0]
        rng = stream(cfg.seed, "telemetry", d)
        times = d + np.arange(per_day) * (cfg.telemetry_every_h / 24.0) + float(rng.uniform(0, 0.02))
        noise = rng.normal(size=(len(idx), per_day, len(sensors)))
        age = times[None, :] - installed[idx][:, None]
        valid = age >= 0
        cols_serial, cols_ts, cols_sensor, cols_value = [], [], [], []
        base_us = int(origin.timestamp() * 1_000_000)
        ts_us = base_us + np.round(times * 86400) .astype(np.int64) * 1_000_000
        for s, (name, _, _, _, _) in enumerate(sensors):
            base = typical[pk[idx], s] * factors[idx, s]
            value = base[:, None] + rates[idx, s][:, None] * age + noise[:, :, s] * 0.03 * typical[pk[idx], s][:, None]
            if name == "vibration_mm_s":
                value = value + offset[idx][:, None]
            value = np.round(np.maximum(value, 0), 4)
            rows, cols = np.nonzero(valid)
            cols_serial.append(serials[idx][rows])
            cols_ts.append(ts_us[cols])
            cols_sensor.append(np.full(len(rows), name, dtype=object))
            cols_value.append(value[rows, cols])
        table = pa.table({
            "serial_number": pa.array(np.concatenate(cols_serial), pa.string()),
            "ts": pa.array(np.concatenate(cols_ts), pa.timestamp("us", tz="UTC")),
            "sensor": pa.array(np.concatenate(cols_sensor), pa.string()),
            "value": pa.array(np.concatenate(cols_value), pa.float64()),
        }, schema=TELEMETRY_SCHEMA)
        day = (cfg.start + timedelta(days=d)).isoformat()
        pq.write_table(table, out / "service" / "telemetry" / f"{day}.parquet", compression="zstd")
        total += table.num_rows
        if progress and (d % 10 == 0 or d == last_day - 1):
            progress("telemetry days", d + 1 - first_day, last_day - first_day)
    return total
