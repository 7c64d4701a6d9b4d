"""The dbt step on Apache Spark (THREAD_ENGINE=spark): its input and its output.

Input: Spark cannot read Delta here (delta-spark's jars come only from Maven), so each raw Delta
table's *current* files are hard-linked into `<spark_dir>/raw/<relation>/` (a Parquet table there,
macros/engines.sql); the two tables the build database computes (the source systems, the salted
masks) are written there as Parquet. Output: dbt-spark writes every model as a Parquet table in
Spark's warehouse; the build database gets a view of each, so that the twin refresh and the
publish read Spark's results exactly as they read DuckDB's.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq

import contracts

from . import lake
from .ingest.audit import AUDIT_TABLES, raw_schema
from .settings import ThreadSettings

# Models the steps after dbt read from the build database.
BRIDGED_SCHEMAS = ("staging", "intermediate", "thread", "twin_logic")
# Computed by prepare_build_db inside the build database (no Delta table behind them).
COMPUTED = ("audit__source_systems", "audit__pii_masks")


def _link(src: Path, dst: Path) -> None:
    """A hard link costs nothing and survives the Delta table's vacuum of that file; across file
    systems, a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def link_raw(settings: ThreadSettings) -> dict[str, int]:
    """Every raw relation dbt's sources name, as a folder of Parquet files for Spark. Returns the
    number of files per relation."""
    import duckdb

    root = settings.spark_dir / "raw"
    tables = {c.raw_relation: (lake.raw_table(settings.lake_dir, c.system, c.entity), raw_schema(c))
              for c in contracts.ENTITIES.values()}
    tables.update({f"audit__{name}": (lake.audit_table(settings.lake_dir, name), schema)
                   for name, schema in AUDIT_TABLES.items()})
    out = {}
    for relation, (path, contract_schema) in tables.items():
        folder = _fresh_dir(root / relation)
        uris = lake.local_files(path, settings.lake_cache)
        for i, uri in enumerate(uris):
            _link(Path(uri), folder / f"part-{i:05d}.parquet")
        if not uris:  # Spark takes a table's columns from its files: one empty file carries them
            pq.write_table((lake.schema(path) or contract_schema).empty_table(), folder / "empty.parquet")
        out[relation] = len(uris)
    con = duckdb.connect(str(settings.build_db), read_only=True)
    try:
        for relation in COMPUTED:
            folder = _fresh_dir(root / relation)
            con.execute(f"COPY (SELECT * FROM raw.{relation}) TO '{folder / 'part-00000.parquet'}' (FORMAT parquet)")
            out[relation] = 1
    finally:
        con.close()
    return out


def bridge(settings: ThreadSettings, models: dict[str, list[str]]) -> None:
    """In the build database, a view per model over the Parquet files of Spark's table
    (`models`: schema -> model names)."""
    warehouse = settings.spark_dir / "warehouse"
    con = lake.duck(settings.build_db, memory_limit=settings.memory_limit)
    try:
        existing = dict(con.execute("SELECT table_schema || '.' || table_name, table_type "
                                    "FROM information_schema.tables WHERE table_catalog = current_database()").fetchall())
        for schema in BRIDGED_SCHEMAS:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            for name in models.get(schema, []):
                relation, folder = f"{schema}.{name}", warehouse / f"{schema}.db" / name
                if not any(folder.glob("*.parquet")):  # not built yet (a failed first run)
                    continue
                if existing.get(relation) == "BASE TABLE":  # left by a DuckDB build in this data directory
                    con.execute(f"DROP TABLE {relation}")
                files = lake.sql_literal(str(folder / "*.parquet"))
                con.execute(f"CREATE OR REPLACE VIEW {relation} AS SELECT * FROM read_parquet({files})")
    finally:
        con.close()
