"""Publishing: the analysts' warehouse.duckdb, built from the build database and the twin state.

Analysts open `warehouse.duckdb` read-only while refreshes run. A refresh builds the next
warehouse beside it and renames it into place (an atomic rename on one file system): open
connections keep reading the old file, new ones see the new one, nobody sees half a build.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from . import dbt_project, fingerprints, freshness, lake, shards, twins
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


@dataclass
class Changes:
    """What changed since the last publish: the unit shards rebuilt in the thread (None: all of
    them), the units whose twins were refreshed (None: all), and the other tables' digests then."""

    shards: list[str] | None
    twin_units: list[str] | None
    digests: dict[str, str]


def publish(build_db: Path, warehouse: Path, lake_dir: Path, descriptions: dict | None = None, now=None,
            memory_limit: str = lake.DEFAULT_MEMORY_LIMIT, changes: Changes | None = None) -> dict:
    """Write the next warehouse file beside the current one, swap it in, mirror it to Delta.

    `thread` comes from the build database; `twin` from the per-unit twin state in the lake, with
    is_stale decided now (a late source, or a twin whose inputs changed but not yet refreshed).
    With `changes` and a current warehouse, the next one starts as a copy of it and only what
    changed is written: whole tables whose digest changed, the rebuilt shards of per-unit tables,
    the refreshed units' twins; the Delta copies get a version only where that happened.
    """
    started = time.monotonic()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    # Publishing holds the writer lock, so any other next-file was left by a crashed publish.
    for stale in warehouse.parent.glob(f".{warehouse.name}.next-*"):
        stale.unlink(missing_ok=True)
    nxt = warehouse.with_name(f".{warehouse.name}.next-{os.getpid()}")
    incremental = changes is not None and warehouse.exists()
    try:
        if incremental:
            shutil.copyfile(warehouse, nxt)
        plan = _write_next(nxt, build_db, lake_dir, descriptions, now, memory_limit, changes if incremental else None)
    except BaseException:
        nxt.unlink(missing_ok=True)  # a failed publish (a full disk) leaves nothing behind
        raise
    nxt.chmod(0o644)
    checkpoint("publish-rename")
    os.replace(nxt, warehouse)
    mirror(warehouse, lake_dir, plan)
    return {"tables": {k: p.rows for k, p in plan.items()}, "digests": {k: p.digest for k, p in plan.items()},
            "written": {k: p.what for k, p in plan.items() if p.what != "kept"},
            "seconds": round(time.monotonic() - started, 3)}


@dataclass
class Written:
    rows: int
    digest: str
    what: str  # "whole", "kept", or "part" (the rows `where` selects were replaced)
    where: str | None = None


def _digest(con, relation: str) -> str:
    n, h = con.execute(f"SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0) FROM {relation} t").fetchone()
    return f"{n}:{h}"


def _write_next(nxt: Path, build_db: Path, lake_dir: Path, descriptions, now, memory_limit,
                changes: Changes | None) -> dict[str, Written]:
    con = lake.duck(nxt, memory_limit=memory_limit)
    plan: dict[str, Written] = {}
    try:
        con.execute(f"ATTACH {lake.sql_literal(str(build_db))} AS build (READ_ONLY)")
        for schema in PUBLISHED_SCHEMAS:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        sources = [("thread", t, f"build.thread.{t}") for t in thread_tables(build_db)]
        for t in twins.TABLES:
            con.execute(f"CREATE OR REPLACE TEMP VIEW next_twin_{t} AS {_twin_sql(con, lake_dir, t, now)}")
            sources.append(("twin", t, f"next_twin_{t}"))
        existing = {f"{a}.{b}" for a, b in con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database()").fetchall()}
        sharded = dbt_project.tagged("sharded", "thread")
        for schema, table, relation in sources:
            name = f"{schema}.{table}"
            where = _part(changes, schema, table, sharded) if changes is not None and name in existing else None
            if where is not None:
                con.execute(f"DELETE FROM {name} WHERE {where}")
                con.execute(f"INSERT INTO {name} SELECT * FROM {relation} WHERE {where}")
                written = Written(0, "", "part", where)
            else:
                digest = _digest(con, relation) if schema == "thread" else ""
                if changes is not None and name in existing and digest and changes.digests.get(name) == digest:
                    written = Written(0, digest, "kept")
                else:
                    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {relation}")
                    for col, text in (descriptions or {}).get(name, {}).items():
                        target = name + (f".{_q(col)}" if col else "")
                        con.execute(f"COMMENT ON {'COLUMN' if col else 'TABLE'} {target} IS {lake.sql_literal(text)}")
                    written = Written(0, digest, "whole")
            written.rows = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            plan[name] = written
        con.execute("DETACH build")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return plan


def _part(changes: Changes, schema: str, table: str, sharded: frozenset[str]) -> str | None:
    """Which rows of a table a partial write replaces (None: the whole table is considered)."""
    # Tables stored per unit shard in the build database are replaced shard by shard.
    if schema == "thread" and table in sharded and changes.shards is not None:
        return shards.sql_ranges(changes.shards)
    if schema == "twin" and table != "unit_twin" and changes.twin_units is not None:
        listed = ", ".join(lake.sql_literal(u) for u in sorted(changes.twin_units))
        return f"serial_number IN ({listed})" if listed else "false"
    return None


def mirror(warehouse: Path, lake_dir: Path, plan: dict[str, Written]) -> None:
    """Every published table also as a Delta table, for engines that do not speak DuckDB: a new
    version only where the warehouse changed, and only the rows that changed."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        for name, written in plan.items():
            path = lake.published_table(lake_dir, *name.split("."))
            if written.what == "kept" and lake.exists(path):
                continue
            part = written.what == "part" and lake.exists(path)
            where = f" WHERE {written.where}" if part else ""
            data = con.execute(f"SELECT * FROM {name}{where}").fetch_record_batch(200_000)
            lake.write(path, data, "overwrite", batch_id="publish", predicate=written.where if part else None)
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
