"""Publishing: the analysts' warehouse.duckdb, built from the build database and the twin state.

Analysts open `warehouse.duckdb` read-only while refreshes run. A refresh builds the next
warehouse beside it and renames it into place (an atomic rename on one file system): open
connections keep reading the old file, new ones see the new one, nobody sees half a build.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb

from . import dbt_project, fingerprints, freshness, lake, twins
from .faults import checkpoint

PUBLISHED_SCHEMAS = ("thread", "twin")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


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
    state = lake.read(twins.state_dir(lake_dir) / table)
    if state is None:
        empty = f"SELECT * FROM build.twin_logic.{table} WHERE false"
        if table != "unit_twin":
            return empty
        extra = ", ".join(f"NULL::{kind} AS {name}" for name, (kind, _) in twins.EXTRA_COLUMNS.items())
        return f"SELECT *, {extra} FROM ({empty})"
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
               nullif(concat_ws('; ', {lake.sql_literal(source_text)},
                                CASE WHEN p.serial_number IS NOT NULL
                                     THEN 'refresh pending: ' || array_to_string(p.reasons, ', ') END), '')
                   AS stale_reason
        FROM state_unit_twin t
        LEFT JOIN pending_twins p USING (serial_number)
    """


def _empty_pending():
    import pyarrow as pa

    return pa.table({"serial_number": pa.array([], pa.string()), "reasons": pa.array([], pa.list_(pa.string()))})


def publish(build_db: Path, warehouse: Path, lake_dir: Path, descriptions: dict | None = None, now=None,
            memory_limit: str = lake.DEFAULT_MEMORY_LIMIT) -> dict:
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
    try:
        counts = _build_next(nxt, build_db, lake_dir, descriptions, now, memory_limit)
    except BaseException:
        nxt.unlink(missing_ok=True)  # a failed publish (a full disk) leaves nothing behind
        raise
    nxt.chmod(0o644)
    checkpoint("publish-rename")
    os.replace(nxt, warehouse)
    mirror(warehouse, lake_dir, [k.split(".") for k in counts])
    return {"tables": counts, "seconds": round(time.monotonic() - started, 3)}


def _build_next(nxt: Path, build_db: Path, lake_dir: Path, descriptions, now, memory_limit) -> dict[str, int]:
    con = lake.duck(nxt, memory_limit=memory_limit)
    counts = {}
    try:
        con.execute(f"ATTACH {lake.sql_literal(str(build_db))} AS build (READ_ONLY)")
        for schema in PUBLISHED_SCHEMAS:
            con.execute(f"CREATE SCHEMA {schema}")
        sources = [("thread", t, f"SELECT * FROM build.thread.{t}") for t in thread_tables(build_db)]
        sources += [("twin", t, _twin_sql(con, lake_dir, t, now)) for t in twins.TABLES]
        for schema, table, select in sources:
            con.execute(f"CREATE TABLE {schema}.{table} AS {select}")
            counts[f"{schema}.{table}"] = con.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0]
            for col, text in (descriptions or {}).get(f"{schema}.{table}", {}).items():
                target = f"{schema}.{table}" + (f".{_q(col)}" if col else "")
                kind = "COLUMN" if col else "TABLE"
                con.execute(f"COMMENT ON {kind} {target} IS {lake.sql_literal(text)}")
        con.execute("DETACH build")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return counts


def mirror(warehouse: Path, lake_dir: Path, tables) -> None:
    """Every published table also as a Delta table, for engines that do not speak DuckDB."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        for schema, table in tables:
            data = con.execute(f"SELECT * FROM {schema}.{table}").fetch_record_batch(200_000)
            lake.write(lake.published_table(lake_dir, schema, table), data, "overwrite", batch_id="publish")
            checkpoint("publish-mirror")
    finally:
        con.close()



def inputs(lake_dir: Path, generation: str, now=None) -> str:
    """What a publish is made of: the build database's state, the twin state and change set, and
    which sources are late or failing right now (is_stale is decided at publish)."""
    systems = freshness.sources(lake_dir, now)
    state = [fingerprints.version(twins.state_dir(lake_dir) / t) for t in (*twins.TABLES, "inputs")]
    return fingerprints.digest([generation, state, fingerprints.version(twins.pending_table(lake_dir)),
                                [(f.system, f.is_late, f.failing_entities) for f in systems]])


def descriptions() -> dict[str, dict[str, str]]:
    """Table and column comments of every published table: the dbt models' descriptions, and the
    columns the twin state adds to the twin logic."""
    out = dbt_project.model_descriptions({"thread": "thread", "twin_logic": "twin"})
    twin = out.setdefault("twin.unit_twin", {})
    twin.update({name: text for name, (_, text) in twins.EXTRA_COLUMNS.items()})
    twin[""] = twins.TWIN_DESCRIPTION
    return out
