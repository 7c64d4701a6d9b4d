"""The DuckDB side: the private build database dbt works in, and the published warehouse.

Analysts open `warehouse.duckdb` read-only while refreshes run. A refresh builds the next
warehouse beside it and renames it into place (an atomic rename on one file system): open
connections keep reading the old file, new ones see the new one, nobody sees half a build.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb

import contracts

from . import freshness, lake
from .faults import checkpoint
from .extract import ARROW_TYPES, EXTRACTION_SCHEMA, FINDINGS_SCHEMA, arrow_schema, paths

PUBLISHED_SCHEMAS = ("thread", "twin")
TWIN_TABLES = ("unit_twin", "unit_components", "unit_sensor_state")
DUCK_TYPES = {"str": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "timestamp": "TIMESTAMPTZ", "date": "DATE"}


def _arrow_to_duck(t) -> str:
    import pyarrow as pa

    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_integer(t):
        return "BIGINT"
    if pa.types.is_floating(t):
        return "DOUBLE"
    if pa.types.is_date(t):
        return "DATE"
    return "VARCHAR"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _view_sql(path: Path, schema) -> str:
    uris = lake.files(path)
    if uris:
        file_list = "[" + ", ".join("'" + u.replace("'", "''") + "'" for u in uris) + "]"
        return f"SELECT * FROM read_parquet({file_list}, union_by_name = true)"
    cols = ", ".join(f"CAST(NULL AS {_arrow_to_duck(f.type)}) AS {_q(f.name)}" for f in schema)
    return f"SELECT {cols} WHERE false"


def prepare_build_db(build_db: Path, lake_dir: Path, pii_salt: str) -> None:
    """Point schema `raw` of the build database at the current version of every raw Delta table."""
    build_db.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(build_db))
    try:
        con.execute("CREATE SCHEMA IF NOT EXISTS raw")
        for c in contracts.ENTITIES.values():
            p = paths(lake_dir, c)["raw"]
            sch = lake.schema(p) or arrow_schema(c)
            con.execute(f"CREATE OR REPLACE VIEW raw.{c.system}__{c.entity} AS {_view_sql(p, sch)}")
        audit = Path(lake_dir) / "audit"
        for name, sch in (("contract_findings", FINDINGS_SCHEMA), ("extractions", EXTRACTION_SCHEMA)):
            con.execute(f"CREATE OR REPLACE VIEW raw.audit__{name} AS {_view_sql(audit / name, sch)}")
        con.execute(
            "CREATE OR REPLACE TABLE raw.audit__source_systems (system VARCHAR, title VARCHAR, "
            "owner_team VARCHAR, contract_version VARCHAR, freshness_limit_hours DOUBLE)"
        )
        con.executemany(
            "INSERT INTO raw.audit__source_systems VALUES (?, ?, ?, ?, ?)",
            [(s.system, s.title, s.owner_team, s.contract_version, s.freshness_limit.total_seconds() / 3600)
             for s in contracts.SYSTEMS.values()],
        )
        # The salt is bound as a parameter and only its hashes are stored: it never reaches a file,
        # compiled SQL or a log. dbt joins these masks instead of hashing personal data itself.
        con.execute(
            "CREATE OR REPLACE TABLE raw.audit__pii_masks AS SELECT customer_id, "
            "left(sha256(?::VARCHAR || '|name|' || name), 16) AS name_masked, "
            "left(sha256(?::VARCHAR || '|email|' || lower(trim(email))), 16) AS email_masked "
            "FROM raw.service__customers",
            [pii_salt, pii_salt],
        )
    finally:
        con.close()


def thread_tables(build_db: Path) -> list[str]:
    con = duckdb.connect(str(build_db), read_only=True)
    try:
        rows = con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'thread' AND table_type = 'BASE TABLE' ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    return [t for (t,) in rows]


def _twin_sql(con, lake_dir: Path, table: str, now=None) -> str:
    """The published twin table: the per-unit twin state, plus is_stale on unit_twin."""
    from . import twins

    state = lake.read(twins.state_dir(lake_dir) / table)
    if state is None:
        empty = "SELECT * FROM build.twin_logic.{t} WHERE false".format(t=table)
        if table != "unit_twin":
            return empty
        return ("SELECT *, NULL::DOUBLE AS rul_hours, NULL::VARCHAR AS rul_model_version, "
                "NULL::TIMESTAMPTZ AS refreshed_at, NULL::BOOLEAN AS is_stale, "
                f"NULL::VARCHAR AS stale_reason FROM ({empty})")
    con.register(f"state_{table}", state)
    if table != "unit_twin":
        return f"SELECT * FROM state_{table}"
    pending = twins.pending(lake_dir)
    systems = freshness.sources(lake_dir, now)
    late = [f.system for f in systems if f.is_late]
    failing = [f"{f.system} ({', '.join(f.failing_entities)})" for f in systems if f.is_failing]
    con.register("pending_twins", pending if pending is not None and pending.num_rows else
                 _empty_pending())
    # A source that cannot be read leaves the twins at its last good data: kept, but marked stale.
    reasons = ([("source past its freshness limit: " + ", ".join(late))] if late else []) + (
        [("last extraction failed: " + ", ".join(failing))] if failing else [])
    source_text = "; ".join(reasons) or None
    return f"""
        SELECT t.*,
               {'true' if reasons else 'false'} OR p.serial_number IS NOT NULL AS is_stale,
               nullif(concat_ws('; ', {_sql_text(source_text)},
                                CASE WHEN p.serial_number IS NOT NULL
                                     THEN 'refresh pending: ' || array_to_string(p.reasons, ', ') END), '')
                   AS stale_reason
        FROM state_unit_twin t
        LEFT JOIN pending_twins p USING (serial_number)
    """


def _empty_pending():
    import pyarrow as pa

    return pa.table({"serial_number": pa.array([], pa.string()), "reasons": pa.array([], pa.list_(pa.string()))})


def _sql_text(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def publish(build_db: Path, warehouse: Path, lake_dir: Path, descriptions: dict | None = None, now=None) -> dict:
    """Build the next warehouse file beside the current one, swap it in, mirror it to Delta.

    `thread` comes from the build database; `twin` from the per-unit twin state in the lake, with
    is_stale decided now (a late source, or a twin whose inputs changed but not yet refreshed).
    """
    started = time.monotonic()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    # Publishing holds the writer lock, so any other next-file was left by a crashed publish.
    for stale in warehouse.parent.glob(f".{warehouse.name}.next-*"):
        stale.unlink(missing_ok=True)
    nxt = warehouse.with_name(f".{warehouse.name}.next-{os.getpid()}")
    con = lake.duck(nxt)
    counts = {}
    try:
        con.execute(f"ATTACH {_literal(str(build_db))} AS build (READ_ONLY)")
        for schema in PUBLISHED_SCHEMAS:
            con.execute(f"CREATE SCHEMA {schema}")
        sources = [("thread", t, f"SELECT * FROM build.thread.{t}") for t in thread_tables(build_db)]
        sources += [("twin", t, _twin_sql(con, lake_dir, t, now)) for t in TWIN_TABLES]
        for schema, table, select in sources:
            con.execute(f"CREATE TABLE {schema}.{table} AS {select}")
            counts[f"{schema}.{table}"] = con.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0]
            for col, text in (descriptions or {}).get(f"{schema}.{table}", {}).items():
                target = f"{schema}.{table}" + (f".{_q(col)}" if col else "")
                kind = "COLUMN" if col else "TABLE"
                con.execute(f"COMMENT ON {kind} {target} IS '" + text.replace("'", "''") + "'")
        con.execute("DETACH build")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    nxt.chmod(0o644)
    checkpoint("publish-rename")
    os.replace(nxt, warehouse)
    mirror(warehouse, lake_dir, [k.split(".") for k in counts])
    return {"tables": counts, "seconds": round(time.monotonic() - started, 3)}


def mirror(warehouse: Path, lake_dir: Path, tables) -> None:
    """Every published table also as a Delta table, for engines that do not speak DuckDB."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        for schema, table in tables:
            data = con.execute(f"SELECT * FROM {schema}.{table}").fetch_record_batch(200_000)
            lake.write(Path(lake_dir) / schema / table, data, "overwrite", batch_id="publish")
            checkpoint("publish-mirror")
    finally:
        con.close()


__all__ = ["ARROW_TYPES", "DUCK_TYPES", "prepare_build_db", "publish", "thread_tables"]
