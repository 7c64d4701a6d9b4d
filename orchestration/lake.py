"""The few Delta Lake helpers every asset shares, for a lake in a local folder or on an object store.

`THREAD_LAKE_URI` may name a folder or an object-store prefix (`s3://bucket/prefix`): the lake's
location is then a `UPath` (universal-pathlib over fsspec), joined and listed like a `Path`.
deltalake, pyarrow and s3fs read the store's credentials and endpoint from the standard `AWS_*`
variables themselves. DuckDB cannot reach S3 here (its httpfs extension is a download), so what
DuckDB or Spark read goes through `local_files`: a local copy of each current file, kept by name
(Delta never rewrites a file under the same name).

Reads go through the table's current file list and pyarrow/DuckDB's local Parquet readers, never
through `DeltaTable.to_pyarrow_dataset()`: that path (deltalake 1.6 + pyarrow) intermittently
aborts the interpreter at exit ("terminate called without an active exception"), which would turn
a successful `thread build` into exit code 134.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

CURSOR_KEY = "thread.cursor"
FINGERPRINT_KEY = "thread.fingerprint"
BATCH_KEY = "thread.batch_id"
DEFAULT_MEMORY_LIMIT = "4GB"
_SIZE = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


# -- where the lake is ------------------------------------------------------------------------------

def location(where) -> Path:
    """The lake (or a place in it) from a path or URI: a `Path` for a local folder, a `UPath` for
    an object store (same joins, same listing)."""
    if isinstance(where, Path) or hasattr(where, "protocol"):
        return where
    text = str(where)
    if "://" in text and not text.startswith("file://"):
        from upath import UPath

        return UPath(text)
    return Path(_local_path(text))


def is_remote(where) -> bool:
    return getattr(location(where), "protocol", "") not in ("", "file", "local")


def _local_path(uri: str) -> str:
    return unquote(urlparse(uri).path) if uri.startswith("file:") else uri


# -- layout: where each kind of table lives under the lake -----------------------------------------

def raw_table(lake_dir: Path, system: str, entity: str) -> Path:
    """An entity's landed rows: lake/raw/<system>/<entity>."""
    return location(lake_dir) / "raw" / system / entity


def quarantine_table(lake_dir: Path, system: str, entity: str) -> Path:
    """An entity's rejected rows with their rule and reason: lake/quarantine/<system>/<entity>."""
    return location(lake_dir) / "quarantine" / system / entity


def audit_table(lake_dir: Path, name: str) -> Path:
    """The boundary's own records (contract_findings, extractions): lake/audit/<name>."""
    return location(lake_dir) / "audit" / name


def published_table(lake_dir: Path, schema: str, table: str) -> Path:
    """The Delta copy of a published table: lake/thread/<table>, lake/twin/<table>."""
    return location(lake_dir) / schema / table


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
    return (location(path) / "_delta_log").is_dir()


def table(path: Path) -> DeltaTable | None:
    try:
        return DeltaTable(str(path))
    except TableNotFoundError:
        return None


def files(path: Path) -> list[str]:
    dt = table(path)
    return list(dt.file_uris()) if dt is not None else []


def _dataset(uris: list[str], schema: pa.Schema) -> pads.Dataset:
    if not is_remote(uris[0]):
        return pads.dataset([_local_path(u) for u in uris], format="parquet", schema=schema)
    fs, _ = pafs.FileSystem.from_uri(uris[0])
    return pads.dataset([pafs.FileSystem.from_uri(u)[1] for u in uris], format="parquet", schema=schema,
                        filesystem=fs)


