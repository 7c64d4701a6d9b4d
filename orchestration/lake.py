"""The few Delta Lake helpers every asset shares.

Reads go through the table's current file list and pyarrow/DuckDB's local Parquet readers, never
through `DeltaTable.to_pyarrow_dataset()`: that path (deltalake 1.6 + pyarrow) intermittently
aborts the interpreter at exit ("terminate called without an active exception"), which would turn
a successful `thread build` into exit code 134.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pyarrow.dataset as pads
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

CURSOR_KEY = "thread.cursor"
FINGERPRINT_KEY = "thread.fingerprint"
BATCH_KEY = "thread.batch_id"
DEFAULT_MEMORY_LIMIT = "4GB"
_SIZE = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


# -- layout: where each kind of table lives under the lake -----------------------------------------

def raw_table(lake_dir: Path, system: str, entity: str) -> Path:
    """An entity's landed rows: lake/raw/<system>/<entity>."""
    return Path(lake_dir) / "raw" / system / entity


def quarantine_table(lake_dir: Path, system: str, entity: str) -> Path:
    """An entity's rejected rows with their rule and reason: lake/quarantine/<system>/<entity>."""
    return Path(lake_dir) / "quarantine" / system / entity


def audit_table(lake_dir: Path, name: str) -> Path:
    """The boundary's own records (contract_findings, extractions): lake/audit/<name>."""
    return Path(lake_dir) / "audit" / name


def published_table(lake_dir: Path, schema: str, table: str) -> Path:
    """The Delta copy of a published table: lake/thread/<table>, lake/twin/<table>."""
    return Path(lake_dir) / schema / table


def sql_literal(value: str | None) -> str:
    """A value as a SQL string literal (or NULL), for the few places SQL cannot take a parameter
    (DDL, view definitions, Delta predicates)."""
    return "NULL" if value is None else "'" + str(value).replace("'", "''") + "'"


def validated_limit(value: str | None) -> str:
    """A DuckDB memory limit, validated before it goes anywhere near SQL (ours, and dbt-duckdb's,
    which pastes it into SET)."""
    limit = (value or DEFAULT_MEMORY_LIMIT).strip()
    if not _SIZE.fullmatch(limit):
        raise ValueError(f"THREAD_DUCKDB_MEMORY_LIMIT must look like 4GB or 512MiB, not {limit!r}")
    return limit


def duck(path: Path | str | None = None, read_only: bool = False, memory_limit: str = DEFAULT_MEMORY_LIMIT):
    """A DuckDB connection in UTC with a bounded memory limit (the deployment's, from the settings)."""
    import duckdb

    limit = validated_limit(memory_limit)
    con = duckdb.connect(str(path) if path else ":memory:", read_only=read_only)
    con.execute(f"SET memory_limit = '{limit}'")
    con.execute("SET TimeZone = 'UTC'")
    return con


PUBLISHED = "published"


def open_published(warehouse: Path):
    """A connection that reads the warehouse file as it is now, attached read-only as the default
    catalog (`published`). Not `duckdb.connect(path)`: DuckDB shares one database per path within a
    process, so while any connection to it is open, a new one would keep reading the file a publish
    has since replaced. Cursors of it attach nothing: run `USE published` on each."""
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute(f"ATTACH {sql_literal(str(warehouse))} AS {PUBLISHED} (READ_ONLY)")
    con.execute(f"USE {PUBLISHED}")
    con.execute("SET TimeZone = 'UTC'")
    return con


def exists(path: Path) -> bool:
    return (Path(path) / "_delta_log").is_dir()


def table(path: Path) -> DeltaTable | None:
    try:
        return DeltaTable(str(path))
    except TableNotFoundError:
        return None


def files(path: Path) -> list[str]:
    dt = table(path)
    return list(dt.file_uris()) if dt is not None else []


def schema(path: Path) -> pa.Schema | None:
    dt = table(path)
    return pa.schema(dt.schema().to_arrow()) if dt is not None else None


def read(path: Path, columns: list[str] | None = None, filter=None) -> pa.Table | None:
    dt = table(path)
    if dt is None:
        return None
    sch = pa.schema(dt.schema().to_arrow())
    uris = list(dt.file_uris())
    if not uris:
        return sch.empty_table() if columns is None else sch.empty_table().select(columns)
    # An explicit schema fills columns added after older files were written with nulls.
    return pads.dataset(uris, format="parquet", schema=sch).to_table(columns=columns, filter=filter)


