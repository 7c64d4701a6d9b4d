"""The live twins: per-unit state kept under lake/twin/_state, refreshed only where inputs changed.

The twin logic is SQL (dbt views in schema `twin_logic`); this module selects from it for just
the units being refreshed, replaces their rows in the twin state tables, and remembers the
input hashes each twin was computed from. Comparing those with the current hashes says which
twins need a refresh and why.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from . import lake
from .faults import checkpoint

TABLES = ("unit_twin", "unit_components", "unit_sensor_state")
ASPECTS = ("unit", "configuration", "deviation", "eco", "service", "telemetry", "rul")
# Replacing rows by a predicate costs per serial; past this many, rewriting the table is cheaper.
PREDICATE_LIMIT = 2000


def state_dir(lake_dir: Path) -> Path:
    return Path(lake_dir) / "twin" / "_state"


def _keys_table(serials) -> pa.Table:
    return pa.table({"serial_number": pa.array(sorted(set(serials)), pa.string())})


def _select(con, relation: str, serials) -> pa.Table:
    if serials is None:
        return con.execute(f"SELECT * FROM {relation}").fetch_arrow_table()
    keys = _keys_table(serials)  # noqa: F841 - DuckDB reads it by name
    return con.execute(f"SELECT t.* FROM {relation} t SEMI JOIN keys USING (serial_number)").fetch_arrow_table()


def units(build_db: Path) -> set[str]:
    """Every unit that has a twin now (not scrapped)."""
    con = lake.duck(build_db, read_only=True)
    try:
        return {s for (s,) in con.execute("SELECT serial_number FROM twin_logic.unit_twin").fetchall()}
    finally:
        con.close()


def _with_health(con, lake_dir: Path) -> None:
    """Views `unit_twin` and `unit_twin_inputs`: the dbt twin logic plus each unit's remaining-
    useful-life estimate (lake/health, written after dbt by the model asset), hashed as aspect `rul`."""
    from . import rul

    con.register("rul_estimates", rul.estimates(lake_dir))
    con.execute("""CREATE OR REPLACE TEMP VIEW unit_twin AS
        SELECT t.*, r.rul_hours, r.rul_model_version
        FROM twin_logic.unit_twin t LEFT JOIN rul_estimates r USING (serial_number)""")
    con.execute("""CREATE OR REPLACE TEMP VIEW unit_twin_inputs AS
        SELECT i.* REPLACE (md5(i.input_hash || '|' || coalesce(h.rul_hash, '')) AS input_hash),
               coalesce(h.rul_hash, '') AS rul_hash
        FROM twin_logic.unit_twin_inputs i
        LEFT JOIN (SELECT serial_number, md5(concat_ws('|', rul_hours::VARCHAR, rul_model_version)) AS rul_hash
                   FROM rul_estimates) h USING (serial_number)""")


def compute(build_db: Path, serials=None, lake_dir: Path | None = None) -> dict[str, pa.Table]:
    """Twin rows (and their input hashes) for the given units, or all units."""
    con = lake.duck(build_db, read_only=True)
    try:
        _with_health(con, lake_dir)
        out = {t: _select(con, t if t == "unit_twin" else f"twin_logic.{t}", serials) for t in TABLES}
        out["inputs"] = _select(con, "unit_twin_inputs", serials)
    finally:
        con.close()
    return out


def _replace(path: Path, rows: pa.Table, serials, batch_id: str) -> None:
    if serials is None or not lake.exists(path):
        lake.write(path, rows, "overwrite", batch_id=batch_id)
        return
    serials = sorted(set(serials))
    if not serials:
        return
    if len(serials) <= PREDICATE_LIMIT:
        quoted = ", ".join("'" + s.replace("'", "''") + "'" for s in serials)
        lake.write(path, rows, "overwrite", batch_id=batch_id, predicate=f"serial_number IN ({quoted})")
        return
    current = lake.read(path)
    keep = current.filter(pc.invert(pc.is_in(current["serial_number"], value_set=pa.array(serials))))
    lake.write(path, pa.concat_tables([keep, rows.cast(keep.schema)]), "overwrite", batch_id=batch_id)


def refresh(build_db: Path, lake_dir: Path, serials=None, *, batch_id: str,
            now: datetime | None = None) -> dict[str, int]:
    """Recompute the twins of `serials` (None = every unit) and store them with their input hashes."""
    now = now or datetime.now(timezone.utc)
    rows = compute(build_db, serials, lake_dir)
    stamp = pa.array([now] * rows["unit_twin"].num_rows, pa.timestamp("us", tz="UTC"))
    rows["unit_twin"] = rows["unit_twin"].append_column("refreshed_at", stamp)
    rows["inputs"] = rows["inputs"].append_column(
        "refreshed_at", pa.array([now] * rows["inputs"].num_rows, pa.timestamp("us", tz="UTC")))
    base = state_dir(lake_dir)
    # `inputs` goes last: until it is written, the units still count as changed and a crashed
    # refresh is redone by the next run.
    for name, table in rows.items():
        _replace(base / name, table, serials, batch_id)
        checkpoint("twin-write")
    return {name: table.num_rows for name, table in rows.items()}


def log_refresh(lake_dir: Path, run_id: str, why: dict[str, list[str]], now: datetime) -> None:
    """Which twins a run refreshed and why, one row per unit (lake/twin/_refresh_log)."""
    if not why:
        return
    table = pa.table({
        "run_id": pa.array([run_id] * len(why), pa.string()),
        "serial_number": pa.array(list(why), pa.string()),
        "reasons": pa.array(list(why.values()), pa.list_(pa.string())),
        "refreshed_at": pa.array([now] * len(why), pa.timestamp("us", tz="UTC")),
    })
    lake.write(Path(lake_dir) / "twin" / "_refresh_log", table, "append", batch_id=run_id)


def changes(build_db: Path, lake_dir: Path) -> pa.Table:
    """Units whose twin inputs differ from those their twin was computed from, with the reasons."""
    con = lake.duck(build_db, read_only=True)
    try:
        _with_health(con, lake_dir)
        current = con.execute("SELECT * FROM unit_twin_inputs").fetch_arrow_table()  # noqa: F841
        stored = lake.read(state_dir(lake_dir) / "inputs")
        if stored is None:
            stored = current.slice(0, 0).append_column("refreshed_at", pa.array([], pa.timestamp("us", tz="UTC")))
        diffs = " || ".join(
            f"CASE WHEN c.{a}_hash IS DISTINCT FROM s.{a}_hash THEN ['{a}'] ELSE [] END" for a in ASPECTS)
        return con.execute(f"""
            SELECT coalesce(c.serial_number, s.serial_number) AS serial_number,
                   CASE WHEN s.serial_number IS NULL THEN ['new unit']
                        WHEN c.serial_number IS NULL THEN ['no longer a twin (scrapped or removed)']
                        ELSE {diffs} END AS reasons,
                   c.input_hash
            FROM current c FULL OUTER JOIN stored s USING (serial_number)
            WHERE c.input_hash IS DISTINCT FROM s.input_hash
            ORDER BY 1
        """).fetch_arrow_table()
    finally:
        con.close()


def pending(lake_dir: Path) -> pa.Table | None:
    """The last detected change set, minus the twins refreshed since (their hash now matches)."""
    detected = lake.read(Path(lake_dir) / "twin" / "_pending")
    if detected is None or detected.num_rows == 0:
        return detected
    stored = lake.read(state_dir(lake_dir) / "inputs", columns=["serial_number", "input_hash"])
    con = duckdb.connect()
    try:
        con.register("detected", detected)
        if stored is None:
            return con.execute("SELECT * FROM detected").fetch_arrow_table()
        con.register("stored", stored)
        return con.execute("""
            SELECT d.* FROM detected d LEFT JOIN stored s USING (serial_number)
            WHERE d.input_hash IS DISTINCT FROM s.input_hash
            ORDER BY d.serial_number
        """).fetch_arrow_table()
    finally:
        con.close()


def partition_key(serial: str, units_per_partition: int = 1) -> str:
    """The twin partition of a unit: its serial, or its shard of consecutive serials.

    With 100 units per partition, HX200-000123 is in shard HX200-0001xx (HX200-000100..000199).
    """
    if units_per_partition <= 1:
        return serial
    digits = len(str(units_per_partition)) - 1
    if 10**digits != units_per_partition:
        raise ValueError("units per partition must be 1, 10, 100, 1000, ...")
    prefix, sep, number = serial.rpartition("-")
    if len(number) <= digits:
        return f"{prefix}{sep}{'x' * digits}"
    return f"{prefix}{sep}{number[:-digits]}{'x' * digits}"


def partition_ranges(all_keys: list[str], wanted: set[str], max_gap: int = 25) -> list[tuple[str, str]]:
    """Contiguous runs of partition keys covering `wanted`, bridging short gaps of unchanged units.

    A Dagster run targets a partition range; bridging small gaps keeps refreshes to a few runs,
    and the twin asset recomputes only the wanted units inside each range.
    """
    ranges: list[tuple[int, int]] = []
    for i, key in enumerate(all_keys):
        if key not in wanted:
            continue
        if ranges and i - ranges[-1][1] <= max_gap + 1:
            ranges[-1] = (ranges[-1][0], i)
        else:
            ranges.append((i, i))
    return [(all_keys[a], all_keys[b]) for a, b in ranges]