def local_files(path: Path, cache: Path | None) -> list[str]:
    """The table's current Parquet files as local paths, for DuckDB and Spark: a local lake's own
    files; an object store's, copied once into `cache` (by bucket and key) and kept while current.
    Call `prune_cache` after the last reader of a generation is set up."""
    uris = files(path)
    if not uris or not is_remote(uris[0]):
        return [_local_path(u) for u in uris]
    if cache is None:
        raise ValueError(f"{path} is on an object store: its files need a local cache folder to be read by DuckDB")
    # Owner-only, whatever the umask: the copies include the restricted tables' personal data.
    Path(cache).mkdir(mode=0o700, parents=True, exist_ok=True)
    Path(cache).chmod(0o700)
    out = []
    for uri in uris:
        fs, key = pafs.FileSystem.from_uri(uri)
        local = Path(cache) / key
        if not local.exists():
            local.parent.mkdir(parents=True, exist_ok=True)
            part = local.with_name(f".{local.name}.part")
            pafs.copy_files(key, str(part), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
            os.replace(part, local)
        out.append(str(local))
    return out


def prune_cache(cache: Path, keep: set[str]) -> int:
    """Remove the cached copies no longer current (everything in `cache` not in `keep`)."""
    removed = 0
    for f in Path(cache).rglob("*") if Path(cache).is_dir() else []:
        if f.is_file() and str(f) not in keep:
            f.unlink(missing_ok=True)
            removed += 1
    return removed


def schema(path: Path) -> pa.Schema | None:
    dt = table(path)
    return pa.schema(dt.schema().to_arrow()) if dt is not None else None


def read(path: Path, columns: list[str] | None = None, filter=None) -> pa.Table | None:
    ds = scan(path)
    return ds.to_table(columns=columns, filter=filter) if ds is not None else None


def read_units(path: Path, units: list[str]) -> pa.Table | None:
    """The rows of these units (by serial_number), in no particular order. A local table is read
    by DuckDB's Parquet reader, which decodes the other columns only where a unit matched; pyarrow
    decodes every row (an ECO's 99 twins among 3.6 million stored components: 0.06 s against
    0.3 s). An object store's, by pyarrow."""
    dt = table(path)
    if dt is None:
        return None
    sch = pa.schema(dt.schema().to_arrow())
    uris = list(dt.file_uris())
    if not units or not uris:
        return sch.empty_table()
    if is_remote(uris[0]):
        return _dataset(uris, sch).to_table(filter=pads.field("serial_number").isin(pa.array(units, pa.string())))
    con = duck()
    try:
        con.register("wanted", pa.table({"serial_number": pa.array(units, pa.string())}))
        # (the units' range too: the Parquet statistics of files sorted by serial skip the rest)
        got = con.execute(f"""SELECT * FROM read_parquet([{', '.join(sql_literal(_local_path(u)) for u in uris)}],
                                                       union_by_name = true)
                              SEMI JOIN wanted USING (serial_number)
                              WHERE serial_number BETWEEN {sql_literal(min(units))} AND {sql_literal(max(units))}
                           """).fetch_arrow_table()
    finally:
        con.close()
    # As the table declares it: a column added after older files were written is null in theirs.
    return pa.Table.from_arrays([got.column(f.name).cast(f.type) if f.name in got.column_names
                                 else pa.nulls(got.num_rows, f.type) for f in sch], schema=sch)


def scan(path: Path) -> pads.Dataset | None:
    """The table's current version as a dataset read lazily: a reader that filters (DuckDB, on a
    registered dataset) reads only what its filter needs, not the whole table into memory."""
    dt = table(path)
    if dt is None:
        return None
    sch = pa.schema(dt.schema().to_arrow())
    uris = list(dt.file_uris())
    # An explicit schema fills columns added after older files were written with nulls.
    return _dataset(uris, sch) if uris else pads.dataset(sch.empty_table())


def latest(path: Path, where: dict[str, str], newest_by: str) -> dict | None:
    """The row with the greatest `newest_by` among those equal to `where`, reading only files whose
    Delta statistics allow such a row, newest first: an append-only log (one small file per
    append) is looked up in about one file however long it has grown."""
    dt = table(path)
    if dt is None:
        return None
    files = pa.table(dt.get_add_actions(flatten=True))
    if not files.num_rows:
        return None

    def stat(kind: str, col: str):  # a column of statistics, if the files have it
        name = f"{kind}.{col}"
        return files.column(name) if name in files.column_names else None

    keep = pa.array([True] * files.num_rows)
    for col, value in where.items():
        lo, hi = stat("min", col), stat("max", col)
        if lo is not None and hi is not None:  # a file without statistics may hold anything
            keep = pc.and_(keep, pc.fill_null(pc.and_(pc.less_equal(lo, value), pc.greater_equal(hi, value)), True))
    files = files.filter(keep)
    ceiling = f"max.{newest_by}"
    if ceiling in files.column_names:
        files = files.sort_by([(ceiling, "descending")])
    sch = pa.schema(dt.schema().to_arrow())
    root = str(dt.table_uri).rstrip("/")
    matching = functools.reduce(lambda a, b: a & b, (pc.field(k) == v for k, v in where.items()))
    best = None
    for f in files.to_pylist():
        if best is not None and f.get(ceiling) is not None and f[ceiling] < best[newest_by]:
            break  # neither this file nor an older one holds a newer row
        rows = _dataset([f"{root}/{f['path']}"], sch).to_table(filter=matching)
        if rows.num_rows:
            top = rows.sort_by([(newest_by, "descending")]).slice(0, 1).to_pylist()[0]
            if best is None or top[newest_by] > best[newest_by]:
                best = top
    return best


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
    return int(pc.sum(counts).as_py() or 0) if counts is not None else 0


@dataclass(frozen=True)
class Restricted:
    """A table only its owner (or one named group) may read: personal data. On an object store
    the bucket's policy decides who reads a prefix; there are no file modes to set."""

    group: str | None = None

    def apply(self, path: Path) -> None:
        import grp

        if is_remote(path):
            return
        gid = grp.getgrnam(self.group).gr_gid if self.group else -1
        dirs, files = (0o750, 0o640) if self.group else (0o700, 0o600)
        for root, subdirs, names in os.walk(path):
            for name, mode in [(root, dirs)] + [(os.path.join(root, f), files) for f in names]:
                if gid != -1:
                    os.chown(name, -1, gid)
                os.chmod(name, mode)

    def prepare(self, path: Path) -> None:
        """Create the table's folder closed before the first file lands in it."""
        if not is_remote(path):
            Path(path).mkdir(parents=True, exist_ok=True)
            self.apply(path)


def tables(lake_dir: Path) -> list[Path]:
    """Every Delta table under the lake."""
    return sorted((p.parent for p in location(lake_dir).rglob("_delta_log")), key=str)


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
    checkpoint_every: int | None = None,
) -> int:
    """Write one commit; overwrite keeps earlier versions (time travel = extraction history).
    `checkpoint_every`: a checkpoint each that many commits (Delta's default is 100)."""
    meta = {BATCH_KEY: batch_id}
    if cursor is not None:
        meta[CURSOR_KEY] = json.dumps(cursor, sort_keys=True)
    if fingerprint is not None:
        meta[FINGERPRINT_KEY] = fingerprint
    if not is_remote(path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    if restricted is not None:
        restricted.prepare(path)
    kwargs = {"target_file_size": target_file_size} if target_file_size else {}
    if row_group_rows:
        from deltalake import WriterProperties

        kwargs["writer_properties"] = WriterProperties(max_row_group_size=row_group_rows)
    # Opened once: the writer would open it again, and so would asking for the new version.
    dt = table(path) if exists(path) else None
    if mode == "overwrite" and predicate is None:
        kwargs["schema_mode"] = "overwrite"
    elif dt is not None:
        kwargs["schema_mode"] = "merge"
    if checkpoint_every:
        wanted = {CHECKPOINT_INTERVAL: str(checkpoint_every)}
        if dt is None:
            kwargs["configuration"] = wanted
        elif dt.metadata().configuration.get(CHECKPOINT_INTERVAL) != wanted[CHECKPOINT_INTERVAL]:
            dt.alter.set_table_properties(wanted)  # a table from before the setting: once
    write_deltalake(
        dt if dt is not None else str(path),
        data,
        mode=mode,
        predicate=predicate,
        commit_properties=CommitProperties(custom_metadata=meta),
        **kwargs,
    )
    if restricted is not None:
        restricted.apply(path)
    return dt.version() if dt is not None else DeltaTable(str(path)).version()


CHECKPOINT_INTERVAL = "delta.checkpointInterval"
# An append-only log gets one small commit per extraction and is read by the next extraction of
# each entity: a reader replays the commits since the last checkpoint (28 ms at 84 of them, 7 ms
# right after a checkpoint).
LOG_CHECKPOINT_EVERY = 10


def append_to_log(path: Path, data: pa.Table, *, batch_id: str) -> int:
    """One commit appended to an audit log (the extraction log, the contract findings)."""
    return write(path, data, "append", batch_id=batch_id, checkpoint_every=LOG_CHECKPOINT_EVERY)