def last_commit(path: Path) -> dict:
    dt = table(path)
    if dt is None:
        return {}
    history = dt.history(1)
    return history[0] if history else {}


def cursor(path: Path) -> dict | None:
    """The extraction cursor stored with the table's last commit (atomic with its data)."""
    dt = table(path)
    if dt is None:
        return None
    for commit in dt.history(50):
        if CURSOR_KEY in commit:
            return json.loads(commit[CURSOR_KEY])
    return None


def recent_batches(path: Path, commits: int = 50) -> set[str]:
    """Batch ids of the table's latest commits (each write records its batch in the commit)."""
    dt = table(path)
    if dt is None:
        return set()
    return {c[BATCH_KEY] for c in dt.history(commits) if BATCH_KEY in c}


def row_count(path: Path) -> int:
    """Rows in the table's current version, from the Delta log's file statistics (no data read)."""
    dt = table(path)
    if dt is None:
        return 0
    actions = dt.get_add_actions(flatten=True)
    counts = pa.table(actions).column("num_records") if actions.num_rows else None
    return int(pa.compute.sum(counts).as_py() or 0) if counts is not None else 0


@dataclass(frozen=True)
class Restricted:
    """A table only its owner (or one named group) may read: personal data."""

    group: str | None = None

    def apply(self, path: Path) -> None:
        import grp
        import os

        gid = grp.getgrnam(self.group).gr_gid if self.group else -1
        dirs, files = (0o750, 0o640) if self.group else (0o700, 0o600)
        for root, subdirs, names in os.walk(path):
            for name, mode in [(root, dirs)] + [(os.path.join(root, f), files) for f in names]:
                if gid != -1:
                    os.chown(name, -1, gid)
                os.chmod(name, mode)

    def prepare(self, path: Path) -> None:
        """Create the table's folder closed before the first file lands in it."""
        Path(path).mkdir(parents=True, exist_ok=True)
        self.apply(path)


def tables(lake_dir: Path) -> list[Path]:
    """Every Delta table under the lake."""
    return sorted(p.parent for p in Path(lake_dir).rglob("_delta_log"))


def retain(path: Path, hours: int) -> int:
    """Keep the versions of the last `hours` (and the current one): a checkpoint, then vacuum of
    files no such version reads, then old log entries. Returns the files removed. Readers of a
    current or recent version never notice; time travel further back than `hours` ends here."""
    dt = table(path)
    if dt is None:
        return 0
    dt.create_checkpoint()
    removed = dt.vacuum(retention_hours=hours, dry_run=False, enforce_retention_duration=False)
    dt.cleanup_metadata()
    return len(removed)


def delete(path: Path, predicate: str) -> None:
    dt = table(path)
    if dt is not None:
        dt.delete(predicate)


def fingerprint(path: Path) -> str | None:
    return last_commit(path).get(FINGERPRINT_KEY)


def write(
    path: Path,
    data: pa.Table,
    mode: str,
    *,
    batch_id: str,
    cursor: dict | None = None,
    fingerprint: str | None = None,
    predicate: str | None = None,
    restricted: Restricted | None = None,
    row_group_rows: int | None = None,
    target_file_size: int | None = None,
) -> int:
    """Write one commit; overwrite keeps earlier versions (time travel = extraction history)."""
    meta = {BATCH_KEY: batch_id}
    if cursor is not None:
        meta[CURSOR_KEY] = json.dumps(cursor, sort_keys=True)
    if fingerprint is not None:
        meta[FINGERPRINT_KEY] = fingerprint
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if restricted is not None:
        restricted.prepare(path)
    kwargs = {"target_file_size": target_file_size} if target_file_size else {}
    if row_group_rows:
        from deltalake import WriterProperties

        kwargs["writer_properties"] = WriterProperties(max_row_group_size=row_group_rows)
    if mode == "overwrite" and predicate is None:
        kwargs["schema_mode"] = "overwrite"
    elif exists(path):
        kwargs["schema_mode"] = "merge"
    write_deltalake(
        str(path),
        data,
        mode=mode,
        predicate=predicate,
        commit_properties=CommitProperties(custom_metadata=meta),
        **kwargs,
    )
    if restricted is not None:
        restricted.apply(path)
    return DeltaTable(str(path)).version()
