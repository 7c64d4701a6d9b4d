"""Write a sources root by hand, exactly in the formats of source-interfaces.md.

Tests use this for the spec's worked example and the bad-input battery: it knows only the
spec (column lists from the contracts), not the simulator, so it checks that the pipeline
accepts any data that follows the interface.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

import contracts


def _columns(system: str, entity: str) -> list[str]:
    return list(contracts.entity(system, entity).columns)


def write_sources(root: Path, data: dict[str, list[dict]], telemetry: dict[str, list[dict]] | None = None) -> Path:
    """`data` maps 'system.entity' to rows; entities not given are written empty (header only)."""
    root = Path(root)
    for sub in ("plm", "erp", "mes", "service/telemetry"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(root / "mes" / "mes.sqlite")
    for (system, entity), c in contracts.ENTITIES.items():
        rows = data.get(f"{system}.{entity}", [])
        cols = _columns(system, entity)
        if c.medium == "csv":
            with (root / c.location).open("w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(cols)
                for r in rows:
                    w.writerow(["" if r.get(k) is None else r.get(k) for k in cols])
        elif c.medium == "jsonl":
            with (root / c.location).open("w", encoding="utf-8") as f:
                for r in rows:
                    f.write(json.dumps({k: r.get(k) for k in cols}) + "\n")
        elif c.medium == "table":
            kinds = c.columns
            ddl = ", ".join(f"{k} {'REAL' if kinds[k] == 'float' else 'INTEGER' if kinds[k] == 'int' else 'TEXT'}"
                            for k in cols)
            db.execute(f"DROP TABLE IF EXISTS {c.location}")
            db.execute(f"CREATE TABLE {c.location} ({ddl})")
            db.executemany(f"INSERT INTO {c.location} VALUES ({','.join('?' * len(cols))})",
                           [[r.get(k) for k in cols] for r in rows])
    db.commit()
    db.close()
    for name, rows in (telemetry or {}).items():
        write_telemetry(root / "service" / "telemetry" / name, rows)
    return root


def write_telemetry(path: Path, rows: list[dict]) -> None:
    import pandas as pd

    table = pa.table({
        "serial_number": pa.array([r["serial_number"] for r in rows], pa.string()),
        "ts": pa.array(pd.to_datetime([r["ts"] for r in rows], utc=True), pa.timestamp("us", tz="UTC")),
        "sensor": pa.array([r["sensor"] for r in rows], pa.string()),
        "value": pa.array([float(r["value"]) for r in rows], pa.float64()),
    })
    pq.write_table(table, path)


def worked_example(with_retrofit: bool = True) -> dict[str, list[dict]]:
    """The worked example of thread-schema.md, as source rows."""
    t = "2025-12-01T00:00:00Z"
    parts = [
        {"part_number": p, "name": n, "part_type": k, "make_buy": "make", "unit_of_measure": "ea", "created_at": t}
        for p, n, k in (("P-1", "Pump", "product"), ("A-1", "Assembly", "assembly"),
                        ("C-1", "Component 1", "component"), ("C-2", "Component 2", "component"))
    ]
    revisions = [
        {"part_number": p, "revision": "A", "state": "released", "released_at": t, "eco_number": None}
        for p in ("P-1", "A-1", "C-1")
    ] + [
        {"part_number": "C-2", "revision": "A", "state": "superseded", "released_at": t, "eco_number": None},
        {"part_number": "C-2", "revision": "B", "state": "released", "released_at": "2026-01-20T00:00:00Z",
         "eco_number": "ECO-1"},
    ]
    bom = [
        {"parent_part_number": "P-1", "parent_revision": "A", "find_number": 10, "child_part_number": "A-1",
         "quantity": 1},
        {"parent_part_number": "A-1", "parent_revision": "A", "find_number": 10, "child_part_number": "C-1",
         "quantity": 2},
        {"parent_part_number": "A-1", "parent_revision": "A", "find_number": 20, "child_part_number": "C-2",
         "quantity": 1},
    ]
    ecos = [{"eco_number": "ECO-1", "title": "C-2 to B", "reason": "wear", "state": "released",
             "created_at": "2026-01-10T00:00:00Z", "released_at": "2026-01-20T00:00:00Z",
             "effectivity_type": "date", "effective_from": "2026-02-01", "field_action": "retrofit"}]
    affected = [{"eco_number": "ECO-1", "part_number": "C-2", "from_revision": "A", "to_revision": "B"}]
    units, as_built = [], []
    for serial, started, c2 in (("U-001", "2026-01-10", "A"), ("U-002", "2026-02-05", "B"),
                                ("U-003", "2026-02-06", "A")):
        units.append({"serial_number": serial, "product_part_number": "P-1", "product_revision": "A",
                      "work_order_number": None, "line_id": "L1", "build_started_at": f"{started}T08:00:00Z",
                      "build_completed_at": f"{started}T16:00:00Z", "status": "shipped",
                      "shipped_at": f"{started}T18:00:00Z"})
        for part, rev, qty in (("A-1", "A", 1), ("C-1", "A", 2), ("C-2", c2, 1)):
            as_built.append({"serial_number": serial, "part_number": part, "revision": rev, "quantity": qty,
                             "component_serial": "-", "installed_at": f"{started}T10:00:00Z", "is_substitute": 0})
    events = []
    if with_retrofit:
        events.append({"event_id": "S-1", "serial_number": "U-001", "event_type": "retrofit",
                       "occurred_at": "2026-03-01T00:00:00Z", "closed_at": "2026-03-01T04:00:00Z",
                       "removed_part_number": "C-2", "removed_revision": "A", "installed_part_number": "C-2",
                       "installed_revision": "B", "eco_number": "ECO-1"})
    return {
        "plm.parts": parts, "plm.part_revisions": revisions, "plm.bom_lines": bom, "plm.ecos": ecos,
        "plm.eco_affected_items": affected, "mes.units": units, "mes.as_built_components": as_built,
        "service.service_events": events,
    }


def every_system_example() -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """The worked example with at least one row in every entity of every system, plus telemetry."""
    data = worked_example()
    for u in data["mes.units"]:
        u["work_order_number"] = "WO-1"
    data["plm.sensor_limits"] = [
        {"product_part_number": "P-1", "sensor": "vibration_mm_s", "unit": "mm/s", "warning_high": 4.5,
         "critical_high": 7.1}]
    data["mes.production_events"] = [
        {"event_id": f"PE-{i}", "serial_number": s, "station": "ST-10", "operation": "assembly",
         "event_type": "complete", "occurred_at": f"2026-02-0{i}T12:00:00Z"}
        for i, s in ((1, "U-001"), (2, "U-002"), (3, "U-003"))]
    data["mes.quality_records"] = [
        {"record_id": "QR-1", "serial_number": "U-001", "characteristic": "flow", "measured_value": 40.0,
         "lower_limit": 36.0, "upper_limit": 44.0, "result": "pass", "recorded_at": "2026-01-10T15:00:00Z"}]
    data["mes.work_instructions"] = [
        {"instruction_id": f"WI-{p}", "product_part_number": "P-1", "operation": "OP", "part_number": p,
         "revision": "A", "eco_number": None, "effective_at": "2025-12-02T00:00:00Z"} for p in ("A-1", "C-1", "C-2")]
    data["erp.work_orders"] = [
        {"work_order_number": "WO-1", "product_part_number": "P-1", "product_revision": "A", "quantity": 3,
         "plant": "Lyon", "status": "closed", "created_at": "2026-01-05T00:00:00Z", "due_date": "2026-02-28"}]
    data["erp.purchase_orders"] = [
        {"po_number": "PO-1", "line": 1, "part_number": "C-1", "revision": "A", "supplier_id": "SUP-1",
         "quantity": 10.0, "unit_price": 2.5, "currency": "EUR", "ordered_at": "2026-01-02T00:00:00Z",
         "received_at": "2026-01-09T00:00:00Z", "status": "received"}]
    data["erp.item_master"] = [
        {"part_number": p, "current_revision": "A", "standard_cost": 10.0, "lead_time_days": 7,
         "updated_at": "2025-12-02T00:00:00Z"} for p in ("P-1", "A-1", "C-1", "C-2")]
    data["erp.engineering_change_log"] = [
        {"eco_number": "ECO-1", "part_number": "C-2", "new_revision": "B", "applied_at": "2026-01-22T00:00:00Z"}]
    data["service.customers"] = [
        {"customer_id": "CU-1", "name": "Ada Lovelace", "email": "ada@example.com", "country": "GB"}]
    data["service.installations"] = [
        {"serial_number": s, "customer_id": "CU-1", "site": "Site 1", "installed_at": f"2026-02-1{i}T00:00:00Z"}
        for i, s in enumerate(("U-001", "U-002", "U-003"))]
    data["service.service_events"].append(
        {"event_id": "S-2", "serial_number": "U-002", "event_type": "failure", "occurred_at": "2026-03-05T00:00:00Z",
         "closed_at": None, "failed_part_number": "C-1", "symptom_code": "LEAK"})
    data["service.warranty_claims"] = [
        {"claim_id": "WC-1", "serial_number": "U-002", "event_id": "S-2", "claimed_at": "2026-03-06T00:00:00Z",
         "amount": 120.0, "currency": "EUR", "status": "open"}]
    data["service.service_bulletins"] = [
        {"bulletin_number": "SB-1", "eco_number": "ECO-1", "title": "C-2", "issued_at": "2026-01-25T00:00:00Z",
         "action": "retrofit"}]
    telemetry = {"2026-03-01.parquet": [
        {"serial_number": s, "ts": f"2026-03-01T{h:02d}:00:00Z", "sensor": "vibration_mm_s", "value": v + h / 10}
        for s, v in (("U-001", 2.0), ("U-002", 5.0), ("U-003", 8.0)) for h in range(0, 24, 6)]}
    return data, telemetry
