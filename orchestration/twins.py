"""The live twins: per-unit state kept under lake/_state/twin, refreshed only where inputs changed.

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

from . import lake
from .faults import checkpoint

TABLES = ("unit_twin", "unit_components", "unit_sensor_state")
# What the published twin.unit_twin adds to the dbt twin logic's unit_twin, in this order: the
# remaining-useful-life estimate (health/rul_model) when the twin is computed, refreshed_at when
# it is stored, is_stale and stale_reason when it is published.
EXTRA_COLUMNS = {
    "rul_hours": ("DOUBLE", "Remaining useful life in hours at the unit's latest telemetry reading, from its "
                  "product's model learned on the thread's failures (health/rul_model); null where no model applies."),
    "rul_model_version": ("VARCHAR", "The model version that made rul_hours (`<product>/v<n>`, see "
                          "lake/health/rul_versions)."),
    "refreshed_at": ("TIMESTAMPTZ", "When this twin was last computed (its partition's last materialization)."),
    "is_stale": ("BOOLEAN", "True when a source system feeding the twin is past its freshness limit or its last "
                 "extraction failed, or data about the unit changed after refreshed_at and the twin has not been "
                 "refreshed yet."),
    "stale_reason": ("VARCHAR", "Why the twin is stale: the late source systems and/or the aspects waiting for a "
                     "refresh."),
}
TWIN_DESCRIPTION = "One live model per unit that is not scrapped: what it is, what it holds, what it needs and how it is doing."
ASPECTS = ("unit", "configuration", "deviation", "eco", "service", "telemetry", "rul")
# What changes with the telemetry alone (its readings, the estimates made from them, the design
# limits they are judged by); the other aspects follow the thread's per-unit models.
TELEMETRY_ASPECTS = ("telemetry", "rul")
# Every aspect but the configuration, the one that follows the configuration family of per-unit
# models alone (meta shard_aspect: unit_configuration and what it is replayed from) and the
# costliest to evaluate (every component of every unit hashed: 0.6 s of 3,000 units).
BESIDE_CONFIGURATION = tuple(a for a in ASPECTS if a != "configuration")
# Twins are computed and stored this many units at a time: the twin views then only aggregate
# one serial-number range (at 100,000 units all at once they needed more than 9 GiB; at 10,000
# units a range of 10,000 got a plan that needed more than DuckDB's default 4 GB, 5,000 took 1.7 GB).
CHUNK_UNITS = 5_000
# The reason a unit without a twin yet is refreshed.
NEW_UNIT = "new unit"


def internal_dir(lake_dir: Path) -> Path:
    """The twin layer's own tables, apart from lake/twin (the published tables, every one of them
    a Delta table any reader opens). Layouts before 2026-12 kept them in lake/twin/_*: moved here
    the first time they are looked for."""
    lake_dir = lake.location(lake_dir)
    home = lake_dir / "_state" / "twin"
    if lake.is_remote(lake_dir):  # no lake on an object store predates this layout
        return home
    for old, new in (("_state", "units"), ("_pending", "pending"), ("_refresh_log", "refresh_log"),
                     ("_history", "history")):
        if (lake_dir / "twin" / old).is_dir() and not (home / new).exists():
            home.mkdir(parents=True, exist_ok=True)
            (lake_dir / "twin" / old).rename(home / new)
    return home


def state_dir(lake_dir: Path) -> Path:
    """The current twin of every unit (TABLES) and the inputs it was computed from (`inputs`)."""
    return internal_dir(lake_dir) / "units"


def pending_table(lake_dir: Path) -> Path:
    """The last detected change set: which twins must be refreshed and why."""
    return internal_dir(lake_dir) / "pending"


def refresh_log_table(lake_dir: Path) -> Path:
    return internal_dir(lake_dir) / "refresh_log"


def _range(lo: str | None, hi: str | None, hi_inclusive: bool = True, lo_inclusive: bool = True) -> str:
    """A serial-number range as SQL DuckDB and Delta push down to the scans (None = unbounded)."""
    parts = ([f"serial_number {'>=' if lo_inclusive else '>'} {lake.sql_literal(lo)}"] if lo is not None else []) + (
        [f"serial_number {'<=' if hi_inclusive else '<'} {lake.sql_literal(hi)}"] if hi is not None else [])
    return " AND ".join(parts) or "TRUE"


def chunks(serials, size: int = CHUNK_UNITS) -> list[list[str]]:
    ordered = sorted(set(serials))
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def _selected_ranges(con, where: str, size: int) -> list[str]:
    """WHERE clauses covering the units `where` selects: each a run of at most `size` consecutive
    selected units of thread.units, bounded by the unselected units around it (open-ended at
    either end of the fleet, so units not in thread.units are covered too when every unit is
    selected). A plain range reaches the twin views' scans; ranges cut at fixed places evaluated
    every unit of each range holding a selected one (an ECO's 19 scattered shards of 102 at
    100,000 units: 54 s that way, 21 s over the runs)."""
    rows = con.execute(f"SELECT serial_number, coalesce(({where}), false) FROM thread.units ORDER BY 1").fetchall()
    runs, lo, count, last = [], None, 0, None  # lo: the unselected unit before the current run
    for serial, selected in rows:
        if selected:
            count, last = count + 1, serial
            if count == size:
                runs.append((lo, last, True))
                lo, count = last, 0
        else:
            if count:
                runs.append((lo, serial, False))
                count = 0
            lo = serial
    if count:
        runs.append((lo, None, False))
    return [_range(lo, hi, hi_inclusive, lo_inclusive=False) for lo, hi, hi_inclusive in runs]


def _scan(con, relation: str, size: int, columns: str = "*", where: str = "TRUE") -> pa.Table:
    """The rows `where` selects, a serial range at a time: the twin views evaluated for a whole
    fleet at once outgrow memory (9.3 GiB at 100,000 units, an ECO's shards as much as all)."""
    ranges = _selected_ranges(con, where, size)
    parts = [con.execute(f"SELECT {columns} FROM {relation} WHERE ({where}) AND {serials}").fetch_arrow_table()
             for serials in ranges]
    return pa.concat_tables(parts) if parts else \
        con.execute(f"SELECT {columns} FROM {relation} WHERE false").fetch_arrow_table()


def _select(con, relation: str, serials: list[str], columns: str = "t.*") -> pa.Table:
    """Rows of `relation` for a sorted chunk of serials; the range lets the filter reach the scans."""
    if not serials:
        return con.execute(f"SELECT {columns} FROM {relation} t WHERE false").fetch_arrow_table()
    keys = pa.table({"serial_number": pa.array(serials, pa.string())})  # noqa: F841 - DuckDB reads it by name
    return con.execute(f"SELECT {columns} FROM {relation} t SEMI JOIN keys USING (serial_number) "
                       f"WHERE {_range(serials[0], serials[-1])}").fetch_arrow_table()


def units(build_db: Path, size: int = CHUNK_UNITS, memory_limit: str = lake.DEFAULT_MEMORY_LIMIT) -> set[str]:
    """Every unit that has a twin now (not scrapped)."""
    con = lake.duck(build_db, read_only=True, memory_limit=memory_limit)
    try:
        return set(_scan(con, "twin_logic.unit_twin", size, "serial_number").column(0).to_pylist())
    finally:
        con.close()


def _with_health(con, lake_dir: Path) -> None:
    """Views `unit_twin` and `unit_twin_inputs`: the dbt twin logic plus each unit's remaining-
    useful-life estimate (lake/health, written after dbt by the model asset), hashed as aspect `rul`."""
    from . import rul

    con.register("rul_estimates", rul.estimates(lake_dir))
    rul_columns = ", ".join(f"r.{c}" for c in EXTRA_COLUMNS if c.startswith("rul_"))
    con.execute(f"""CREATE OR REPLACE TEMP VIEW unit_twin AS
        SELECT t.*, {rul_columns}
        FROM twin_logic.unit_twin t LEFT JOIN rul_estimates r USING (serial_number)""")
    con.execute(f"CREATE OR REPLACE TEMP VIEW unit_twin_inputs AS {_with_rul_hash('twin_logic.unit_twin_inputs')}")


def input_hash(alias: str = "") -> str:
    """All aspects' hashes together (ASPECTS, the estimate's last), as SQL over columns <aspect>_hash:
    the one place it is said. Its value is that of the thread's aspects hashed first and the
    estimate's added after, as when dbt's view made the first part: stored hashes stay valid."""
    p = f"{alias}." if alias else ""
    thread_aspects = ", ".join(f"{p}{a}_hash" for a in ASPECTS if a != "rul")
    return f"md5(md5(concat_ws('|', {thread_aspects})) || '|' || {p}rul_hash)"


def _with_rul_hash(inputs: str) -> str:
    """The aspect hashes of relation `inputs` (dbt's unit_twin_inputs), the estimate's hash
    (rul_hash) and input_hash."""
    return f"""SELECT * EXCLUDE (rul_hash), {input_hash()} AS input_hash, rul_hash FROM (
        SELECT i.*, coalesce(h.rul_hash, '') AS rul_hash
        FROM {inputs} i
        LEFT JOIN (SELECT serial_number, md5(concat_ws('|', rul_hours::VARCHAR, rul_model_version)) AS rul_hash
                   FROM rul_estimates) h USING (serial_number))"""


def _inputs_of_chunks(con) -> str | None:
    """The query of the twin inputs hashed from the twin rows of the chunk being refreshed (arrow
    tables `chunk_<table>`), not from the twin views evaluated once more: on a day of telemetry at
    10,000 units (8,368 twins) that second evaluation was 10.9 s of the twin views' 17 s; hashing
    the rows takes about 2.5 s a chunk of 5,000 units. It is dbt's own unit_twin_inputs, its three
    references turned to the chunk's tables; None (the view is used as it is) where DuckDB's text
    of the view does not name them as expected."""
    import re

    found = con.execute("SELECT database_name, sql FROM duckdb_views() WHERE schema_name = 'twin_logic' "
                        "AND view_name = 'unit_twin_inputs'").fetchone()
    if found is None:
        return None
    database, sql = found
    body = re.sub(r"^CREATE VIEW \S+ AS ", "", sql.strip().rstrip(";"))
    body = re.sub(rf"\b{re.escape(database)}\.twin_logic\.({'|'.join(TABLES)})\b", r"chunk_\1", body)
    if body.startswith("CREATE") or "twin_logic." in body or any(f"chunk_{t}" not in body for t in TABLES):
        return None
    return _with_rul_hash(f"({body})")


def _relation(table: str) -> str:
    """Where a twin table's rows come from (unit_twin: with the estimates, `_with_health`)."""
    return table if table == "unit_twin" else f"twin_logic.{table}"


def _compute(con, serials: list[str], inputs_of_chunk: str | None = None,
             configuration_kept: set[str] = frozenset(),
             stored: dict[str, pa.Table] | None = None) -> tuple[dict[str, pa.Table], set[str]]:
    """Twin rows (and their input hashes) for one sorted chunk of units; `inputs_of_chunk`: the
    hashes from those rows (`_inputs_of_chunks`). Units in `configuration_kept` keep their stored
    components (no rows of unit_components for them) and configuration aspect of their stored inputs
    (`stored`: the chunk's state tables `unit_twin` and `inputs`), where their new twin row has the
    configuration of the stored one. Returns the rows and the units that kept their components."""
    out = {t: _select(con, _relation(t), serials) for t in TABLES if t != "unit_components"}
    kept = set()
    if configuration_kept and stored:
        con.register("new_twin", out["unit_twin"])
        con.register("stored_twin", stored["unit_twin"])
        con.register("stored_inputs", stored["inputs"])
        kept = {u for (u,) in con.execute("""
            SELECT serial_number FROM new_twin n JOIN stored_twin s USING (serial_number)
            SEMI JOIN stored_inputs USING (serial_number)
            WHERE n.configuration_hash IS NOT DISTINCT FROM s.configuration_hash
              AND n.component_count = s.component_count""").fetchall()} & configuration_kept
    whole = [s for s in serials if s not in kept]
    out["unit_components"] = _select(con, _relation("unit_components"), whole)
    if inputs_of_chunk:
        for t in TABLES:
            con.register(f"chunk_{t}", out[t])
        source = f"({inputs_of_chunk})"
    else:
        source = "unit_twin_inputs"
    out["inputs"] = _select(con, source, whole)
    if kept:
        fresh = _select(con, source, [s for s in serials if s in kept],
                        "t.serial_number, " + ", ".join(f"t.{a}_hash" for a in BESIDE_CONFIGURATION))
        kept_inputs = _with_kept_aspects(con, fresh, stored["inputs"], BESIDE_CONFIGURATION)
        out["inputs"] = pa.concat_tables([out["inputs"], kept_inputs.select(out["inputs"].column_names)])
    return {t: out[t] for t in (*TABLES, "inputs")}, kept


def _with_kept_aspects(con, fresh: pa.Table, stored: pa.Table, evaluated: tuple[str, ...]) -> pa.Table:
    """Twin inputs of units whose `evaluated` aspects were just evaluated (`fresh`) and whose other
    aspects are those stored with their twin (`stored`); a unit missing from either is left out."""
    con.register("fresh_aspects", fresh)
    con.register("stored_aspects", stored)
    kept = ", ".join(f"s.{a}_hash" for a in ASPECTS if a not in evaluated)
    return con.execute(f"""
        SELECT * EXCLUDE (rul_hash), {input_hash()} AS input_hash, rul_hash FROM (
            SELECT f.serial_number, {kept}, f.* EXCLUDE (serial_number)
            FROM fresh_aspects f JOIN stored_aspects s USING (serial_number))""").fetch_arrow_table()


def _replace(path: Path, rows: pa.Table, serials: list[str], batch_id: str) -> None:
    """Replace the rows of a sorted chunk of serials; the range prunes the files Delta rewrites."""
    if not lake.exists(path):
        lake.write(path, rows, "overwrite", batch_id=batch_id)
        return
    listed = ", ".join(lake.sql_literal(s) for s in serials)
    lake.write(path, rows, "overwrite", batch_id=batch_id,
               predicate=f"{_range(serials[0], serials[-1])} AND serial_number IN ({listed})")


def refresh(build_db: Path, lake_dir: Path, serials, *, batch_id: str, now: datetime | None = None,
            size: int = CHUNK_UNITS, memory_limit: str = lake.DEFAULT_MEMORY_LIMIT,
            configuration_kept: set[str] = frozenset()) -> tuple[dict[str, int], pa.Table, set[str]]:
    """Recompute the twins of `serials` and store them with their input hashes, a chunk at a time.
    `configuration_kept`: units whose configuration aspect is as at their twin's last refresh
    (their thread rows are, or only their ECO impact changed): their stored components and
    configuration aspect are kept, the other aspects evaluated (a day of telemetry at 10,000 units
    does not rewrite 3 million component rows, nor does an ECO for its twins). Returns the rows
    written per table, the input hashes the twins were computed from, and the units whose
    components were kept (of `configuration_kept`, those with stored inputs)."""
    now = now or datetime.now(timezone.utc)
    counts = dict.fromkeys((*TABLES, "inputs"), 0)
    computed, kept_components = [], set()
    base = state_dir(lake_dir)
    con = lake.duck(build_db, read_only=True, memory_limit=memory_limit)
    try:
        _with_health(con, lake_dir)
        inputs_of_chunk = _inputs_of_chunks(con)
        for chunk in chunks(serials, size):
            stored = None
            if configuration_kept & set(chunk):
                # Their rows only (an ECO's twins are scattered: the chunk's range is the fleet).
                kept_here = sorted(configuration_kept & set(chunk))
                stored = {t: lake.read_units(base / t, kept_here) for t in ("unit_twin", "inputs")}
                stored = None if None in stored.values() else stored
            rows, kept = _compute(con, chunk, inputs_of_chunk, configuration_kept & set(chunk), stored)
            kept_components |= kept
            for name in ("unit_twin", "inputs"):
                rows[name] = rows[name].append_column(
                    "refreshed_at", pa.array([now] * rows[name].num_rows, pa.timestamp("us", tz="UTC")))
            # `inputs` goes last: until it is written, the chunk's units still count as changed and
            # a crashed refresh is redone by the next run.
            for name, table in rows.items():
                whole = [s for s in chunk if s not in kept] if name == "unit_components" else chunk
                if whole:
                    _replace(base / name, table, whole, batch_id)
                counts[name] += table.num_rows
                checkpoint("twin-write")
            computed.append(rows["inputs"].select(["serial_number", "input_hash"]))
    finally:
        con.close()
    inputs = pa.concat_tables(computed) if computed else \
        pa.table({"serial_number": pa.array([], pa.string()), "input_hash": pa.array([], pa.string())})
    return counts, inputs, kept_components


# What would make a published twin wrong, checked on the units a run refreshed (the twin asset's
# asset checks): name -> what it asserts.
CHECKS = {
    "one_twin_per_live_unit": "Every refreshed unit that is not scrapped has exactly one twin, and no scrapped or "
                              "unknown unit has one.",
    "configuration_hash_matches_components": "Each refreshed twin's configuration_hash is the hash of the components "
                                             "stored with it (twin.unit_components). A twin refreshed for its "
                                             "readings keeps components checked when they were stored, its "
                                             "configuration verified unchanged by its refresh.",
    "computed_from_current_inputs": "Each refreshed twin was computed from the thread as it is now: its stored input "
                                    "hash equals the current one (no twin older than its inputs). In a run, the "
                                    "current one is what the run computed under the writer lock, which no build "
                                    "can change meanwhile.",
}


def _check_sql(where: str) -> dict[str, str]:
    """Each twin check as a query for the units that fail it, over the refreshed units of one serial
    range (`where`), with the state tables registered as state_*."""
    return {
        "one_twin_per_live_unit": f"""
            SELECT r.serial_number FROM refreshed r
            LEFT JOIN (SELECT serial_number, status FROM thread.units WHERE {where}) u USING (serial_number)
            LEFT JOIN (SELECT serial_number, count(*) AS n FROM state_unit_twin GROUP BY 1) t
                USING (serial_number)
            WHERE coalesce(t.n, 0) <> CASE WHEN u.status IS NULL OR u.status = 'scrapped' THEN 0 ELSE 1 END""",
        # the same hash as twin_logic.unit_twin's configuration_hash, from the stored components
        "configuration_hash_matches_components": """
            SELECT t.serial_number FROM state_unit_twin t SEMI JOIN rewritten USING (serial_number)
            LEFT JOIN (SELECT serial_number,
                              md5(string_agg(part_number || '@' || coalesce(revision, '?') || 'x'
                                             || quantity::DECIMAL(38, 9)::VARCHAR, ';' ORDER BY part_number, revision)) AS h
                       FROM state_unit_components GROUP BY 1) c USING (serial_number)
            WHERE c.h IS DISTINCT FROM t.configuration_hash""",
        "computed_from_current_inputs": f"""
            SELECT r.serial_number FROM refreshed r
            LEFT JOIN state_inputs s USING (serial_number)
            LEFT JOIN (SELECT serial_number, input_hash FROM current_inputs
                       WHERE {where} AND serial_number IN (SELECT serial_number FROM refreshed)) c
                USING (serial_number)
            WHERE c.input_hash IS DISTINCT FROM s.input_hash""",
    }


def check(build_db: Path, lake_dir: Path, serials: list[str], size: int = CHUNK_UNITS,
          memory_limit: str = lake.DEFAULT_MEMORY_LIMIT, current_inputs: pa.Table | None = None,
          components_kept: set[str] = frozenset()) -> dict[str, tuple[bool, dict]]:
    """The CHECKS on these units, from what the twin state holds now: name -> (passed, metadata
    naming at most 20 offending serial numbers). A serial range at a time, like the refresh: at
    100,000 units the twin inputs of the whole fleet in one query ran out of memory (9.3 GiB).
    `current_inputs`: the input hashes a refresh just computed (serial_number, input_hash), not
    computed again (at 10,000 units three quarters of the checks' time); None: from the thread.
    `components_kept`: the units whose refresh kept their stored components (`refresh`)."""
    base = state_dir(lake_dir)
    con = lake.duck(build_db, read_only=True, memory_limit=memory_limit)
    bad: dict[str, list[str]] = {name: [] for name in _check_sql("TRUE")}
    try:
        _with_health(con, lake_dir)
        if current_inputs is not None:
            con.register("current_inputs", current_inputs)
        else:
            con.execute("CREATE OR REPLACE TEMP VIEW current_inputs AS SELECT serial_number, input_hash FROM unit_twin_inputs")
        for chunk in chunks(serials, size):
            lo, hi = chunk[0], chunk[-1]
            rewritten = [s for s in chunk if s not in components_kept]
            con.register("refreshed", pa.table({"serial_number": pa.array(chunk, pa.string())}))
            con.register("rewritten", pa.table({"serial_number": pa.array(rewritten, pa.string())}))
            # A state table not written yet is empty, with the columns its rows would have. Only the
            # units checked are read (an ECO's few twins are spread over the fleet: their range is
            # about every stored row, 3.6 million components at 10,000 units).
            for name, relation, units in (("unit_twin", "unit_twin", chunk),
                                          ("unit_components", "twin_logic.unit_components", rewritten),
                                          ("inputs", "unit_twin_inputs", chunk)):
                table = lake.read_units(base / name, units) if units else None
                con.register(f"state_{name}", table if table is not None else
                             con.execute(f"SELECT * FROM {relation} WHERE false").fetch_arrow_table())
            wrong = _check_sql(_range(lo, hi))
            for name, sql in wrong.items():
                bad[name].extend(
                    s for (s,) in con.execute(f"SELECT serial_number FROM ({sql}) ORDER BY 1").fetchall())
        return {name: (not b, {"checked_units": len(set(serials)), "failing_units": len(b),
                               "examples": ", ".join(b[:20])}) for name, b in bad.items()}
    finally:
        con.close()


def log_refresh(lake_dir: Path, run_id: str, why: dict[str, list[str]], now: datetime) -> None:
    """Which twins a run refreshed and why, one row per unit (lake/_state/twin/refresh_log)."""
    if not why:
        return
    table = pa.table({
        "run_id": pa.array([run_id] * len(why), pa.string()),
        "serial_number": pa.array(list(why), pa.string()),
        "reasons": pa.array(list(why.values()), pa.list_(pa.string())),
        "refreshed_at": pa.array([now] * len(why), pa.timestamp("us", tz="UTC")),
    })
    lake.write(refresh_log_table(lake_dir), table, "append", batch_id=run_id)


def changes(build_db: Path, lake_dir: Path, size: int = CHUNK_UNITS,
            memory_limit: str = lake.DEFAULT_MEMORY_LIMIT, where: str | None = None,
            telemetry_where: str | None = None, waiting: pa.Table | None = None,
            configuration_kept_where: str | None = None) -> pa.Table:
    """Units whose twin inputs differ from those their twin was computed from, with the reasons
    and the new input hash (null while no twin is stored at all: every unit is new);
    only among the units `where` selects (a filter on serial_number: the shards that changed).
    `telemetry_where`: more units, in shards where only the TELEMETRY_ASPECTS can have changed
    (their thread rows are as at the last change set): only those aspects are evaluated, the
    others are the stored ones (on a day of telemetry at 10,000 units 2.5 s instead of 4.9 s).
    `configuration_kept_where`: more units, in shards whose configuration family's rows are as at
    the last change set (an ECO's): every aspect but the configuration is evaluated (at 10,000
    units an ECO's 3,000 units in 0.3 s instead of 0.9 s). Units still waiting for a refresh there
    (`waiting`: `pending()`) are evaluated whole: their stored aspects are not those they will be
    refreshed from."""
    con = lake.duck(build_db, read_only=True, memory_limit=memory_limit)
    try:
        _with_health(con, lake_dir)
        stored = lake.read(state_dir(lake_dir) / "inputs")
        if stored is None:
            # No twin yet (a first build): every unit is new, and the refresh hashes its inputs
            # anyway. Evaluating them here too was 7 s of a 142 s full build at 10,000 units.
            selected = " OR ".join(f"({w})" for w in (where or "TRUE", telemetry_where, configuration_kept_where)
                                   if w is not None)
            return _all_new(_scan(con, "twin_logic.unit_twin", size, "serial_number", where=selected))
        con.register("stored_all", stored)
        full = where or "TRUE"
        partly = [(w, aspects) for w, aspects in ((telemetry_where, TELEMETRY_ASPECTS),
                                                  (configuration_kept_where, BESIDE_CONFIGURATION)) if w is not None]
        if partly and waiting is not None and waiting.num_rows:
            # A unit still waiting for its refresh there has stored aspects that are not those it
            # will be refreshed from: evaluated in part, a change detected earlier (its
            # configuration, say) would be taken as done. Those are evaluated whole.
            con.register("waiting", waiting.select(["serial_number"]))
            anywhere = " OR ".join(f"({w})" for w, _ in partly)
            here = con.execute(f"SELECT serial_number FROM waiting WHERE {anywhere}").fetch_arrow_table()
            if here.num_rows:
                con.register("waiting_here", here)
                listed = "serial_number IN (SELECT serial_number FROM waiting_here)"
                full = f"({full}) OR {listed}"
                partly = [(f"({w}) AND NOT {listed}", aspects) for w, aspects in partly]
        current = [_scan(con, "unit_twin_inputs", size, where=full)]
        for selected, aspects in partly:
            fresh = _scan(con, "unit_twin_inputs", size, "serial_number, " + ", ".join(
                f"{a}_hash" for a in aspects), where=selected)
            kept = con.execute(f"SELECT * FROM stored_all WHERE {selected}").fetch_arrow_table()
            combined = _with_kept_aspects(con, fresh, kept, aspects)
            if not combined.num_rows == fresh.num_rows == kept.num_rows:
                # A unit came or went after all: its thread rows changed, every aspect is evaluated.
                combined = _scan(con, "unit_twin_inputs", size, where=selected)
            current.append(combined.select(current[0].column_names))
        current = pa.concat_tables(current)
        selected = " OR ".join(f"({w})" for w in (full, *(w for w, _ in partly)))
        stored = con.execute(f"SELECT * FROM stored_all WHERE {selected}").fetch_arrow_table()
        con.register("current", current)
        con.register("stored", stored)
        diffs = " || ".join(
            f"CASE WHEN c.{a}_hash IS DISTINCT FROM s.{a}_hash THEN ['{a}'] ELSE [] END" for a in ASPECTS)
        return con.execute(f"""
            SELECT coalesce(c.serial_number, s.serial_number) AS serial_number,
                   CASE WHEN s.serial_number IS NULL THEN ['{NEW_UNIT}']
                        WHEN c.serial_number IS NULL THEN ['no longer a twin (scrapped or removed)']
                        ELSE {diffs} END AS reasons,
                   c.input_hash
            FROM current c FULL OUTER JOIN stored s USING (serial_number)
            WHERE c.input_hash IS DISTINCT FROM s.input_hash
            ORDER BY 1
        """).fetch_arrow_table()
    finally:
        con.close()


def _all_new(units: pa.Table) -> pa.Table:
    """A change set naming every unit new, without input hashes (`pending`)."""
    n = units.num_rows
    return pa.table({"serial_number": units.column("serial_number"),
                     "reasons": pa.array([[NEW_UNIT]] * n, pa.list_(pa.string())),
                     "input_hash": pa.nulls(n, pa.string())}).sort_by("serial_number")


def pending(lake_dir: Path) -> pa.Table | None:
    """The last detected change set, minus the twins refreshed since (their hash now matches)."""
    detected = lake.read(pending_table(lake_dir))
    if detected is None or detected.num_rows == 0:
        return detected
    stored = lake.read(state_dir(lake_dir) / "inputs", columns=["serial_number", "input_hash"])
    con = duckdb.connect()
    try:
        con.register("detected", detected)
        if stored is None:
            return con.execute("SELECT * FROM detected").fetch_arrow_table()
        con.register("stored", stored)
        return con.execute(f"""
            SELECT d.* FROM detected d LEFT JOIN stored s USING (serial_number)
            -- A new unit detected without its hash (`_all_new`) waits until it has a twin.
            WHERE CASE WHEN d.input_hash IS NULL AND d.reasons = ['{NEW_UNIT}'] THEN s.serial_number IS NULL
                       ELSE d.input_hash IS DISTINCT FROM s.input_hash END
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


# A fleet up to this many units gets a twin partition per unit: each unit's own history and
# observations in the Dagster UI.
PER_UNIT_MAX = 1_000
# Past that, shards of consecutive serials, at most about this many. With Dagster's SQLite storage
# each partition a run refreshes costs about 16 ms of bookkeeping: a day of telemetry at 10,000
# units refreshed 968 partitions of 10 units, 15.5 s of its 43 s twin step; 99 of 100 units, 1.9 s.
SHARDED_MAX_PARTITIONS = 200


def key_size(key: str) -> int:
    """How many units a partition key stands for: 1 for a serial, 100 for HX200-0001xx."""
    return 10 ** (len(key) - len(key.rstrip("x")))


def units_per_partition(configured: int, known_keys: list[str], fleet: int) -> int:
    """How many consecutive serials a twin partition holds: as configured (> 0); else as the
    instance's newest partition key says (its keys stay what they were); else, for an instance
    without twin partitions, one unit per partition up to PER_UNIT_MAX units, then the smallest
    power of ten that keeps the fleet within SHARDED_MAX_PARTITIONS partitions."""
    if configured > 0:
        return configured
    if known_keys:
        return key_size(known_keys[-1])
    if fleet <= PER_UNIT_MAX:
        return 1
    size = 10
    while fleet > size * SHARDED_MAX_PARTITIONS:
        size *= 10
    return size


def in_partitions(serials, keys: set[str]) -> list[str]:
    """The units that belong to these partitions (serials, or shards of any size: an instance
    whose partition size was changed has both), sorted."""
    sizes = {key_size(k) for k in keys}
    return sorted(s for s in serials if any(partition_key(s, size) in keys for size in sizes))


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


def plan_runs(known_keys: list[str], pending_serials: list[str], units_per_partition: int = 1,
              full: bool = False) -> tuple[list[tuple[str, str]], list[str]]:
    """The twin runs to request: partition ranges (one run each) and the partitions to add first.

    Incremental: ranges covering the partitions of the pending units (the twin asset recomputes
    only the pending units inside each range). Full: one range over every partition.
    """
    wanted = {partition_key(s, units_per_partition) for s in pending_serials}
    new = sorted(wanted - set(known_keys))
    keys = list(known_keys) + new
    if full:
        return ([(keys[0], keys[-1])] if keys else []), new
    return partition_ranges(keys, wanted), new
