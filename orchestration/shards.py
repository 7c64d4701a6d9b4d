"""Unit shards: which runs of consecutive serial numbers a change reaches.

A shard is a serial number without its last SHARD_DIGITS characters (HX200-000123 is in shard
HX200-000: HX200-000000 .. HX200-000999). For every shard, a digest of everything the thread's
per-unit models read about its units (dbt model `int_shards_digested`, computed in every run of
the thread). A shard whose digest differs from the one of the last successful build is rebuilt
(`int_shards_changed`, in the same dbt run); the others are kept.

Digests, not change events: a shard is rebuilt exactly when something its rows are computed from
is different, whatever sequence of extractions led there, so an incremental build equals a build
from scratch by construction. For the twins, the same per shard plus the unit's telemetry, its
remaining-useful-life estimate and the design limits.
"""

from __future__ import annotations

from pathlib import Path

from .fingerprints import BuildState

SHARD_DIGITS = 3


def shard_of(serial: str, digits: int = SHARD_DIGITS) -> str:
    return serial[:max(len(serial) - digits, 0)]


def sql_shard(column: str, digits: int = SHARD_DIGITS) -> str:
    """The same in SQL (dbt's `shard_of` macro says it once more, for the models)."""
    return f"left({column}, greatest(length({column}) - {int(digits)}, 0))"


def sql_where(shards: list[str], column: str = "serial_number", digits: int = SHARD_DIGITS) -> str:
    """A filter on these shards that DuckDB can push down to the scans: one range from the first
    shard to the last, then a range per shard. DuckDB carries a plain range through the twin
    views' left joins into their scans, but not an OR of ranges: with the OR alone, the twin
    inputs of 3 shards of 12 cost as much as the whole fleet (2.6 s at 10,000 units, 0.9 s with
    the enclosing range)."""
    from .lake import sql_literal

    if not shards:
        return "false"
    ordered = sorted(shards)

    def end(s: str) -> str:
        return sql_literal(s + chr(0x10FFFF))

    enclosing = f"{column} >= {sql_literal(ordered[0])} AND {column} < {end(ordered[-1])}"
    ranges = " OR ".join(f"({column} >= {sql_literal(s)} AND {column} < {end(s)})" for s in ordered)
    listed = ", ".join(sql_literal(s) for s in ordered)
    return f"({enclosing} AND ({ranges}) AND {sql_shard(column, digits)} IN ({listed}))"


def sql_ranges(shards: list[str], column: str = "serial_number") -> str:
    """The serial-number ranges of these shards, in SQL both DuckDB and Delta's predicates read
    (serial numbers are letters, digits and dashes: '~' sorts after all of them)."""
    from .lake import sql_literal

    if not shards:
        return "false"
    return "(" + " OR ".join(f"({column} >= {sql_literal(s)} AND {column} < {sql_literal(s + '~')})"
                             for s in sorted(shards)) + ")"


# The dbt models of the shard digests and of the shards a run rebuilds (dbt_project/models/intermediate).
DIGESTS_MODEL = "int_shards_digested"
BUILT_TABLE = "main.shard_digests_built"
# ...and per ECO, of its own rows (eco_impact recomputes a changed ECO for every unit).
ECO_DIGESTS_MODEL = "int_ecos_digested"
ECO_BUILT_TABLE = "main.eco_digests_built"


CHANGED_MODEL = "int_shards_changed"
CHANGED_ECOS_MODEL = "int_ecos_changed"
# What decides which shards and ECOs a run rebuilds.
CHANGED_MODELS = (CHANGED_MODEL, CHANGED_ECOS_MODEL)


