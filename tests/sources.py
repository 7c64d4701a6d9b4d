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
