"""Publishing: the analysts' warehouse.duckdb, built from the build database and the twin state.

Analysts open `warehouse.duckdb` read-only while refreshes run. A refresh builds the next
warehouse beside it and renames it into place (an atomic rename on one file system): open
connections keep reading the old file, new ones see the new one, nobody sees half a build.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from . import dbt_project, fingerprints, freshness, lake, rul, shards, twin_history, twins
from .faults import checkpoint

if TYPE_CHECKING:
    from .settings import ThreadSettings

PUBLISHED_SCHEMAS = ("thread", "twin")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def thread_tables(build_db: Path) -> list[str]:
    """The thread's tables in the build database (views over Spark's tables when Spark built them)."""
    con = duckdb.connect(str(build_db), read_only=True)
    try:
        rows = con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'thread' AND table_type IN ('BASE TABLE', 'VIEW') ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    return [t for (t,) in rows]


@dataclass(frozen=True)
class Silence:
    """How long a unit's telemetry may stop before its twin says so: hours by default, and per
    product (THREAD_TELEMETRY_SILENCE_HOURS, e.g. `72,HX200=24`)."""

    hours: float = 72
    by_product: tuple[tuple[str, float], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Silence:
        default, products = 72.0, {}
        for item in (i.strip() for i in str(text).split(",") if i.strip()):
            product, sep, value = item.rpartition("=")
            try:
                hours = float(value)
            except ValueError:
                hours = -1.0
            if hours <= 0:
                raise ValueError(f"THREAD_TELEMETRY_SILENCE_HOURS: {item!r} is not a positive number of hours "
                                 "(expected e.g. `72` or `72,HX200=24`)")
            if sep:
                products[product.strip()] = hours
            else:
                default = hours
        return cls(default, tuple(sorted(products.items())))

    def sql(self, now: datetime, alias: str = "t") -> tuple[str, str]:
        """SQL for (the unit's limit as text, whether its telemetry is silent at `now`)."""
        def per_product(value) -> str:
            cases = " ".join(f"WHEN {lake.sql_literal(p)} THEN {value(h)}" for p, h in self.by_product)
            return f"CASE {alias}.product_part_number {cases} ELSE {value(self.hours)} END" if cases else value(self.hours)

        at = f"{lake.sql_literal(now.isoformat())}::TIMESTAMPTZ"
        micros = per_product(lambda h: str(int(h * 3600e6)))
        silent = f"coalesce({alias}.last_telemetry_at < {at} - to_microseconds({micros}), false)"
        return per_product(lambda h: lake.sql_literal(f"{h:g} h")), silent


def silent_units(lake_dir: Path, now: datetime, silence: Silence) -> list[str]:
    """The twins whose telemetry has been silent for longer than their limit, at `now`."""
    state = lake.read(twins.state_dir(lake_dir) / "unit_twin",
                      columns=["serial_number", "product_part_number", "last_telemetry_at"])
    if state is None:
        return []
    con = duckdb.connect()
    try:
        con.register("t", state)
        return [s for (s,) in con.execute(f"SELECT serial_number FROM t WHERE {silence.sql(now)[1]} ORDER BY 1")
                .fetchall()]
    finally:
        con.close()


def _twin_sql(con, lake_dir: Path, table: str, now=None, silence: Silence | None = None,
              units: list[str] | None = None) -> str:
    """The published twin table: the per-unit twin state, plus is_stale on unit_twin; with `units`
    (at most MAX_LISTED_UNITS), only their rows."""
    # The per-unit tables lazily: a publish that replaces some units' rows reads only theirs (the
    # components are 41 M rows at 100,000 units); a few units listed, read as such (DuckDB reads
    # every row of a lazy table to find them: an ECO's 99 twins at 10,000 units, 0.4 s).
    path = twins.state_dir(lake_dir) / table
    if units is not None and len(units) <= MAX_LISTED_UNITS:
        state = lake.read_units(path, units)
    else:
        state = (lake.read if table == "unit_twin" else lake.scan)(path)
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
    # Telemetry that stopped is news about the unit, not only about the feed: health unknown.
    limit, silent = silence.sql(now or datetime.now(timezone.utc)) if silence else ("NULL", "false")
    return f"""
        SELECT t.* REPLACE (CASE WHEN {silent} THEN 'unknown' ELSE t.health_state END AS health_state),
               {'true' if reasons else 'false'} OR p.serial_number IS NOT NULL OR {silent} AS is_stale,
               nullif(concat_ws('; ', {lake.sql_literal(source_text)},
                                CASE WHEN {silent} THEN 'telemetry silent since '
                                     || strftime(t.last_telemetry_at, '%Y-%m-%d %H:%M UTC')
                                     || ' (limit ' || ({limit}) || ')' END,
                                CASE WHEN p.serial_number IS NOT NULL
                                     THEN 'refresh pending: ' || array_to_string(p.reasons, ', ') END), '')
                   AS stale_reason
        FROM state_unit_twin t
        LEFT JOIN pending_twins p USING (serial_number)
    """


def _rul_models(lake_dir: Path):
    """Every remaining-useful-life model version and what it was learned from (lake/health)."""
    versions = lake.read(rul.models_dir(lake_dir) / "rul_versions")
    if versions is None:
        versions = rul.VERSION_SCHEMA.empty_table()
    return versions.drop_columns(["path"])


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
    # Per family of per-unit models (dbt meta `shard_aspect`), the shards it rebuilt (None: all).
    aspect_shards: dict[str, list[str] | None] = field(default_factory=dict)
    # Per twin table, the units whose rows were rewritten, where fewer than twin_units (a twin
    # refreshed for its readings keeps its components).
    twin_table_units: dict[str, list[str] | None] = field(default_factory=dict)
    # The ECOs recomputed for every unit (None: all of them).
    ecos: list[str] | None = field(default_factory=list)


def publish(build_db: Path, warehouse: Path, lake_dir: Path, descriptions: dict | None = None, now=None,
            memory_limit: str = lake.DEFAULT_MEMORY_LIMIT, changes: Changes | None = None,
            silence: Silence | None = None) -> dict:
    """Write the next warehouse file beside the current one, swap it in, mirror it to Delta.

    `thread` comes from the build database; `twin` from the per-unit twin state in the lake, with
    is_stale decided now (a late source, or a twin whose inputs changed but not yet refreshed).
    With `changes` and a current warehouse, the next one starts as a copy of it and only what
    changed is written: whole tables whose digest changed, the rebuilt shards of per-unit tables,
    the refreshed units' twins; the Delta copies get a version only where that happened.
    With `silence`, a twin whose telemetry stopped for longer than its limit is published with
    health `unknown`, stale, naming the silence. Every twin state that differs from its last
    recorded one is added to the twin history.
    """
    started = time.monotonic()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    # Publishing holds the writer lock, so any other next-file was left by a crashed publish.
    for stale in warehouse.parent.glob(f".{warehouse.name}.next-*"):
        stale.unlink(missing_ok=True)
    nxt = warehouse.with_name(f".{warehouse.name}.next-{os.getpid()}")
    incremental = changes is not None and warehouse.exists()
    now = now or datetime.now(timezone.utc)
    try:
        if incremental:
            shutil.copyfile(warehouse, nxt)
        plan, history = _write_next(nxt, build_db, lake_dir, descriptions, now, memory_limit,
                                    changes if incremental else None, silence)
    except BaseException:
        nxt.unlink(missing_ok=True)  # a failed publish (a full disk) leaves nothing behind
        raise
    nxt.chmod(0o644)
    checkpoint("publish-rename")
    os.replace(nxt, warehouse)
    # Recorded once published (a crash in between: the next publish records the state it finds).
    twin_history.append(lake_dir, history, batch_id="publish")
    mirror(warehouse, lake_dir, plan, descriptions, memory_limit)
    return {"tables": {k: p.rows for k, p in plan.items()}, "digests": {k: p.digest for k, p in plan.items()},
            "written": {k: p.what for k, p in plan.items() if p.what != "kept"},
            "seconds": round(time.monotonic() - started, 3)}


@dataclass
class Written:
    rows: int
    digest: str
    what: str  # "whole", "kept", or "part" (the rows `where` selects were replaced)
    where: str | None = None
    by_unit: bool = False  # rows per unit, replaced shard by shard or unit by unit
    resorted: bool = False  # stored in the warehouse by part (published_order), not by unit


def _digest(con, relation: str) -> str:
    n, h = con.execute(f"SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0) FROM {relation} t").fetchone()
    return f"{n}:{h}"


def _write_next(nxt: Path, build_db: Path, lake_dir: Path, descriptions, now, memory_limit,
                changes: Changes | None, silence: Silence):
    con = lake.duck(nxt, memory_limit=memory_limit)
    plan: dict[str, Written] = {}
    try:
        con.execute(f"ATTACH {lake.sql_literal(str(build_db))} AS build (READ_ONLY)")
        for schema in PUBLISHED_SCHEMAS:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        existing = {f"{a}.{b}" for a, b in con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database()").fetchall()}
        sources = [("thread", t, f"build.thread.{t}") for t in thread_tables(build_db)]
        for t in twins.TABLES:
            units = _twin_units(changes, t) if changes is not None and f"twin.{t}" in existing else None
            con.execute(f"CREATE OR REPLACE TEMP VIEW next_twin_{t} AS "
                        f"{_twin_sql(con, lake_dir, t, now, silence, units)}")
            sources.append(("twin", t, f"next_twin_{t}"))
        con.register("next_rul_models", _rul_models(lake_dir))
        sources.append(("twin", "rul_models", "next_rul_models"))
        sharded = dbt_project.tagged("sharded", "thread")
        aspects = dbt_project.shard_aspects("thread")
        eco_columns = dbt_project.eco_columns("thread")
        ordered = dbt_project.published_order("thread")
        for schema, table, relation in sources:
            name = f"{schema}.{table}"
            where = _part(changes, schema, table, sharded, aspects, eco_columns) if changes is not None and name in existing else None
            # Stored in the order readers filter by, so DuckDB's zone maps skip the rest: a table
            # analyses read by part in that order (published_order), a per-unit one by unit (one
            # unit's rows of a 47 M-row table: 390 ms unordered at 100,000 units; of the twins'
            # 41 M components, 66 ms).
            by_part = schema == "thread" and table in ordered
            unit_order = (schema == "thread" and table in sharded and not by_part) or \
                (schema == "twin" and table in twins.TABLES)
            order = f" ORDER BY {ordered[table]}" if by_part else " ORDER BY serial_number" if unit_order else ""
            if where == "false":  # no row of it changed
                written = Written(0, "", "kept")
            elif where is not None:
                con.execute(f"DELETE FROM {name} WHERE {where}")
                con.execute(f"INSERT INTO {name} SELECT * FROM {relation} WHERE {where}{order}")
                written = Written(0, "", "part", where)
            else:
                # The stored order is part of what was published: a new order rewrites the table.
                digest = _digest(con, relation) + order if schema == "thread" else ""
                if changes is not None and name in existing and digest and changes.digests.get(name) == digest:
                    written = Written(0, digest, "kept")
                else:
                    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {relation}{order}")
                    _comment(con, name, descriptions)
                    written = Written(0, digest, "whole")
            written.rows = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            written.resorted = by_part
            written.by_unit = (schema == "thread" and table in sharded) or (schema == "twin" and table in twins.TABLES)
            plan[name] = written
        stored = lake.read(twin_history.table(lake_dir))
        history = twin_history.new_states(con, lake_dir, stored, now)
        plan[twin_history.PUBLISHED] = _write_history(con, stored, history, descriptions,
                                                      twin_history.PUBLISHED in existing and changes is not None)
        # A view: the events are the history's rows, read in event order; nothing to copy.
        con.execute(f"CREATE OR REPLACE VIEW {twin_history.EVENTS} AS {twin_history.events_sql()}")
        _comment(con, twin_history.EVENTS, descriptions, kind="VIEW")
        con.execute("DETACH build")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return plan, history


def _write_history(con, stored, history, descriptions, incremental: bool) -> Written:
    """twin.unit_twin_history: on an incremental publish only the units with a new state."""
    name = twin_history.PUBLISHED
    con.execute(f"CREATE OR REPLACE TEMP VIEW next_history AS {twin_history.published_sql(con, stored, history)}")
    if not incremental:
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM next_history ORDER BY serial_number, valid_from")
        _comment(con, name, descriptions)
        written = Written(0, "", "whole")
    elif history.num_rows == 0:
        written = Written(0, "", "kept")
    else:
        where = units_where(history.column("serial_number").to_pylist())
        con.execute(f"DELETE FROM {name} WHERE {where}")
        con.execute(f"INSERT INTO {name} SELECT * FROM next_history WHERE {where} ORDER BY serial_number, valid_from")
        written = Written(0, "", "part", where)
    written.rows = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
    return written


def _comment(con, name: str, descriptions, kind: str = "TABLE") -> None:
    for col, text in (descriptions or {}).get(name, {}).items():
        target = name + (f".{_q(col)}" if col else "")
        con.execute(f"COMMENT ON {'COLUMN' if col else kind} {target} IS {lake.sql_literal(text)}")


def _part(changes: Changes, schema: str, table: str, sharded: frozenset[str], aspects: dict[str, str],
          eco_columns: dict[str, str]) -> str | None:
    """Which rows of a table a partial write replaces (None: the whole table is considered)."""
    # Tables stored per unit shard in the build database are replaced shard by shard: those its
    # family of models rebuilt, or any shard that changed; and one that recomputes a changed ECO
    # for every unit (meta eco_column), that ECO's rows too.
    if schema == "thread" and table in sharded:
        aspect = aspects.get(table)
        rebuilt = changes.aspect_shards.get(aspect, changes.shards) if aspect else changes.shards
        column = eco_columns.get(table)
        # (past MAX_LISTED_UNITS ECOs, a listed Delta predicate as long as that of as many units)
        if rebuilt is None or (column and (changes.ecos is None or len(changes.ecos) > MAX_LISTED_UNITS)):
            return None
        parts = [shards.sql_ranges(rebuilt)] if rebuilt else []
        if column and changes.ecos:
            parts.append(f"{column} IN ({', '.join(lake.sql_literal(e) for e in changes.ecos)})")
        return " OR ".join(f"({p})" for p in parts) or "false"
    units = _twin_units(changes, table) if schema == "twin" else None
    return units_where(units) if units is not None else None


def _twin_units(changes: Changes, table: str) -> list[str] | None:
    """The units whose rows a partial write of a twin table replaces (None: the whole table;
    twin.unit_twin is always written whole, every twin's staleness being decided now)."""
    units = changes.twin_table_units.get(table, changes.twin_units)
    return units if table in twins.TABLES and table != "unit_twin" else None


# Past this many units a partial write names serial ranges, not each unit: the Delta predicate of
# 98,544 listed units (a day of telemetry at 100,000 units) overflowed the stack of deltalake's
# parser and killed the process.
MAX_LISTED_UNITS = 1_000
MAX_RANGES = 64


def units_where(units) -> str:
    """A filter on these units' rows, for DuckDB and for Delta's predicates: the units listed, or
    past MAX_LISTED_UNITS the serial ranges holding them (at most MAX_RANGES: shards of 1,000
    consecutive serials, or of 10,000, ...). A range also selects units that did not change; a
    partial write replaces their rows with the same rows."""
    units = sorted(set(units))
    if not units:
        return "false"
    if len(units) <= MAX_LISTED_UNITS:
        return f"serial_number IN ({', '.join(lake.sql_literal(u) for u in units)})"
    digits = shards.SHARD_DIGITS
    held = {shards.shard_of(u, digits) for u in units}
    while len(held) > MAX_RANGES:
        digits += 1
        held = {shards.shard_of(u, digits) for u in units}
    return shards.sql_ranges(sorted(held))


# A per-unit table's Delta copy is cut into files of about this size, each a run of serial
# numbers: replacing a shard's rows rewrites the few files holding them, not the whole table.
MIRROR_FILE_BYTES = 8 * 2**20


def mirror(warehouse: Path, lake_dir: Path, plan: dict[str, Written], descriptions: dict | None = None,
           memory_limit: str = lake.DEFAULT_MEMORY_LIMIT) -> None:
    """Every published table also as a Delta table, for engines that do not speak DuckDB: a new
    version only where the warehouse changed, and only the rows that changed. A table written
    whole carries the warehouse's column descriptions (field metadata `comment`, as Spark and
    Unity Catalog read them) and is not-null where the thread schema guarantees it."""
    required = dbt_project.not_null_columns({"thread": "thread", "twin_logic": "twin"})
    # Bounded like the warehouse's writer: reading a table stored by part in unit order is a sort
    # of its every row (DuckDB's default limit is 80 % of the machine).
    con = lake.duck(warehouse, read_only=True, memory_limit=memory_limit)
    try:
        for name, written in plan.items():
            path = lake.published_table(lake_dir, *name.split("."))
            if written.what == "kept" and lake.exists(path):
                continue
            part = written.what == "part" and lake.exists(path)
            where = f" WHERE {written.where}" if part else ""
            order = " ORDER BY serial_number" if written.resorted else ""
            data = con.execute(f"SELECT * FROM {name}{where}{order}").fetch_record_batch(200_000)
            if not part:  # a partial write keeps the schema the whole one declared
                data = _annotated(data, (descriptions or {}).get(name, {}), required.get(name, set()))
            lake.write(path, data, "overwrite", batch_id="publish", predicate=written.where if part else None,
                       target_file_size=MIRROR_FILE_BYTES if written.by_unit else None)
            checkpoint("publish-mirror")
    finally:
        con.close()


def _annotated(batches, comments: dict[str, str], required: set[str]):
    import pyarrow as pa

    schema = pa.schema([
        pa.field(f.name, f.type, nullable=f.name not in required,
                 metadata={"comment": comments[f.name]} if comments.get(f.name) else None)
        for f in batches.schema])
    return pa.RecordBatchReader.from_batches(schema, (b.cast(schema) for b in batches))


def inputs(lake_dir: Path, generation: str, now=None, silence: Silence | None = None) -> str:
    """What a publish is made of: the build database's state, the twin state and change set, and
    which sources are late or failing and which units silent right now (is_stale is decided at
    publish)."""
    now = now or datetime.now(timezone.utc)
    systems = freshness.sources(lake_dir, now)
    state = [fingerprints.version(twins.state_dir(lake_dir) / t) for t in (*twins.TABLES, "inputs")]
    return fingerprints.digest([generation, state, fingerprints.version(twins.pending_table(lake_dir)),
                                [(f.system, f.is_late, f.failing_entities) for f in systems],
                                silent_units(lake_dir, now, silence) if silence else []])


def current(thread: ThreadSettings, generation: str) -> tuple[str, bool]:
    """The publish's inputs now, and whether the warehouse there was published from exactly them."""
    digest = inputs(thread.lake_dir, generation, silence=thread.telemetry_silence)
    return digest, thread.warehouse.exists() and fingerprints.Ledger(thread.build_db).unchanged("publish", digest)


def descriptions() -> dict[str, dict[str, str]]:
    """Table and column comments of every published table: the dbt models' descriptions, and the
    columns the twin state adds to the twin logic."""
    out = dbt_project.model_descriptions({"thread": "thread", "twin_logic": "twin"})
    twin = out.setdefault("twin.unit_twin", {})
    twin.update({name: text for name, (_, text) in twins.EXTRA_COLUMNS.items()})
    twin[""] = twins.TWIN_DESCRIPTION
    history = {k: v for k, v in twin.items() if k}
    history.update({name: text for name, (_, text) in twin_history.HISTORY_COLUMNS.items()})
    history[""] = twin_history.DESCRIPTION
    out[twin_history.PUBLISHED] = history
    out["twin.rul_models"] = {"": rul.VERSIONS_DESCRIPTION, **rul.VERSION_COLUMNS}
    out[twin_history.EVENTS] = {"": twin_history.EVENTS_DESCRIPTION, **twin_history.EVENTS_COLUMNS}
    return out