def keep_built(build_db: Path, aspects: set[str]) -> tuple[dict[str, str], dict[str, list[str]], list[str]]:
    """After a successful dbt run: its shard digests (DIGESTS_MODEL, with every family's) and ECO
    digests (ECO_DIGESTS_MODEL), kept as those the next run compares with (BUILT_TABLE,
    ECO_BUILT_TABLE); the shard digests returned, with, per family of per-unit models
    (`aspects`), the shards that family rebuilt in the run, and the ECOs recomputed for every
    unit (CHANGED_ECOS_MODEL, read before its comparison is overwritten)."""
    import duckdb

    con = duckdb.connect(str(build_db))
    try:
        rebuilt, ecos = _to_rebuild(con, aspects)
        con.execute(f"CREATE OR REPLACE TABLE {BUILT_TABLE} AS SELECT * FROM intermediate.{DIGESTS_MODEL}")
        con.execute(f"CREATE OR REPLACE TABLE {ECO_BUILT_TABLE} AS SELECT * FROM intermediate.{ECO_DIGESTS_MODEL}")
        return dict(con.execute(f"SELECT shard, digest FROM {BUILT_TABLE}").fetchall()), rebuilt, ecos
    finally:
        con.close()


def to_rebuild(build_db: Path, aspects: set[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Once a dbt run has computed CHANGED_MODEL and CHANGED_ECOS_MODEL: per family of per-unit
    models, the shards it rebuilds, and the ECOs it recomputes for every unit."""
    import duckdb

    con = duckdb.connect(str(build_db))
    try:
        return _to_rebuild(con, aspects)
    finally:
        con.close()


def _to_rebuild(con, aspects: set[str]) -> tuple[dict[str, list[str]], list[str]]:
    rebuilt = {a: [s for (s,) in con.execute(
        f"SELECT shard FROM intermediate.{CHANGED_MODEL} WHERE {a} ORDER BY 1").fetchall()] for a in sorted(aspects)}
    ecos = [e for (e,) in con.execute(f"SELECT eco_number FROM intermediate.{CHANGED_ECOS_MODEL} ORDER BY 1").fetchall()]
    return rebuilt, ecos


def _digests(con, sql: str, summaries: str | None = None) -> dict[str, str]:
    """Per shard, the digest of the rows `sql` gives (shard, src, h) and of the summaries already
    made of other sources (relation `summaries`: shard, digest = "<src>:<rows>:<sum of hashes>")."""
    more = f"UNION ALL SELECT shard, digest FROM {summaries}" if summaries else ""
    rows = con.execute(f"""
        SELECT shard, md5(string_agg(summary, '|' ORDER BY summary)) FROM (
            SELECT shard, src || ':' || count(*) || ':' || sum(h::HUGEINT) AS summary FROM ({sql}) GROUP BY shard, src
            {more})
        GROUP BY shard""").fetchall()
    return dict(rows)


def _rows(model: str) -> str:
    """A staging model's rows without when and in which batch they were landed: a snapshot that
    re-lands unchanged rows (the whole units table when one unit is scrapped) changes no shard."""
    return f"(SELECT * EXCLUDE (batch_id, extracted_at) FROM staging.{model})"


def telemetry_summaries(con, digits: int = SHARD_DIGITS) -> dict[str, str]:
    """Per shard, its units' telemetry as the build database reads it, summarized for
    `twin_digests`: the largest input of the twins (57 million readings at 100,000 units), so
    kept while the raw table's version is the same (`Store`, layer `telemetry`)."""
    return dict(con.execute(f"""
        SELECT {sql_shard('serial_number', digits)}, 'telemetry:' || count(*) || ':' || sum(hash(t)::HUGEINT)
        FROM {_rows('stg_service__telemetry')} t GROUP BY 1""").fetchall())


def twin_digests(con, thread: dict[str, str], rul_estimates, digits: int = SHARD_DIGITS,
                 telemetry: dict[str, str] | None = None) -> dict[str, str]:
    """Per shard, what its twins are computed from: the thread's digest, the units' telemetry
    (`telemetry_summaries`, computed here unless given) and remaining-useful-life estimates, and
    the design limits of their products."""
    con.register("rul_estimates_now", rul_estimates)
    con.register("thread_digests_now", _table(thread))
    con.register("telemetry_now", _table(telemetry_summaries(con, digits) if telemetry is None else telemetry))

    def s(column: str) -> str:
        return sql_shard(column, digits)

    return _digests(con, f"""
        WITH limits AS (SELECT product_part_number, sum(hash(l)::HUGEINT) AS h FROM {_rows('stg_plm__sensor_limits')} l
                        GROUP BY 1)
        SELECT shard, 'thread' AS src, hash(digest) AS h FROM thread_digests_now
        UNION ALL SELECT {s('serial_number')}, 'rul', hash(r) FROM rul_estimates_now r
        UNION ALL SELECT {s('u.serial_number')}, 'limits', hash(l.h) FROM {_rows('stg_mes__units')} u
                  JOIN limits l USING (product_part_number)
    """, summaries="telemetry_now")


def _table(digests: dict[str, str]):
    import pyarrow as pa

    return pa.table({"shard": pa.array(list(digests), pa.string()), "digest": pa.array(list(digests.values()),
                                                                                          pa.string())})


def family_digests(con, family: str) -> dict[str, str] | None:
    """Per shard, the digest of what one family of per-unit models reads, as the last successful
    dbt run left it (BUILT_TABLE); None where there is none (Spark, before a first build)."""
    schema, table = BUILT_TABLE.split(".")
    if not con.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                       [schema, table]).fetchall():
        return None
    return dict(con.execute(f"SELECT shard, digest_{family} FROM {BUILT_TABLE}").fetchall())


def changed(before: dict[str, str] | None, now: dict[str, str]) -> list[str] | None:
    """Shards whose digest differs (appeared, changed or gone); None when there is nothing to
    compare with (everything is to be built)."""
    if before is None:
        return None
    return sorted(s for s in set(before) | set(now) if before.get(s) != now.get(s))


class Store(BuildState):
    """The digests of the last successful build of each layer, and what the next publish must
    carry over (build/shards.json)."""

    def __init__(self, build_db: Path):
        super().__init__(build_db, "shards.json")

    def get(self, layer: str, code: str | None = None) -> dict[str, str] | None:
        entry = self._read().get(layer)
        if entry is None or (code is not None and entry.get("code") != code):
            return None
        return entry["digests"]

    def code(self, layer: str) -> str | None:
        """The code the layer's digests were made with."""
        return self._read().get(layer, {}).get("code")

    def put(self, layer: str, digests: dict[str, str], code: str | None = None,
            rebuilt: list[str] | None = None) -> None:
        """`rebuilt`: the shards the build just recomputed (None: all), kept for the record."""
        data = self._read()
        data[layer] = {"code": code, "digests": digests, "rebuilt": sorted(digests) if rebuilt is None else rebuilt}
        self._write(data)

    # -- what the next publish must carry over --------------------------------------------------

    def pending_publish(self, kind: str, missing: list[str] | None = None) -> list[str] | None:
        """Shards (`shards`, `shards:<aspect>` of one family of models) or units (`twins`)
        rewritten since the last publish; None: all. `missing`: what a kind never recorded
        stands for (a family's shards recorded by a version before families: all `shards`)."""
        entry = self._read().get("unpublished", {}).get(kind, [] if missing is None else missing)
        return None if entry is None else list(entry)

    def add_pending_publish(self, kind: str, items: list[str] | None) -> None:
        data = self._read()
        pending = data.setdefault("unpublished", {})
        current = pending.get(kind, [])
        pending[kind] = None if items is None or current is None else sorted(set(current) | set(items))
        self._write(data)

    def published(self, digests: dict[str, str]) -> None:
        """A publish succeeded: remember its tables' digests, nothing is waiting any more."""
        data = self._read()
        data["unpublished"] = {kind: [] for kind in data.get("unpublished", {})} | {"shards": [], "twins": []}
        data["published_digests"] = digests
        self._write(data)

    def published_digests(self) -> dict[str, str]:
        return self._read().get("published_digests", {})
